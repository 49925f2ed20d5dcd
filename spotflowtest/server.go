package spotflowtest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultSecretKey is the secret key a [Server] accepts unless
// [WithSecretKey] says otherwise.
const DefaultSecretKey = "sk_test_spotflowtest"

// DefaultBalance is the merchant balance, in minor units, a [Server] starts
// with unless [WithBalance] says otherwise.
const DefaultBalance int64 = 1_000_000_000

// APIPrefix is the path under which a [Server] serves the API.
const APIPrefix = "/api/v1"

// maxBodyBytes bounds request bodies; larger ones get 400 missing_parameter.
const maxBodyBytes = 1 << 20

// Server is a running simulation of the Spotflow API. All its methods are
// safe for concurrent use, including while requests are being served.
//
// The API requires "Authorization: Bearer <key>" on every request and serves:
//
//	POST /api/v1/payments                          create a payment (201)
//	POST /api/v1/payments/initialize               start a redirect checkout (200)
//	POST /api/v1/transfers                         create a transfer (201)
//	GET  /api/v1/payments/verify?reference=R       fetch a payment (200, 404)
//	GET  /api/v1/transfers/reference/{reference}   fetch a transfer (200, 404)
//
// Each request goes through, in order: latency, outage, authentication,
// rate limiting, routing, permission (see [WithRestrictedKey]), injected
// faults, idempotency and validation, commit, after-commit faults. Requests
// under [ControlPrefix] are not part of the API and skip all of it.
//
// A redirect checkout is a payment: it shares the payments' references, its
// Idempotency-Key is bound to its own route, and it is answered 200 with the
// payment "pending", its checkoutUrl and its paymentCode. Its customer
// finishes later, as [Checkout] describes.
//
// References are unique per kind: a payment (or transfer) whose reference is
// already taken by a payment (or transfer) gets 400 duplicate_reference. A
// request without a reference is given one ("spf_..."), so the server cannot
// catch its duplicates; [Server.CountMetadata] can.
//
// The first request with an Idempotency-Key (or X-Idempotency-Key) that
// creates a resource binds the key to its route, its body bytes and its
// success response. A later request with the key and the same route and body
// gets that response again, byte for byte, with "Idempotent-Replayed: true";
// one with another body or route gets 422 idempotency_key_reused. Requests
// that fail create nothing and bind nothing. Requests sharing a key are
// processed one at a time, so concurrent retries never both commit.
//
// With [WithWebhooks], every payment and transfer event (a payment or a
// transfer created, a checkout's customer finishing) is also sent as a
// signed webhook; [Server.Deliveries] records every try.
//
// Beware that net/http's Transport itself resends a request that carries an
// Idempotency-Key (or is a GET) when a reused keep-alive connection fails
// before the first response byte, so a client may never see a reset injected
// on such a connection; [Server.Stats] still counts it. Use a transport with
// DisableKeepAlives to observe every reset.
type Server struct {
	// URL is the root of the server, scheme://host:port with no trailing
	// slash, as in httptest.Server. The API lives under URL + "/api/v1";
	// see BaseURL.
	URL string

	ts        *httptest.Server
	cfg       config
	start     time.Time
	closing   chan struct{} // closed by Close: latency sleeps end
	closeOnce sync.Once
	draining  chan struct{} // closed by Shutdown and Close: control waits end
	drainOnce sync.Once

	mu           sync.Mutex
	rng          *rand.Rand
	limiter      *bucket // nil when there is no rate limit
	outages      []Window
	arrivals     map[string]int // route and identity → arrivals so far
	keyArrivals  map[string]int
	keyLocks     map[string]*keyLock
	idempotency  map[string]*idempotencyRecord
	payments     []Payment
	transfers    []Transfer
	paymentRefs  map[string]int     // reference → index in payments
	transferRefs map[string]int     // reference → index in transfers
	checkouts    dueHeap[*checkout] // pending redirect checkouts, by due time
	checkoutOf   map[int]*checkout
	checkoutLoop bool // a goroutine completes checkouts for their webhooks
	balance      int64
	stats        Stats

	webhooks *webhookSender // nil without WithWebhooks
	loops    sync.WaitGroup // the checkout loop
}

