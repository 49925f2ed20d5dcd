package redislimit_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

var journals atomic.Int64

func TestJournal(t *testing.T) {
	s := needRedis(t)
	journaltest.Run(t, func(t *testing.T) spotflowhttp.Journal {
		j, err := redislimit.NewJournal(s.client(t), fmt.Sprintf("journal-%d", journals.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return j
	})
}

func TestNewJournalInvalid(t *testing.T) {
	if _, err := redislimit.NewJournal(nil, "x"); err == nil {
		t.Error("a nil client: no error")
	}
	if _, err := redislimit.NewJournal(needRedis(t).client(t), ""); err == nil {
		t.Error("an empty name: no error")
	}
}

// WithReplicas is refused where it cannot be kept: a Ring, which has no
// one connection to the primary holding an entry for WAIT, a negative
// count, and a timeout of 0, which WAIT reads as forever.
func TestNewJournalRefusesReplicasItCannotKeep(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}) // never dialled
	defer ring.Close()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tt := range []struct {
		name string
		rdb  redis.UniversalClient
		opt  redislimit.JournalOption
		want string
	}{
		{"ring", ring, redislimit.WithReplicas(1, time.Second), "*redis.Ring"},
		{"negative", rdb, redislimit.WithReplicas(-1, time.Second), "must not be negative"},
		{"no timeout", rdb, redislimit.WithReplicas(1, 0), "WAIT's 0 waits forever"},
	} {
		if _, err := redislimit.NewJournal(tt.rdb, "x", tt.opt); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewJournal = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	if _, err := redislimit.NewJournal(ring, "x"); err != nil {
		t.Errorf("a ring without WithReplicas: %v", err)
	}
}

// TestJournalReplicas: a Redis without the replicas asked for refuses the
// entry, and keeps none, so the call it describes is never sent.
func TestJournalReplicas(t *testing.T) {
	j, err := redislimit.NewJournal(needRedis(t).client(t), "journal-replicas", redislimit.WithReplicas(1, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Record(context.Background(), journaltest.Sample("k1", 0)); err == nil {
		t.Fatal("Record succeeded without the replica asked for")
	}
	if es, err := j.Pending(context.Background()); err != nil || len(es) != 0 {
		t.Fatalf("Pending = %+v, %v; want nothing left of the refused entry", es, err)
	}
}

// TestReconcilersShareARedisJournal: payments that ended uncertain in one
// process are settled by three reconcilers, each with its own connection to
// Redis as separate processes would have, racing; each entry is reported
// once, and the ledger agrees.
func TestReconcilersShareARedisJournal(t *testing.T) {
	s := needRedis(t)
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}}))
	defer srv.Close()
	journal := func() *redislimit.Journal {
		j, err := redislimit.NewJournal(s.client(t), "journal-shared")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	client := &http.Client{Transport: spotflowhttp.NewTransport(srv.Client().Transport,
		spotflowhttp.WithJournal(journal()), spotflowhttp.WithMaxAttempts(1))}
	const n = 20
	for i := range n {
		body := fmt.Sprintf(`{"amount":100,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"r%d"}`, i)
		req, _ := http.NewRequest(http.MethodPost, srv.BaseURL()+"/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
		if _, err := client.Do(req); err == nil {
			t.Fatal("want the reset")
		}
	}
	var mu sync.Mutex
	reported := map[string]int{}
	var wg sync.WaitGroup
	for range 3 {
		rec, err := spotflowhttp.NewReconciler(journal(), srv.Client().Transport,
			func(req *http.Request, _ spotflowhttp.Entry) error {
				req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
				return nil
			},
			func(s spotflowhttp.Settlement) {
				mu.Lock()
				reported[s.Entry.Reference]++
				mu.Unlock()
			}, spotflowhttp.WithVerifyAfter(0))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if left, err := rec.ReconcileOnce(context.Background()); err != nil || left == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range n {
		ref := fmt.Sprintf("r%d", i)
		if reported[ref] != 1 || srv.Charges(ref) != 1 {
			t.Errorf("%s reported %d times, charged %d times; want 1, 1", ref, reported[ref], srv.Charges(ref))
		}
	}
}

// BenchmarkJournal is what a Redis journal adds to a keyed create, as the
// root package's BenchmarkJournal measures for the others: a POST through
// NewTransport to an in-memory server answering 201. The test server keeps
// nothing on disk, so this is the round trips' cost; appendfsync always
// adds Redis's fsync to it.
func BenchmarkJournal(b *testing.B) {
	if shared == nil {
		b.Skip(noRedis)
	}
	rdb := redis.NewClient(&redis.Options{Addr: shared.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	j, err := redislimit.NewJournal(rdb, "journal-bench")
	if err != nil {
		b.Fatal(err)
	}
	created := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Body.Close()
		return &http.Response{StatusCode: 201, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	rt := spotflowhttp.NewTransport(created, spotflowhttp.WithJournal(j))
	payload := []byte(`{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"r"}`)
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/api/v1/payments", bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer sk_test_x")
		if resp, err := rt.RoundTrip(req); err != nil || resp.StatusCode != 201 {
			b.Fatal(resp, err)
		}
	}
	b.Run("Redis", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			send()
		}
	})
	b.Run("Redis/Parallel", func(b *testing.B) {
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				send()
			}
		})
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A Record that fails for want of its replicas against a primary that
// stops answering returns soon after its context ends: removing the entry
// is bounded too, not left to the client's timeouts and retries.
func TestRecordWithReplicasFailsPromptlyWhenThePrimaryHangs(t *testing.T) {
	rs := ownRedis(t)
	j, err := redislimit.NewJournal(rs.client(t), "journal-hang", redislimit.WithReplicas(1, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	rs.signal(t, syscall.SIGSTOP)
	defer rs.signal(t, syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := j.Record(ctx, journaltest.Sample("k1", 0)); err == nil {
		t.Fatal("Record succeeded against a frozen primary")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Record failed after %v, want soon after its 200 ms deadline", d)
	}
}
