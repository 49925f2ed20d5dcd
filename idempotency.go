package spotflowhttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	mrand "math/rand/v2"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"unsafe"
)

// IdempotencyKeyHeader is the header that carries a call's idempotency key.
// Go's [http.Transport] itself treats a request with this header (or
// X-Idempotency-Key) as idempotent and may resend it on a keep-alive
// connection that turns out to be dead; the key makes that safe too.
const IdempotencyKeyHeader = "Idempotency-Key"

// defaultReferenceField is the JSON field by which Spotflow deduplicates
// payments and transfers.
const defaultReferenceField = "reference"

// maxReferenceBody bounds the request bodies read to find or add a
// reference. A larger body is passed through untouched.
const maxReferenceBody = 1 << 20

// IdempotencyTransport gives every call that creates or changes something an
// idempotency key, the same on every attempt of the call and different for
// every call, so that a retry after an uncertain outcome can never charge
// twice. Optionally it writes the key into the body's reference field, and
// resolves "treat as success" (duplicate_reference) by fetching the existing
// resource.
//
// An IdempotencyTransport is safe for concurrent use by multiple goroutines.
type IdempotencyTransport struct {
	next    http.RoundTripper
	cfg     *config
	refName []byte // WithReference's field as a JSON string

	// retry is next when it is a retry layer of the same stack, which a
	// call goes into directly: its RoundTrip would only find the call.
	retry *RetryTransport
}

var _ http.RoundTripper = (*IdempotencyTransport)(nil)

// NewIdempotencyTransport returns the idempotency layer alone on top of base
// (nil means [http.DefaultTransport]). Put it outside the retry layer, as
// [NewTransport] does, so that one key covers all attempts of one call.
func NewIdempotencyTransport(base http.RoundTripper, opts ...Option) *IdempotencyTransport {
	return newIdempotencyTransport(base, newConfig(opts))
}

func newIdempotencyTransport(next http.RoundTripper, cfg *config) *IdempotencyTransport {
	t := &IdempotencyTransport{next: baseOrDefault(next), cfg: cfg}
	if rt, ok := next.(*RetryTransport); ok && rt.cfg == cfg {
		t.retry = rt
	}
	if cfg.referenceField != "" {
		t.refName = jsonQuote(cfg.referenceField)
	}
	return t
}

// WithIdempotencyHeader sets the header that carries the key. The default
// is [IdempotencyKeyHeader], which is also what an empty name keeps. It
// panics if name is not a valid header name. [IdempotencyTransport] sets it;
// [RetryTransport] reads it to tell whether a POST is safe to repeat.
func WithIdempotencyHeader(name string) Option {
	checkHeaderName("WithIdempotencyHeader", name)
	return optionFunc(func(cfg *config) {
		if name != "" {
			cfg.keyHeader = textproto.CanonicalMIMEHeaderKey(name)
		}
	})
}

type keyContextKey struct{}

// ContextWithIdempotencyKey returns a context that makes the call made with
// it use key, for any method. Derive key from something that survives a
// restart, such as an order id, so that the call can be repeated later, from
// another process, with the same effect at most once. A retrier above the
// stack (resty's, a loop of your own) should do the same, or each of its
// tries gets a new key. A key already in the request's header wins.
func ContextWithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyContextKey{}, key)
}

// WithKeyFunc sets how keys are made for calls that need one and have none.
// The default is 128 random bits from crypto/rand, as 32 hex digits. A
// returned error fails the call before anything is sent, with an [*Error]
// that wraps it. An empty key falls back to a random one. fn must be safe
// for concurrent use. Only [IdempotencyTransport] reads it.
func WithKeyFunc(fn func(*http.Request) (string, error)) Option {
	return optionFunc(func(cfg *config) { cfg.keyFunc = fn })
}

// WithKeyMethods replaces the methods whose calls get a key when they carry
// none. The default is POST and PATCH; no methods means only calls that
// bring their own key have one. Only [IdempotencyTransport] reads it.
func WithKeyMethods(methods ...string) Option {
	return optionFunc(func(cfg *config) {
		cfg.keyMethods = append([]string(nil), methods...)
	})
}

