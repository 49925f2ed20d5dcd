package spotflowhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"
)

// Journal is a durable record of the keyed creates a transport sends, so that
// an outcome that is uncertain when the call returns, or when the process
// dies mid-call, is not lost: [WithJournal] writes an [Entry] before the
// first attempt of each keyed create and settles it when a certain answer
// arrives; a [Reconciler] settles the rest.
//
// Each entry is claimed by at most one owner at a time, until a time: the
// call that wrote it while it runs, then a reconciler while it settles it.
// An entry is free, and may be claimed, once its claim has expired. Claims
// are what keep several reconcilers sharing one journal from settling one
// entry twice.
//
// This package has [NewMemoryJournal]. Package boltjournal keeps a journal in
// a file, the default choice on one machine; the redislimit module has one
// in Redis for many processes. Package journaltest checks an implementation.
// Implementations must be safe for concurrent use.
type Journal interface {
	// Record writes e as pending, replacing any entry with the same key,
	// and returns only once the entry would survive a crash of the process
	// (fsync or equivalent). e.Owner holds its claim until e.Until. If it
	// fails it must leave no entry, since the call will not be sent.
	Record(ctx context.Context, e Entry) error

	// Claim makes owner the holder of key's entry until until, if the
	// entry exists and is free at now or already held by owner, and
	// reports whether it did. A claim with until not after now releases
	// the entry: it is free from then on.
	Claim(ctx context.Context, key, owner string, now, until time.Time) (bool, error)

	// Settle removes key's entry if owner holds its claim (even an expired
	// one no one else has taken), and reports whether it did.
	Settle(ctx context.Context, key, owner string) (bool, error)

	// Pending returns every entry not yet settled, claimed or not, oldest
	// first. It may return entries and an error together, when it could
	// read some entries and not others (as [SealJournal]'s does for an
	// entry no key opens): a [Reconciler] settles the entries and reports
	// the error.
	Pending(ctx context.Context) ([]Entry, error)
}

// Entry is what a [Journal] keeps of one keyed create: enough to ask
// Spotflow about it (the reference) or to send it again with the same key.
// It never holds the Authorization header or any other credential.
type Entry struct {
	// Key is the call's idempotency key.
	Key string `json:"key"`
	// Reference is the body's reference field (see [WithReference]); if
	// the body has none or could not be read, the one
	// [ContextWithReference] gave the call; else "".
	Reference string `json:"reference,omitempty"`
	// Account is the label [ContextWithAccount] gave the call, "" if none:
	// it tells a reconciler which credential to use.
	Account string `json:"account,omitempty"`
	// Method and URL are the request's, as sent.
	Method string `json:"method"`
	URL    string `json:"url"`
	// Header holds the request's Content-Type, Accept and idempotency key
	// headers; no other header is kept.
	Header http.Header `json:"header,omitempty"`
	// Body is the request body as sent, nil if it was empty or could not
	// be read again (see BodyMissing).
	Body []byte `json:"body,omitempty"`
	// BodyMissing reports a body that could not be kept (no GetBody, or
	// over 1 MiB), so the entry cannot be sent again. A [Reconciler]
	// settles it by its Reference, which then comes from
	// [ContextWithReference]: from a webhook, or the verify endpoint; if
	// neither finds the resource, the entry stays pending until the
	// idempotency window closes, then needs a human. Without a Reference
	// nothing can tell its outcome: it needs a human at once.
	BodyMissing bool `json:"bodyMissing,omitempty"`
	// Sealed is the Header and Body encrypted by [SealJournal], which
	// then hands the store the entry with Header and Body nil; nil for an
	// entry recorded without sealing. A store keeps it as it keeps Body.
	// An entry read with Sealed set (from the store itself, or one no
	// key opened) has lost nothing, but its Body and Header can only be
	// read with the key: a Reconciler never sends it again.
	Sealed []byte `json:"sealed,omitempty"`
	// Time is when the call began.
	Time time.Time `json:"time"`
	// Owner holds the entry's claim until Until; the entry is free when
	// Until is not after now.
	Owner string    `json:"owner,omitempty"`
	Until time.Time `json:"until"`
}

