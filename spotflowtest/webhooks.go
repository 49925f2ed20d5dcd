package spotflowtest

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The events a [Server] sends webhooks for. A payment made with
// POST /payments and a transfer succeed when they are created; a redirect
// checkout succeeds or fails when its customer finishes (see [Checkout]).
const (
	EventPaymentSuccessful  = "payment_successful"
	EventPaymentFailed      = "payment_failed"
	EventTransferSuccessful = "transfer_successful"
)

// The Standard Webhooks headers of every delivery, and the other name
// Spotflow's docs give the signature header (see [Webhooks] SignatureHeader).
const (
	HeaderWebhookID         = "webhook-id"
	HeaderWebhookTimestamp  = "webhook-timestamp"
	HeaderWebhookSignature  = "webhook-signature"
	HeaderSpotflowSignature = "x-spotflow-signature"
)

// Webhooks configures the webhooks a [Server] sends, as Spotflow does: a
// POST to URL for every payment and transfer event, signed by the Standard
// Webhooks scheme, delivered at least once, maybe more than once and out of
// order, and carrying the latest state of the resource.
//
// The body is {"event":E,"data":D}, where E is one of [EventPaymentSuccessful],
// [EventPaymentFailed] and [EventTransferSuccessful], and D is the payment or
// transfer object as GET /payments/verify or GET /transfers/reference/{ref}
// shows it when the attempt is made ("id", "reference", "amount", "currency",
// "status", ...). The headers are webhook-id (the same on every delivery of
// one event), webhook-timestamp (Unix seconds of the attempt) and
// webhook-signature, "v1," followed by the base64 HMAC-SHA256, keyed with the
// bytes the secret encodes, of id + "." + timestamp + "." + body.
//
// Every delivery runs until an answer with a 2xx status, or MaxAttempts
// tries: a non-2xx answer, a connection error or a timeout is tried again
// after Backoff, doubling up to MaxBackoff. Each try is recorded (see
// [Server.Deliveries]). Deliveries run in the background, on at most
// Concurrency goroutines that exist only while there is something to send,
// and stop when the server is closed.
//
// Waits (Delay, HoldBack, Backoff, Timeout) are real time, since they are
// about the receiver's network; the duplicates, the held-back events and the
// bad signatures are decided from the seed (see [WithSeed]) and the event, so
// the same run makes the same decisions.
//
// Zero fields take their defaults; negative ones make [NewServer] panic.
type Webhooks struct {
	// URL receives the webhooks. It may be empty at first and set later
	// with [Server.SetWebhookURL]; events wait until there is one.
	URL string
	// Secret signs the webhooks: "whsec_" followed by the base64 of the
	// key. The default is a secret generated from the seed; see
	// [Server.WebhookSecret].
	Secret string
	// SignatureHeader names the header that carries the signature. The
	// default is [HeaderWebhookSignature]; Spotflow's docs also name
	// [HeaderSpotflowSignature].
	SignatureHeader string

	// Delay is how long after an event its first delivery is sent. The
	// default is 0.
	Delay time.Duration
	// Duplicates is the share of events, in [0,1], delivered twice: a
	// second delivery with the same webhook-id follows Backoff after the
	// first, as when a sender misses the receiver's answer. The default
	// is 0.
	Duplicates float64
	// OutOfOrder is the share of events, in [0,1], whose delivery is
	// held back by a further delay of up to HoldBack, chosen per event,
	// so that events that happened later arrive first. The default is 0.
	OutOfOrder float64
	// HoldBack bounds the hold of an out-of-order event. The default is
	// 100 ms.
	HoldBack time.Duration
	// BadSignature is the share of attempts, in [0,1], signed with a key
	// that is not the secret, as a forger would. The default is 0.
	BadSignature float64

	// MaxAttempts bounds the tries of one delivery. The default is 8.
	MaxAttempts int
	// Backoff is the wait before the second try; each later wait doubles,
	// up to MaxBackoff. The default is 50 ms.
	Backoff time.Duration
	// MaxBackoff caps the wait between tries. The default is 2 s.
	MaxBackoff time.Duration
	// Timeout bounds one try, reading the answer included. The default is
	// 5 s.
	Timeout time.Duration
	// Concurrency bounds the deliveries in flight at once. The default
	// is 4.
	Concurrency int
	// QueueSize bounds the deliveries scheduled (waiting for their time
	// or in flight) at once; later events wait their turn in the order
	// they happened. The default is 1024.
	QueueSize int
	// Now stamps webhook-timestamp. The default is time.Now and not the
	// server's clock, because the receiver checks the timestamp against
	// its own clock.
	Now func() time.Time
}

