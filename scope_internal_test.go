package spotflowhttp

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Two scopes whose ids collide stay two scopes: each request gets its own,
// the same one every time, and both are forgotten or resumed like any other.
func TestScopeIDCollision(t *testing.T) {
	cfg := newConfig(nil)
	r := cfg.scopes
	reqA, _ := http.NewRequest("GET", "https://api.spotflow.co/p", nil)
	reqA.Header.Set("Authorization", "Bearer sk_live_A")
	reqB, _ := http.NewRequest("GET", "https://api.spotflow.co/p", nil)
	reqB.Header.Set("Authorization", "Bearer sk_live_B")
	a := r.get(reqA)
	// Make B's id hold A's scope, as a collision would.
	kB := r.key(reqB)
	r.creds.Store(r.id(kB), a)
	b := r.get(reqB)
	if b == a || b.key != kB {
		t.Fatalf("B got A's scope through a colliding id")
	}
	if again := r.get(reqB); again != b {
		t.Fatal("B's scope is not the same on the next lookup")
	}
	if r.get(reqA) != a {
		t.Fatal("A lost its scope")
	}
	b.halted.Store(&Error{StatusCode: 401})
	if n := r.resume(); n != 1 || b.halted.Load() != nil {
		t.Fatalf("resume lifted %d halts, B's halt %v; want B's lifted", n, b.halted.Load())
	}
}

// A scope that shrink forgets takes its pauses and release out of the
// registry's busy count: an expired cool-down in a credential no call uses
// again must not keep NewTransport's fused path shut for good.
func TestForgottenScopesLeaveBusy(t *testing.T) {
	cfg := newConfig(nil)
	r := cfg.scopes
	req := func(i int) *http.Request {
		q, _ := http.NewRequest("GET", "https://api.spotflow.co/p", nil)
		q.Header.Set("Authorization", fmt.Sprintf("Bearer sk_test_%d", i))
		return q
	}
	past := time.Now().Add(-time.Second) // expired at once: the scope is idle
	a, b := r.get(req(-1)), r.get(req(-2))
	a.extendPause(&a.coolUntil, past)
	b.extendPause(&b.holdUntil, past)
	b.setRelease(&releaser{})
	if n := r.busy.Load(); n != 3 {
		t.Fatalf("busy = %d after two pauses and a release, want 3", n)
	}
	for i := range maxScopes + maxScopes/4 {
		r.get(req(i))
	}
	_, keptA := r.creds.Load(r.id(a.key))
	_, keptB := r.creds.Load(r.id(b.key))
	if keptA || keptB {
		t.Fatal("the scopes with expired pauses were not forgotten by the flood")
	}
	if n := r.busy.Load(); n != 0 {
		t.Errorf("busy = %d after their scopes were forgotten, want 0", n)
	}
}
