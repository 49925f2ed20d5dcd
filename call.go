package spotflowhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// call is the state of one call through the stack, shared by its layers.
// It travels as the context of the request the stack sends, so that it comes
// back on resp.Request whatever other transports do to the response body.
// The layers of one call run on one goroutine, one after the other, so call
// needs no lock; the caller reads it only after RoundTrip has returned.
type call struct {
	context.Context

	// req is the copy of the caller's request that this stack made and
	// owns: a layer given req may replace its fields (never mutate a map
	// or slice it shares with the caller's request).
	req  *http.Request
	copy http.Request // what req points to when the call made it (begin)

	key       string         // idempotency key of the call, "" if none
	attempts  int32          // attempts handed below the retry layer
	replay    bool           // resp is an existing resource fetched for a duplicate
	maybeSent bool           // an attempt that failed may have reached Spotflow
	done      bool           // the outermost layer has returned
	inHook    bool           // a callback of the user's is running
	resp      *http.Response // the response err describes
	err       *Error         // annotation of resp, nil for a success

	scope *scope // the scope of the call's host and credential, once looked up

	// first is the answer to the call's first attempt when NewTransport's
	// fused path sent it before the call began; the rate-limit layer takes
	// it in place of sending (see fused.go).
	first *answer

	// x is the state only some calls need, nil for the others; when begin
	// knows a call needs it, it lives in the same allocation as the call.
	// Keeping it out of call keeps a GET's one allocation small.
	x *callExtra
}

// callExtra is the state of a call that is a create (which net/http may
// resend), is journaled or is timed for an observer.
type callExtra struct {
	start time.Time // when the call began, if an observer wants its duration

	// watch: the call is a keyed create, which watches for net/http
	// resending it on its own (see traceResends). Its client trace is
	// built when net/http asks for it (traceOnce), so a base that never
	// asks costs nothing; trace is then room, nil before. The trace's hook
	// runs on net/http's goroutines, and a context may be asked from any:
	// hence the atomics.
	watch     bool
	traceOnce sync.Once
	trace     atomic.Pointer[httptrace.ClientTrace]
	room      httptrace.ClientTrace
	conns     atomic.Int32 // connections net/http got for the current attempt
	unsent    bool         // the last attempt failed before net/http had a connection for it

	journal *journalCall // the call's journal entry, nil if none

	keyValue [1]string // the value of the key header the call sets
	keyBytes [32]byte  // the key the call made, if it made one (see call.newKey)
}

// extra returns the call's extra state, making it if the call has none.
func (c *call) extra() *callExtra {
	if c.x == nil {
		c.x = new(callExtra)
	}
	return c.x
}

// keyValue returns a header value holding key, in the call's extra state if
// it has some.
func (c *call) keyValue(key string) []string {
	if c.x == nil {
		return []string{key}
	}
	c.x.keyValue[0] = key
	return c.x.keyValue[:]
}

// unsent reports whether the call's last attempt failed before net/http
// had a connection for it, so was never sent.
func (c *call) unsent() bool {
	return c.x != nil && c.x.unsent
}

type callKey struct{}

// Value makes the call findable from any context derived from it, and
// answers net/http's question for a client trace while the call watches for
// resends.
func (c *call) Value(k any) any {
	switch k {
	case callKey{}:
		return c
	case traceKey:
		if x := c.x; x != nil && x.watch {
			x.traceOnce.Do(func() {
				user, _ := c.Context.Value(traceKey).(*httptrace.ClientTrace)
				x.buildTrace(user)
			})
			return x.trace.Load()
		}
	}
	return c.Context.Value(k)
}