type config struct {
	secretKey      string
	balance        int64
	ratePerSecond  float64
	rateBurst      int
	rateHeaders    bool
	rateHeadersSet bool
	seed           int64
	faults         Faults
	checkout       Checkout
	webhooks       *Webhooks
	clock          func() time.Time
	fakeClock      bool
	listener       net.Listener // nil: a new one on 127.0.0.1
	restrictedKey  string
}

// Option configures a [Server]. Options are applied in order by [NewServer];
// a later option overrides an earlier one.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithSecretKey sets the only secret key the server accepts; any other, or
// none, gets 401 invalid_credentials. An empty key leaves [DefaultSecretKey].
func WithSecretKey(key string) Option {
	return optionFunc(func(c *config) {
		if key != "" {
			c.secretKey = key
		}
	})
}

// WithRestrictedKey adds a second key the server accepts, one without the
// permission to create: a request with it may verify a payment and look up
// a transfer, but a create (a payment, a checkout, a transfer) is answered
// 403 forbidden, in the shape of a 401, as Spotflow answers a key whose
// permissions do not cover the action:
// {"code":"forbidden","message":"This API key does not have permission to perform this action","statusCode":403,"requestMarker":"..."}.
// The check comes after routing and before faults. An empty key, the
// default, adds none.
func WithRestrictedKey(key string) Option {
	return optionFunc(func(c *config) { c.restrictedKey = key })
}

// WithBalance sets the merchant balance, in minor units, that transfers are
// debited from. The default is [DefaultBalance]. Payments do not credit it.
func WithBalance(minor int64) Option {
	return optionFunc(func(c *config) { c.balance = minor })
}

// WithRateLimit limits the server to perSecond requests per second on
// average, with bursts of up to burst requests: a token bucket on the
// server's clock, shared by all clients and checked right after
// authentication. A request that finds no token gets 429
// rate_limit_exceeded with Retry-After. perSecond <= 0 means no limit (the
// default); burst is raised to at least 1.
func WithRateLimit(perSecond float64, burst int) Option {
	return optionFunc(func(c *config) {
		c.ratePerSecond = perSecond
		c.rateBurst = max(burst, 1)
	})
}

// WithRateLimitHeaders turns the X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset headers on or off. They are on by default when
// [WithRateLimit] sets a limit, and never sent without one.
func WithRateLimitHeaders(on bool) Option {
	return optionFunc(func(c *config) {
		c.rateHeaders = on
		c.rateHeadersSet = true
	})
}

// WithSeed sets the seed of the fault decisions and of generated
// identifiers. The default seed is 1. See [Faults] for what is deterministic.
func WithSeed(seed int64) Option {
	return optionFunc(func(c *config) { c.seed = seed })
}

// WithFaults sets the failures the server injects. The value is copied.
func WithFaults(f Faults) Option {
	return optionFunc(func(c *config) {
		f.Schedule = slices.Clone(f.Schedule)
		f.Outages = slices.Clone(f.Outages)
		c.faults = f
	})
}

// WithClock sets the clock of the rate limiter and of outage windows, so
// tests can move time instead of sleeping. now must be safe for concurrent
// use. The default is time.Now. Latency is always real time.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.clock = now
			c.fakeClock = true
		}
	})
}

