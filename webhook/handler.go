package webhook

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// SpotflowSignatureHeader is the name Spotflow's documents give the
// signature header; a [Handler] accepts it in place of, or besides,
// webhook-signature.
const SpotflowSignatureHeader = "x-spotflow-signature"

// secretPrefix starts every Standard Webhooks symmetric secret.
const secretPrefix = "whsec_"

// finishTimeout bounds the Dedup call that records the outcome of a
// delivery. It runs even if the sender has hung up, since the outcome
// happened anyway.
const finishTimeout = 5 * time.Second

// maxLoggedID is the longest webhook-id of a refused delivery that is
// logged whole.
const maxLoggedID = 100

// retryAfter is the Retry-After, in seconds, of a 503.
const retryAfter = "10"

// Handler is an [http.Handler] receiving Spotflow's webhooks; see the
// package documentation for what it answers. Mount it on the POST route
// given to Spotflow.
//
// A Handler is safe for concurrent use by multiple goroutines, as
// [http.Server] uses it; its function is called from the goroutine serving
// the delivery, concurrently for deliveries of different ids, and never
// concurrently for one id while its [Dedup] claim holds (a [MemoryDedup]
// claim holds until the function returns). A Handler starts no goroutines.
type Handler struct {
	verifiers []*standardwebhooks.Webhook
	fn        func(context.Context, Event) error
	tolerance time.Duration
	maxBody   int64
	dedup     Dedup
	now       func() time.Time
	logger    *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler that calls fn once for each new event,
// verified with secret or one of the secrets given to [WithSecrets]. fn gets
// the request's context, and its error makes the Handler answer 500 so the
// sender delivers the event again.
//
// NewHandler returns an error, and no Handler, if fn is nil, a secret is
// not "whsec_" followed by a non-empty standard base64 key, or an option was
// given an invalid value. The error never contains a secret.
func NewHandler(secret string, fn func(context.Context, Event) error, opts ...Option) (*Handler, error) {
	if fn == nil {
		return nil, errors.New("webhook: the function is nil")
	}
	cfg := config{tolerance: DefaultTolerance, maxBody: DefaultMaxBodyBytes, now: time.Now}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	secrets := append([]string{secret}, cfg.secrets...)
	h := &Handler{
		fn:        fn,
		tolerance: cfg.tolerance,
		maxBody:   cfg.maxBody,
		dedup:     cfg.dedup,
		now:       cfg.now,
		logger:    cfg.logger,
	}
	for i, s := range secrets {
		v, err := newVerifier(s)
		if err != nil {
			return nil, fmt.Errorf("webhook: secret %d of %d: %w", i+1, len(secrets), err)
		}
		h.verifiers = append(h.verifiers, v)
	}
	if h.dedup == nil {
		h.dedup = &MemoryDedup{Now: cfg.now}
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// newVerifier checks the secret's form before the reference library sees
// it: the library strips the prefix only if present and accepts an empty
// key, so a mistyped secret (an API key, an empty variable) would otherwise
// make a Handler that refuses every delivery.
func newVerifier(secret string) (*standardwebhooks.Webhook, error) {
	key, ok := strings.CutPrefix(secret, secretPrefix)
	switch {
	case secret == "":
		return nil, errors.New("the secret is empty")
	case !ok:
		return nil, errors.New(`the secret does not start with "whsec_"`)
	case key == "":
		return nil, errors.New(`the secret has no key after "whsec_"`)
	}
	if _, err := base64.StdEncoding.DecodeString(key); err != nil {
		return nil, errors.New(`the secret is not standard base64 after "whsec_"`)
	}
	return standardwebhooks.NewWebhook(secret)
}

// ServeHTTP verifies the delivery, then claims its id and calls the
// Handler's function, as the package documentation describes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, http.StatusMethodNotAllowed, "the method is not POST")
		return
	}
	id := r.Header.Get(standardwebhooks.HeaderWebhookID)
	stamp := r.Header.Get(standardwebhooks.HeaderWebhookTimestamp)
	// The signature header holds signatures separated by spaces; every
	// value of either name joins the list. Values returns the request's own
	// slice, so the two are joined into a new one.
	sigs := strings.Join(slices.Concat(r.Header.Values(standardwebhooks.HeaderWebhookSignature),
		r.Header.Values(SpotflowSignatureHeader)), " ")
	switch {
	case id == "":
		h.refuse(w, r, http.StatusBadRequest, "the webhook-id header is missing")
		return
	case stamp == "":
		h.refuse(w, r, http.StatusBadRequest, "the webhook-timestamp header is missing")
		return
	case strings.TrimSpace(sigs) == "":
		h.refuse(w, r, http.StatusBadRequest, "the webhook-signature header is missing")
		return
	}
	unix, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, "the webhook-timestamp header is not a Unix time in seconds")
		return
	}
	if r.ContentLength > h.maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, "the body is longer than the maximum")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if tooLong := new(http.MaxBytesError); errors.As(err, &tooLong) {
			h.refuse(w, r, http.StatusRequestEntityTooLarge, "the body is longer than the maximum")
		} else {
			h.refuse(w, r, http.StatusBadRequest, "the body could not be read")
		}
		return
	}
	if !h.verify(id, stamp, sigs, body) {
		h.refuse(w, r, http.StatusForbidden, "the signature matches none of the secrets")
		return
	}
	// After the signature: a stale but genuine delivery says the clocks
	// differ, a forged one says nothing, and the log should tell them apart.
	at := time.Unix(unix, 0).UTC()
	if d := h.now().Sub(at); d > h.tolerance || d < -h.tolerance {
		h.refuse(w, r, http.StatusForbidden, "the webhook-timestamp is outside the tolerance")
		return
	}
	ev := Event{ID: id, Timestamp: at}
	if err := parseEvent(&ev, body); err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	h.deliver(w, r, ev)
}