// WithReference makes the idempotency layer add field, with the call's key
// as value, to JSON object bodies that lack it, so that Spotflow itself
// deduplicates the attempts of a call (it deduplicates payments and
// transfers by "reference"). Bodies that are not JSON objects, larger than
// 1 MiB, or without GetBody are sent untouched. The rest of the body is kept
// byte for byte; the new body gets a correct ContentLength and GetBody, so
// retries resend the layer's copy, not what the caller's GetBody yields. The
// default, and an empty field, adds nothing. [IdempotencyTransport] adds the
// field; [RetryTransport] also reads it to decide whether a POST is safe to
// repeat (without the option it looks for "reference").
func WithReference(field string) Option {
	return optionFunc(func(cfg *config) { cfg.referenceField = field })
}

// WithResolveDuplicates makes the idempotency layer resolve a final
// duplicate_reference ("treat as success") by fetching the existing
// resource: payments through GET .../payments/verify?reference=R and
// transfers through GET .../transfers/reference/R, other endpoints through
// [WithResolver]. The fetched resource is returned in place of the 400, with
// [ErrorOf] nil and [ReplayOf] true. If the fetch fails, the original 400 is
// returned, annotated as [CategoryTreatAsSuccess]: never a silent success.
// Only [IdempotencyTransport] reads it.
//
// The fetched resource comes with the fetch's status, 200, where a create
// answers 201: a generated client decodes it only if its spec declares a 200
// for the create (see examples/openapi).
func WithResolveDuplicates() Option {
	return optionFunc(func(cfg *config) { cfg.resolveDuplicates = true })
}

// WithResolver sets how the existing resource of a duplicate create is
// fetched, for endpoints other than Spotflow's payments and transfers; it
// implies [WithResolveDuplicates]. fn gets the create request as sent (its
// GetBody yields the body) and returns the request that fetches the
// resource, or nil to leave the duplicate unresolved. The fetch runs with the
// call's context through the layers below; it gets the create's
// Authorization header if it has none. Only [IdempotencyTransport] reads it.
func WithResolver(fn func(*http.Request) (*http.Request, error)) Option {
	return optionFunc(func(cfg *config) {
		cfg.resolver = fn
		cfg.resolveDuplicates = fn != nil || cfg.resolveDuplicates
	})
}

// IdempotencyKeyOf returns the idempotency key the call that produced resp
// used, "" if none. It works on responses whose body another transport has
// wrapped.
func IdempotencyKeyOf(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	if c := callOf(resp.Request); c != nil && c.key != "" {
		return c.key
	}
	if resp.Request != nil {
		return headerKey(resp.Request.Header, "")
	}
	return ""
}

// ReplayOf reports whether resp is an existing resource that the
// idempotency layer fetched in place of a duplicate_reference answer.
func ReplayOf(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	c := callOf(resp.Request)
	return c != nil && c.replay && c.resp == resp
}

// RoundTrip implements [http.RoundTripper].
func (t *IdempotencyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.cfg.covers(req) {
		return t.next.RoundTrip(req)
	}
	c, r, owner := begin(req, t.cfg)
	resp, err := t.roundTrip(c, r)
	if owner {
		return t.cfg.finish(c, resp, err)
	}
	return resp, err
}

