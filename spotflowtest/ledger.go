package spotflowtest

import "maps"

// Payment is a payment the [Server] created. Values returned by the server's
// inspection methods are copies; changing them does not change the server.
type Payment struct {
	// ID is the server-assigned identifier, "pay_" followed by hex digits.
	ID string `json:"id"`
	// Reference is the merchant's reference, or the one the server
	// assigned ("spf_" followed by hex digits) when the request had none.
	Reference string `json:"reference"`
	// ReferenceAssigned reports whether the server assigned Reference.
	ReferenceAssigned bool `json:"referenceAssigned"`
	// Amount is in minor units.
	Amount int64 `json:"amount"`
	// Currency is the ISO 4217 code as sent, such as "NGN".
	Currency string `json:"currency"`
	// CustomerEmail is customer.email from the request.
	CustomerEmail string `json:"customerEmail"`
	// Metadata is the request's metadata; non-string values are kept as
	// their JSON text.
	Metadata map[string]string `json:"metadata,omitempty"`
	// IdempotencyKey is the Idempotency-Key of the request that created
	// the payment, or "" if it had none.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// Status is "successful" for a payment made with POST /payments. A
	// redirect checkout (POST /payments/initialize) is "pending" until its
	// customer finishes (see [Checkout]), then "successful" or "failed".
	Status string `json:"status"`
	// PaymentCode is the code of a redirect checkout, "" for a payment
	// made with POST /payments.
	PaymentCode string `json:"paymentCode,omitempty"`
	// CheckoutURL is the page a redirect checkout's customer is sent to,
	// "" for a payment made with POST /payments. The simulator does not
	// serve it.
	CheckoutURL string `json:"checkoutUrl,omitempty"`
}

// Transfer is a transfer (payout) the [Server] created. Values returned by
// the server's inspection methods are copies.
type Transfer struct {
	// ID is the server-assigned identifier, "trf_" followed by hex digits.
	ID string `json:"id"`
	// Reference is the merchant's reference, or the one the server
	// assigned when the request had none.
	Reference string `json:"reference"`
	// ReferenceAssigned reports whether the server assigned Reference.
	ReferenceAssigned bool `json:"referenceAssigned"`
	// Amount is in minor units; it was debited from the balance.
	Amount int64 `json:"amount"`
	// Currency is the ISO 4217 code as sent.
	Currency string `json:"currency"`
	// Destination is the request's destination object; non-string values
	// are kept as their JSON text.
	Destination map[string]string `json:"destination,omitempty"`
	// Metadata is the request's metadata, like Payment.Metadata.
	Metadata map[string]string `json:"metadata,omitempty"`
	// IdempotencyKey is the Idempotency-Key of the request that created
	// the transfer, or "".
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// Status is always "successful".
	Status string `json:"status"`
}

// Stats counts what a [Server] has seen and answered since it started.
type Stats struct {
	// Requests counts every request that arrived, whatever became of it.
	Requests int `json:"requests"`
	// Created counts payments (checkouts included) and transfers created.
	Created int `json:"created"`
	// CheckoutsCompleted counts redirect checkouts that have become
	// "successful" or "failed".
	CheckoutsCompleted int `json:"checkoutsCompleted"`
	// Replayed counts successes replayed for a repeated Idempotency-Key.
	Replayed int `json:"replayed"`
	// RateLimited counts 429 rate_limit_exceeded responses.
	RateLimited int `json:"rateLimited"`
	// ServerErrors counts injected 500 server_error responses, before and
	// after commit.
	ServerErrors int `json:"serverErrors"`
	// ProxyErrors counts injected 502, 503 and 504 responses, not
	// counting outages.
	ProxyErrors int `json:"proxyErrors"`
	// OutageErrors counts 503 responses sent during an outage.
	OutageErrors int `json:"outageErrors"`
	// Resets counts connections reset, before and after commit.
	Resets int `json:"resets"`
	// Unauthorized counts 401 invalid_credentials responses.
	Unauthorized int `json:"unauthorized"`
	// Forbidden counts 403 forbidden responses (see [WithRestrictedKey]).
	Forbidden int `json:"forbidden"`
	// DuplicateReferences counts 400 duplicate_reference responses.
	DuplicateReferences int `json:"duplicateReferences"`
	// IdempotencyConflicts counts 422 idempotency_key_reused responses.
	IdempotencyConflicts int `json:"idempotencyConflicts"`
	// BadRequests counts 400 missing_parameter and insufficient_balance
	// responses.
	BadRequests int `json:"badRequests"`
	// NotFound counts 404 responses.
	NotFound int `json:"notFound"`
}

// Ledger is a snapshot of everything a [Server] did, as [Server.Ledger]
// returns it and GET /_mock/ledger (see [ControlPrefix]) serves it in JSON:
// what was charged, how many times each idempotency key was tried, which
// webhook deliveries went out. A Ledger is a copy; changing it does not
// change the server.
type Ledger struct {
	// Payments are the payments created so far, oldest first, checkouts
	// included, with the checkouts due on the server's clock completed.
	Payments []Payment `json:"payments"`
	// Transfers are the transfers created so far, oldest first.
	Transfers []Transfer `json:"transfers"`
	// Deliveries are the tries at delivering a webhook, in the order they
	// ended; empty when the server sends none.
	Deliveries []Delivery `json:"deliveries"`
	// Arrivals counts, by Idempotency-Key, the requests that arrived
	// carrying it, whatever became of them (see [Server.Arrivals]).
	Arrivals map[string]int `json:"arrivals"`
	// Balance is the merchant balance in minor units.
	Balance int64 `json:"balance"`
	// Stats are the server's counters.
	Stats Stats `json:"stats"`
}