// WithWebhooks makes the server send webhooks as w describes. Without it, the
// server sends none.
func WithWebhooks(w Webhooks) Option {
	return optionFunc(func(c *config) {
		c.webhooks = &w
	})
}

// Delivery is one try at delivering a webhook, as recorded by the [Server].
type Delivery struct {
	// ID is the webhook-id, the same on every delivery of one event.
	ID string
	// Event is the event, such as [EventPaymentSuccessful].
	Event string
	// Reference is the reference of the payment or transfer.
	Reference string
	// Copy is 0 for the delivery every event gets, 1 for the duplicate
	// that [Webhooks] Duplicates adds.
	Copy int
	// Attempt counts the tries of this delivery, from 1.
	Attempt int
	// Timestamp is the webhook-timestamp sent.
	Timestamp time.Time
	// BadSignature reports that the try was signed with a wrong key.
	BadSignature bool
	// StatusCode is the receiver's status, 0 when there was no answer.
	StatusCode int
	// Err is why there was no answer (a connection error, a timeout,
	// the server closing), nil when there was one.
	Err error
}

// Delivered reports whether the receiver answered with a 2xx status.
func (d Delivery) Delivered() bool {
	return d.StatusCode >= 200 && d.StatusCode <= 299
}

// MarshalJSON encodes the delivery with the field names of the ledger's
// JSON (see [Ledger]): "id", "event", "reference", "copy", "attempt",
// "timestamp" (RFC 3339), "badSignature", "statusCode", "delivered" and,
// when there was no answer, "error", the text of Err.
func (d Delivery) MarshalJSON() ([]byte, error) {
	var errText string
	if d.Err != nil {
		errText = d.Err.Error()
	}
	return json.Marshal(struct {
		ID           string    `json:"id"`
		Event        string    `json:"event"`
		Reference    string    `json:"reference"`
		Copy         int       `json:"copy"`
		Attempt      int       `json:"attempt"`
		Timestamp    time.Time `json:"timestamp"`
		BadSignature bool      `json:"badSignature"`
		StatusCode   int       `json:"statusCode"`
		Delivered    bool      `json:"delivered"`
		Error        string    `json:"error,omitempty"`
	}{d.ID, d.Event, d.Reference, d.Copy, d.Attempt, d.Timestamp.UTC(), d.BadSignature, d.StatusCode, d.Delivered(), errText})
}

// WebhookSecret returns the secret the server signs its webhooks with,
// "whsec_" followed by base64, or "" when it sends none. It is safe for
// concurrent use.
func (s *Server) WebhookSecret() string {
	if s.webhooks == nil {
		return ""
	}
	return s.webhooks.secret
}

// SetWebhookURL changes where the server sends its webhooks, from the next
// try on, as a merchant does on the dashboard; "" holds them until a URL is
// set. It does nothing when the server sends no webhooks. It is safe for
// concurrent use.
func (s *Server) SetWebhookURL(url string) {
	if w := s.webhooks; w != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.url = url
		w.spawnLocked()
	}
}

// Deliveries returns every try at delivering a webhook so far, in the order
// the tries ended. It is safe for concurrent use.
func (s *Server) Deliveries() []Delivery {
	if s.webhooks == nil {
		return nil
	}
	s.webhooks.mu.Lock()
	defer s.webhooks.mu.Unlock()
	return append([]Delivery(nil), s.webhooks.log...)
}

