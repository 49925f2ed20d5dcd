package webhook

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Dedup is where a [Handler] remembers webhook-ids, so that an event
// delivered more than once is processed once. A delivery claims its id
// before calling the Handler's function, then commits the claim if the
// function succeeded, or releases it if the function failed, so that the
// next delivery processes the event.
//
// Implementations must be safe for concurrent use by multiple goroutines,
// and Claim must be atomic: of concurrent claims of one id, at most one
// returns [Claimed]. [MemoryDedup] serves one process; give every replica
// behind one webhook URL the same shared store (the redislimit module's
// WebhookDedup keeps ids in Redis).
type Dedup interface {
	// Claim reserves id for one delivery. It returns Claimed and a token
	// if the caller is to process the event and then call Commit or
	// Release with the token; Processed if id was committed within the
	// retention; InFlight if another delivery holds the claim. Before
	// returning InFlight, Claim may wait, until ctx is done, for the other
	// delivery to commit or release.
	Claim(ctx context.Context, id string) (ClaimState, string, error)

	// Commit records that the delivery holding the claim token processed
	// id; Claim returns Processed for it until the retention has passed.
	Commit(ctx context.Context, id, token string) error

	// Release gives up the claim token on id without recording it, so
	// that the next Claim of id returns Claimed. It does nothing if the
	// claim is no longer held with that token.
	Release(ctx context.Context, id, token string) error
}

// ClaimState is what [Dedup.Claim] found.
type ClaimState int

// The states Claim returns.
const (
	Claimed   ClaimState = iota + 1 // the caller holds the claim
	Processed                       // the id was processed before
	InFlight                        // another delivery holds the claim
)

// String returns the state's name, "Claimed" for Claimed.
func (s ClaimState) String() string {
	switch s {
	case Claimed:
		return "Claimed"
	case Processed:
		return "Processed"
	case InFlight:
		return "InFlight"
	}
	return "ClaimState(" + strconv.Itoa(int(s)) + ")"
}

// Defaults of a [MemoryDedup].
const (
	// DefaultRetention covers the retries of a Standard Webhooks sender,
	// which spread over a day or so (Svix's last retry comes about 28
	// hours after the first attempt).
	DefaultRetention = 24 * time.Hour
	// DefaultMaxIDs bounds the memory of a MemoryDedup to about 12 MB:
	// 118 bytes an id of 31 bytes, as BenchmarkMemoryDedup measures.
	DefaultMaxIDs = 100_000
)

// MemoryDedup is a [Dedup] in the memory of one process, the default of a
// [Handler]. A second delivery of an id that is being processed waits in
// Claim for the first to finish: it then returns Processed if the first
// committed, or claims the id itself if the first released it.
//
// Processed ids are forgotten after Retention, or sooner, oldest first,
// once more than MaxIDs are remembered; an event delivered again after
// that is processed again. Ids being processed do not count towards MaxIDs
// and are not forgotten: the Handler releases every claim it took.
//
// The zero MemoryDedup is ready to use. Set its fields before its first
// use; after that, a MemoryDedup is safe for concurrent use by multiple
// goroutines.
type MemoryDedup struct {
	Retention time.Duration    // how long a processed id is remembered; DefaultRetention if 0
	MaxIDs    int              // how many processed ids are remembered at most; DefaultMaxIDs if 0
	Now       func() time.Time // the clock; time.Now if nil

	mu      sync.Mutex
	ids     map[string]*memoryEntry
	order   []expiry // processed ids, oldest first; order[head:] is live
	head    int
	seq     uint64 // numbers claims, for their tokens
	waiting int    // Claims waiting for another delivery, for tests
}

var _ Dedup = (*MemoryDedup)(nil)

type memoryEntry struct {
	seq       uint64
	processed bool
	done      chan struct{} // closed when the claim is committed or released
}

type expiry struct {
	id string
	at int64 // Unix nanoseconds, which hold until 2262
}

// Claim implements [Dedup]. It waits for a claim held by another delivery,
// until ctx is done, and returns InFlight only then.
func (d *MemoryDedup) Claim(ctx context.Context, id string) (ClaimState, string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		d.expire()
		e := d.ids[id]
		switch {
		case e == nil:
			if d.ids == nil {
				d.ids = make(map[string]*memoryEntry)
			}
			d.seq++
			d.ids[id] = &memoryEntry{seq: d.seq, done: make(chan struct{})}
			return Claimed, strconv.FormatUint(d.seq, 10), nil
		case e.processed:
			return Processed, "", nil
		}
		done := e.done // Commit clears the field
		d.waiting++
		d.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		d.mu.Lock()
		d.waiting--
		if ctx.Err() != nil {
			return InFlight, "", nil
		}
	}
}

// Commit implements [Dedup].
func (d *MemoryDedup) Commit(_ context.Context, id, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.held(id, token)
	if e == nil {
		return nil
	}
	e.processed = true
	close(e.done)
	e.done = nil // the waiters have their copy; a processed id needs none
	d.order = append(d.order, expiry{id: id, at: d.now().Add(d.retention()).UnixNano()})
	d.expire()
	return nil
}

// Release implements [Dedup].
func (d *MemoryDedup) Release(_ context.Context, id, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.held(id, token); e != nil {
		delete(d.ids, id)
		close(e.done)
	}
	return nil
}

// held returns the entry of id if it is claimed, not yet processed, with
// token.
func (d *MemoryDedup) held(id, token string) *memoryEntry {
	e := d.ids[id]
	if e == nil || e.processed || strconv.FormatUint(e.seq, 10) != token {
		return nil
	}
	return e
}

// expire forgets the processed ids past their retention, and the oldest
// beyond MaxIDs. The caller holds d.mu.
func (d *MemoryDedup) expire() {
	now := d.now().UnixNano()
	maxIDs := d.MaxIDs
	if maxIDs <= 0 {
		maxIDs = DefaultMaxIDs
	}
	for d.head < len(d.order) {
		x := d.order[d.head]
		if now < x.at && len(d.order)-d.head <= maxIDs {
			break
		}
		// An id is popped here before it can be claimed again, so the
		// entry is the one this expiry was made for.
		delete(d.ids, x.id)
		d.order[d.head] = expiry{}
		d.head++
	}
	// Reuse the slice's front once half of it is dead, so it neither grows
	// without bound nor copies on every expiry.
	if d.head > 0 && d.head >= len(d.order)/2 {
		n := copy(d.order, d.order[d.head:])
		clear(d.order[n:])
		d.order = d.order[:n]
		d.head = 0
	}
}

func (d *MemoryDedup) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *MemoryDedup) retention() time.Duration {
	if d.Retention > 0 {
		return d.Retention
	}
	return DefaultRetention
}
