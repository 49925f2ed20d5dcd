package spotflowtest

import (
	"container/heap"
	"errors"
	"time"
)

// Checkout describes the customers of Spotflow's redirect checkout,
// POST /api/v1/payments/initialize. An initialized payment is "pending"; the
// customer finishes it Delay (plus up to DelayJitter) later on the server's
// clock, and it becomes "successful" or, for a share FailureRate of the
// customers, "failed". Only GET /payments/verify, the webhook (see
// [WithWebhooks]) and the inspection methods tell which; the initialize
// response never does.
//
// Both the outcome and the delay of a checkout are a function of the seed
// (see [WithSeed]) and the payment's reference, so they do not depend on the
// order in which requests arrive. A checkout completes once the server's
// clock has reached its due time, as soon as someone looks: a verify
// request, an inspection method, or, when the server sends webhooks, a
// goroutine that runs while checkouts are pending. With a fake clock (see
// [WithClock]) that goroutine reads the clock every 10 ms of real time, so
// a checkout's webhook leaves within about 10 ms of the test moving the
// clock past its due time.
//
// The zero value is a customer who pays successfully at once.
type Checkout struct {
	// FailureRate is the share of checkouts, in [0,1], that fail (a
	// declined card, say). The default is 0: every checkout succeeds.
	FailureRate float64
	// Delay is how long, on the server's clock, the customer takes to
	// finish after the payment was initialized. The default is 0.
	Delay time.Duration
	// DelayJitter adds a further delay in [0, DelayJitter), chosen per
	// reference. The default is 0.
	DelayJitter time.Duration
}

// WithCheckout sets how the customers of the redirect checkout behave. The
// default is the zero [Checkout]: every checkout succeeds at once.
func WithCheckout(c Checkout) Option {
	return optionFunc(func(cfg *config) { cfg.checkout = c })
}

// ErrNotPending is returned by [Server.CompleteCheckout] for a payment that
// is not a pending checkout.
var ErrNotPending = errors.New("spotflowtest: no pending checkout with that reference")

// CompleteCheckout finishes the pending checkout of reference now, as its
// customer would, successfully or not, whatever [Checkout] would have
// decided. It returns [ErrNotPending] when there is no such checkout: an
// unknown reference, a payment made with POST /payments, or a checkout that
// has already completed. It is safe for concurrent use.
func (s *Server) CompleteCheckout(reference string, successful bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.paymentRefs[reference]
	if !ok {
		return ErrNotPending
	}
	c := s.checkoutOf[i]
	if c == nil {
		return ErrNotPending
	}
	c.successful = successful
	s.finishCheckoutLocked(c)
	heap.Remove(&s.checkouts, c.slot)
	return nil
}

// checkout is a pending redirect-checkout payment.
type checkout struct {
	scheduled
	payment    int // index in s.payments
	successful bool
}

// scheduleCheckoutLocked decides how and when the customer of payment i
// finishes. s.mu must be held.
func (s *Server) scheduleCheckoutLocked(i int, now time.Time) {
	cfg := s.cfg.checkout
	ref := s.payments[i].Reference
	delay := cfg.Delay
	if cfg.DelayJitter > 0 {
		delay += time.Duration(unit(hash64(s.cfg.seed, "checkout delay", ref, 0)) * float64(cfg.DelayJitter))
	}
	c := &checkout{
		scheduled:  scheduled{due: now.Add(delay), seq: uint64(i)},
		payment:    i,
		successful: unit(hash64(s.cfg.seed, "checkout outcome", ref, 0)) >= min(max(cfg.FailureRate, 0), 1),
	}
	s.checkoutOf[i] = c
	heap.Push(&s.checkouts, c)
	if s.webhooks != nil && !s.checkoutLoop {
		s.checkoutLoop = true
		s.loops.Add(1)
		go s.completeCheckouts()
	}
}

// fakeClockPoll is how often, in real time, the checkout loop reads a clock
// given to [WithClock], which cannot say when it will next move.
const fakeClockPoll = 10 * time.Millisecond

// completeCheckouts completes checkouts as they fall due, so that their
// webhooks go out without anyone looking. It returns when none is pending
// or the server closes.
func (s *Server) completeCheckouts() {
	defer s.loops.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := s.cfg.clock()
		s.mu.Lock()
		if s.settleCheckoutsLocked(now) == 0 {
			s.checkoutLoop = false
			s.mu.Unlock()
			return
		}
		wait := s.checkouts[0].due.Sub(now)
		s.mu.Unlock()
		if s.cfg.fakeClock {
			wait = min(wait, fakeClockPoll)
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.closing:
			return
		}
	}
}

// settleCheckoutsLocked completes every checkout due by now and returns
// how many remain. Every path that shows a payment's status calls it first,
// so what a client or a test sees does not depend on when a background loop
// last ran. s.mu must be held.
func (s *Server) settleCheckoutsLocked(now time.Time) int {
	for len(s.checkouts) > 0 && !s.checkouts[0].due.After(now) {
		s.finishCheckoutLocked(heap.Pop(&s.checkouts).(*checkout))
	}
	return len(s.checkouts)
}

// finishCheckoutLocked gives the payment its outcome. The caller removes c
// from the heap. s.mu must be held.
func (s *Server) finishCheckoutLocked(c *checkout) {
	var event string
	p := &s.payments[c.payment]
	p.Status, event = statusFailed, EventPaymentFailed
	if c.successful {
		p.Status, event = statusSuccessful, EventPaymentSuccessful
	}
	delete(s.checkoutOf, c.payment)
	s.stats.CheckoutsCompleted++
	s.webhookEventLocked(event, false, c.payment)
}
