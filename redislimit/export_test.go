package redislimit

import (
	"context"
	"time"
)

// OnAdmitted has f told of each Wait of l that returns nil after taking a
// slot in Redis: its ctx, when it first asked Redis and its slot, both by
// Redis's clock. It is for the tests that measure the schedule itself,
// which a loaded machine does not blur, rather than when goroutines woke.
func OnAdmitted(l *Limiter, f func(ctx context.Context, asked, slot time.Time)) { l.admitted = f }