func (t *IdempotencyTransport) roundTrip(c *call, req *http.Request) (*http.Response, error) {
	// A call of a key method will most likely have its header copied with
	// a key added: one look at every header then serves both keyFor and
	// the copy.
	h := headerFacts{keyed: true, roomy: true} // what must be assumed unlooked
	if methodIn(req.Method, t.cfg.keyMethods) {
		h = lookAtHeader(req.Header, t.cfg.keyHeader)
	}
	key, inHeader, err := t.keyFor(c, req, h.keyed)
	if err != nil {
		closeBody(req)
		return nil, &Error{
			Category: CategoryDontRetry,
			Err:      fmt.Errorf("spotflowhttp: making idempotency key: %w", err),
			kind:     ErrInvalidRequest,
			local:    true,
		}
	}
	r := req
	if key != "" {
		c.key = key
		if !inHeader {
			r = c.own(req)
			r.Header = headerWith(req.Header, t.cfg.keyHeader, c.keyValue(key), h.roomy)
		}
		if t.cfg.referenceField != "" {
			if r, err = t.injectReference(c, r, key); err != nil {
				// Nothing was sent: the body could not be read.
				return nil, &Error{Category: CategoryDontRetry, Err: err, kind: ErrInvalidRequest, local: true}
			}
		}
		if t.cfg.journal != nil {
			if err := t.record(c, r, key); err != nil {
				closeBody(r)
				return nil, err
			}
		}
	}
	resp, err := t.send(c, r)
	if err != nil || !t.cfg.resolveDuplicates {
		return resp, err
	}
	if c.resp != resp {
		c.resp, c.err = resp, classifyResponse(t.cfg, resp)
		if e := c.err; e != nil && e.unread {
			c.resp, c.err = nil, nil
			return nil, e // the response is gone with its body
		}
	}
	if c.err == nil || c.err.Category != CategoryTreatAsSuccess || !readWhole(resp) {
		return resp, nil // nothing to resolve, or a body too large to hold while fetching
	}
	return t.resolve(c, r, resp), nil
}

// send passes r, a request of c, to the layers below.
func (t *IdempotencyTransport) send(c *call, r *http.Request) (*http.Response, error) {
	if t.retry != nil {
		return t.retry.roundTrip(c, r)
	}
	return send(t.next, r)
}

// headerKeyOf is the key in h: under the key header (in), else under a
// standard name, which the call copies to the key header.
func (t *IdempotencyTransport) headerKeyOf(h http.Header) (key string, in, ok bool) {
	if v := h[t.cfg.keyHeader]; len(v) > 0 && v[0] != "" {
		return v[0], true, true
	}
	for _, name := range [...]string{IdempotencyKeyHeader, "X-Idempotency-Key"} {
		if name == t.cfg.keyHeader {
			continue // looked at above
		}
		if v := h[name]; len(v) > 0 && v[0] != "" {
			return v[0], false, true // the caller's, under a standard name: copied to ours
		}
	}
	return "", false, false
}

// headerFacts is what a look at every header of a request tells: whether
// one may hold an idempotency key, and whether a value slice has room
// beyond its length (see withHeader).
type headerFacts struct{ keyed, roomy bool }

// lookAtHeader looks at every header of h once.
func lookAtHeader(h http.Header, keyHeader string) headerFacts {
	var f headerFacts
	for k, vv := range h {
		f.roomy = f.roomy || cap(vv) > len(vv)
		if len(vv) > 0 && vv[0] != "" && (k == keyHeader || k == IdempotencyKeyHeader || k == "X-Idempotency-Key") {
			f.keyed = true
		}
	}
	return f
}

// keyFor picks the call's key: one already in a header wins, then the
// context's, then WithKeyFunc's or a random one for the key methods.
func (t *IdempotencyTransport) keyFor(c *call, req *http.Request, keyed bool) (key string, inHeader bool, err error) {
	if keyed { // else the header holds no key: see lookAtHeader
		if k, in, ok := t.headerKeyOf(req.Header); ok {
			return k, in, nil
		}
	}
	if k, _ := req.Context().Value(keyContextKey{}).(string); k != "" {
		return k, false, nil
	}
	if !methodIn(req.Method, t.cfg.keyMethods) {
		return "", false, nil
	}
	if t.cfg.keyFunc != nil {
		var k string
		var err error
		c.hook(func() { k, err = t.cfg.keyFunc(req) })
		if err != nil || k != "" {
			return k, false, err
		}
	}
	return c.newKey(), false, nil
}

// newKey returns a new key of 128 random bits as 32 hex digits: safe in a
// header, a JSON string and a Spotflow reference.
func newKey() string {
	var s [32]byte
	drawKey(&s)
	return string(s[:])
}

// newKey returns a new key for the call, held in its extra state when it
// has some, so that the key costs no allocation of its own.
func (c *call) newKey() string {
	if c.x == nil {
		return newKey()
	}
	b := &c.x.keyBytes
	drawKey(b)
	// b is written once, here, and never again: the string may alias it,
	// and keeps the call's allocation alive as long as it is held.
	return unsafe.String(&b[0], len(b))
}