// DefaultJournalLease is how long the call that records an entry holds it
// when its context has no deadline. A process that dies mid-call leaves its
// entries to the reconcilers of other processes once this has passed (a
// file journal frees them when it is opened again). With a deadline, the
// call holds its entry until a minute after it.
const DefaultJournalLease = 10 * time.Minute

// WithJournal makes the idempotency layer write an [Entry] to j before the
// first attempt of every keyed call of the methods that get a key
// (WithKeyMethods; POST and PATCH by default), and settle it once the call
// ends with a certain answer: a success, any failure that is not
// Error.Uncertain (a dont_retry or escalate 4xx, a treat-as-success, a
// request never sent). An uncertain call, or a process that dies during
// the call, leaves the entry pending for a [Reconciler].
//
// If the entry cannot be written, nothing is sent: the call fails with an
// [*Error] in [CategoryRetry], with 0 attempts and not uncertain, that
// wraps the journal's error. Each keyed call costs one durable write and one
// removal; calls without a key cost nothing. The default is no journal.
// [IdempotencyTransport] writes the entry; the outermost layer of the call
// settles it.
func WithJournal(j Journal) Option {
	return optionFunc(func(cfg *config) { cfg.journal = j })
}

type accountContextKey struct{}

// ContextWithAccount returns a context that labels the call made with it as
// made for account, such as a merchant id, so that its journal [Entry]
// tells a [Reconciler] which credential to use. The label is stored as
// given: never put a secret in it.
func ContextWithAccount(ctx context.Context, account string) context.Context {
	return context.WithValue(ctx, accountContextKey{}, account)
}

type referenceContextKey struct{}

// ContextWithReference returns a context that gives the call made with it
// the reference of the resource it creates, for its journal [Entry] when
// the body cannot be read again (a body without GetBody, or over 1 MiB) or
// holds no reference: with it, a [Reconciler] can still verify the entry.
// A reference read from the body takes precedence: it is what Spotflow
// was sent.
func ContextWithReference(ctx context.Context, reference string) context.Context {
	return context.WithValue(ctx, referenceContextKey{}, reference)
}

type noJournalContextKey struct{}

// journalCall is a call's claim on its journal entry.
type journalCall struct {
	j     Journal
	owner string
}

