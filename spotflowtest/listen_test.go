package spotflowtest_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

func TestWithListenerServesOnIt(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, spotflowtest.WithListener(l))
	if want := "http://" + l.Addr().String(); h.s.URL != want {
		t.Errorf("URL = %q, want %q", h.s.URL, want)
	}
	if r := h.do("POST", "/payments", paymentBody("l-1", 5000, "o")); r.status != 201 {
		t.Fatalf("payment on the given listener: %v", r)
	}
	h.s.Close()
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after Close")
	}
}

// inFlight sends a payment in the background and returns once the server
// has counted its arrival, so that the request is sleeping in its latency.
func inFlight(t *testing.T, h *harness) <-chan result {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		done <- h.do("POST", "/payments", paymentBody("flight-1", 5000, "o"))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for h.s.Stats().Requests == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	return done
}

func TestShutdownAnswersRequestsInFlight(t *testing.T) {
	h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Latency: 300 * time.Millisecond}),
		spotflowtest.WithWebhooks(spotflowtest.Webhooks{})) // no URL: events wait for ever
	done := inFlight(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if r := <-done; r.status != 201 {
		t.Errorf("request in flight: %v, want 201", r)
	}
	if err := h.s.WaitWebhooks(context.Background()); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("WaitWebhooks after Shutdown = %v, want ErrServerClosed: the webhooks are stopped", err)
	}
	if r := h.do("GET", "/payments/verify?reference=flight-1", ""); r.err == nil {
		t.Errorf("a request after Shutdown got %v", r)
	}
}

func TestShutdownDeadlineAbortsLatency(t *testing.T) {
	h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Hour}))
	done := inFlight(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if r := <-done; r.err == nil {
		t.Errorf("request sleeping past the deadline: %v, want a connection error", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Shutdown took %v with an hour of latency in flight", d)
	}
}
