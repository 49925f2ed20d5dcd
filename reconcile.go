package spotflowhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// IdempotencyWindow is how long Spotflow remembers an idempotency key: a
// create sent again with its key within this time of the first attempt
// cannot take effect twice.
const IdempotencyWindow = 24 * time.Hour

// Defaults of a [Reconciler].
const (
	// DefaultVerifyAfter is how long a Reconciler waits for a webhook about
	// an entry, once the entry is free, before asking the verify endpoint.
	DefaultVerifyAfter = 5 * time.Second
	// DefaultReconcileInterval is how often Run looks at the journal when
	// no webhook wakes it.
	DefaultReconcileInterval = time.Second
)

// reconcileLease is how long a Reconciler holds an entry while it settles
// it; one settlement is given half of it, so the claim outlives the work.
const reconcileLease = time.Minute

// windowMargin keeps a re-send clear of the end of the idempotency window,
// for the clocks of this machine and Spotflow's to disagree.
const windowMargin = 5 * time.Minute

// reconcileWorkers bounds the entries one Reconciler settles at once.
const reconcileWorkers = 4

// maxObserved bounds the webhook notifications a Reconciler remembers;
// beyond it the oldest are forgotten (verify still settles their entries).
const maxObserved = 100_000

// Outcome is what became of a journaled create.
type Outcome int

const (
	// OutcomeCreated: the create took effect; the payment or transfer
	// exists (Settlement.Status tells whether it succeeded).
	OutcomeCreated Outcome = iota + 1
	// OutcomeNotCreated: the create did not take effect and, sent again
	// with its key, was refused for good; it is safe to create anew.
	OutcomeNotCreated
	// OutcomeNeedsHuman: the outcome could not be established within
	// Spotflow's idempotency window, or the answer needs a person (the
	// key bound to another request); Settlement.Err says why.
	OutcomeNeedsHuman
)