// WaitWebhooks blocks until every webhook for the events so far has been
// delivered or has used up its tries, and returns nil; or until ctx is done,
// and returns its error; or until the server is closed, and returns
// [http.ErrServerClosed]. Checkouts still pending have no event yet, so it
// does not wait for them; events held for want of a URL (see
// [Server.SetWebhookURL]) it does wait for. It is safe for concurrent use.
func (s *Server) WaitWebhooks(ctx context.Context) error {
	w := s.webhooks
	if w == nil {
		return nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return http.ErrServerClosed
	}
	if !w.busyLocked() {
		w.mu.Unlock()
		return nil
	}
	if w.idle == nil {
		w.idle = make(chan struct{})
	}
	idle := w.idle
	w.mu.Unlock()
	select {
	case <-idle:
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.closed {
			return http.ErrServerClosed
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-w.ctx.Done():
		return http.ErrServerClosed
	}
}

// event is something that happened to a payment or a transfer.
type event struct {
	id        string
	name      string
	reference string
	transfer  bool
	index     int // in s.payments or s.transfers
}

// delivery is one copy of an event on its way to the receiver.
type delivery struct {
	scheduled
	ev      *event
	copy    int
	attempt int // tries made so far
}

// webhookSender delivers a server's webhooks. Its lock is taken after the
// server's, never before: events are emitted with s.mu held, and payloads
// are read from the ledger with w.mu released.
type webhookSender struct {
	cfg     Webhooks
	seed    int64
	secret  string
	key     []byte
	wrong   []byte // signs the bad signatures
	payload func(*event) []byte
	tr      *http.Transport
	client  *http.Client
	ctx     context.Context // cancelled by close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	wake    chan struct{} // a new delivery may be due before what workers wait for

	mu       sync.Mutex
	url      string
	closed   bool
	outbox   []*delivery        // emitted, waiting for room in queue, in order
	queue    dueHeap[*delivery] // scheduled, by due time
	inflight int
	workers  int
	seq      uint64
	log      []Delivery
	idle     chan struct{} // closed when nothing is left to send; nil if no one waits
}

// Defaults of [Webhooks].
const (
	defaultHoldBack     = 100 * time.Millisecond
	defaultMaxAttempts  = 8
	defaultBackoff      = 50 * time.Millisecond
	defaultMaxBackoff   = 2 * time.Second
	defaultTimeout      = 5 * time.Second
	defaultConcurrency  = 4
	defaultQueueSize    = 1024
	maxWebhookReplyRead = 64 << 10
)

// newWebhookSender checks cfg, fills in its defaults and returns a sender
// that has started nothing yet.
func newWebhookSender(cfg Webhooks, seed int64, payload func(*event) []byte) *webhookSender {
	if err := cfg.Validate(); err != nil {
		panic("spotflowtest: WithWebhooks: " + err.Error())
	}
	cfg.HoldBack = cmp.Or(cfg.HoldBack, defaultHoldBack)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, defaultMaxAttempts)
	cfg.Backoff = cmp.Or(cfg.Backoff, defaultBackoff)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, defaultMaxBackoff)
	cfg.Timeout = cmp.Or(cfg.Timeout, defaultTimeout)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, defaultConcurrency)
	cfg.QueueSize = cmp.Or(cfg.QueueSize, defaultQueueSize)
	cfg.SignatureHeader = cmp.Or(cfg.SignatureHeader, HeaderWebhookSignature)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Secret == "" {
		r := rand.New(rand.NewPCG(uint64(seed), 0x7768_7365_6373)) // its own stream: ids stay as without webhooks
		key := make([]byte, 24)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		cfg.Secret = secretPrefix + base64.StdEncoding.EncodeToString(key)
	}
	key, _ := decodeSecret(cfg.Secret) // checked by Validate, or generated
	wrong := append([]byte(nil), key...)
	for i := range wrong {
		wrong[i] ^= 0x5a
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the receiver is the test's own server
	tr.MaxIdleConnsPerHost = cfg.Concurrency
	ctx, cancel := context.WithCancel(context.Background())
	return &webhookSender{
		cfg:     cfg,
		seed:    seed,
		secret:  cfg.Secret,
		key:     key,
		wrong:   wrong,
		payload: payload,
		tr:      tr,
		client: &http.Client{
			Transport: tr,
			// A redirect is an answer that is not 2xx, tried again later.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		url:    cfg.URL,
	}
}

const secretPrefix = "whsec_"

// Validate reports what [NewServer] would refuse in w, naming the field: a
// negative duration or count, a share outside [0,1], or a Secret that is not
// "whsec_" followed by base64. A program that takes a Webhooks from its
// user, as cmd/spotflow-mock does, checks it with Validate instead of
// letting [WithWebhooks] panic.
func (w Webhooks) Validate() error {
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"Delay", w.Delay < 0},
		{"Duplicates", w.Duplicates < 0 || w.Duplicates > 1},
		{"OutOfOrder", w.OutOfOrder < 0 || w.OutOfOrder > 1},
		{"HoldBack", w.HoldBack < 0},
		{"BadSignature", w.BadSignature < 0 || w.BadSignature > 1},
		{"MaxAttempts", w.MaxAttempts < 0},
		{"Backoff", w.Backoff < 0},
		{"MaxBackoff", w.MaxBackoff < 0},
		{"Timeout", w.Timeout < 0},
		{"Concurrency", w.Concurrency < 0},
		{"QueueSize", w.QueueSize < 0},
	} {
		if f.bad {
			return errors.New("Webhooks." + f.name + " is out of range")
		}
	}
	if w.Secret != "" {
		if _, err := decodeSecret(w.Secret); err != nil {
			return err
		}
	}
	return nil
}

func decodeSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	key, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(key) == 0 {
		return nil, fmt.Errorf("Webhooks.Secret is not %q followed by base64", secretPrefix)
	}
	return key, nil
}

// sign returns the webhook-signature value for the message.
func sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// emit schedules the deliveries of ev. It never blocks: when the queue is
// full the deliveries wait in the outbox, which grows only with the ledger.
func (w *webhookSender) emit(ev *event) {
	now := time.Now()
	due := now.Add(w.cfg.Delay)
	if unit(hash64(w.seed, "webhook out of order", ev.id, 0)) < w.cfg.OutOfOrder {
		due = due.Add(time.Duration(unit(hash64(w.seed, "webhook hold back", ev.id, 0)) * float64(w.cfg.HoldBack)))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.push(&delivery{ev: ev, scheduled: scheduled{due: due}})
	if unit(hash64(w.seed, "webhook duplicate", ev.id, 0)) < w.cfg.Duplicates {
		w.push(&delivery{ev: ev, copy: 1, scheduled: scheduled{due: due.Add(w.cfg.Backoff)}})
	}
	w.spawnLocked()
}

func (w *webhookSender) push(d *delivery) {
	w.seq++
	d.seq = w.seq
	w.outbox = append(w.outbox, d)
}

// spawnLocked starts a worker if there is room for one, else wakes one that
// waits, since a new delivery may be due before what it waits for.
func (w *webhookSender) spawnLocked() {
	if w.closed || w.url == "" || len(w.outbox)+len(w.queue) == 0 {
		return
	}
	if w.workers < w.cfg.Concurrency {
		w.workers++
		w.wg.Add(1)
		go w.work()
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// work sends deliveries as they fall due, and returns when there is nothing
// left to schedule, when no URL is set, or when the sender closes.
func (w *webhookSender) work() {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.mu.Lock()
		for len(w.outbox) > 0 && len(w.queue)+w.inflight < w.cfg.QueueSize {
			heap.Push(&w.queue, w.outbox[0])
			w.outbox[0] = nil
			w.outbox = w.outbox[1:]
		}
		if w.closed || w.url == "" || len(w.queue) == 0 {
			w.workers--
			w.signalIdleLocked()
			w.mu.Unlock()
			return
		}
		d := w.queue[0]
		if wait := time.Until(d.due); wait > 0 {
			w.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-w.wake:
			case <-w.ctx.Done():
			}
			continue
		}
		heap.Pop(&w.queue)
		w.inflight++
		url := w.url
		w.spawnLocked() // more may be due: use the concurrency allowed
		w.mu.Unlock()

		rec := w.send(d, url)

		w.mu.Lock()
		w.inflight--
		w.log = append(w.log, rec)
		if !rec.Delivered() && d.attempt < w.cfg.MaxAttempts && !w.closed {
			d.due = time.Now().Add(w.backoff(d.attempt))
			heap.Push(&w.queue, d)
		}
		w.signalIdleLocked()
		w.mu.Unlock()
	}
}

// backoff returns the wait after the n-th failed try.
func (w *webhookSender) backoff(n int) time.Duration {
	d := w.cfg.Backoff
	for i := 1; i < n && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, w.cfg.MaxBackoff)
}

