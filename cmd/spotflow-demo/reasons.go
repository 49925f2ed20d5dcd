package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/spotflow-go/spotflowhttp"
)

// reasons counts why column (c) retried and why it stopped retrying, as an
// operator would see them through a spotflowhttp.Observer.
type reasons struct {
	mu    sync.Mutex
	retry map[spotflowhttp.RetryReason]int
	stop  map[spotflowhttp.StopReason]int
}

func newReasons() *reasons {
	return &reasons{retry: map[spotflowhttp.RetryReason]int{}, stop: map[spotflowhttp.StopReason]int{}}
}

func (r *reasons) observer() *spotflowhttp.Observer {
	return &spotflowhttp.Observer{
		RetryScheduled: func(_ context.Context, ev spotflowhttp.RetryEvent) {
			r.mu.Lock()
			r.retry[ev.Reason]++
			r.mu.Unlock()
		},
		RetriesStopped: func(_ context.Context, ev spotflowhttp.StopEvent) {
			r.mu.Lock()
			r.stop[ev.Reason]++
			r.mu.Unlock()
		},
	}
}

// String is "retried: reason n, ...; stopped: reason n, ..." with the
// reasons in alphabetical order, "none" where there were none.
func (r *reasons) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "retried: " + counts(r.retry) + "; stopped retrying: " + counts(r.stop)
}

func counts[K ~string](m map[K]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
