package redislimit

import (
	"context"
	"time"
)

// OnAdmitted has f told the slot, by Redis's clock, of each Wait of l that
// returns nil after taking a slot in Redis, with the Wait's ctx, for the
// tests that count admissions by the schedule rather than by when the
// goroutines woke up.
func OnAdmitted(l *Limiter, f func(ctx context.Context, slot time.Time)) { l.admitted = f }
