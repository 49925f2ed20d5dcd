package spotflowhttp

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// resolveLease is how long a person's decision holds the entry between its
// claim and its removal: long enough to write the audit record.
const resolveLease = time.Minute

// ErrNotPending is matched (errors.Is) by [Resolve]'s error when the
// journal holds no entry with the key: it was settled meanwhile, or never
// recorded.
var ErrNotPending = errors.New("spotflowhttp: no pending journal entry with that key")

// ClaimedError is [Resolve]'s error when another owner holds the entry's
// claim: a call still in flight, or a reconciler settling the entry now.
// Its outcome may be known in a moment, so a person's decision waits.
type ClaimedError struct {
	Key   string    // the entry's key
	Owner string    // who holds the claim, such as "call-…" or "reconciler-…"
	Until time.Time // when the claim ends
}

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("spotflowhttp: journal entry %q is held by %s until %s; try again after that",
		e.Key, e.Owner, e.Until.UTC().Format(time.RFC3339))
}

// Resolve settles key's pending entry of j with a person's decision, for an
// entry a [Reconciler] reported as needing a human or cannot settle (its
// service is down, its credential is gone): outcome is [OutcomeCreated] or
// [OutcomeNotCreated], note says why. It claims the entry as a [Reconciler]
// would, calls record (if not nil) with the [Settlement], By
// [SettledByPerson], and removes the entry only once record has returned
// nil, so that a decision is written down before its entry goes; an error
// from record releases the entry and is returned.
//
// Resolve asks Spotflow nothing: the person is trusted. It fails with an
// error matching [ErrNotPending] if there is no such entry, and with a
// [*ClaimedError] if a call or a reconciler holds it now. Resolve is safe
// for concurrent use to the extent j is; two people deciding on one entry
// at once are settled once, the other gets one of those errors.
func Resolve(ctx context.Context, j Journal, key string, outcome Outcome, note string, record func(Settlement) error) (Settlement, error) {
	if outcome != OutcomeCreated && outcome != OutcomeNotCreated {
		return Settlement{}, fmt.Errorf("spotflowhttp: resolve: outcome %v: a person decides created or not_created", outcome)
	}
	e, err := pendingEntry(ctx, j, key)
	if err != nil {
		return Settlement{}, err
	}
	now := time.Now()
	owner := "person-" + newKey()
	ok, err := j.Claim(ctx, key, owner, now, now.Add(resolveLease))
	if err != nil {
		return Settlement{}, fmt.Errorf("spotflowhttp: resolve %q: %w", key, err)
	}
	if !ok {
		return Settlement{}, notClaimed(ctx, j, key, now)
	}
	s := Settlement{Entry: e, Outcome: outcome, By: SettledByPerson, Note: note}
	if record != nil {
		if err := record(s); err != nil {
			later := time.Now()
			j.Claim(context.WithoutCancel(ctx), key, owner, later, later) // released; the entry stays pending either way
			return Settlement{}, err
		}
	}
	ok, err = j.Settle(context.WithoutCancel(ctx), key, owner)
	switch {
	case err != nil:
		return s, fmt.Errorf("spotflowhttp: resolve %q: decided, but removing the entry failed: %w", key, err)
	case !ok:
		return s, fmt.Errorf("spotflowhttp: resolve %q: decided, but the entry was taken by another owner before it could be removed", key)
	}
	return s, nil
}

// pendingEntry finds key's entry among j's pending ones. An error of
// Pending that came with entries (such as a sealed journal's, for the
// entries no key opens) matters only if key's entry is not among them.
func pendingEntry(ctx context.Context, j Journal, key string) (Entry, error) {
	entries, err := j.Pending(ctx)
	for _, e := range entries {
		if e.Key == key {
			return e, nil
		}
	}
	if err != nil {
		return Entry{}, fmt.Errorf("spotflowhttp: resolve %q: %w", key, err)
	}
	return Entry{}, fmt.Errorf("spotflowhttp: resolve %q: %w", key, ErrNotPending)
}

// notClaimed says why a claim of key at now failed: the entry is held, or
// it has gone.
func notClaimed(ctx context.Context, j Journal, key string, now time.Time) error {
	e, err := pendingEntry(ctx, j, key)
	if err != nil {
		return err
	}
	if Claimable(e, "", now) {
		return fmt.Errorf("spotflowhttp: resolve %q: the entry's claim changed while deciding; try again", key)
	}
	return &ClaimedError{Key: key, Owner: e.Owner, Until: e.Until}
}
