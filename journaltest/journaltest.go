// Package journaltest checks that an implementation of
// [spotflowhttp.Journal] keeps the interface's contract, in the manner of
// testing/fstest: the in-memory, file and Redis journals all pass the same
// [Run], and so can one of your own.
package journaltest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// Run checks the journal open returns against the [spotflowhttp.Journal]
// contract, in subtests. open is called once per subtest and must return an
// empty journal; it should close it with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) spotflowhttp.Journal) {
	t.Run("RecordThenPending", func(t *testing.T) { recordThenPending(t, open(t)) })
	t.Run("RecordReplaces", func(t *testing.T) { recordReplaces(t, open(t)) })
	t.Run("PendingOldestFirst", func(t *testing.T) { pendingOldestFirst(t, open(t)) })
	t.Run("Claim", func(t *testing.T) { claim(t, open(t)) })
	t.Run("Settle", func(t *testing.T) { settle(t, open(t)) })
	t.Run("OneClaimWins", func(t *testing.T) { oneClaimWins(t, open(t)) })
	t.Run("OneSettleWins", func(t *testing.T) { oneSettleWins(t, open(t)) })
}

// base is a fixed time with no monotonic reading, in UTC, as a journal that
// encodes times gives them back.
var base = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// Sample returns a typical entry with key, made at base+offset and held by
// "call-1" for a minute.
func Sample(key string, offset time.Duration) spotflowhttp.Entry {
	now := base.Add(offset)
	return spotflowhttp.Entry{
		Key:       key,
		Reference: "ref-" + key,
		Account:   "merchant-7",
		Method:    http.MethodPost,
		URL:       "https://api.spotflow.test/api/v1/payments",
		Header: http.Header{
			"Content-Type":    {"application/json"},
			"Idempotency-Key": {key},
		},
		Body:  []byte(`{"amount":5000,"currency":"NGN","reference":"ref-` + key + `"}`),
		Time:  now,
		Owner: "call-1",
		Until: now.Add(time.Minute),
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// same reports whether two entries are equal, times compared as instants.
func same(a, b spotflowhttp.Entry) bool {
	if !a.Time.Equal(b.Time) || !a.Until.Equal(b.Until) {
		return false
	}
	a.Time, b.Time, a.Until, b.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if len(a.Body) == 0 && len(b.Body) == 0 {
		a.Body, b.Body = nil, nil
	}
	if len(a.Header) == 0 && len(b.Header) == 0 {
		a.Header, b.Header = nil, nil
	}
	return bytes.Equal(a.Body, b.Body) && reflect.DeepEqual(a, b)
}

func pending(t *testing.T, j spotflowhttp.Journal) []spotflowhttp.Entry {
	t.Helper()
	es, err := j.Pending(ctx(t))
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return es
}

func mustRecord(t *testing.T, j spotflowhttp.Journal, e spotflowhttp.Entry) {
	t.Helper()
	if err := j.Record(ctx(t), e); err != nil {
		t.Fatalf("Record(%s): %v", e.Key, err)
	}
}

func recordThenPending(t *testing.T, j spotflowhttp.Journal) {
	if es := pending(t, j); len(es) != 0 {
		t.Fatalf("a new journal has %d pending entries", len(es))
	}
	e := Sample("k1", 0)
	mustRecord(t, j, e)
	e.Body[0] = 'X' // the journal must have kept its own copy
	e = Sample("k1", 0)
	es := pending(t, j)
	if len(es) != 1 || !same(es[0], e) {
		t.Fatalf("Pending = %+v, want [%+v]", es, e)
	}
	if err := j.Record(ctx(t), spotflowhttp.Entry{}); err == nil {
		t.Error("Record of an entry without a key: no error")
	}
}

func recordReplaces(t *testing.T, j spotflowhttp.Journal) {
	mustRecord(t, j, Sample("k1", 0))
	e := Sample("k1", time.Second)
	e.Owner = "call-2"
	mustRecord(t, j, e)
	es := pending(t, j)
	if len(es) != 1 || !same(es[0], e) {
		t.Fatalf("Pending after a second Record of one key = %+v, want [%+v]", es, e)
	}
}

func pendingOldestFirst(t *testing.T, j spotflowhttp.Journal) {
	for i, off := range []int{3, 1, 4, 0, 2} {
		mustRecord(t, j, Sample(fmt.Sprintf("k%d", i), time.Duration(off)*time.Second))
	}
	es := pending(t, j)
	if len(es) != 5 {
		t.Fatalf("Pending has %d entries, want 5", len(es))
	}
	for i := 1; i < len(es); i++ {
		if es[i].Time.Before(es[i-1].Time) {
			t.Fatalf("Pending not oldest first: %v before %v", es[i-1].Time, es[i].Time)
		}
	}
}

func claim(t *testing.T, j spotflowhttp.Journal) {
	e := Sample("k1", 0) // held by call-1 until base+1m
	mustRecord(t, j, e)
	try := func(key, owner string, now, until time.Time, want bool) {
		t.Helper()
		ok, err := j.Claim(ctx(t), key, owner, now, until)
		if err != nil || ok != want {
			t.Fatalf("Claim(%s, %s, now %v) = %v, %v; want %v", key, owner, now.Sub(base), ok, err, want)
		}
	}
	try("k1", "rec-A", base.Add(30*time.Second), base.Add(2*time.Minute), false) // held
	try("missing", "rec-A", base.Add(30*time.Second), base.Add(2*time.Minute), false)
	try("k1", "call-1", base.Add(30*time.Second), base.Add(30*time.Second), true) // its holder releases it
	try("k1", "rec-A", base.Add(30*time.Second), base.Add(90*time.Second), true)  // free since the release
	try("k1", "rec-B", base.Add(60*time.Second), base.Add(3*time.Minute), false)  // A holds it
	try("k1", "rec-A", base.Add(60*time.Second), base.Add(100*time.Second), true) // A renews
	try("k1", "rec-B", base.Add(100*time.Second), base.Add(3*time.Minute), true)  // A's claim expired
	es := pending(t, j)
	if len(es) != 1 || es[0].Owner != "rec-B" || !es[0].Until.Equal(base.Add(3*time.Minute)) {
		t.Fatalf("after claims, Pending = %+v; want held by rec-B until +3m", es)
	}
	if !same(withClaim(es[0], e.Owner, e.Until), e) {
		t.Fatalf("Claim changed more than the claim: %+v", es[0])
	}
}

func withClaim(e spotflowhttp.Entry, owner string, until time.Time) spotflowhttp.Entry {
	e.Owner, e.Until = owner, until
	return e
}

func settle(t *testing.T, j spotflowhttp.Journal) {
	mustRecord(t, j, Sample("k1", 0))
	mustRecord(t, j, Sample("k2", 0))
	try := func(key, owner string, want bool) {
		t.Helper()
		ok, err := j.Settle(ctx(t), key, owner)
		if err != nil || ok != want {
			t.Fatalf("Settle(%s, %s) = %v, %v; want %v", key, owner, ok, err, want)
		}
	}
	try("k1", "rec-A", false) // not its holder
	try("k1", "call-1", true)
	try("k1", "call-1", false) // gone
	try("missing", "call-1", false)
	// An expired claim no one else took still lets its holder settle.
	if ok, err := j.Claim(ctx(t), "k2", "call-1", base, base); !ok || err != nil {
		t.Fatalf("release: %v, %v", ok, err)
	}
	try("k2", "call-1", true)
	if es := pending(t, j); len(es) != 0 {
		t.Fatalf("after settling both, Pending = %+v", es)
	}
}

// oneClaimWins has 20 owners race to claim one free entry.
func oneClaimWins(t *testing.T, j spotflowhttp.Journal) {
	free(t, j)
	won := race(func(owner string) bool {
		ok, err := j.Claim(context.Background(), "k1", owner, base.Add(time.Second), base.Add(time.Hour))
		if err != nil {
			t.Error(err)
		}
		return ok
	})
	if won != 1 {
		t.Fatalf("%d of 20 concurrent claims of one free entry succeeded, want 1", won)
	}
}

// oneSettleWins has 20 racing reconcilers each claim-and-settle one entry:
// exactly one may settle it.
func oneSettleWins(t *testing.T, j spotflowhttp.Journal) {
	free(t, j)
	settled := race(func(owner string) bool {
		ok, err := j.Claim(context.Background(), "k1", owner, base.Add(time.Second), base.Add(time.Hour))
		if err != nil || !ok {
			return false
		}
		ok, err = j.Settle(context.Background(), "k1", owner)
		if err != nil {
			t.Error(err)
		}
		return ok
	})
	if settled != 1 {
		t.Fatalf("one entry settled %d times by 20 racing reconcilers, want 1", settled)
	}
}

// free records entry k1, free from base on.
func free(t *testing.T, j spotflowhttp.Journal) {
	e := Sample("k1", 0)
	e.Until = base
	mustRecord(t, j, e)
}

// race runs fn for 20 owners at once and counts the true results.
func race(fn func(owner string) bool) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if fn(fmt.Sprintf("rec-%d", i)) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}
