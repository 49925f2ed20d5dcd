package spotflowtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
)

// outcome is the answer the API would give, before after-commit faults.
type outcome struct {
	status    int
	body      []byte
	committed bool // a new resource was created by this request
	replayed  bool // the body is a stored success, replayed for its key
}

// create handles POST /payments, POST /payments/initialize and
// POST /transfers. Requests sharing an
// Idempotency-Key run one at a time; the ledger itself is guarded by s.mu, so
// two keys racing for one reference still create one resource.
func (s *Server) create(rt route, key string, body []byte) outcome {
	hash := sha256.Sum256(body)
	if key != "" {
		unlock := s.lockKey(key)
		defer unlock()
		if out, ok := s.replay(rt, key, hash); ok {
			return out
		}
	}

	if rt.kind == routeCreatePayment || rt.kind == routeInitializePayment {
		p, err := parsePayment(body)
		if err != nil || (rt.kind == routeInitializePayment && p.Reference == "") {
			return s.badRequest(codeMissingParameter)
		}
		p.IdempotencyKey = key
		return s.commitPayment(p, key, rt, hash)
	}
	t, err := parseTransfer(body)
	if err != nil {
		return s.badRequest(codeMissingParameter)
	}
	t.IdempotencyKey = key
	return s.commitTransfer(t, key, rt, hash)
}

// replay answers a request whose key has already committed: the stored
// success if the request is the same, 422 if it is not.
func (s *Server) replay(rt route, key string, hash [32]byte) (outcome, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.idempotency[key]
	if rec == nil {
		return outcome{}, false
	}
	if rec.route != rt.name || rec.bodyHash != hash {
		s.stats.IdempotencyConflicts++
		return outcome{
			status: http.StatusUnprocessableEntity,
			body:   coded(codeIdempotencyKeyReused, "Idempotency-Key was already used with a different request"),
		}, true
	}
	s.stats.Replayed++
	return outcome{status: rec.status, body: rec.body, replayed: true}, true
}

// commitPayment creates a payment: a successful one for POST /payments (201),
// a pending checkout for POST /payments/initialize (200).
func (s *Server) commitPayment(p Payment, key string, rt route, hash [32]byte) outcome {
	now := s.cfg.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Reference == "" {
		p.Reference = s.assignReferenceLocked(s.paymentRefs)
		p.ReferenceAssigned = true
	} else if _, dup := s.paymentRefs[p.Reference]; dup {
		s.stats.DuplicateReferences++
		return outcome{status: http.StatusBadRequest, body: badRequest(codeDuplicateReference)}
	}
	p.ID = "pay_" + s.randomHexLocked(8)
	p.Status = statusSuccessful
	status := http.StatusCreated
	if rt.kind == routeInitializePayment {
		p.Status = statusPending
		p.PaymentCode = s.randomHexLocked(6)
		p.CheckoutURL = checkoutURLPrefix + p.PaymentCode
		status = http.StatusOK
	}
	i := len(s.payments)
	s.paymentRefs[p.Reference] = i
	s.payments = append(s.payments, p)
	if p.Status == statusPending {
		s.scheduleCheckoutLocked(i, now)
	} else {
		s.webhookEventLocked(EventPaymentSuccessful, false, i)
	}
	return s.committedLocked(key, rt, hash, status, paymentJSON(&p))
}

func (s *Server) commitTransfer(t Transfer, key string, rt route, hash [32]byte) outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.Reference != "" {
		// Checked before the balance: a retried transfer that already went
		// through must read as a duplicate, not as a lack of funds.
		if _, dup := s.transferRefs[t.Reference]; dup {
			s.stats.DuplicateReferences++
			return outcome{status: http.StatusBadRequest, body: badRequest(codeDuplicateReference)}
		}
	}
	if t.Amount > s.balance {
		s.stats.BadRequests++
		return outcome{status: http.StatusBadRequest, body: badRequest(codeInsufficientBalance)}
	}
	if t.Reference == "" {
		t.Reference = s.assignReferenceLocked(s.transferRefs)
		t.ReferenceAssigned = true
	}
	s.balance -= t.Amount
	t.ID = "trf_" + s.randomHexLocked(8)
	t.Status = statusSuccessful
	s.transferRefs[t.Reference] = len(s.transfers)
	s.transfers = append(s.transfers, t)
	s.webhookEventLocked(EventTransferSuccessful, true, len(s.transfers)-1)
	return s.committedLocked(key, rt, hash, http.StatusCreated, transferJSON(&t))
}