// keyStream draws keys from a ChaCha8 stream seeded with 256 bits from
// crypto/rand when the first key is made: 128 bits of it are as
// unpredictable as 128 bits of crypto/rand to anyone without the seed, which
// never leaves the process, and cost a tenth as much. The mutex makes it
// safe for concurrent use; it is held for two words of the stream.
var keyStream struct {
	sync.Mutex
	r *mrand.ChaCha8
}

// drawKey writes 128 bits of the key stream into s as 32 hex digits.
func drawKey(s *[32]byte) {
	keyStream.Lock()
	if keyStream.r == nil {
		var seed [32]byte
		rand.Read(seed[:]) // never fails; see crypto/rand.Read
		keyStream.r = mrand.NewChaCha8(seed)
	}
	a, b := keyStream.r.Uint64(), keyStream.r.Uint64()
	keyStream.Unlock()
	binary.LittleEndian.PutUint64(s[0:8], hex8(uint32(a>>32)))
	binary.LittleEndian.PutUint64(s[8:16], hex8(uint32(a)))
	binary.LittleEndian.PutUint64(s[16:24], hex8(uint32(b>>32)))
	binary.LittleEndian.PutUint64(s[24:32], hex8(uint32(b)))
}

// hex8 is x as 8 lower-case hex digits, most significant first, in the
// bytes of a little-endian word: all eight digits at once.
func hex8(x uint32) uint64 {
	v := uint64(x)
	// Spread the nibbles to one a byte, most significant in the lowest.
	v = (v | v<<16) & 0x0000ffff0000ffff
	v = (v | v<<8) & 0x00ff00ff00ff00ff
	v = (v | v<<4) & 0x0f0f0f0f0f0f0f0f
	v = bits.ReverseBytes64(v)
	// '0'+n for n < 10, 'a'+n-10 above: add 39 more where n+6 carries
	// into bit 4.
	tens := (v + 0x0606060606060606) >> 4 & 0x0101010101010101
	return v + 0x3030303030303030 + tens*39
}

func methodIn(m string, set []string) bool {
	for _, s := range set {
		if len(m) == len(s) && (m == s || strings.EqualFold(m, s)) {
			return true
		}
	}
	return false
}

// headerKey returns the idempotency key in h under name, Idempotency-Key or
// X-Idempotency-Key.
func headerKey(h http.Header, name string) string {
	if name != "" && name != IdempotencyKeyHeader {
		if v := h[name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	if v := h[IdempotencyKeyHeader]; len(v) > 0 && v[0] != "" {
		return v[0]
	}
	if v := h["X-Idempotency-Key"]; len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return ""
}

// withHeader returns a copy of h with name set to v; h is not changed. The
// copy is a new map sharing h's value slices, each with its capacity cut to
// its length, so that Set, Add or Del on the copy (which a layer below may
// do) never writes into h: the map is what must not be shared. Copying the
// values too, as Header.Clone does, cost a third more on every create.
func withHeader(h http.Header, name string, v []string) http.Header {
	return headerWith(h, name, v, true)
}

// headerWith is withHeader for a header whose value slices are known to
// have no room (roomy false), or may have some.
func headerWith(h http.Header, name string, v []string, roomy bool) http.Header {
	// A clone copies a small map's slots at once, where inserting each
	// key would hash it again; the few values with room are then cut.
	h2 := maps.Clone(h)
	if h2 == nil {
		h2 = make(http.Header, 1)
	}
	if roomy {
		for k, vv := range h2 {
			if cap(vv) > len(vv) {
				h2[k] = vv[:len(vv):len(vv)]
			}
		}
	}
	h2[name] = v
	return h2
}

// injectReference returns r with the key written into its JSON body's
// reference field, or r unchanged where that cannot be done safely. It
// fails, with the body closed, if the body cannot be read.
func (t *IdempotencyTransport) injectReference(c *call, r *http.Request, key string) (*http.Request, error) {
	if r.GetBody == nil || r.Body == nil || r.Body == http.NoBody || r.ContentLength > maxReferenceBody {
		return r, nil
	}
	// Read the body being sent rather than a copy through GetBody: one read,
	// one buffer, with room for the member. Whatever happens, the request
	// then gets a body of ours; GetBody stays the caller's unless the body
	// changes.
	room := len(t.refName) + len(key) + 8
	orig := r.Body
	r = c.own(r)
	b, err := readAllRoom(orig, r.ContentLength, room)
	switch {
	case err == errTooLarge:
		r.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(b), orig), Closer: orig}
		return r, nil
	case err != nil:
		orig.Close()
		return nil, fmt.Errorf("spotflowhttp: reading the request body: %w", err)
	}
	orig.Close()
	nb, ok := addField(b, t.refName, t.cfg.referenceField, key)
	if !ok {
		r.Body = newRefBody(b)
		return r, nil
	}
	r.Body = newRefBody(nb)
	r.GetBody = func() (io.ReadCloser, error) { return newRefBody(nb), nil }
	r.ContentLength = int64(len(nb))
	return r, nil
}