// record writes the entry of a keyed call before its first attempt; r is
// the request as it will be sent. It returns a local *Error if it cannot.
func (t *IdempotencyTransport) record(c *call, r *http.Request, key string) error {
	if !methodIn(r.Method, t.cfg.keyMethods) || r.Context().Value(noJournalContextKey{}) != nil {
		return nil
	}
	now := t.cfg.clock.Now()
	until := now.Add(DefaultJournalLease)
	if dl, ok := r.Context().Deadline(); ok {
		until = dl.Add(time.Minute)
	}
	e := Entry{
		Key:    key,
		Method: r.Method,
		URL:    urlWithoutUser(r.URL),
		Time:   now,
		Owner:  "call-" + newKey(),
		Until:  until,
	}
	e.Account, _ = r.Context().Value(accountContextKey{}).(string)
	for _, h := range []string{"Content-Type", "Accept", t.cfg.keyHeader} {
		if v := r.Header.Values(h); len(v) > 0 {
			if e.Header == nil {
				e.Header = make(http.Header, 3)
			}
			e.Header[h] = append([]string(nil), v...)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		if b, ok := readBody(r); ok {
			e.Body = b
			e.Reference = referenceIn(b, t.cfg.referenceFieldOrDefault())
		} else {
			e.BodyMissing = true
		}
	}
	if e.Reference == "" {
		e.Reference, _ = r.Context().Value(referenceContextKey{}).(string)
	}
	if err := t.cfg.journal.Record(c, e); err != nil {
		return &Error{
			Category: CategoryRetry,
			Err:      fmt.Errorf("spotflowhttp: journal: %w", err),
			kind:     ErrAPIConnection,
			local:    true,
		}
	}
	c.extra().journal = &journalCall{j: t.cfg.journal, owner: e.Owner}
	return nil
}

// urlWithoutUser is u without its userinfo, a credential that
// http.Transport sends as Basic authorization: an entry keeps no secret.
func urlWithoutUser(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	v := *u
	v.User = nil
	return v.String()
}

// referenceFieldOrDefault is the body field that holds a create's
// reference.
func (cfg *config) referenceFieldOrDefault() string {
	if cfg.referenceField != "" {
		return cfg.referenceField
	}
	return defaultReferenceField
}

// endJournal settles the call's journal entry once the call has its final
// answer e (nil for a success), or releases it to the reconcilers if the
// outcome is uncertain. A failure to write only leaves the entry pending
// longer, so it is logged, not returned.
func (c *call) endJournal(cfg *config, e *Error) {
	if c.x != nil && c.x.journal != nil { // small enough to inline: calls without a journal pay two nil checks
		c.settleJournal(cfg, e)
	}
}

func (c *call) settleJournal(cfg *config, e *Error) {
	jc := c.x.journal
	c.x.journal = nil
	ctx := context.WithoutCancel(c.Context)
	var err error
	if e != nil && e.Uncertain {
		now := cfg.clock.Now()
		_, err = jc.j.Claim(ctx, c.key, jc.owner, now, now)
	} else {
		_, err = jc.j.Settle(ctx, c.key, jc.owner)
	}
	if err != nil && cfg.logger != nil {
		cfg.logger.WarnContext(c.Context, "spotflow: journal write failed; the entry stays pending", "key", c.key, "error", err)
	}
}

// MemoryJournal is a [Journal] in memory: it survives an uncertain call but
// not the process, so it suits tests and callers who reconcile in the same
// process. Record is as cheap as a map write.
//
// A MemoryJournal is safe for concurrent use by multiple goroutines. The
// zero value is not usable; call [NewMemoryJournal].
type MemoryJournal struct {
	mu      sync.Mutex
	entries map[string]Entry
}

var _ Journal = (*MemoryJournal)(nil)

// NewMemoryJournal returns an empty [MemoryJournal].
func NewMemoryJournal() *MemoryJournal {
	return &MemoryJournal{entries: make(map[string]Entry)}
}

// Record implements [Journal].
func (m *MemoryJournal) Record(_ context.Context, e Entry) error {
	if e.Key == "" {
		return errEmptyKey
	}
	e.Header = e.Header.Clone()
	e.Body = append([]byte(nil), e.Body...)
	e.Sealed = append([]byte(nil), e.Sealed...)
	m.mu.Lock()
	m.entries[e.Key] = e
	m.mu.Unlock()
	return nil
}

// Claim implements [Journal].
func (m *MemoryJournal) Claim(_ context.Context, key, owner string, now, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || !Claimable(e, owner, now) {
		return false, nil
	}
	e.Owner, e.Until = owner, until
	m.entries[key] = e
	return true, nil
}

// Settle implements [Journal].
func (m *MemoryJournal) Settle(_ context.Context, key, owner string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || e.Owner != owner {
		return false, nil
	}
	delete(m.entries, key)
	return true, nil
}

// Pending implements [Journal].
func (m *MemoryJournal) Pending(context.Context) ([]Entry, error) {
	m.mu.Lock()
	out := make([]Entry, 0, len(m.entries))
	for _, e := range m.entries {
		e.Header = e.Header.Clone()
		e.Body = append([]byte(nil), e.Body...)
		e.Sealed = append([]byte(nil), e.Sealed...)
		out = append(out, e)
	}
	m.mu.Unlock()
	SortEntries(out)
	return out, nil
}

var errEmptyKey = errors.New("spotflowhttp: journal entry without a key")

// Claimable reports whether owner may claim e at now: e is free (its claim
// has expired, or it has none) or owner already holds it. It is the rule
// every [Journal] applies in Claim; implementations call it so that they
// agree.
func Claimable(e Entry, owner string, now time.Time) bool {
	return e.Owner == "" || e.Owner == owner || !e.Until.After(now)
}

// SortEntries sorts entries oldest first, by Time then Key, as
// [Journal.Pending] returns them.
func SortEntries(entries []Entry) {
	sort.Slice(entries, func(i, j int) bool {
		if !entries[i].Time.Equal(entries[j].Time) {
			return entries[i].Time.Before(entries[j].Time)
		}
		return entries[i].Key < entries[j].Key
	})
}