// verify reports whether sigs holds a signature of the delivery under one
// of the secrets. The timestamp is checked by the caller, against the
// Handler's clock: the library's own check reads time.Now and a fixed
// tolerance.
func (h *Handler) verify(id, stamp, sigs string, body []byte) bool {
	hdr := http.Header{
		"Webhook-Id":        {id},
		"Webhook-Timestamp": {stamp},
		"Webhook-Signature": {sigs},
	}
	for _, v := range h.verifiers {
		if v.VerifyIgnoringTimestamp(body, hdr) == nil {
			return true
		}
	}
	return false
}

// deliver calls the function once for a new event, holding the claim on
// its id meanwhile.
func (h *Handler) deliver(w http.ResponseWriter, r *http.Request, ev Event) {
	ctx := r.Context()
	state, token, err := h.dedup.Claim(ctx, ev.ID)
	switch {
	case err != nil:
		h.logger.ErrorContext(ctx, "webhook: the dedup store failed; the sender will deliver again", "webhook_id", ev.ID, "error", err)
		unavailable(w, "the webhook-id could not be checked")
		return
	case state == Processed:
		w.WriteHeader(http.StatusOK)
		return
	case state == InFlight:
		unavailable(w, "this webhook-id is being processed by another delivery")
		return
	case state != Claimed:
		h.logger.ErrorContext(ctx, "webhook: the dedup store returned an unknown state", "webhook_id", ev.ID, "state", int(state))
		unavailable(w, "the webhook-id could not be checked")
		return
	}

	// The claim is given back on every way out, a panic in fn included, or
	// the id would stay in flight and its redeliveries refused.
	finished := false
	defer func() {
		if !finished {
			h.release(ctx, ev.ID, token)
		}
	}()
	if err := h.fn(ctx, ev); err != nil {
		finished = true
		h.release(ctx, ev.ID, token)
		h.logger.ErrorContext(ctx, "webhook: the function failed; the sender will deliver again", "webhook_id", ev.ID, "event", ev.Type, "error", err)
		http.Error(w, "webhook: the event could not be processed", http.StatusInternalServerError)
		return
	}
	finished = true
	fctx, cancel := finishContext(ctx)
	defer cancel()
	if err := h.dedup.Commit(fctx, ev.ID, token); err != nil {
		// The event was processed, so the answer is still 200: a 5xx would
		// only have it processed again.
		h.logger.ErrorContext(ctx, "webhook: the dedup store did not record a processed event", "webhook_id", ev.ID, "error", err)
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) release(ctx context.Context, id, token string) {
	fctx, cancel := finishContext(ctx)
	defer cancel()
	if err := h.dedup.Release(fctx, id, token); err != nil {
		h.logger.ErrorContext(ctx, "webhook: the dedup store did not release a claim; redeliveries wait for it to expire", "webhook_id", id, "error", err)
	}
}

// finishContext keeps ctx's values but not its cancellation: the outcome is
// recorded even when the sender has gone.
func finishContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
}

// refuse answers a delivery that fn never sees, and logs why.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	id := r.Header.Get(standardwebhooks.HeaderWebhookID)
	if len(id) > maxLoggedID { // it is not verified, and may be long
		id = id[:maxLoggedID] + "…"
	}
	h.logger.WarnContext(r.Context(), "webhook: delivery refused", "status", status, "reason", reason,
		"webhook_id", id, "remote", r.RemoteAddr)
	http.Error(w, "webhook: "+reason, status)
}

func unavailable(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", retryAfter)
	http.Error(w, "webhook: "+reason, http.StatusServiceUnavailable)
}