// refBody is a request body of bytes the idempotency layer holds.
type refBody struct{ bytes.Reader }

func newRefBody(b []byte) *refBody {
	rb := new(refBody)
	rb.Reset(b)
	return rb
}

func (*refBody) Close() error { return nil }

var errTooLarge = errors.New("spotflowhttp: body over the reference limit")

// readAllRoom reads r to its end into one buffer with room bytes to spare
// at the end, sized by n (the ContentLength) when it is known. It reads at
// most maxReferenceBody+1 bytes: beyond that it returns what it read and
// errTooLarge.
func readAllRoom(r io.Reader, n int64, room int) ([]byte, error) {
	size := 512
	if n > 0 {
		size = int(n) + 1 // one byte more, to meet EOF without growing
	}
	b := make([]byte, 0, size+room)
	for {
		if len(b) > maxReferenceBody {
			return b, errTooLarge
		}
		if cap(b)-room-len(b) <= 0 {
			b = append(b[:cap(b)], 0)[:len(b)] // grow
		}
		lim := min(cap(b)-room, maxReferenceBody+1)
		m, err := r.Read(b[len(b):lim])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// readBody reads a fresh copy of r's body through GetBody, up to
// maxReferenceBody bytes; false if it is larger or cannot be read.
func readBody(r *http.Request) ([]byte, bool) {
	if r.GetBody == nil {
		return nil, false
	}
	body, err := r.GetBody()
	if err != nil || body == nil {
		return nil, false
	}
	defer body.Close()
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // one read, no regrowth
	}
	if _, err := buf.ReadFrom(io.LimitReader(body, maxReferenceBody+1)); err != nil || buf.Len() > maxReferenceBody {
		return nil, false
	}
	return buf.Bytes(), true
}

// nameIs reports whether a raw member name, escapes and all, is field in any
// case, as Go's encoding/json matches names.
func nameIs(raw []byte, field string) bool {
	if len(raw) < len(field) && isASCII(field) {
		// Escapes only shorten a name, and what folds to an ASCII letter
		// is at least as long: no shorter name can be field.
		return false
	}
	name := raw
	if bytes.IndexByte(raw, '\\') >= 0 {
		var s string
		if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
			return false
		}
		name = []byte(s)
	}
	return string(name) == field || bytes.EqualFold(name, []byte(field))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addField returns b with "field":"value" added as the object's last member,
// and false if b is not a JSON object or already has field. name is field
// as a JSON string. The member is written in place when b has room for it.
func addField(b, name []byte, field, value string) ([]byte, bool) {
	if skimHas(b, field) {
		return nil, false // left as it is, so not worth validating
	}
	members, present := 0, false
	if !topLevel(b, func(raw, _ []byte) bool {
		members++
		present = nameIs(raw, field)
		return !present
	}) || present {
		return nil, false
	}
	var scratch [96]byte
	m := scratch[:0]
	if members > 0 {
		m = append(m, ',')
	}
	m = append(m, name...)
	m = append(m, ':')
	m = appendJSONString(m, value)
	end := bytes.LastIndexByte(b, '}')
	n := len(b)
	if cap(b) >= n+len(m) {
		b = b[:n+len(m)]
	} else {
		b = append(b, m...)
	}
	copy(b[end+len(m):], b[end:n])
	copy(b[end:], m)
	return b, true
}

// bodyReference returns the non-empty string value of field in req's JSON
// object body, read through GetBody, or "".
func bodyReference(req *http.Request, field string) string {
	if req.ContentLength > maxReferenceBody {
		return ""
	}
	b, ok := readBody(req)
	if !ok {
		return ""
	}
	return referenceIn(b, field)
}

// referenceIn returns the non-empty string value of field in the JSON
// object b, or "".
func referenceIn(b []byte, field string) string {
	var ref string
	seen := 0
	topLevel(b, func(name, v []byte) bool {
		if nameIs(name, field) {
			seen++
			ref = jsonString(v)
		}
		return true
	})
	if seen != 1 {
		return "" // none, or several that parsers resolve differently
	}
	return ref
}

// resolve fetches the resource a duplicate create refers to and returns it
// in place of dup, or dup itself if that cannot be done.
func (t *IdempotencyTransport) resolve(c *call, create *http.Request, dup *http.Response) *http.Response {
	resolver := t.cfg.resolver
	if resolver == nil {
		resolver = t.spotflowResolver
	}
	var fetch *http.Request
	var err error
	c.hook(func() { fetch, err = resolver(create) })
	if err != nil || fetch == nil {
		return dup
	}
	fetch = fetch.WithContext(c)
	if fetch.Header.Get("Authorization") == "" {
		if auth := create.Header.Values("Authorization"); len(auth) > 0 {
			fetch.Header = withHeader(fetch.Header, "Authorization", auth[:1:1])
		}
	}
	saved := struct {
		resp      *http.Response
		err       *Error
		attempts  int32
		maybeSent bool
	}{c.resp, c.err, c.attempts, c.maybeSent}
	resp, err := send(t.next, fetch)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		if c.resp != resp {
			c.err = classifyResponse(t.cfg, resp)
		}
		if c.err == nil {
			discard(dup)
			c.resp, c.replay, c.attempts = resp, true, saved.attempts
			return resp
		}
	}
	if resp != nil {
		discard(resp)
	}
	c.resp, c.err, c.attempts, c.maybeSent = saved.resp, saved.err, saved.attempts, saved.maybeSent
	return dup
}