// NewServer starts a simulated Spotflow API on 127.0.0.1 and returns it. The
// caller must call Close when done.
func NewServer(opts ...Option) *Server {
	cfg := config{
		secretKey: DefaultSecretKey,
		balance:   DefaultBalance,
		seed:      1,
		clock:     time.Now,
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if !cfg.rateHeadersSet {
		cfg.rateHeaders = true
	}

	s := &Server{
		cfg:          cfg,
		start:        cfg.clock(),
		closing:      make(chan struct{}),
		draining:     make(chan struct{}),
		rng:          rand.New(rand.NewPCG(uint64(cfg.seed), 0x5370_6f74_666c_6f77)),
		outages:      slices.Clone(cfg.faults.Outages),
		arrivals:     make(map[string]int),
		keyArrivals:  make(map[string]int),
		keyLocks:     make(map[string]*keyLock),
		idempotency:  make(map[string]*idempotencyRecord),
		paymentRefs:  make(map[string]int),
		transferRefs: make(map[string]int),
		checkoutOf:   make(map[int]*checkout),
		balance:      cfg.balance,
	}
	if cfg.ratePerSecond > 0 {
		s.limiter = newBucket(cfg.ratePerSecond, cfg.rateBurst, s.start)
	}
	if cfg.webhooks != nil {
		s.webhooks = newWebhookSender(*cfg.webhooks, cfg.seed, s.webhookPayload)
	}
	s.ts = startHTTP(cfg.listener, http.HandlerFunc(s.serveHTTP))
	s.URL = reachableURL(s.ts.Listener.Addr())
	return s
}

// BaseURL returns the root of the API, URL + "/api/v1", with no trailing
// slash.
func (s *Server) BaseURL() string {
	return s.URL + APIPrefix
}

// SecretKey returns the secret key the server accepts.
func (s *Server) SecretKey() string {
	return s.cfg.secretKey
}

// Client returns an HTTP client configured for the server, as
// httptest.Server.Client does. Its idle connections are closed by Close.
func (s *Server) Client() *http.Client {
	return s.ts.Client()
}

// Close shuts the server down. Requests sleeping for injected latency are
// aborted; Close blocks until every other outstanding request has completed,
// then stops the webhooks: tries in flight are cancelled, the rest are
// dropped, and every goroutine the server started has returned when Close
// does. Close may be called more than once.
func (s *Server) Close() {
	s.drainOnce.Do(func() { close(s.draining) })
	s.closeOnce.Do(func() { close(s.closing) })
	s.ts.Close()
	s.loops.Wait()
	if s.webhooks != nil {
		s.webhooks.close()
	}
}

// StartOutage begins an outage now, on the server's clock, lasting d: every
// request in it gets 503 with an HTML body.
func (s *Server) StartOutage(d time.Duration) {
	now := s.cfg.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outages = append(s.outages, Window{Start: now.Sub(s.start), Duration: d})
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if isControlPath(r.URL.Path) {
		s.serveControl(w, r)
		return
	}
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	rt := routeOf(r)
	key := idempotencyKeyOf(r.Header)
	d := s.arrive(rt, key, body)
	var tooLarge *http.MaxBytesError
	if readErr != nil && !errors.As(readErr, &tooLarge) {
		abort() // the client went away mid-body
	}

	if !s.sleep(r.Context(), d.latency) {
		abort()
	}
	now := s.cfg.clock()
	if s.inOutage(now) {
		s.count(func(st *Stats) { st.OutageErrors++ })
		writeHTML(w, http.StatusServiceUnavailable)
		return
	}
	cred := s.credentialOf(r.Header)
	if cred == credentialNone {
		s.setRateLimitHeaders(w, now)
		s.refuse(w, http.StatusUnauthorized, codeInvalidCredentials, "Invalid API key", func(st *Stats) { st.Unauthorized++ })
		return
	}
	if !s.admit(w, now) {
		return
	}
	s.handle(w, apiRequest{rt: rt, cred: cred, key: key, body: body, readErr: readErr, d: d})
}

// apiRequest is a request that has passed latency, outages, authentication
// and the rate limiter, with what serveHTTP learnt of it.
type apiRequest struct {
	rt      route
	cred    credential
	key     string
	body    []byte
	readErr error // the body was too large
	d       decision
}

// handle takes a request from routing to its answer: permission, injected
// faults, idempotency and validation, commit, after-commit faults.
func (s *Server) handle(w http.ResponseWriter, req apiRequest) {
	rt, d := req.rt, req.d
	switch rt.kind {
	case routeNotFound:
		s.count(func(st *Stats) { st.NotFound++ })
		writeJSON(w, http.StatusNotFound, coded(codeNotFound, "Not found"))
		return
	case routeMethodNotAllowed:
		w.Header().Set("Allow", rt.allow)
		writeJSON(w, http.StatusMethodNotAllowed, coded(codeMethodNotAllowed, "Method not allowed"))
		return
	}
	if req.cred == credentialRestricted && rt.kind.creates() {
		s.refuse(w, http.StatusForbidden, codeForbidden, forbiddenMessage, func(st *Stats) { st.Forbidden++ })
		return
	}
	if req.readErr != nil {
		s.count(func(st *Stats) { st.BadRequests++ })
		writeJSON(w, http.StatusBadRequest, badRequest(codeMissingParameter))
		return
	}

	switch d.fault {
	case FaultProxyError:
		s.count(func(st *Stats) { st.ProxyErrors++ })
		writeHTML(w, d.proxyStatus)
		return
	case FaultServerErrorBeforeCommit:
		s.serverError(w)
		return
	case FaultResetBeforeCommit:
		s.reset(w)
		return
	}

	var out outcome
	if rt.kind.creates() {
		out = s.create(rt, req.key, req.body)
	} else {
		out = s.read(rt)
	}
	if out.committed || !rt.kind.creates() {
		switch d.fault {
		case FaultServerErrorAfterCommit:
			s.serverError(w)
			return
		case FaultResetAfterCommit:
			s.reset(w)
			return
		}
	}
	if out.replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, out.status, out.body)
}