// traceKey is the key under which net/http looks for a
// *httptrace.ClientTrace in a request's context. The httptrace package keeps
// it unexported; asking it once through a context that records the question
// finds it. Answering from the call itself costs a keyed call no context and
// no request copy. If it cannot be found, resends are not watched.
var traceKey = func() any {
	var p keyProbe
	httptrace.ContextClientTrace(&p)
	return p.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(k any) any {
	p.key = k
	return nil
}

// traceResends makes the call watch its requests for net/http resending
// them. http.Transport sends a request carrying Idempotency-Key (or
// X-Idempotency-Key) again on its own when a reused keep-alive connection
// dies before the response; the retry layer never sees that first delivery,
// which may have been processed. Counting the connections it gets for one
// attempt tells (a second one is taken only to send again; the first try
// may not have been written, so a resend may be counted that was not one).
// The same count tells an attempt that failed before it had a connection,
// so was never sent. Hooks already in the caller's context still run.
func (c *call) traceResends() {
	if traceKey != nil {
		c.extra().watch = true
	}
}

// buildTrace makes the client trace of a call that watches for resends,
// when net/http first asks for it: the caller's hooks, if any, with a
// GotConn that counts connections.
func (x *callExtra) buildTrace(user *httptrace.ClientTrace) {
	t := &x.room
	if user != nil {
		*t = *user
	}
	got := t.GotConn
	t.GotConn = func(info httptrace.GotConnInfo) {
		x.conns.Add(1)
		if got != nil {
			got(info)
		}
	}
	x.trace.Store(t)
}

// extendedCall is a call with its extra state in the same allocation.
type extendedCall struct {
	call
	extra callExtra
}

// resendableMethod reports whether net/http resends a request of this
// method on a dead keep-alive connection only if it carries an idempotency
// key (it always may for GET, HEAD, OPTIONS and TRACE).
func resendableMethod(m string) bool {
	switch m {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// resent reports whether net/http sent the current attempt, which ended
// with resp or err, more than once over HTTP/1. HTTP/2 resends only streams
// the server refused or never took (REFUSED_STREAM, above a GOAWAY's last
// stream), which were not processed, so they don't count.
func (c *call) resent(resp *http.Response, err error) bool {
	if c.x == nil || c.x.conns.Load() < 2 {
		return false
	}
	if resp != nil {
		return resp.ProtoMajor < 2
	}
	_, h2 := http2ErrorInfo(err)
	return !h2
}

// callOf returns the call req belongs to, or nil.
func callOf(req *http.Request) *call {
	if req == nil {
		return nil
	}
	ctx := req.Context()
	if c, ok := ctx.(*call); ok {
		return c
	}
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// begin returns the call req belongs to. If there is none in flight, it
// starts one, and owner is true: the layer that calls begin first is the
// outermost of this package's layers and must call finish. The returned
// request is the one to send on.
//
// A request whose context merely derives from the call, made by a callback
// (a key func, a response check, a resolver, a hook) while the call waits
// for it, starts a call of its own. Layers used separately join one call, so
// a transport placed between them must not send one request more than once
// at a time (hedging); put such a transport below the stack instead.
func begin(req *http.Request, cfg *config) (c *call, r *http.Request, owner bool) {
	if c := callOf(req); c != nil && !c.done && !c.inHook {
		return c, req, false
	}
	timed := cfg.obs != nil && cfg.obs.CallDone != nil
	if resendableMethod(req.Method) || timed || cfg.journal != nil {
		// A create may want a client trace (see traceResends), a journaled
		// call its entry, a timed call its start: room for them in the
		// same allocation, which a plain GET does without.
		ec := &extendedCall{call: call{Context: req.Context()}}
		ec.x = &ec.extra
		c = &ec.call
		if timed {
			c.x.start = cfg.clock.Now()
		}
	} else {
		c = &call{Context: req.Context()}
	}
	// The stack's copy of the request lives in the call: one allocation
	// for both.
	c.copy = *req.WithContext(c)
	c.req = &c.copy
	return c, c.req, true
}

// own returns req itself if the stack owns it, else a shallow copy the
// caller may change fields of.
func (c *call) own(req *http.Request) *http.Request {
	if req == c.req {
		return req
	}
	r := req.WithContext(req.Context())
	c.req = r
	return r
}

// hook runs a callback of the user's on behalf of the call: requests it makes
// with the call's context are calls of their own. c may be nil.
func (c *call) hook(fn func()) {
	if c == nil || c.inHook {
		fn()
		return
	}
	c.inHook = true
	defer func() { c.inHook = false }()
	fn()
}

// errNoResponse stands for the answer of a RoundTripper that returned
// neither a response nor an error, which its contract forbids.
var errNoResponse = errors.New("spotflowhttp: the base RoundTripper returned neither a response nor an error")

// send is next.RoundTrip(req) held to the RoundTripper contract: exactly one
// of response and error. A response returned with an error is closed, as
// http.Client would ignore it.
func send(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := next.RoundTrip(req)
	switch {
	case err != nil && resp != nil:
		discard(resp)
		return nil, err
	case err == nil && resp == nil:
		return nil, errNoResponse
	}
	return resp, err
}

func baseOrDefault(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		return http.DefaultTransport
	}
	return base
}

// closeBody closes the body of a request that will not be passed on, as the
// RoundTripper contract requires.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// readWhole reports whether resp's body was read to its end and closed by
// classification, so that holding resp holds no connection.
func readWhole(resp *http.Response) bool {
	_, ok := resp.Body.(*bytesBody)
	return ok || resp.Body == nil || resp.Body == http.NoBody
}

// maxDrain bounds what is read from a discarded response so that its
// connection can be reused; a longer body costs a connection instead.
const maxDrain = 4 << 10

// discard drains (bounded) and closes a response that is not returned.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
}
