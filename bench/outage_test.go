package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/bench"
)

// TestOutage runs the outage comparison (1,000 sequential GETs to an
// always-503 server, waits between attempts set to 0) and holds our figure
// to at most 1.2 server hits per request: the retry budget must cap the
// extra traffic of a full outage.
func TestOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	res, err := bench.Outage(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + bench.OutageTable(res))
	for _, r := range res {
		switch r.Client {
		case bench.NameBare:
			if r.Hits != r.Requests {
				t.Errorf("bare: %d hits for %d requests", r.Hits, r.Requests)
			}
		case bench.NameOurs:
			if h := r.HitsPerRequest(); h > 1.2 {
				t.Errorf("spotflowhttp: %.3f hits per request in an outage, want <= 1.2", h)
			}
		}
	}
}