// arrive records the request's arrival and decides its faults.
func (s *Server) arrive(rt route, key string, body []byte) decision {
	identity := identityOf(rt, key, body)
	s.mu.Lock()
	s.stats.Requests++
	if key != "" {
		s.keyArrivals[key]++
	}
	slot := rt.name + "\x00" + identity
	n := s.arrivals[slot]
	s.arrivals[slot]++
	s.mu.Unlock()

	faultable := rt.kind.creates() || (rt.kind.reads() && s.cfg.faults.Reads)
	return s.cfg.faults.decide(s.cfg.seed, rt.name, identity, n, faultable)
}

// identityOf names the request for the fault model: its Idempotency-Key, else
// its reference, else its body.
func identityOf(rt route, key string, body []byte) string {
	if key != "" {
		return "key:" + key
	}
	ref := rt.reference
	if rt.kind.creates() {
		var probe struct {
			Reference string `json:"reference"`
		}
		_ = json.Unmarshal(body, &probe) // a malformed body is identified by its hash
		ref = probe.Reference
	}
	if ref != "" {
		return "ref:" + ref
	}
	sum := sha256.Sum256(body)
	return "body:" + hex.EncodeToString(sum[:])
}

// sleep waits d, and reports false if the request's context ended or the
// server began closing first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

func (s *Server) inOutage(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	offset := now.Sub(s.start)
	for _, w := range s.outages {
		if w.contains(offset) {
			return true
		}
	}
	return false
}

// refuse answers a 401 or 403 in the shape of authentication errors, with a
// request marker from the seeded generator, and counts it.
func (s *Server) refuse(w http.ResponseWriter, status int, code, message string, count func(*Stats)) {
	s.mu.Lock()
	count(&s.stats)
	marker := s.randomHexLocked(12)
	s.mu.Unlock()
	writeJSON(w, status, marked(code, message, status, marker))
}

// credential is what a request's key allows.
type credential int

const (
	credentialNone       credential = iota // no key, or not one the server accepts
	credentialFull                         // the secret key
	credentialRestricted                   // the restricted key: reads only
)

// credentialOf checks the bearer token in constant time. The token is never
// written anywhere.
func (s *Server) credentialOf(h http.Header) credential {
	scheme, token, ok := strings.Cut(h.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return credentialNone
	}
	t := []byte(strings.TrimSpace(token))
	if subtle.ConstantTimeCompare(t, []byte(s.cfg.secretKey)) == 1 {
		return credentialFull
	}
	if s.cfg.restrictedKey != "" && subtle.ConstantTimeCompare(t, []byte(s.cfg.restrictedKey)) == 1 {
		return credentialRestricted
	}
	return credentialNone
}

// admit takes a token from the rate limiter, sets the rate-limit headers and,
// when there was no token, answers 429.
func (s *Server) admit(w http.ResponseWriter, now time.Time) bool {
	if s.limiter == nil {
		return true
	}
	s.mu.Lock()
	ok, retryAfter := s.limiter.take(now)
	remaining, reset := s.limiter.state(now)
	if !ok {
		s.stats.RateLimited++
	}
	s.mu.Unlock()

	if s.cfg.rateHeaders {
		setRateLimitHeaders(w.Header(), s.limiter.burst, remaining, reset)
	}
	if !ok {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfter, 10))
		writeJSON(w, http.StatusTooManyRequests, coded(codeRateLimitExceeded, "Too many requests"))
	}
	return ok
}

