package spotflowtest

import (
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"time"
)

// Faults describes the failures a [Server] injects. The zero value injects
// none. A Faults value is read once by [WithFaults] and copied; changing it
// afterwards has no effect on the server.
//
// # Which requests are faulted
//
// Latency and outages apply to every request. The other faults apply to the
// requests that create resources (POST /payments, POST /payments/initialize
// and POST /transfers), and to reads (GET) too when Reads is set. Faults are
// injected only after the request has been authenticated and has passed the
// rate limiter, so a faulted request still used a token.
//
// # Determinism
//
// The fault for a request never depends on goroutine scheduling or the wall
// clock. It is computed from a 64-bit hash (FNV-1a, finished with a splitmix64
// step) of the seed given to [WithSeed], the request's route (for example
// "POST /payments"), the request's identity, and n, the number of earlier
// arrivals of that same route and identity. The identity is the
// Idempotency-Key header if there is one, else the reference (from the JSON
// body, the verify query or the path), else a SHA-256 of the body bytes.
// Requests that differ only in when they arrive therefore see the same
// faults, run after run; only concurrent requests sharing an identity may
// trade decisions among themselves, since their arrival order is up to the
// scheduler.
//
// # Probabilities
//
// The five probabilities are disjoint slices of one uniform draw in [0,1),
// taken in the order ProxyError, ServerErrorBeforeCommit, ResetBeforeCommit,
// ServerErrorAfterCommit, ResetAfterCommit; values are clamped to [0,1] and,
// when they sum to more than 1, the later ones are cut short. An after-commit
// fault takes effect only when the request actually commits a new resource:
// a validation error or an idempotent replay is answered normally.
type Faults struct {
	// ServerErrorBeforeCommit is the probability of a 500 server_error
	// returned before anything is created.
	ServerErrorBeforeCommit float64
	// ServerErrorAfterCommit is the probability of a 500 server_error
	// returned after the resource was created and its Idempotency-Key (if
	// any) recorded: a retry with the same key is answered with the
	// original success, replayed.
	ServerErrorAfterCommit float64
	// ProxyError is the probability of a 502, 503 or 504 with an HTML body,
	// as sent by a proxy in front of the API, before anything is created.
	// The status is chosen deterministically from the same hash.
	ProxyError float64
	// ResetBeforeCommit is the probability that the connection is reset
	// (closed with SO_LINGER 0) before anything is created.
	ResetBeforeCommit float64
	// ResetAfterCommit is the probability that the connection is reset
	// after the resource was created and its Idempotency-Key recorded: the
	// client sees a connection error and cannot know the outcome.
	ResetAfterCommit float64

	// Schedule, when non-empty, decides the fault of the first
	// len(Schedule) arrivals of each route and identity: arrival n gets
	// Schedule[n]. Later arrivals fall back to the probabilities. For
	// example []Fault{FaultResetAfterCommit} makes every first attempt
	// commit and then reset, and every retry succeed.
	Schedule []Fault

	// Reads extends the probabilistic and scheduled faults to GET
	// requests. After-commit faults on a read behave like their
	// before-commit counterparts, since a read commits nothing.
	Reads bool

	// Latency is added to every request before it is handled. The sleep
	// ends early when the request's context is done or the server closes.
	Latency time.Duration
	// LatencyJitter adds a deterministic extra delay in [0, LatencyJitter).
	LatencyJitter time.Duration

	// Outages are windows, relative to the server's start on its clock,
	// during which every request is answered 503 with an HTML body before
	// authentication (the requests still count as arrived).
	Outages []Window
}

// Window is a span of time relative to the start of a [Server], as measured
// by the server's clock (see [WithClock]).
type Window struct {
	// Start is the offset of the window from the server's start.
	Start time.Duration
	// Duration is the length of the window.
	Duration time.Duration
}

func (w Window) contains(offset time.Duration) bool {
	return offset >= w.Start && offset < w.Start+w.Duration
}

// Fault is one kind of injected failure, used in [Faults.Schedule].
type Fault int

// The faults a [Server] can inject into a request.
const (
	// FaultNone lets the request through untouched.
	FaultNone Fault = iota
	// FaultProxyError answers 502, 503 or 504 with an HTML body.
	FaultProxyError
	// FaultServerErrorBeforeCommit answers 500 server_error, creating nothing.
	FaultServerErrorBeforeCommit
	// FaultResetBeforeCommit resets the connection, creating nothing.
	FaultResetBeforeCommit
	// FaultServerErrorAfterCommit creates the resource, then answers 500.
	FaultServerErrorAfterCommit
	// FaultResetAfterCommit creates the resource, then resets the connection.
	FaultResetAfterCommit
)

// String returns the name of the fault, such as "ResetAfterCommit".
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "None"
	case FaultProxyError:
		return "ProxyError"
	case FaultServerErrorBeforeCommit:
		return "ServerErrorBeforeCommit"
	case FaultResetBeforeCommit:
		return "ResetBeforeCommit"
	case FaultServerErrorAfterCommit:
		return "ServerErrorAfterCommit"
	case FaultResetAfterCommit:
		return "ResetAfterCommit"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// decision is everything the fault model decided about one request.
type decision struct {
	fault       Fault
	latency     time.Duration
	proxyStatus int
}

// decide computes the decision for the n-th (0-based) arrival of identity on
// route. It is a pure function of its arguments.
func (f *Faults) decide(seed int64, route, identity string, n int, faultable bool) decision {
	sum := hash64(seed, route, identity, uint64(n))

	d := decision{
		latency:     f.Latency,
		proxyStatus: proxyStatuses[splitmix64(sum^0x9e3779b97f4a7c15)%uint64(len(proxyStatuses))],
	}
	if f.LatencyJitter > 0 {
		d.latency += time.Duration(unit(splitmix64(sum^0xbf58476d1ce4e5b9)) * float64(f.LatencyJitter))
	}
	if !faultable {
		return d
	}
	if n < len(f.Schedule) {
		d.fault = f.Schedule[n]
		return d
	}
	u := unit(sum)
	edge := 0.0
	for _, c := range []struct {
		p     float64
		fault Fault
	}{
		{f.ProxyError, FaultProxyError},
		{f.ServerErrorBeforeCommit, FaultServerErrorBeforeCommit},
		{f.ResetBeforeCommit, FaultResetBeforeCommit},
		{f.ServerErrorAfterCommit, FaultServerErrorAfterCommit},
		{f.ResetAfterCommit, FaultResetAfterCommit},
	} {
		edge += min(max(c.p, 0), 1)
		if u < edge {
			d.fault = c.fault
			return d
		}
	}
	return d
}

var proxyStatuses = [...]int{502, 503, 504}

// hash64 is the source of every seeded decision of the package (faults,
// checkout outcomes, webhook delivery): FNV-1a over the seed, a, b and n,
// finished with a splitmix64 step. Decisions that hash what they are about,
// rather than draw from a shared generator, do not depend on the order in
// which concurrent requests arrive.
func hash64(seed int64, a, b string, n uint64) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(seed))
	h.Write(buf[:])
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(buf[:], n)
	h.Write(buf[:])
	return splitmix64(h.Sum64())
}

// splitmix64 is the finaliser of the SplitMix64 generator: a bijection that
// spreads every input bit over the output.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit maps x to a float64 in [0,1) using its top 53 bits.
func unit(x uint64) float64 {
	return float64(x>>11) / (1 << 53)
}