// spotflowResolver builds the fetch for Spotflow's payments and transfers
// (see verifyURL).
func (t *IdempotencyTransport) spotflowResolver(create *http.Request) (*http.Request, error) {
	field := t.cfg.referenceFieldOrDefault()
	ref := bodyReference(create, field)
	if ref == "" || create.Method != http.MethodPost {
		return nil, nil
	}
	u := verifyURL(create.URL, ref)
	if u == nil {
		return nil, nil
	}
	fetch, err := http.NewRequestWithContext(create.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	fetch.Header = create.Header.Clone()
	for _, h := range []string{"Content-Type", "Content-Length", IdempotencyKeyHeader, "X-Idempotency-Key", t.cfg.keyHeader} {
		fetch.Header.Del(h)
	}
	return fetch, nil
}

// verifyURL returns the URL that fetches by reference R what a POST to
// create makes: {base}/payments/verify?reference=R for {base}/payments and
// {base}/payments/initialize, {base}/transfers/reference/R for
// {base}/transfers; nil for any other endpoint.
func verifyURL(create *url.URL, ref string) *url.URL {
	u := *create
	u.RawQuery, u.Fragment, u.RawPath = "", "", ""
	path := strings.TrimSuffix(u.Path, "/")
	switch {
	case strings.HasSuffix(path, "/payments/initialize"):
		path = strings.TrimSuffix(path, "/initialize")
		fallthrough
	case strings.HasSuffix(path, "/payments"):
		u.Path = path + "/verify"
		u.RawQuery = url.Values{"reference": {ref}}.Encode()
	case strings.HasSuffix(path, "/transfers"):
		u.Path = path + "/reference/" + ref
		u.RawPath = path + "/reference/" + url.PathEscape(ref)
	default:
		return nil
	}
	return &u
}
