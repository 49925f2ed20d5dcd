package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/webhook"
)

// journaled is column (c)'s durable memory: a boltjournal file in a
// temporary directory, sealed (SealJournal) so that it holds no customer
// data in clear, which a restart after -crash opens again as a new process
// would, and the reconciler that settles what it holds.
type journaled struct {
	api      target
	dir      string
	path     string
	keys     [][]byte // sealing keys, newest first: a restart rotates to a new one
	sealed   spotflowhttp.Journal
	j        *crashable
	rec      atomic.Pointer[spotflowhttp.Reconciler] // the live process's
	receiver *httptest.Server                        // where the simulator sends webhooks
	rotated  string                                  // what the rotation at the restart found, "" before one

	mu      sync.Mutex
	settled []spotflowhttp.Settlement // reported, not yet given to the payments
}

func openJournaled(api target) *journaled {
	dir, err := os.MkdirTemp("", "spotflow-demo-journal-")
	if err != nil {
		panic(fmt.Sprintf("spotflow-demo: a directory for the journal: %v", err))
	}
	jr := &journaled{api: api, dir: dir, path: filepath.Join(dir, "journal.db")}
	jr.open()
	if secret := api.Sim.WebhookSecret(); secret != "" {
		hooks, err := webhook.NewHandler(secret, func(_ context.Context, ev webhook.Event) error {
			jr.rec.Load().Observe(ev.Type, ev.Reference, ev.Status, ev.Timestamp, ev.Data)
			return nil
		})
		if err != nil {
			panic(err) // the simulator's own secret
		}
		jr.receiver = httptest.NewServer(hooks)
		api.Sim.SetWebhookURL(jr.receiver.URL)
	}
	return jr
}

// open opens the journal file and starts a reconciler over it, as a
// process starting up does.
func (jr *journaled) open() {
	f, err := boltjournal.Open(jr.path)
	if err != nil {
		panic(fmt.Sprintf("spotflow-demo: %v", err))
	}
	// A service reads its key from a secret manager; the demo makes one
	// per process, and keeps the previous process's as an old key.
	jr.keys = append([][]byte{newSealKey()}, jr.keys...)
	if jr.sealed, err = spotflowhttp.SealJournal(f, jr.keys[0], jr.keys[1:]...); err != nil {
		panic(fmt.Sprintf("spotflow-demo: %v", err)) // our own keys
	}
	jr.j = &crashable{Journal: jr.sealed, file: f}
	rec, err := spotflowhttp.NewReconciler(jr.j, jr.api.Base,
		func(req *http.Request, _ spotflowhttp.Entry) error {
			req.Header.Set("Authorization", "Bearer "+jr.api.Key)
			return nil
		},
		func(st spotflowhttp.Settlement) {
			jr.mu.Lock()
			jr.settled = append(jr.settled, st)
			jr.mu.Unlock()
		},
		// A short wait for the webhook before asking the verify endpoint.
		append(protectedOptions(jr.api.Cfg), spotflowhttp.WithVerifyAfter(200*time.Millisecond))...)
	if err != nil {
		panic(err) // the arguments are ours and not nil
	}
	jr.rec.Store(rec)
}

func newSealKey() []byte {
	k := make([]byte, spotflowhttp.SealKeySize)
	rand.Read(k) // never fails (crypto/rand, Go 1.24+)
	return k
}

// atRest says what the journal file holds: the key that seals it, how
// many customer emails can be read in the file's bytes (free pages
// included) in any encoding the file uses, and after a restart, the
// pending entries the previous process's key still seals.
func (jr *journaled) atRest(ctx context.Context) string {
	by, err := spotflowhttp.PendingBySealKey(ctx, jr.sealed)
	if err != nil {
		return fmt.Sprintf("journal: %v", err)
	}
	raw, err := os.ReadFile(jr.path)
	if err != nil {
		return fmt.Sprintf("journal: %v", err)
	}
	s := fmt.Sprintf("journal sealed (AES-256-GCM) with key id %s; customer emails readable in its %d-byte file: %d",
		spotflowhttp.SealKeyID(jr.keys[0]), len(raw), emailsIn(raw))
	if len(jr.keys) > 1 {
		old := spotflowhttp.SealKeyID(jr.keys[1])
		s += fmt.Sprintf("; %s; now %d (0: it can be retired)", jr.rotated, by[old])
	}
	return s
}

// rotation notes, after a restart, how many pending entries the previous
// process's key seals.
func (jr *journaled) rotation(ctx context.Context) {
	by, err := spotflowhttp.PendingBySealKey(ctx, jr.sealed)
	if err != nil {
		jr.rotated = fmt.Sprintf("journal: %v", err)
		return
	}
	old := spotflowhttp.SealKeyID(jr.keys[1])
	jr.rotated = fmt.Sprintf("the restart rotated to it from key id %s, which then sealed %d pending entries", old, by[old])
}

// emailsIn counts the customer emails ("...@example.com") in b, as they are
// and as a JSON file holds a body: in base64, at any of its three
// alignments.
func emailsIn(b []byte) int {
	const domain = "@example.com"
	n := bytes.Count(b, []byte(domain))
	for off := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, off), domain...))
		n += bytes.Count(b, []byte(enc[(8*off+5)/6:8*(off+len(domain))/6]))
	}
	return n
}