// Ledger returns a snapshot of the payments, transfers, webhook deliveries,
// arrivals by key, balance and counters, with the checkouts due on the
// server's clock completed. Its slices and maps are never nil, so its JSON
// has [] and {} rather than null. It is safe for concurrent use; the
// deliveries are read after the rest, so a delivery may be newer than the
// ledger it sits in.
func (s *Server) Ledger() Ledger {
	now := s.cfg.clock()
	s.mu.Lock()
	s.settleCheckoutsLocked(now)
	l := Ledger{
		Payments:  make([]Payment, len(s.payments)),
		Transfers: make([]Transfer, len(s.transfers)),
		Arrivals:  maps.Clone(s.keyArrivals),
		Balance:   s.balance,
		Stats:     s.stats,
	}
	for i, p := range s.payments {
		l.Payments[i] = p.clone()
	}
	for i, t := range s.transfers {
		l.Transfers[i] = t.clone()
	}
	s.mu.Unlock()
	l.Deliveries = s.Deliveries()
	if l.Deliveries == nil {
		l.Deliveries = []Delivery{}
	}
	return l
}

// Payments returns a copy of the payments created so far, oldest first, with
// the checkouts due on the server's clock completed. It is safe for
// concurrent use.
func (s *Server) Payments() []Payment {
	now := s.cfg.clock()
	s.mu.Lock()
	s.settleCheckoutsLocked(now)
	defer s.mu.Unlock()
	out := make([]Payment, len(s.payments))
	for i, p := range s.payments {
		out[i] = p.clone()
	}
	return out
}

// Payment returns a copy of the payment with reference, as GET
// /payments/verify would show it, and whether there is one. It is safe for
// concurrent use.
func (s *Server) Payment(reference string) (Payment, bool) {
	now := s.cfg.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleCheckoutsLocked(now)
	i, ok := s.paymentRefs[reference]
	if !ok {
		return Payment{}, false
	}
	return s.payments[i].clone(), true
}

// Transfers returns a copy of the transfers created so far, oldest first. It
// is safe for concurrent use.
func (s *Server) Transfers() []Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Transfer, len(s.transfers))
	for i, t := range s.transfers {
		out[i] = t.clone()
	}
	return out
}

// Charges returns how many resources, payments and transfers together, were
// created with reference. The server refuses a second resource of the same
// kind with a reference already used, so a result above 1 means a payment and
// a transfer share it. A redirect checkout counts whatever its status; see
// [Server.Payment] for whether its customer paid. It is safe for concurrent
// use.
func (s *Server) Charges(reference string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if _, ok := s.paymentRefs[reference]; ok {
		n++
	}
	if _, ok := s.transferRefs[reference]; ok {
		n++
	}
	return n
}

// CountMetadata returns how many payments have metadata[key] == value. When
// a client sends no reference the server cannot detect a duplicate, so this
// is how a test counts the payments charged for one order. It is safe for
// concurrent use.
func (s *Server) CountMetadata(key, value string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.payments {
		if v, ok := p.Metadata[key]; ok && v == value {
			n++
		}
	}
	return n
}

// Arrivals returns how many requests arrived carrying the Idempotency-Key
// (or X-Idempotency-Key) key, whatever became of them. It is safe for
// concurrent use.
func (s *Server) Arrivals(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keyArrivals[key]
}

// Balance returns the merchant balance in minor units, after the transfers
// so far. It is safe for concurrent use.
func (s *Server) Balance() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.balance
}

// Stats returns a snapshot of the server's counters, with the checkouts due
// on the server's clock completed. It is safe for concurrent use.
func (s *Server) Stats() Stats {
	now := s.cfg.clock()
	s.mu.Lock()
	s.settleCheckoutsLocked(now)
	defer s.mu.Unlock()
	return s.stats
}

func (p Payment) clone() Payment {
	p.Metadata = maps.Clone(p.Metadata)
	return p
}

func (t Transfer) clone() Transfer {
	t.Metadata = maps.Clone(t.Metadata)
	t.Destination = maps.Clone(t.Destination)
	return t
}

// idempotencyRecord is what a committed request leaves under its key: enough
// to recognise a retry and to replay the original success byte for byte.
type idempotencyRecord struct {
	route    string
	bodyHash [32]byte
	status   int
	body     []byte
}

// keyLock serialises the requests that share an Idempotency-Key, so that
// concurrent retries never both commit. refs counts holders and waiters; the
// lock is dropped from the map when it reaches zero.
type keyLock struct {
	ch   chan struct{} // a one-slot semaphore
	refs int
}

// lockKey blocks until the caller holds the lock for key and returns the
// function that releases it.
func (s *Server) lockKey(key string) (unlock func()) {
	s.mu.Lock()
	l, ok := s.keyLocks[key]
	if !ok {
		l = &keyLock{ch: make(chan struct{}, 1)}
		s.keyLocks[key] = l
	}
	l.refs++
	s.mu.Unlock()

	l.ch <- struct{}{}
	return func() {
		<-l.ch
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.keyLocks, key)
		}
		s.mu.Unlock()
	}
}