// setRateLimitHeaders reports the limiter's state without spending a token.
func (s *Server) setRateLimitHeaders(w http.ResponseWriter, now time.Time) {
	if s.limiter == nil || !s.cfg.rateHeaders {
		return
	}
	s.mu.Lock()
	remaining, reset := s.limiter.state(now)
	s.mu.Unlock()
	setRateLimitHeaders(w.Header(), s.limiter.burst, remaining, reset)
}

func setRateLimitHeaders(h http.Header, limit, remaining int, reset int64) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
}

func (s *Server) serverError(w http.ResponseWriter) {
	s.count(func(st *Stats) { st.ServerErrors++ })
	writeJSON(w, http.StatusInternalServerError, coded(codeServerError, "Internal server error"))
}

// reset closes the connection with SO_LINGER 0, so the kernel sends a TCP
// RST: the client sees "connection reset by peer" (or EOF) and no response.
func (s *Server) reset(w http.ResponseWriter) {
	s.count(func(st *Stats) { st.Resets++ })
	hj, ok := w.(http.Hijacker)
	if !ok {
		abort()
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		abort()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// abort makes net/http close the connection without a response and without
// logging.
func abort() {
	panic(http.ErrAbortHandler)
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// randomHexLocked returns n random bytes from the seeded generator, in hex.
// s.mu must be held.
func (s *Server) randomHexLocked(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	writeBody(w, status, contentTypeJSON, body)
}

func writeHTML(w http.ResponseWriter, status int) {
	writeBody(w, status, contentTypeHTML, htmlError(status))
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// idempotencyKeyOf returns the Idempotency-Key header, or X-Idempotency-Key
// when that is absent.
func idempotencyKeyOf(h http.Header) string {
	if k := h.Get("Idempotency-Key"); k != "" {
		return k
	}
	return h.Get("X-Idempotency-Key")
}

type routeKind int

const (
	routeNotFound routeKind = iota
	routeMethodNotAllowed
	routeCreatePayment
	routeInitializePayment
	routeCreateTransfer
	routeVerifyPayment
	routeGetTransfer
)

func (k routeKind) creates() bool {
	return k == routeCreatePayment || k == routeInitializePayment || k == routeCreateTransfer
}

func (k routeKind) reads() bool {
	return k == routeVerifyPayment || k == routeGetTransfer
}

// route is what the router made of a request.
type route struct {
	kind      routeKind
	name      string // such as "POST /payments"; part of the fault hash and of idempotency records
	reference string // for reads: from the query or the path
	allow     string // for routeMethodNotAllowed: the Allow header
}

func routeOf(r *http.Request) route {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), APIPrefix)
	if !ok {
		return route{kind: routeNotFound, name: "unknown"}
	}
	method := r.Method
	switch {
	case rest == "/payments":
		if method != http.MethodPost {
			return route{kind: routeMethodNotAllowed, name: "unknown", allow: http.MethodPost}
		}
		return route{kind: routeCreatePayment, name: "POST /payments"}
	case rest == "/payments/initialize":
		if method != http.MethodPost {
			return route{kind: routeMethodNotAllowed, name: "unknown", allow: http.MethodPost}
		}
		return route{kind: routeInitializePayment, name: "POST /payments/initialize"}
	case rest == "/transfers":
		if method != http.MethodPost {
			return route{kind: routeMethodNotAllowed, name: "unknown", allow: http.MethodPost}
		}
		return route{kind: routeCreateTransfer, name: "POST /transfers"}
	case rest == "/payments/verify":
		if method != http.MethodGet {
			return route{kind: routeMethodNotAllowed, name: "unknown", allow: http.MethodGet}
		}
		return route{kind: routeVerifyPayment, name: "GET /payments/verify", reference: r.URL.Query().Get("reference")}
	case strings.HasPrefix(rest, "/transfers/reference/"):
		seg := strings.TrimPrefix(rest, "/transfers/reference/")
		ref, err := url.PathUnescape(seg)
		if seg == "" || strings.Contains(seg, "/") || err != nil {
			return route{kind: routeNotFound, name: "unknown"}
		}
		if method != http.MethodGet {
			return route{kind: routeMethodNotAllowed, name: "unknown", allow: http.MethodGet}
		}
		return route{kind: routeGetTransfer, name: "GET /transfers/reference", reference: ref}
	}
	return route{kind: routeNotFound, name: "unknown"}
}
