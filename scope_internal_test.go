package spotflowhttp

import (
	"net/http"
	"testing"
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
