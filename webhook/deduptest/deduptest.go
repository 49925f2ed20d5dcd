// Package deduptest checks that an implementation of [webhook.Dedup] keeps
// the interface's contract, in the manner of testing/fstest: the in-memory
// and the Redis stores pass the same [Run], and so can one of your own.
package deduptest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/webhook"
)

// Run checks the store open returns against the [webhook.Dedup] contract,
// in subtests. open is called once per subtest and must return a store
// that remembers no id; it should close it with t.Cleanup.
//
// The contract lets Claim either wait for a claim held by another delivery
// or return [webhook.InFlight] at once, so Run accepts both.
func Run(t *testing.T, open func(t *testing.T) webhook.Dedup) {
	t.Run("ClaimCommit", func(t *testing.T) { claimCommit(t, open(t)) })
	t.Run("ClaimRelease", func(t *testing.T) { claimRelease(t, open(t)) })
	t.Run("StaleToken", func(t *testing.T) { staleToken(t, open(t)) })
	t.Run("WhileHeld", func(t *testing.T) { whileHeld(t, open(t)) })
	t.Run("OneClaimWins", func(t *testing.T) { oneClaimWins(t, open(t)) })
}

// ctx bounds each call, so that a store that waits forever fails the test
// instead of hanging it.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func claim(t *testing.T, d webhook.Dedup, id string, want webhook.ClaimState) string {
	t.Helper()
	got, token, err := d.Claim(ctx(t), id)
	if err != nil || got != want {
		t.Fatalf("Claim(%q) = %v, %v; want %v", id, got, err, want)
	}
	if got == webhook.Claimed && token == "" {
		t.Fatalf("Claim(%q) claimed with an empty token", id)
	}
	return token
}

func commit(t *testing.T, d webhook.Dedup, id, token string) {
	t.Helper()
	if err := d.Commit(ctx(t), id, token); err != nil {
		t.Fatalf("Commit(%q): %v", id, err)
	}
}

func release(t *testing.T, d webhook.Dedup, id, token string) {
	t.Helper()
	if err := d.Release(ctx(t), id, token); err != nil {
		t.Fatalf("Release(%q): %v", id, err)
	}
}

func claimCommit(t *testing.T, d webhook.Dedup) {
	tok := claim(t, d, "msg_a", webhook.Claimed)
	claim(t, d, "msg_b", webhook.Claimed) // ids are independent
	commit(t, d, "msg_a", tok)
	claim(t, d, "msg_a", webhook.Processed)
	claim(t, d, "msg_a", webhook.Processed)
	release(t, d, "msg_a", tok) // too late: it was processed
	claim(t, d, "msg_a", webhook.Processed)
}

func claimRelease(t *testing.T, d webhook.Dedup) {
	tok := claim(t, d, "msg_a", webhook.Claimed)
	release(t, d, "msg_a", tok)
	tok2 := claim(t, d, "msg_a", webhook.Claimed)
	if tok2 == tok {
		t.Errorf("a new claim has the released claim's token %q", tok)
	}
	commit(t, d, "msg_a", tok2)
	claim(t, d, "msg_a", webhook.Processed)
}

// staleToken: a Release with a token that no longer holds the claim frees
// nothing.
func staleToken(t *testing.T, d webhook.Dedup) {
	tok := claim(t, d, "msg_a", webhook.Claimed)
	release(t, d, "msg_a", tok)
	tok2 := claim(t, d, "msg_a", webhook.Claimed)
	release(t, d, "msg_a", tok)
	release(t, d, "msg_a", tok+"x")
	commit(t, d, "msg_b", claim(t, d, "msg_b", webhook.Claimed))
	release(t, d, "msg_b", tok2) // another id's token
	held(t, d, "msg_a")
	release(t, d, "msg_a", tok2)
	claim(t, d, "msg_a", webhook.Claimed)
}

// held checks that id cannot be claimed now. A store that waits for the
// holder gives up when the context ends; that is allowed too.
func held(t *testing.T, d webhook.Dedup, id string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Claim runs apart so that a store that ignores its context fails this
	// check in seconds instead of hanging the whole package until the test
	// binary's timeout.
	type result struct {
		s   webhook.ClaimState
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, _, err := d.Claim(c, id)
		done <- result{s, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("Claim(%q) of a held id still waiting 5 s after its context ended at 100 ms: the store ignores the context", id)
	}
	s, err := r.s, r.err
	switch {
	case err != nil && c.Err() == nil:
		t.Fatalf("Claim(%q): %v", id, err)
	case err == nil && s != webhook.InFlight:
		t.Fatalf("Claim(%q) of a held id = %v, want InFlight", id, s)
	}
}

// whileHeld: a Claim of an id held by another delivery returns InFlight at
// once, or waits and then follows what the holder did.
func whileHeld(t *testing.T, d webhook.Dedup) {
	tok := claim(t, d, "msg_a", webhook.Claimed)
	held(t, d, "msg_a")
	if s := claimWhileHeld(t, d, "msg_a", func() { commit(t, d, "msg_a", tok) }); s == webhook.Claimed {
		t.Fatal("Claim of a held id returned Claimed")
	}
	claim(t, d, "msg_a", webhook.Processed)

	tok = claim(t, d, "msg_b", webhook.Claimed)
	s := claimWhileHeld(t, d, "msg_b", func() { release(t, d, "msg_b", tok) })
	if s == webhook.Processed {
		t.Fatal("Claim of a held id that was then released returned Processed")
	}
	if s == webhook.InFlight { // it did not wait: the id is free now
		claim(t, d, "msg_b", webhook.Claimed)
	}
}

// claimWhileHeld claims id from another goroutine, then calls finish, and
// returns what that Claim returned. A Claim that waits returns after
// finish; one that does not, before or after it.
func claimWhileHeld(t *testing.T, d webhook.Dedup, id string, finish func()) webhook.ClaimState {
	t.Helper()
	type result struct {
		s   webhook.ClaimState
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, _, err := d.Claim(ctx(t), id)
		done <- result{s, err}
	}()
	finish()
	r := <-done
	if r.err != nil {
		t.Fatalf("Claim(%q) while held: %v", id, r.err)
	}
	return r.s
}

// oneClaimWins has 20 deliveries of one id race to claim it; each that
// wins commits. Exactly one may win.
func oneClaimWins(t *testing.T, d webhook.Dedup) {
	const n = 20
	var (
		mu     sync.Mutex
		states = map[webhook.ClaimState]int{}
		wg     sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			s, tok, err := d.Claim(ctx(t), "msg_a")
			if err != nil {
				t.Error(err)
				return
			}
			if s == webhook.Claimed {
				if err := d.Commit(ctx(t), "msg_a", tok); err != nil {
					t.Error(err)
				}
			}
			mu.Lock()
			states[s]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if states[webhook.Claimed] != 1 || states[webhook.Claimed]+states[webhook.Processed]+states[webhook.InFlight] != n {
		t.Fatalf("%d racing claims of one id ended %s; want exactly one Claimed", n, fmt.Sprint(states))
	}
}