// send makes one try at delivering d to url.
func (w *webhookSender) send(d *delivery, url string) Delivery {
	d.attempt++
	ts := w.cfg.Now()
	bad := unit(hash64(w.seed, "webhook signature", d.ev.id, uint64(d.copy)<<32|uint64(d.attempt))) < w.cfg.BadSignature
	rec := Delivery{
		ID:           d.ev.id,
		Event:        d.ev.name,
		Reference:    d.ev.reference,
		Copy:         d.copy,
		Attempt:      d.attempt,
		Timestamp:    time.Unix(ts.Unix(), 0),
		BadSignature: bad,
	}
	body := w.payload(d.ev)
	key := w.key
	if bad {
		key = w.wrong
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		rec.Err = err
		return rec
	}
	req.Header.Set("Content-Type", contentTypeJSON)
	req.Header.Set("User-Agent", "spotflowtest-webhooks")
	req.Header.Set(HeaderWebhookID, rec.ID)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(w.cfg.SignatureHeader, sign(key, rec.ID, ts.Unix(), body))
	resp, err := w.client.Do(req)
	if err != nil {
		rec.Err = err
		return rec
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookReplyRead))
	_ = resp.Body.Close()
	rec.StatusCode = resp.StatusCode
	return rec
}

func (w *webhookSender) busyLocked() bool {
	return len(w.outbox)+len(w.queue)+w.inflight > 0
}

// signalIdleLocked wakes the callers of WaitWebhooks when nothing is left
// to send or the sender has closed; they tell which by w.closed.
func (w *webhookSender) signalIdleLocked() {
	if w.idle != nil && (!w.busyLocked() || w.closed) {
		close(w.idle)
		w.idle = nil
	}
}

// close stops every delivery, waits for the workers to return and closes
// the connections to the receiver. Deliveries not made are dropped.
func (w *webhookSender) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.signalIdleLocked()
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
	w.tr.CloseIdleConnections()
}

// webhookEventLocked emits the event of the payment or transfer at index i.
// s.mu must be held.
func (s *Server) webhookEventLocked(name string, transfer bool, i int) {
	if s.webhooks == nil {
		return
	}
	ref, kind := "", "payment"
	if transfer {
		ref, kind = s.transfers[i].Reference, "transfer"
	} else {
		ref = s.payments[i].Reference
	}
	s.webhooks.emit(&event{
		id:        fmt.Sprintf("msg_%016x", hash64(s.cfg.seed, "webhook id", kind+":"+ref, 0)),
		name:      name,
		reference: ref,
		transfer:  transfer,
		index:     i,
	})
}

// webhookPayload is the body of a webhook: the event and the resource as it
// is now, which is what "the latest payload" means.
func (s *Server) webhookPayload(ev *event) []byte {
	s.mu.Lock()
	var data []byte
	if ev.transfer {
		data = transferJSON(&s.transfers[ev.index])
	} else {
		data = paymentJSON(&s.payments[ev.index])
	}
	s.mu.Unlock()
	return mustMarshal(struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}{ev.name, data})
}
