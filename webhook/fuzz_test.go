package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/webhook"
)

// FuzzHandler sends random headers and bodies. When signIt is set, the
// delivery is also signed properly, so that the body's parsing is reached.
// The Handler must never panic, and must call its function only for a
// delivery that an independent check finds signed with the secret, within
// the tolerance, whose body is a JSON object.
func FuzzHandler(f *testing.F) {
	f.Add("msg_1", "1700000000", "", []byte(paymentBody), true, false)
	f.Add("msg_1", "1700000000", sign(f, secret, "msg_1", t0.Unix(), paymentBody), []byte(paymentBody), false, false)
	f.Add("msg_1", "1700000000", sign(f, secret, "msg_1", t0.Unix(), paymentBody), []byte(paymentBody), false, true)
	f.Add("msg_1", "1700000000", "v1,abc v1a,xyz ,,, v1,", []byte(`{}`), false, true)
	f.Add("", "", "", []byte(nil), false, false)
	f.Add("msg.1", "+1700000000", "v1", []byte(`{"event":1,"data":[]}`), true, false)
	f.Add("m", "1699999700", "", []byte(" {\"data\":{\"reference\":\"\\u0000\",\"status\":{}}}\n"), true, true)
	f.Add("m", "1700000301", "", []byte(`{"event":"x"}`), true, false)
	f.Add("m", "1700000000", "", []byte(`[] `), true, false)
	f.Add("m", "1700000000", "", bytes.Repeat([]byte(`{"a":`), 2000), true, false)
	f.Fuzz(func(t *testing.T, id, stamp, sig string, body []byte, signIt, spotflowHeader bool) {
		if signIt {
			if ts, err := strconv.ParseInt(stamp, 10, 64); err == nil {
				sig += " " + sign(t, secret, id, ts, string(body))
			}
		}
		var got []webhook.Event
		h := newHandler(t, func(_ context.Context, ev webhook.Event) error {
			got = append(got, ev)
			return nil
		}, webhook.WithMaxBodyBytes(4096))
		r := httptest.NewRequest(http.MethodPost, "/webhooks", bytes.NewReader(body))
		r.Header.Set("webhook-id", id)
		r.Header.Set("webhook-timestamp", stamp)
		if spotflowHeader {
			r.Header.Set("x-spotflow-signature", sig)
		} else {
			r.Header.Set("webhook-signature", sig)
		}
		w := serve(h, r)

		switch w.Code {
		case 200, 400, 403, 413:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if len(got) == 0 {
			if w.Code == 200 {
				t.Fatal("200 without calling the function")
			}
			return
		}
		if len(got) > 1 || w.Code != 200 {
			t.Fatalf("%d calls, status %d", len(got), w.Code)
		}
		ts, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil {
			t.Fatalf("called with timestamp %q", stamp)
		}
		if d := t0.Sub(time.Unix(ts, 0)); d > webhook.DefaultTolerance || d < -webhook.DefaultTolerance {
			t.Fatalf("called with a timestamp %v away", d)
		}
		if !signed(sig, strings.TrimPrefix(sign(t, secret, id, ts, string(body)), "v1,")) {
			t.Fatalf("called for an unsigned delivery: id %q, timestamp %q, signature %q", id, stamp, sig)
		}
		if b := bytes.TrimLeft(body, " \t\r\n"); !json.Valid(body) || len(b) == 0 || b[0] != '{' {
			t.Fatalf("called for a body that is not a JSON object: %q", body)
		}
		if got[0].ID != id || !got[0].Timestamp.Equal(time.Unix(ts, 0)) {
			t.Fatalf("event %+v", got[0])
		}
	})
}

// signed reports whether the signature list has a v1 entry equal to want.
func signed(list, want string) bool {
	for _, s := range strings.Split(list, " ") {
		if version, sig, _ := strings.Cut(s, ","); version == "v1" && strings.Split(sig, ",")[0] == want {
			return true
		}
	}
	return false
}