// String returns created, not_created or needs_human.
func (o Outcome) String() string {
	switch o {
	case OutcomeCreated:
		return "created"
	case OutcomeNotCreated:
		return "not_created"
	case OutcomeNeedsHuman:
		return "needs_human"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// SettledBy tells how a [Reconciler] learnt an outcome.
type SettledBy int

const (
	// SettledByWebhook: a webhook about the entry's reference, given to
	// Reconciler.Observe.
	SettledByWebhook SettledBy = iota + 1
	// SettledByVerify: the verify endpoint found the resource by reference.
	SettledByVerify
	// SettledByResend: the same request, sent again with the same key
	// inside the idempotency window, got a certain answer.
	SettledByResend
	// SettledByExpiry: nothing settled the entry before the idempotency
	// window closed, or nothing ever can (an entry with neither a body nor
	// a reference).
	SettledByExpiry
)

// String returns webhook, verify, resend or expiry.
func (b SettledBy) String() string {
	switch b {
	case SettledByWebhook:
		return "webhook"
	case SettledByVerify:
		return "verify"
	case SettledByResend:
		return "resend"
	case SettledByExpiry:
		return "expiry"
	}
	return fmt.Sprintf("SettledBy(%d)", int(b))
}

// Settlement reports the outcome of one journal entry.
type Settlement struct {
	// Entry is the journaled create.
	Entry Entry
	// Outcome is what became of it.
	Outcome Outcome
	// By is how the outcome was learnt.
	By SettledBy
	// Status is the resource's status as Spotflow last reported it, such
	// as "successful", "failed" or "pending"; "" if unknown.
	Status string
	// Resource is the resource as the webhook's data or the response's
	// body gave it; nil if none.
	Resource json.RawMessage
	// Err is the failure behind OutcomeNotCreated or OutcomeNeedsHuman:
	// an *Error for an answer from Spotflow.
	Err error
}

// Reconciler settles the pending entries of a [Journal]: calls that ended
// uncertain, and calls of processes that died mid-call. For each entry, in
// this order, it takes the outcome from a webhook about the entry's
// reference (see [Reconciler.Observe]); else, once the entry has been free
// for [WithVerifyAfter], from the verify endpoint (GET /payments/verify or
// /transfers/reference/{ref}); else by sending the same request again with
// the same key, which Spotflow answers without creating twice as long as it
// is inside [IdempotencyWindow] (less 5 minutes, for clocks that disagree).
// Entries still unsettled when the window closes are reported as
// [OutcomeNeedsHuman]. An entry that cannot be sent again (BodyMissing, or
// Sealed: its body sealed with a key the journal does not have) is never
// sent: it waits for a webhook or verify until the window closes, except
// a BodyMissing entry without a reference, which nothing can settle: it
// needs a human at once. An answer that says nothing of the entry (a 5xx, a
// connection error, a 429, a 401 or 403 to the Reconciler's credential)
// leaves it pending, to be tried again after another WithVerifyAfter.
//
// Every settled entry is reported once to the onSettle function, then
// removed from the journal. An entry is claimed while it is being settled,
// so several Reconcilers sharing a journal (as with Redis) settle each entry
// once. A process that dies between the report and the removal reports the
// entry again when it is reconciled anew: make onSettle idempotent, for
// instance by keying what it writes by Entry.Key.
//
// A Reconciler is safe for concurrent use. It starts goroutines only inside
// Run and ReconcileOnce, and they end before those return.
type Reconciler struct {
	j         Journal
	rt        http.RoundTripper
	authorize func(*http.Request, Entry) error
	onSettle  func(Settlement)
	cfg       *config
	owner     string

	mu       sync.Mutex
	observed map[observed]observation
	order    []observed      // the keys of observed, oldest first
	working  map[string]bool // keys being settled: the journal's claim is this Reconciler's for all its goroutines
	wake     chan struct{}
}

// observed names what a webhook was about: the kind of resource ("payment",
// "transfer", "" if the event type does not say) and its reference, since a
// payment and a transfer may share a reference.
type observed struct{ kind, ref string }

type observation struct {
	status string
	at     time.Time
	data   json.RawMessage
}

// NewReconciler returns a Reconciler of j's entries that sends through the
// stack NewTransport(base, opts...) would build: the same options as the
// client's may be given, and its journal, if any, does not record the
// Reconciler's own requests.
//
// authorize sets the credential (the Authorization header) of each request
// the Reconciler sends for entry e, from wherever the caller keeps it; use
// e.Account (see [ContextWithAccount]) to pick a merchant's. An error from it
// leaves the entry pending. onSettle receives each [Settlement]; it runs on
// one of the Reconciler's goroutines, up to 4 at once, and should return
// promptly. Both are required.
//
// Besides the transports' options, NewReconciler uses [WithClock],
// [WithLogger], [WithVerifyAfter] and [WithReconcileInterval].
func NewReconciler(j Journal, base http.RoundTripper, authorize func(req *http.Request, e Entry) error,
	onSettle func(Settlement), opts ...Option) (*Reconciler, error) {
	if j == nil || authorize == nil || onSettle == nil {
		return nil, errors.New("spotflowhttp: NewReconciler needs a journal, an authorize function and an onSettle function")
	}
	t := NewTransport(base, opts...)
	return &Reconciler{
		j:         j,
		rt:        t,
		authorize: authorize,
		onSettle:  onSettle,
		cfg:       t.cfg,
		owner:     "reconciler-" + newKey(),
		observed:  make(map[observed]observation),
		working:   make(map[string]bool),
		wake:      make(chan struct{}, 1),
	}, nil
}

// WithVerifyAfter sets how long a [Reconciler] waits for a webhook about a
// free entry before it asks the verify endpoint. The default is 5 s
// ([DefaultVerifyAfter]). It panics if d is negative. Only [NewReconciler]
// reads it.
func WithVerifyAfter(d time.Duration) Option {
	mustNotBeNegative("WithVerifyAfter", d)
	return optionFunc(func(cfg *config) { cfg.verifyAfter = d })
}

// WithReconcileInterval sets how often [Reconciler.Run] looks at the
// journal when no webhook wakes it. The default is 1 s
// ([DefaultReconcileInterval]). It panics if d is not positive. Only
// [NewReconciler] reads it.
func WithReconcileInterval(d time.Duration) Option {
	if d <= 0 {
		invalid("WithReconcileInterval", "interval %v is not positive", d)
	}
	return optionFunc(func(cfg *config) { cfg.reconcileInterval = d })
}

// Observe gives the Reconciler what a webhook said about the resource with
// reference: the event's type (such as "payment_successful"), the
// resource's status and the event's data, as sent at. Any event about a
// payment (or transfer) proves that the create of a payment (or transfer)
// with that reference took effect; the type keeps a payment and a transfer
// that share a reference apart. Call it from the function given to the
// webhook package's NewHandler:
//
//	func(ctx context.Context, ev webhook.Event) error {
//		rec.Observe(ev.Type, ev.Reference, ev.Status, ev.Timestamp, ev.Data)
//		return nil
//	}
//
// Deliveries may repeat and come out of order: the latest event (by at)
// gives the status. Observe never blocks on the network; the entry is
// settled by Run, which it wakes. It keeps the last 100,000 resources.
func (r *Reconciler) Observe(eventType, reference, status string, at time.Time, data json.RawMessage) {
	if reference == "" {
		return
	}
	k := observed{kind: kindOf(eventType), ref: reference}
	r.mu.Lock()
	old, seen := r.observed[k]
	if !seen || !at.Before(old.at) {
		if !seen {
			if len(r.order) >= maxObserved {
				delete(r.observed, r.order[0])
				r.order = r.order[1:]
			}
			r.order = append(r.order, k)
		}
		r.observed[k] = observation{status: status, at: at, data: append(json.RawMessage(nil), data...)}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// kindOf is the kind of resource an event type or a create's path is
// about: "payment", "transfer", or "" if it does not say.
func kindOf(s string) string {
	switch {
	case strings.HasPrefix(s, "payment"), strings.Contains(s, "/payments"):
		return "payment"
	case strings.HasPrefix(s, "transfer"), strings.Contains(s, "/transfers"):
		return "transfer"
	}
	return ""
}

// Run settles entries until ctx is done, looking at the journal every
// WithReconcileInterval and whenever Observe learns something. It returns
// once ctx is done and the settlements in progress have ended.
func (r *Reconciler) Run(ctx context.Context) {
	interval := r.cfg.reconcileInterval
	for {
		if _, err := r.ReconcileOnce(ctx); err != nil && ctx.Err() == nil && r.cfg.logger != nil {
			r.cfg.logger.WarnContext(ctx, "spotflow: reconciler: reading the journal", "error", err)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// ReconcileOnce looks at the journal once and settles what it can now. It
// returns how many entries are still pending (held by a call in flight or
// another reconciler, waiting for a webhook, or not settled yet) and the
// journal's error, if reading it failed. Entries the journal returned with
// its error (such as those a [SealJournal] could open, beside one it could
// not) are settled all the same. Call it in a loop at start-up to settle
// what a previous process left before sending anything new.
func (r *Reconciler) ReconcileOnce(ctx context.Context) (pending int, err error) {
	entries, err := r.j.Pending(ctx)
	if err != nil && len(entries) == 0 {
		return 0, err
	}
	now := r.cfg.clock.Now()
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, reconcileWorkers)
		mu   sync.Mutex
		left = len(entries)
	)
	for _, e := range entries {
		if !Claimable(e, r.owner, now) || !r.due(e, now) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if !r.startWork(e.Key) {
			continue // this Reconciler is settling it on another goroutine
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { r.endWork(e.Key); <-sem; wg.Done() }()
			if r.settle(ctx, e) {
				mu.Lock()
				left--
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return left, err
}

// startWork marks key as being settled by this Reconciler, and reports
// false if it already is: its claim in the journal cannot tell two of its
// own goroutines apart.
func (r *Reconciler) startWork(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.working[key] {
		return false
	}
	r.working[key] = true
	return true
}

func (r *Reconciler) endWork(key string) {
	r.mu.Lock()
	delete(r.working, key)
	r.mu.Unlock()
}

// due reports whether e may be worked on at now: a webhook has told its
// outcome, or it has been free long enough to ask Spotflow.
func (r *Reconciler) due(e Entry, now time.Time) bool {
	if _, ok := r.observation(e); ok {
		return true
	}
	return !now.Before(e.Until.Add(r.cfg.verifyAfter))
}

// observation returns what webhooks told of e's resource: an event of its
// kind, or one whose type does not say; for a create to an endpoint of no
// known kind, an event of any kind.
func (r *Reconciler) observation(e Entry) (observation, bool) {
	if e.Reference == "" {
		return observation{}, false
	}
	kinds := []string{"", "payment", "transfer"}
	if k := kindOf(entryPath(e)); k != "" {
		kinds = []string{k, ""}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range kinds {
		if o, ok := r.observed[observed{kind: k, ref: e.Reference}]; ok {
			return o, true
		}
	}
	return observation{}, false
}

// entryPath is the path of e's URL, "" if it does not parse.
func entryPath(e Entry) string {
	u, err := url.Parse(e.URL)
	if err != nil {
		return ""
	}
	return u.Path
}

// settle claims e, finds its outcome and reports it, and reports whether
// it settled it. An entry whose outcome stays unknown is held for another
// WithVerifyAfter, so it is not asked about in a tight loop.
func (r *Reconciler) settle(ctx context.Context, e Entry) bool {
	now := r.cfg.clock.Now()
	ok, err := r.j.Claim(ctx, e.Key, r.owner, now, now.Add(reconcileLease))
	if err != nil {
		r.warn("spotflow: reconciler: claiming a journal entry", e, err)
	}
	if !ok {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, reconcileLease/2)
	s, ok := r.outcome(wctx, e, now)
	cancel()
	if !ok {
		later := r.cfg.clock.Now()
		if _, err := r.j.Claim(context.WithoutCancel(ctx), e.Key, r.owner, later, later); err != nil {
			r.warn("spotflow: reconciler: releasing a journal entry", e, err)
		}
		return false
	}
	r.onSettle(s)
	if _, err := r.j.Settle(context.WithoutCancel(ctx), e.Key, r.owner); err != nil {
		r.warn("spotflow: reconciler: removing a settled entry; it will be reported again", e, err)
	}
	return true
}

// outcome asks, in order, the webhooks seen, the verify endpoint and a
// re-send; false if none of them could tell.
func (r *Reconciler) outcome(ctx context.Context, e Entry, now time.Time) (Settlement, bool) {
	if s, ok := r.found(ctx, e); ok {
		return s, true
	}
	s := Settlement{Entry: e}
	switch {
	case !now.Before(e.Time.Add(IdempotencyWindow - windowMargin)):
		s.Outcome, s.By = OutcomeNeedsHuman, SettledByExpiry
		s.Err = errors.New("spotflowhttp: outcome unknown and the idempotency window has closed")
		return s, true
	case e.BodyMissing && e.Reference == "":
		// Neither a body to send again nor a reference: nothing can tell.
		s.Outcome, s.By = OutcomeNeedsHuman, SettledByExpiry
		s.Err = errors.New("spotflowhttp: outcome unknown: no reference to verify and no body to send again")
		return s, true
	case e.BodyMissing || e.Sealed != nil:
		// No body to send again (or one no key here opens: its key may be
		// given back): verify alone can tell, until the window closes. A
		// create not found yet may still be processed late.
		return s, false
	}
	status, body, ae, err := r.send(ctx, e, e.Method, e.URL, e.Body)
	if err != nil && ae == nil {
		return s, false
	}
	s.By, s.Resource = SettledByResend, body
	switch {
	case status >= 200 && status <= 299:
		s.Outcome, s.Status = OutcomeCreated, resourceStatus(body)
		return s, true
	case ae == nil || ae.Uncertain || ae.Category == CategoryRetry:
		return s, false
	case ae.Category == CategoryTreatAsSuccess:
		s.Outcome = OutcomeCreated
		return s, true
	case ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden:
		// Our credential was refused: that says nothing of the create,
		// which waits for a working credential (or the window's end).
		r.warn("spotflow: reconciler: credential refused; the entry stays pending", e, ae)
		return s, false
	case ae.StatusCode == http.StatusConflict || ae.StatusCode == http.StatusUnprocessableEntity:
		// The key is bound to another request: a person must look.
		s.Outcome, s.Err = OutcomeNeedsHuman, ae
		return s, true
	}
	s.Outcome, s.Err = OutcomeNotCreated, ae
	return s, true
}

// found settles e as created if a webhook told of it or the verify
// endpoint finds it.
func (r *Reconciler) found(ctx context.Context, e Entry) (Settlement, bool) {
	s := Settlement{Entry: e}
	if o, ok := r.observation(e); ok {
		s.Outcome, s.By, s.Status, s.Resource = OutcomeCreated, SettledByWebhook, o.status, o.data
		return s, true
	}
	if u := r.verifyURLOf(e); u != "" {
		status, body, _, err := r.send(ctx, e, http.MethodGet, u, nil)
		if err == nil && status >= 200 && status <= 299 {
			s.Outcome, s.By, s.Status, s.Resource = OutcomeCreated, SettledByVerify, resourceStatus(body), body
			return s, true
		}
	}
	return s, false
}

// verifyURLOf returns the verify endpoint of e's resource, "" if there is
// none.
func (r *Reconciler) verifyURLOf(e Entry) string {
	if e.Reference == "" || e.Method != http.MethodPost {
		return ""
	}
	req, err := http.NewRequest(http.MethodGet, e.URL, nil)
	if err != nil {
		return ""
	}
	if u := verifyURL(req.URL, e.Reference); u != nil {
		return u.String()
	}
	return ""
}

// send makes one call for e through the stack and returns the final status
// (0 if none), the body (up to 1 MiB) and the *Error describing a failure.
func (r *Reconciler) send(ctx context.Context, e Entry, method, url string, body []byte) (int, []byte, *Error, error) {
	ctx = context.WithValue(ctx, noJournalContextKey{}, true)
	if method != http.MethodGet {
		ctx = ContextWithIdempotencyKey(ctx, e.Key)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if method != http.MethodGet {
		for k, v := range e.Header {
			req.Header[k] = append([]string(nil), v...)
		}
	}
	if err := r.authorize(req, e); err != nil {
		return 0, nil, nil, fmt.Errorf("spotflowhttp: reconciler: authorize: %w", err)
	}
	resp, err := r.rt.RoundTrip(req)
	var ae *Error
	if err != nil {
		errors.As(err, &ae)
		status := 0
		if ae != nil {
			status = ae.StatusCode
		}
		return status, nil, ae, err
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxReferenceBody))
	ae = ErrorOf(resp)
	if rerr != nil && ae == nil {
		return 0, nil, nil, rerr // an answer we could not read is no answer
	}
	return resp.StatusCode, b, ae, nil
}

// resourceStatus finds a resource's status in a Spotflow body: top-level
// "status", or "data"."status".
func resourceStatus(b []byte) string {
	var v struct {
		Status json.RawMessage `json:"status"`
		Data   struct {
			Status json.RawMessage `json:"status"`
		} `json:"data"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	if s := jsonString(v.Data.Status); s != "" {
		return s
	}
	return jsonString(v.Status)
}

func (r *Reconciler) warn(msg string, e Entry, err error) {
	if l := r.cfg.logger; l != nil {
		l.Warn(msg, "key", e.Key, "reference", e.Reference, "error", err)
	}
}
