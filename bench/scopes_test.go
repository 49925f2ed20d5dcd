package bench_test

import (
	"flag"
	"net/http"
	"runtime"
	"strconv"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
)

var scopeKeys = flag.Int("scope-keys", 200_000, "distinct keys TestScopeMemory sends")

// TestScopeMemory sends one request for each of many distinct merchant keys
// through one transport that keeps a bucket per key, and checks that the
// heap it holds afterwards is bounded, whatever the number of keys: the
// transport remembers at most a fixed number of scopes. The README's figure
// is from -scope-keys=1000000.
func TestScopeMemory(t *testing.T) {
	n := *scopeKeys
	if testing.Short() || raceEnabled {
		n = min(n, 20_000)
	}
	tr := spotflowhttp.NewTransport(cannedOK, spotflowhttp.WithRateLimitByKey(), spotflowhttp.WithAdaptiveRateLimit())
	req, _ := http.NewRequest(http.MethodGet, "http://spotflow.invalid/api/v1/payments/verify?reference=r", nil)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	send := func(i int) {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", "Bearer sk_live_"+strconv.Itoa(i))
		resp, err := tr.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send(-1)
	before := heap()
	var at10k uint64
	for i := range n {
		send(i)
		if i == 10_000 {
			at10k = heap()
		}
	}
	after := heap()
	runtime.KeepAlive(tr)
	grown := int64(after) - int64(before)
	t.Logf("%d keys: heap %d KiB before, %d KiB after 10,000 keys, %d KiB after all (grew %d KiB)",
		n, before>>10, at10k>>10, after>>10, grown>>10)
	// Past the bound (4096 scopes), more keys must not cost more memory.
	if after > at10k+1<<20 {
		t.Fatalf("heap grew from %d KiB at 10,000 keys to %d KiB at %d, want no growth past the bound", at10k>>10, after>>10, n)
	}
}
