package spotflowhttp

import (
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// What the stack learns from a response belongs to where the response came
// from. A 429, an X-RateLimit hold, the adaptive estimate, a key's preset
// bucket and a halt after a 401 apply to one host and one credential: a
// client shared with another API, or one transport serving many merchants'
// keys, must not let one of them hold back the others. The retry budget,
// which measures the health of a server, applies to one host.

// scope is the state learned about one host and one credential. A scope is
// shared by every call with that host and credential; its fields are atomic
// or guarded by their own locks.
type scope struct {
	host *hostScope
	reg  *scopes  // the registry the scope belongs to
	key  scopeKey // what the scope is of, to tell a hash collision

	coolUntil atomic.Int64          // end of a 429 cool-down, Unix ns; 0 for none
	holdUntil atomic.Int64          // end of an X-RateLimit-Remaining 0 hold, Unix ns; 0 for none
	halted    atomic.Pointer[Error] // the 401 that halted this credential (WithHaltOnEscalate)
	keyBucket *rate.Limiter         // the credential's preset bucket (WithRateLimitByKey), nil if none
	adaptive  *adaptiveLimiter      // WithAdaptiveRateLimit, nil if off

	used atomic.Uint64 // the registry's tick at the last use, for eviction

	// release spreads the requests a pause held back; nil when none wait.
	release atomic.Pointer[releaser]
}

// hostScope is the state learned about one host.
type hostScope struct {
	budget *retryBudget // nil when the budget is disabled
	used   atomic.Uint64
}

// active reports whether s holds something that must not be forgotten: a
// cool-down, a hold or a halt. now is in Unix ns.
func (s *scope) active(now int64) bool {
	return s.coolUntil.Load() > now || s.holdUntil.Load() > now || s.halted.Load() != nil
}

// scopeKey identifies a scope: the host as sent, in lower case, and a
// fingerprint of the Authorization header.
type scopeKey struct {
	host string
	cred uint64
}

// maxScopes bounds the scopes one stack keeps, and so its memory, however
// many hosts and keys pass through it. Beyond it the least recently used are
// forgotten, those with nothing active first.
const maxScopes = 4096

// scopes is the registry of a stack's scopes. Lookups of existing scopes
// take no lock; only adding a scope past the bound (evicting) does.
type scopes struct {
	cfg   *config
	seed  maphash.Seed // per process and registry: fingerprints say nothing outside it
	creds sync.Map     // id -> *scope
	clash sync.Map     // scopeKey -> *scope, for the scopes whose id another holds
	hosts sync.Map     // string -> *hostScope
	n     atomic.Int64 // entries in creds
	nh    atomic.Int64 // entries in hosts
	tick  atomic.Uint64
	evict sync.Mutex

	// busy counts the pauses, releases and halts set in the registry's
	// scopes: while it is 0 nothing can hold a call back, so NewTransport's
	// fused path and a quiet rate-limit layer send without looking the
	// scope up. spent counts the host budgets with a retry spent: while it
	// is 0, a success at the first attempt has nothing to earn back. Each
	// is raised before the change it counts and lowered after the change
	// back, so it is never below the true count: at worst a call takes the
	// full path for nothing. (shrink ends what a scope it forgets holds,
	// so an expired pause in a scope no call looks up again does not keep
	// the count up for good.)
	busy  atomic.Int64
	spent atomic.Int64
}

// extendPause makes sure the pause *p of s (its cool-down or hold) lasts at
// least until t; it never shortens a pause already set. It reports whether
// it moved *p.
func (s *scope) extendPause(p *atomic.Int64, t time.Time) bool {
	u := t.UnixNano()
	for {
		cur := p.Load()
		if cur >= u {
			return false
		}
		if cur == 0 {
			s.reg.busy.Add(1)
		}
		if p.CompareAndSwap(cur, u) {
			return true
		}
		if cur == 0 {
			s.reg.busy.Add(-1)
		}
	}
}

// endPause ends the pause *p of s if it is still u.
func (s *scope) endPause(p *atomic.Int64, u int64) {
	if p.CompareAndSwap(u, 0) {
		s.reg.busy.Add(-1)
	}
}

// setRelease makes r the release of s.
func (s *scope) setRelease(r *releaser) {
	s.reg.busy.Add(1)
	if s.release.Swap(r) != nil {
		s.reg.busy.Add(-1)
	}
}

// endRelease ends the release r of s if it is still the one.
func (s *scope) endRelease(r *releaser) {
	if s.release.CompareAndSwap(r, nil) {
		s.reg.busy.Add(-1)
	}
}

// halt halts the credential of s with the 401 e.
func (s *scope) halt(e *Error) {
	s.reg.busy.Add(1)
	if s.halted.Swap(e) != nil {
		s.reg.busy.Add(-1)
	}
}

// forget ends what s holds, once shrink has dropped it from the registry:
// its pauses, release and halt no longer count in busy. Nothing would
// otherwise end a pause that expired in a scope no call looks up again, and
// every such scope would keep the fused path shut for good. A call still
// holding s may set a pause again; it counts, and is ended, as any other.
func (s *scope) forget() {
	for _, p := range []*atomic.Int64{&s.coolUntil, &s.holdUntil} {
		if u := p.Load(); u != 0 {
			s.endPause(p, u)
		}
	}
	if r := s.release.Load(); r != nil {
		s.endRelease(r)
	}
	s.resume()
}

// resume lifts the halt of s and reports whether there was one.
func (s *scope) resume() bool {
	if s.halted.Swap(nil) != nil {
		s.reg.busy.Add(-1)
		return true
	}
	return false
}

func newScopes(cfg *config) *scopes {
	return &scopes{cfg: cfg, seed: maphash.MakeSeed()}
}

// fingerprint identifies a credential without keeping it: a hash keyed by a
// random seed made when the registry was. 0 means no credential.
func (r *scopes) fingerprint(h http.Header) uint64 {
	v := h["Authorization"]
	if len(v) == 0 || v[0] == "" {
		return 0
	}
	return maphash.String(r.seed, v[0]) | 1
}

// hostOf is req's host as the scopes know it: URL.Host in lower case.
func hostOf(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	return lowerASCII(req.URL.Host)
}

// lowerASCII returns s in lower case, without allocating if it already is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// get returns the scope of req, making it if need be.
func (r *scopes) get(req *http.Request) *scope {
	return r.getKey(r.key(req), req)
}

func (r *scopes) key(req *http.Request) scopeKey {
	return scopeKey{host: hostOf(req), cred: r.fingerprint(req.Header)}
}

func (r *scopes) getKey(k scopeKey, req *http.Request) *scope {
	// The registry is keyed by one word, a hash of host and credential, so
	// a lookup hashes no string twice; the scope found is checked against
	// the key, and the rare collision is kept apart.
	id := r.id(k)
	if v, ok := r.creds.Load(id); ok {
		s := v.(*scope)
		if s.key != k {
			return r.collided(k, req)
		}
		if t := r.tick.Load(); s.used.Load() != t {
			s.used.Store(t)
		}
		return s
	}
	return r.add(id, k, req)
}

// id is the registry's key for k: a hash of the host mixed with the
// credential's fingerprint.
func (r *scopes) id(k scopeKey) uint64 {
	return maphash.String(r.seed, k.host) ^ k.cred*0x9e3779b97f4a7c15
}

// collided returns the scope of k when another scope holds its id, from a
// map of such scopes keyed by k itself. Two scopes in 2^64 ids collide about
// never; the map keeps even that case right.
func (r *scopes) collided(k scopeKey, req *http.Request) *scope {
	if v, ok := r.clash.Load(k); ok {
		return v.(*scope)
	}
	s := r.newScope(k, req)
	v, _ := r.clash.LoadOrStore(k, s)
	return v.(*scope)
}

func (r *scopes) newScope(k scopeKey, req *http.Request) *scope {
	s := &scope{host: r.hostScope(k.host), reg: r, key: k}
	if r.cfg.limits.byKey {
		if rt, burst, ok := keyPreset(req.Header); ok {
			s.keyBucket = rate.NewLimiter(rt, burst)
		}
	}
	if r.cfg.limits.adaptive {
		s.adaptive = newAdaptiveLimiter(r.cfg.limits.ceiling)
	}
	return s
}

func (r *scopes) add(id uint64, k scopeKey, req *http.Request) *scope {
	s := r.newScope(k, req)
	s.used.Store(r.tick.Add(1))
	v, loaded := r.creds.LoadOrStore(id, s)
	if loaded {
		if old := v.(*scope); old.key == k {
			return old
		}
		return r.collided(k, req)
	}
	if r.n.Add(1) > maxScopes {
		r.shrink()
	}
	return s
}

func (r *scopes) hostScope(host string) *hostScope {
	if v, ok := r.hosts.Load(host); ok {
		return v.(*hostScope)
	}
	h := &hostScope{budget: newRetryBudget(r.cfg.retryBudget, &r.spent)}
	h.used.Store(r.tick.Load())
	v, loaded := r.hosts.LoadOrStore(host, h)
	if loaded {
		return v.(*hostScope)
	}
	if r.nh.Add(1) > maxScopes {
		r.shrink()
	}
	return h
}

// shrink forgets the least recently used scopes until an eighth of the
// bound is free: first those with nothing active, then, if a flood of
// credentials made them all active, the oldest whatever they hold (losing a
// cool-down costs at worst another 429; unbounded memory costs the process).
// A host scope is forgotten only when no scope refers to it any more and its
// budget is full.
func (r *scopes) shrink() {
	if !r.evict.TryLock() {
		return // another goroutine is at it
	}
	defer r.evict.Unlock()
	now := r.cfg.clock.Now().UnixNano()
	type entry struct {
		k    any
		s    *scope
		used uint64
	}
	var all []entry
	r.creds.Range(func(k, v any) bool {
		s := v.(*scope)
		all = append(all, entry{k, s, s.used.Load()})
		return true
	})
	slices.SortFunc(all, func(a, b entry) int {
		switch {
		case a.used < b.used:
			return -1
		case a.used > b.used:
			return 1
		}
		return 0
	})
	target := int64(maxScopes - maxScopes/8)
	for pass := 0; pass < 2 && r.n.Load() > target; pass++ {
		for i := range all {
			if r.n.Load() <= target {
				break
			}
			e := &all[i]
			if e.s == nil || pass == 0 && e.s.active(now) {
				continue
			}
			if r.creds.CompareAndDelete(e.k, e.s) {
				r.n.Add(-1)
				e.s.forget()
			}
			e.s = nil
		}
	}
	r.clash.Range(func(k, v any) bool {
		if !v.(*scope).active(now) && r.clash.CompareAndDelete(k, v) {
			v.(*scope).forget()
		}
		return true
	})
	if r.nh.Load() <= target {
		return
	}
	inUse := make(map[*hostScope]bool)
	r.creds.Range(func(_, v any) bool {
		inUse[v.(*scope).host] = true
		return true
	})
	r.hosts.Range(func(k, v any) bool {
		h := v.(*hostScope)
		if !inUse[h] && h.budget.full() && r.hosts.CompareAndDelete(k, h) {
			r.nh.Add(-1)
		}
		return r.nh.Load() > target
	})
}

// resume lifts every halt and tells how many there were.
func (r *scopes) resume() (lifted int) {
	lift := func(_, v any) bool {
		if v.(*scope).resume() {
			lifted++
		}
		return true
	}
	r.creds.Range(lift)
	r.clash.Range(lift)
	return lifted
}

// scopeIn returns the scope of req, a request of the call, in registry r.
// The call remembers the last one, so that its layers and attempts pay one
// lookup between them.
func (c *call) scopeIn(r *scopes, req *http.Request) *scope {
	k := r.key(req)
	if s := c.scope; s != nil && s.reg == r && s.key == k {
		return s
	}
	s := r.getKey(k, req)
	c.scope = s
	return s
}

// scopeOf returns the scope of req in registry r, through its call if it
// has one.
func (r *scopes) scopeOf(req *http.Request) *scope {
	if c := callOf(req); c != nil {
		return c.scopeIn(r, req)
	}
	return r.get(req)
}

// WithHosts limits the policy to requests for the given hosts, for a client
// shared with other APIs. A request whose URL.Host matches one of hosts
// gets the whole policy; any other request goes straight to the base
// transport, untouched: no key, no retry, no rate limit, no annotation.
// Without WithHosts every request gets the policy, so a client aimed only at
// Spotflow, its sandbox or spotflowtest needs no option. Every layer reads
// it.
//
// Each host is a host name or IP address, with an optional port
// ("api.spotflow.co", "localhost:8080", "[::1]:8443", "::1"), matched
// without regard to case. A host listed without a port matches it on any
// port; one listed with a port matches that port, a URL without a port
// standing for its scheme's default (443 for https, 80 for http). WithHosts
// panics if it is given no host, or something that is not a host[:port]
// (a URL, say), since either would silently give the policy to the wrong
// requests.
func WithHosts(hosts ...string) Option {
	list := make([]hostPort, 0, len(hosts))
	for _, h := range hosts {
		hp, ok := parseHostPort(strings.TrimSpace(h))
		if !ok {
			panic(fmt.Sprintf("spotflowhttp: WithHosts: %q is not a host[:port]", h))
		}
		list = append(list, hp)
	}
	if len(list) == 0 {
		panic("spotflowhttp: WithHosts: no host given (without WithHosts, every host gets the policy)")
	}
	return optionFunc(func(cfg *config) { cfg.hosts = append(cfg.hosts[:len(cfg.hosts):len(cfg.hosts)], list...) })
}

// hostPort is a host of WithHosts: a name (IPv6 addresses in brackets) and
// a port, "" for any.
type hostPort struct{ name, port string }

// parseHostPort reads "name", "name:port", "[v6]", "[v6]:port" or a bare
// IPv6 address.
func parseHostPort(s string) (hostPort, bool) {
	if s == "" || strings.ContainsAny(s, "/?#@ ") {
		return hostPort{}, false
	}
	if ip := net.ParseIP(s); ip != nil && strings.Contains(s, ":") {
		return hostPort{name: "[" + strings.ToLower(s) + "]"}, true // a bare IPv6 address
	}
	name, port := splitHostPort(s)
	if name == "" || port != "" && strings.Trim(port, "0123456789") != "" {
		return hostPort{}, false
	}
	return hostPort{name: strings.ToLower(name), port: port}, true
}

// splitHostPort splits a URL's host into name and port ("" if none),
// keeping an IPv6 address's brackets.
func splitHostPort(host string) (name, port string) {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.HasSuffix(host, "]") {
		return host, ""
	}
	return host[:i], host[i+1:]
}

// covers reports whether req gets the policy (see WithHosts).
func (cfg *config) covers(req *http.Request) bool {
	if req.URL == nil {
		return false
	}
	if cfg.hosts == nil {
		return true
	}
	name, port := splitHostPort(req.URL.Host)
	if port == "" {
		switch strings.ToLower(req.URL.Scheme) {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	for _, h := range cfg.hosts {
		if strings.EqualFold(h.name, name) && (h.port == "" || h.port == port) {
			return true
		}
	}
	return false
}

// keyPreset gives the documented limit of the key in an Authorization
// header: test-key limits for sk_test_ keys, live-key limits for sk_live_
// keys. The key itself is not kept.
func keyPreset(h http.Header) (rate.Limit, int, bool) {
	v := h["Authorization"]
	if len(v) == 0 {
		return 0, 0, false
	}
	auth := strings.TrimSpace(v[0])
	if len(auth) > 7 && strings.EqualFold(auth[:7], "Bearer ") {
		auth = strings.TrimSpace(auth[7:])
	}
	switch {
	case strings.HasPrefix(auth, "sk_test_"):
		return TestKeyRate, TestKeyBurst, true
	case strings.HasPrefix(auth, "sk_live_"):
		return LiveKeyRate, LiveKeyBurst, true
	}
	return 0, 0, false
}