// committedLocked records the success under the key, so that whatever
// happens to this response (an injected 500, a reset) a retry with the same
// key gets the success. s.mu must be held.
func (s *Server) committedLocked(key string, rt route, hash [32]byte, status int, body []byte) outcome {
	s.stats.Created++
	if key != "" {
		s.idempotency[key] = &idempotencyRecord{route: rt.name, bodyHash: hash, status: status, body: body}
	}
	return outcome{status: status, body: body, committed: true}
}

// assignReferenceLocked returns a fresh "spf_" reference unused in refs.
// s.mu must be held.
func (s *Server) assignReferenceLocked(refs map[string]int) string {
	for {
		ref := "spf_" + s.randomHexLocked(8)
		if _, used := refs[ref]; !used {
			return ref
		}
	}
}

// read handles GET /payments/verify and GET /transfers/reference/{reference}.
func (s *Server) read(rt route) outcome {
	if rt.reference == "" {
		return s.badRequest(codeMissingParameter)
	}
	now := s.cfg.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.kind == routeVerifyPayment {
		s.settleCheckoutsLocked(now)
		if i, ok := s.paymentRefs[rt.reference]; ok {
			return outcome{status: http.StatusOK, body: paymentJSON(&s.payments[i])}
		}
		s.stats.NotFound++
		return outcome{status: http.StatusNotFound, body: coded(codeNotFound, "Payment not found")}
	}
	if i, ok := s.transferRefs[rt.reference]; ok {
		return outcome{status: http.StatusOK, body: transferJSON(&s.transfers[i])}
	}
	s.stats.NotFound++
	return outcome{status: http.StatusNotFound, body: coded(codeNotFound, "Transfer not found")}
}

func (s *Server) badRequest(code string) outcome {
	s.count(func(st *Stats) { st.BadRequests++ })
	return outcome{status: http.StatusBadRequest, body: badRequest(code)}
}

var errInvalid = errors.New("spotflowtest: invalid request")

type paymentRequest struct {
	Reference string          `json:"reference"`
	Amount    json.RawMessage `json:"amount"`
	Currency  string          `json:"currency"`
	Customer  *struct {
		Email string `json:"email"`
	} `json:"customer"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

// parsePayment validates a payment request: amount (a positive integer),
// currency and customer.email are required (and reference, for
// initialize); anything malformed is treated like a missing parameter, as
// the API does.
func parsePayment(body []byte) (Payment, error) {
	var req paymentRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return Payment{}, errInvalid
	}
	amount, err := parseAmount(req.Amount)
	if err != nil || req.Currency == "" || req.Customer == nil || req.Customer.Email == "" {
		return Payment{}, errInvalid
	}
	return Payment{
		Reference:     req.Reference,
		Amount:        amount,
		Currency:      req.Currency,
		CustomerEmail: req.Customer.Email,
		Metadata:      flatten(req.Metadata),
	}, nil
}

type transferRequest struct {
	Reference   string                     `json:"reference"`
	Amount      json.RawMessage            `json:"amount"`
	Currency    string                     `json:"currency"`
	Destination map[string]json.RawMessage `json:"destination"`
	Metadata    map[string]json.RawMessage `json:"metadata"`
}

// parseTransfer validates a transfer request: amount and currency are
// required.
func parseTransfer(body []byte) (Transfer, error) {
	var req transferRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return Transfer{}, errInvalid
	}
	amount, err := parseAmount(req.Amount)
	if err != nil || req.Currency == "" {
		return Transfer{}, errInvalid
	}
	return Transfer{
		Reference:   req.Reference,
		Amount:      amount,
		Currency:    req.Currency,
		Destination: flatten(req.Destination),
		Metadata:    flatten(req.Metadata),
	}, nil
}

// parseAmount accepts a JSON number that is a positive whole number of minor
// units, such as 5000 or 5000.0.
func parseAmount(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || raw[0] == '"' || bytes.Equal(raw, []byte("null")) {
		return 0, errInvalid
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		if n <= 0 {
			return 0, errInvalid
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f <= 0 || f != math.Trunc(f) || f >= math.MaxInt64 {
		return 0, errInvalid
	}
	return int64(f), nil
}

// flatten turns a JSON object into strings: string values unquoted, others
// kept as their JSON text. A nil object stays nil.
func flatten(m map[string]json.RawMessage) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, raw := range m {
		var str string
		if err := json.Unmarshal(raw, &str); err == nil {
			out[k] = str
			continue
		}
		out[k] = string(raw)
	}
	return out
}