// client is column (c)'s client over the journal: a new transport, with
// nothing in memory from before.
func (jr *journaled) client(seen *reasons) *http.Client {
	opts := append(protectedOptions(jr.api.Cfg), spotflowhttp.WithJournal(jr.j), spotflowhttp.WithObserver(seen.observer()))
	return &http.Client{Transport: spotflowhttp.NewTransport(jr.api.Base, opts...)}
}

func (jr *journaled) close() error {
	if jr.receiver != nil {
		jr.receiver.Close()
	}
	jr.j.file.Close()
	return os.RemoveAll(jr.dir)
}

// crashable is the journal of a process that can die: once dead, it writes
// nothing more, as a killed process would not.
type crashable struct {
	spotflowhttp.Journal
	file *boltjournal.Journal
	dead atomic.Bool
}

var errDead = errors.New("spotflow-demo: the process has crashed")

func (c *crashable) Record(ctx context.Context, e spotflowhttp.Entry) error {
	if c.dead.Load() {
		return errDead
	}
	return c.Journal.Record(ctx, e)
}

func (c *crashable) Claim(ctx context.Context, key, owner string, now, until time.Time) (bool, error) {
	if c.dead.Load() {
		return false, nil
	}
	return c.Journal.Claim(ctx, key, owner, now, until)
}

func (c *crashable) Settle(ctx context.Context, key, owner string) (bool, error) {
	if c.dead.Load() {
		return false, nil
	}
	return c.Journal.Settle(ctx, key, owner)
}

// settle runs the reconciler over the journal until it holds nothing (or
// the call deadline has passed), and gives each settlement to the payment
// whose order id is its key.
func (s *protected) settle(ctx context.Context, payments []payment, outs []outcome, r *result) {
	jr := s.jr
	rec := jr.rec.Load()
	deadline := time.Now().Add(s.api.Cfg.Timeout)
	for time.Now().Before(deadline) {
		left, err := rec.ReconcileOnce(ctx)
		if err == nil && left == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	byKey := make(map[string]int, len(payments))
	for i, p := range payments {
		byKey[p.OrderID] = i
	}
	jr.mu.Lock()
	settled := jr.settled
	jr.settled = nil
	jr.mu.Unlock()
	for _, st := range settled {
		i, ok := byKey[st.Entry.Key]
		if !ok {
			continue
		}
		o := &outs[i]
		o.crashed = false
		switch st.Outcome {
		case spotflowhttp.OutcomeCreated:
			o.state = confirmed
		case spotflowhttp.OutcomeNotCreated:
			o.state = failed
		default:
			o.state, o.escalated = unknown, true
			r.NeedsHuman++
			continue
		}
		switch st.By {
		case spotflowhttp.SettledByWebhook:
			r.ByWebhook++
		case spotflowhttp.SettledByVerify:
			r.ByVerify++
		case spotflowhttp.SettledByResend:
			r.ByResend++
		}
	}
	r.Journal = jr.atRest(ctx)
	r.Unresolved = 0
	for _, o := range outs {
		if o.state == unknown {
			r.Unresolved++
		}
	}
}

// crasher is a settler that can be stopped abruptly and started again
// from what it keeps on disk, for -crash.
type crasher interface {
	settler
	// crash stops all writing at once, as a killed process would.
	crash()
	// restart drops the client, the reconciler and everything they kept in
	// memory and opens the journal file again, as a new process would.
	restart()
}

func (s *protected) crash() { s.jr.j.dead.Store(true) }

func (s *protected) restart() {
	s.jr.j.file.Close()
	s.jr.open()
	s.jr.rotation(context.Background())
	s.client = s.jr.client(s.seen)
}

// sendCrashing sends the payments through cr and, half-way, crashes it:
// every call in flight is abandoned and what it would have learnt is lost.
// The restarted client settles those from the journal, then sends what was
// never sent.
func (rn runner) sendCrashing(name string, cr crasher, outs []outcome, r *result) {
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	for i := range outs {
		outs[i] = outcome{state: unknown, crashed: true}
	}
	half := int64(len(outs) / 2)
	var done, crashed atomic.Int64
	var once sync.Once
	rn.each(name+": until the crash", indices(len(outs)), func(i int) {
		if ctx.Err() != nil {
			return // not sent before the crash
		}
		o := cr.send(ctx, rn.payments[i])
		if ctx.Err() != nil {
			crashed.Add(1) // the process died before it learnt the outcome
			return
		}
		outs[i] = o
		if done.Add(1) == half {
			once.Do(func() { cr.crash(); kill() })
		}
	})
	r.Crashed = int(crashed.Load())
	cr.restart()
	rn.prog.phase(name+": restarted; settling what the journal holds", func() {
		cr.settle(context.Background(), rn.payments, outs, r)
	})
	var left []int
	for i, o := range outs {
		if o.crashed {
			left = append(left, i)
		}
	}
	rn.each(name+": after the restart", left, func(i int) {
		outs[i] = cr.send(context.Background(), rn.payments[i])
	})
}
