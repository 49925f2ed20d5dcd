package spotflowhttp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// sealKey is a test key: 32 bytes of b.
func sealKey(b byte) []byte { return bytes.Repeat([]byte{b}, spotflowhttp.SealKeySize) }

func mustSeal(t *testing.T, j spotflowhttp.Journal, key []byte, old ...[]byte) spotflowhttp.Journal {
	t.Helper()
	s, err := spotflowhttp.SealJournal(j, key, old...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealJournalContract: a sealed journal keeps the Journal contract, over
// the memory journal.
func TestSealJournalContract(t *testing.T) {
	journaltest.Run(t, func(t *testing.T) spotflowhttp.Journal {
		return mustSeal(t, spotflowhttp.NewMemoryJournal(), sealKey(1))
	})
}

// secretEntry is an entry whose body and header hold a distinctive
// customer detail.
func secretEntry(key string) spotflowhttp.Entry {
	e := journaltest.Sample(key, 0)
	e.Body = []byte(`{"amount":5000,"reference":"ref-` + key + `","customer":{"email":"zq-secret-ada@example.com"}}`)
	e.Header.Set("X-Customer-Note", "zq-secret-header")
	return e
}

// TestSealJournalStoresNoPlaintext: what the store holds of a sealed entry
// has neither body nor headers, only Sealed, which holds neither in clear
// and changes with every Record; the fields a reconciler needs without the
// key stay; Pending gives the entry back as recorded.
func TestSealJournalStoresNoPlaintext(t *testing.T) {
	store := spotflowhttp.NewMemoryJournal()
	j := mustSeal(t, store, sealKey(1))
	e := secretEntry("k1")
	if err := j.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	raw := pendingOf(t, store)[0]
	if raw.Body != nil || raw.Header != nil || raw.Sealed == nil {
		t.Fatalf("the store holds body %q, header %v, sealed %d bytes; want only the sealed part", raw.Body, raw.Header, len(raw.Sealed))
	}
	for _, s := range []string{"zq-secret", base64.StdEncoding.EncodeToString([]byte("zq-secret")), "amount"} {
		if bytes.Contains(raw.Sealed, []byte(s)) {
			t.Errorf("the sealed part holds %q in clear", s)
		}
	}
	if !sameReadable(raw, e) {
		t.Errorf("the store lost a readable field: %+v", raw)
	}
	if id, ok := spotflowhttp.SealKeyIDOf(raw); !ok || id != spotflowhttp.SealKeyID(sealKey(1)) {
		t.Errorf("SealKeyIDOf = %q, %v; want the key's id %s", id, ok, spotflowhttp.SealKeyID(sealKey(1)))
	}
	got := pendingOf(t, j)
	if len(got) != 1 || !reflect.DeepEqual(got[0], e) {
		t.Fatalf("Pending = %+v\nwant %+v", got, e)
	}
}

// sameReadable reports whether the fields a sealed journal leaves readable
// are a's and b's alike.
func sameReadable(a, b spotflowhttp.Entry) bool {
	return a.Key == b.Key && a.Reference == b.Reference && a.Account == b.Account && a.URL == b.URL &&
		a.Method == b.Method && a.Time.Equal(b.Time) && a.Owner == b.Owner && a.Until.Equal(b.Until)
}

// TestSealJournalFreshNonce: the same entry sealed twice gives other
// bytes, other nonces first.
func TestSealJournalFreshNonce(t *testing.T) {
	store := spotflowhttp.NewMemoryJournal()
	j := mustSeal(t, store, sealKey(1))
	var seals [][]byte
	for range 2 {
		if err := j.Record(context.Background(), secretEntry("k1")); err != nil {
			t.Fatal(err)
		}
		seals = append(seals, pendingOf(t, store)[0].Sealed)
	}
	if bytes.Equal(seals[0], seals[1]) || bytes.Equal(seals[0][9:21], seals[1][9:21]) {
		t.Error("the same entry sealed twice gave the same nonce")
	}
}

// TestMemoryJournalKeepsItsOwnSeal: the memory journal copies Sealed, as
// it copies Body: a caller reusing the slice changes nothing kept.
func TestMemoryJournalKeepsItsOwnSeal(t *testing.T) {
	m := spotflowhttp.NewMemoryJournal()
	e := journaltest.Sample("k1", 0)
	e.Body, e.Header, e.Sealed = nil, nil, []byte("sealed-bytes")
	if err := m.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	e.Sealed[0] = 'X'
	got := pendingOf(t, m)
	got[0].Sealed[1] = 'Y'
	if got := pendingOf(t, m); string(got[0].Sealed) != "sealed-bytes" {
		t.Errorf("Sealed = %q; want the journal's own copy", got[0].Sealed)
	}
}

// rotationStore is a store holding an entry recorded before sealing (k0),
// one sealed with key a (k1) and one sealed with key b (k2), oldest first.
func rotationStore(t *testing.T) (store *spotflowhttp.MemoryJournal, es []spotflowhttp.Entry) {
	ctx := context.Background()
	store = spotflowhttp.NewMemoryJournal()
	legacy, old, fresh := secretEntry("k0"), secretEntry("k1"), secretEntry("k2")
	legacy.Time, fresh.Time = legacy.Time.Add(-time.Second), fresh.Time.Add(time.Second)
	if err := store.Record(ctx, legacy); err != nil { // before sealing was turned on
		t.Fatal(err)
	}
	if err := mustSeal(t, store, sealKey(0xa)).Record(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := mustSeal(t, store, sealKey(0xb), sealKey(0xa)).Record(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	return store, []spotflowhttp.Entry{legacy, old, fresh}
}

// TestSealJournalRotation: entries sealed with an old key open while it is
// among oldKeys, new ones are sealed with the new key, entries recorded
// before sealing are read as they are, and PendingBySealKey says which key
// seals how many.
func TestSealJournalRotation(t *testing.T) {
	idA, idB := spotflowhttp.SealKeyID(sealKey(0xa)), spotflowhttp.SealKeyID(sealKey(0xb))
	store, want := rotationStore(t)
	rotated := mustSeal(t, store, sealKey(0xb), sealKey(0xa))
	if got := pendingOf(t, rotated); !reflect.DeepEqual(got, want) {
		t.Fatalf("with keys b and a: Pending = %+v", got)
	}
	if id, _ := spotflowhttp.SealKeyIDOf(pendingOf(t, store)[2]); id != idB {
		t.Errorf("the new entry is sealed with key id %s, want b's %s", id, idB)
	}
	n, err := spotflowhttp.PendingBySealKey(context.Background(), rotated)
	if want := map[string]int{"": 1, idA: 1, idB: 1}; err != nil || !reflect.DeepEqual(n, want) {
		t.Errorf("PendingBySealKey = %v, %v; want %v", n, err, want)
	}
}

// TestSealJournalWithoutOldKey: without the old key, its entry comes back
// unopened, with its readable fields and an error naming it and its key
// id, beside the others.
func TestSealJournalWithoutOldKey(t *testing.T) {
	idA := spotflowhttp.SealKeyID(sealKey(0xa))
	store, want := rotationStore(t)
	got, err := mustSeal(t, store, sealKey(0xb)).Pending(context.Background())
	var ue *spotflowhttp.UnsealError
	if !errors.As(err, &ue) || !errors.Is(err, spotflowhttp.ErrSealKeyMissing) || len(ue.Entries) != 1 ||
		ue.Entries[0].Key != "k1" || ue.Entries[0].KeyID != idA {
		t.Fatalf("without key a: err = %v; want an *UnsealError naming k1 and key id %s", err, idA)
	}
	if msg := err.Error(); !strings.Contains(msg, `"k1"`) || !strings.Contains(msg, idA) || strings.Contains(msg, hex.EncodeToString(sealKey(0xa))) {
		t.Errorf("error %q: want the entry's key and key id, never the key", msg)
	}
	if len(got) != 3 || !reflect.DeepEqual(got[0], want[0]) || !reflect.DeepEqual(got[2], want[2]) {
		t.Fatalf("without key a, the other entries: %+v", got)
	}
	if u := got[1]; !sameReadable(u, want[1]) || u.Body != nil || u.Header != nil || u.Sealed == nil {
		t.Errorf("the entry no key opens: %+v; want its readable fields, Sealed kept, no body", u)
	}
}

// TestSealJournalRefusesChangedSeals: a seal moved to another entry, a
// changed reference or URL, a flipped bit, any truncation, an unknown
// version: never a panic, never content, always ErrSealBroken naming the
// entry.
func TestSealJournalRefusesChangedSeals(t *testing.T) {
	ctx := context.Background()
	store := spotflowhttp.NewMemoryJournal()
	j := mustSeal(t, store, sealKey(1))
	if err := j.Record(ctx, secretEntry("k1")); err != nil {
		t.Fatal(err)
	}
	good := pendingOf(t, store)[0]
	var cases []spotflowhttp.Entry
	add := func(change func(e *spotflowhttp.Entry)) {
		e := good
		e.Sealed = append([]byte(nil), good.Sealed...)
		change(&e)
		cases = append(cases, e)
	}
	add(func(e *spotflowhttp.Entry) { e.Key = "k2" })
	add(func(e *spotflowhttp.Entry) { e.Reference = "ref-other" })
	add(func(e *spotflowhttp.Entry) { e.URL = "https://evil.test/api/v1/payments" })
	add(func(e *spotflowhttp.Entry) { e.Account = "merchant-8" })
	add(func(e *spotflowhttp.Entry) { e.Sealed[0] = 2 })
	add(func(e *spotflowhttp.Entry) { // a body planted beside a broken seal is not returned either
		e.Sealed[len(e.Sealed)-1] ^= 1
		e.Body, e.Header = []byte("planted"), http.Header{"X-Planted": {"1"}}
	})
	for i := 1; i < len(good.Sealed); i++ {
		add(func(e *spotflowhttp.Entry) { e.Sealed[i] ^= 0x40 })
	}
	for n := 1; n < len(good.Sealed); n++ { // an empty Sealed is no seal
		add(func(e *spotflowhttp.Entry) { e.Sealed = e.Sealed[:n] })
	}
	for i, e := range cases {
		s := spotflowhttp.NewMemoryJournal()
		if err := s.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, err := mustSeal(t, s, sealKey(1)).Pending(ctx)
		var ue *spotflowhttp.UnsealError
		if !errors.As(err, &ue) || len(ue.Entries) != 1 || ue.Entries[0].Key != e.Key || len(got) != 1 || got[0].Body != nil || got[0].Header != nil {
			t.Fatalf("case %d (sealed %d bytes): Pending = %+v, %v; want the entry unopened and an UnsealError naming it", i, len(e.Sealed), got, err)
		}
		// A flipped key id names a key not given; all else is broken.
		if !errors.Is(err, spotflowhttp.ErrSealBroken) && !errors.Is(err, spotflowhttp.ErrSealKeyMissing) {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}

// TestSealJournalChecksKeys: keys of the wrong size, all zero or given
// twice are refused at construction, with an error that names the key by
// position and never prints it.
func TestSealJournalChecksKeys(t *testing.T) {
	m := spotflowhttp.NewMemoryJournal()
	short := []byte("0123456789abcdef0123456789abcde") // 31 bytes
	for _, c := range []struct {
		name string
		j    spotflowhttp.Journal
		key  []byte
		old  [][]byte
		want string
	}{
		{"nil journal", nil, sealKey(1), nil, "nil"},
		{"short key", m, short, nil, "the key: 31 bytes"},
		{"long key", m, append(sealKey(1), 1), nil, "the key: 33 bytes"},
		{"nil key", m, nil, nil, "the key: 0 bytes"},
		{"zero key", m, make([]byte, 32), nil, "all zero"},
		{"short old key", m, sealKey(1), [][]byte{sealKey(2), short}, "old key 2: 31 bytes"},
		{"old key is the key", m, sealKey(1), [][]byte{sealKey(1)}, "old key 1 (id " + spotflowhttp.SealKeyID(sealKey(1)) + ") is given twice"},
		{"old key twice", m, sealKey(1), [][]byte{sealKey(2), sealKey(2)}, "twice"},
	} {
		_, err := spotflowhttp.SealJournal(c.j, c.key, c.old...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v; want one saying %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), string(short)) || strings.Contains(err.Error(), hex.EncodeToString(sealKey(2))) {
			t.Errorf("%s: the error prints a key: %v", c.name, err)
		}
	}
	sealed, err := spotflowhttp.SealJournal(m, sealKey(1), sealKey(2), sealKey(3))
	if err != nil {
		t.Errorf("three distinct keys: %v", err)
	}
	if _, err := spotflowhttp.SealJournal(sealed, sealKey(4)); err == nil || !strings.Contains(err.Error(), "sealed already") {
		t.Errorf("a sealed journal sealed again: err = %v", err)
	}
}

// sealedFixture is a reconcile fixture whose journal is sealed.
func sealedFixture(t *testing.T, opts ...spotflowtest.Option) (*reconcileFixture, *spotflowhttp.MemoryJournal) {
	f := newReconcileFixture(t, opts...)
	store := spotflowhttp.NewMemoryJournal()
	f.j = mustSeal(t, store, sealKey(1))
	return f, store
}

// TestReconcileSealed: through a sealed journal, a create that never
// committed is sent again with its body as sent, and one that did is
// verified; the store never held either body.
func TestReconcileSealed(t *testing.T) {
	for _, c := range []struct {
		fault spotflowtest.Fault
		by    spotflowhttp.SettledBy
	}{
		{spotflowtest.FaultResetBeforeCommit, spotflowhttp.SettledByResend},
		{spotflowtest.FaultResetAfterCommit, spotflowhttp.SettledByVerify},
	} {
		f, store := sealedFixture(t, faults(c.fault))
		f.uncertain("/payments", payment("ord-1"))
		for _, e := range pendingOf(t, store) {
			if e.Body != nil || e.Header != nil || e.Sealed == nil {
				t.Fatalf("the store holds %+v; want it sealed", e)
			}
		}
		f.once(f.reconciler(spotflowhttp.WithVerifyAfter(0)))
		if s := f.only(); s.Outcome != spotflowhttp.OutcomeCreated || s.By != c.by || s.Entry.Body == nil {
			t.Errorf("after %v: %s; want created by %v", c.fault, desc(s), c.by)
		}
		if p := f.srv.Payments(); len(p) != 1 || p[0].Amount != 5000 || p[0].CustomerEmail != "a@b.c" || f.srv.Charges("ord-1") != 1 {
			t.Errorf("after %v: ledger %+v; want the body as sent, charged once", c.fault, p)
		}
	}
}

// TestReconcileUnopenedEntry: an entry sealed with a key the reconciler's
// journal lacks does not keep the others from being settled, is never sent
// again without its body, is named by ReconcileOnce's error, settles once
// its key is given back, and needs a human if the window closes first.
func TestReconcileUnopenedEntry(t *testing.T) {
	f, store := sealedFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	lost := f.uncertain("/payments", payment("ord-1")) // sealed with key 1, which is then lost
	f.j = mustSeal(t, store, sealKey(2), sealKey(1))
	f.clock.Advance(time.Second)
	f.uncertain("/payments", payment("ord-2"))
	f.j = mustSeal(t, store, sealKey(2))
	left, err := f.reconciler(spotflowhttp.WithVerifyAfter(0)).ReconcileOnce(context.Background())
	var ue *spotflowhttp.UnsealError
	if !errors.As(err, &ue) || ue.Entries[0].Key != lost.Key || left != 1 {
		t.Fatalf("ReconcileOnce = %d, %v; want 1 left and an UnsealError naming %s", left, err, lost.Key)
	}
	if s := f.settlements(); len(s) != 1 || s[0].Entry.Reference != "ord-2" || s[0].By != spotflowhttp.SettledByResend {
		t.Fatalf("settled %+v; want ord-2 by re-send", s)
	}
	if n := f.srv.Arrivals(lost.Key); n != 1 {
		t.Fatalf("the unopened entry arrived %d times; want 1: it must not be sent again without its body", n)
	}

	f.clock.Advance(time.Minute)
	f.j = mustSeal(t, store, sealKey(2), sealKey(1)) // the key is given back
	f.once(f.reconciler(spotflowhttp.WithVerifyAfter(0)))
	if s := f.settlements(); len(s) != 2 || s[1].Entry.Reference != "ord-1" || s[1].By != spotflowhttp.SettledByResend ||
		f.srv.Charges("ord-1") != 1 {
		t.Fatalf("with the key back: settled %+v; want ord-1 by re-send, charged once", s)
	}

	// Once the window closes, an entry no key opens goes to a human.
	g, gstore := sealedFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	g.uncertain("/payments", payment("ord-3"))
	g.j = mustSeal(t, gstore, sealKey(2))
	g.clock.Advance(spotflowhttp.IdempotencyWindow)
	g.reconciler(spotflowhttp.WithVerifyAfter(0)).ReconcileOnce(context.Background())
	if s := g.settlements(); len(s) != 1 || s[0].Outcome != spotflowhttp.OutcomeNeedsHuman || s[0].Entry.Sealed == nil {
		t.Errorf("after the window: %+v; want needs a human, with the sealed entry", s)
	}
}

// TestReconcileBodyMissingWithReference: a body without GetBody is not
// kept, but ContextWithReference gives its entry a reference, so the
// reconciler verifies it: a committed payment settles as created by
// verify; one not found is never sent again and stays pending until the
// idempotency window closes, then needs a human.
func TestReconcileBodyMissingWithReference(t *testing.T) {
	send := func(f *reconcileFixture, ref string) spotflowhttp.Entry {
		t.Helper()
		client := &http.Client{Transport: spotflowhttp.NewTransport(f.srv.Client().Transport,
			spotflowhttp.WithJournal(f.j), spotflowhttp.WithClock(f.clock), spotflowhttp.WithMaxAttempts(1))}
		ctx := spotflowhttp.ContextWithReference(spotflowhttp.ContextWithAccount(context.Background(), "m1"), ref)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.BaseURL()+"/payments",
			io.NopCloser(strings.NewReader(payment(ref))))
		req.Header.Set("Authorization", "Bearer "+f.srv.SecretKey())
		if _, err := client.Do(req); err == nil {
			t.Fatal("want the reset")
		}
		es := pendingOf(t, f.j)
		if len(es) != 1 || !es[0].BodyMissing || es[0].Body != nil || es[0].Reference != ref {
			t.Fatalf("pending = %+v; want one entry without a body, with reference %s", es, ref)
		}
		return es[0]
	}

	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	send(f, "ord-1")
	f.once(f.reconciler(spotflowhttp.WithVerifyAfter(0)))
	if s := f.only(); s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByVerify || s.Status != "successful" {
		t.Errorf("settlement = %s; want created by verify", desc(s))
	}

	g := newReconcileFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	e := send(g, "ord-2")
	r := g.reconciler(spotflowhttp.WithVerifyAfter(0))
	if left := g.once(r); left != 1 || len(g.settlements()) != 0 {
		t.Fatalf("not found: %d left, %d settled; want it pending", left, len(g.settlements()))
	}
	g.clock.Advance(spotflowhttp.IdempotencyWindow)
	g.once(r)
	if s := g.only(); s.Outcome != spotflowhttp.OutcomeNeedsHuman || s.By != spotflowhttp.SettledByExpiry {
		t.Errorf("after the window: %s; want needs a human by expiry", desc(s))
	}
	if n := g.srv.Arrivals(e.Key); n != 1 {
		t.Errorf("the create arrived %d times; want 1: no body, no re-send", n)
	}
}

// TestContextReferenceYieldsToTheBody: a body's own reference is what
// Spotflow was sent, so it wins over ContextWithReference's.
func TestContextReferenceYieldsToTheBody(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	client := &http.Client{Transport: spotflowhttp.NewTransport(f.srv.Client().Transport,
		spotflowhttp.WithJournal(f.j), spotflowhttp.WithMaxAttempts(1))}
	ctx := spotflowhttp.ContextWithReference(context.Background(), "from-context")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.BaseURL()+"/payments", strings.NewReader(payment("from-body")))
	req.Header.Set("Authorization", "Bearer "+f.srv.SecretKey())
	client.Do(req)
	if es := pendingOf(t, f.j); len(es) != 1 || es[0].Reference != "from-body" {
		t.Errorf("pending = %+v; want the body's reference", es)
	}
}

func ExampleSealJournal() {
	// In a service, read the key from a secret manager or the
	// environment (never a flag or the source), e.g. base64 in
	// SPOTFLOW_JOURNAL_KEY; here, a fixed one.
	key := bytes.Repeat([]byte{7}, spotflowhttp.SealKeySize)
	store := spotflowhttp.NewMemoryJournal() // or boltjournal.Open, redislimit.NewJournal
	journal, err := spotflowhttp.SealJournal(store, key)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	journal.Record(ctx, spotflowhttp.Entry{
		Key: "order-1001", Reference: "order-1001", Method: http.MethodPost,
		URL:  "https://api.spotflow.co/api/v1/payments",
		Body: []byte(`{"reference":"order-1001","customer":{"email":"ada@example.com"}}`),
	})

	stored, _ := store.Pending(ctx)
	fmt.Printf("stored: %s, body %q, %d sealed bytes\n", stored[0].Reference, stored[0].Body, len(stored[0].Sealed))
	opened, _ := journal.Pending(ctx)
	fmt.Printf("opened: %s\n", opened[0].Body)
	byKey, _ := spotflowhttp.PendingBySealKey(ctx, journal)
	fmt.Println("pending entries sealed with key", spotflowhttp.SealKeyID(key)+":", byKey[spotflowhttp.SealKeyID(key)])

	// Without the key, the entry is still returned, unopened, and named.
	other, _ := spotflowhttp.SealJournal(store, bytes.Repeat([]byte{8}, spotflowhttp.SealKeySize))
	es, err := other.Pending(ctx)
	fmt.Println(len(es), es[0].Body == nil, err)
	// Output:
	// stored: order-1001, body "", 103 sealed bytes
	// opened: {"reference":"order-1001","customer":{"email":"ada@example.com"}}
	// pending entries sealed with key 770af41f2671b48d: 1
	// 1 true spotflowhttp: sealed journal: a pending entry no key opens: entry "order-1001" (key id 770af41f2671b48d): sealed with a key this journal was not given
}

// BenchmarkSealJournal is what sealing adds to a keyed create journaled in
// memory: the same POST of a 1 KiB card payment through NewTransport to an
// in-memory server answering 201, with the memory journal as it is and
// sealed.
func BenchmarkSealJournal(b *testing.B) {
	payload := []byte(`{"amount":5000,"currency":"NGN","reference":"r","customer":{"email":"ada@example.com","phoneNumber":"+2348000000000"},` +
		`"encryptedCard":"` + strings.Repeat("Zm9vYmFy", 110) + `","metadata":{"order_id":"o-1"}}`)
	created := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Body.Close()
		return &http.Response{StatusCode: 201, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	for _, sealed := range []bool{false, true} {
		var j spotflowhttp.Journal = spotflowhttp.NewMemoryJournal()
		name := "Memory"
		if sealed {
			j, name = mustSealB(b, j), "SealedMemory"
		}
		rt := spotflowhttp.NewTransport(created, spotflowhttp.WithJournal(j))
		b.Run(fmt.Sprintf("%s/%dB", name, len(payload)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/api/v1/payments", bytes.NewReader(payload))
				req.Header.Set("Authorization", "Bearer sk_test_x")
				resp, err := rt.RoundTrip(req)
				if err != nil || resp.StatusCode != 201 {
					b.Fatal(resp, err)
				}
			}
		})
	}
}

func mustSealB(b *testing.B, j spotflowhttp.Journal) spotflowhttp.Journal {
	s, err := spotflowhttp.SealJournal(j, sealKey(1))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// lockedBuffer is a bytes.Buffer safe for a logger on another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReconcilerRunLogsUnopenedEntries: Run, which returns no error, logs
// the journal's: an entry no key opens is named in the log, with its key
// id.
func TestReconcilerRunLogsUnopenedEntries(t *testing.T) {
	f, store := sealedFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	e := f.uncertain("/payments", payment("ord-1"))
	f.j = mustSeal(t, store, sealKey(2))
	var logs lockedBuffer
	r := f.reconciler(spotflowhttp.WithReconcileInterval(time.Hour),
		spotflowhttp.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), e.Key) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if l := logs.String(); !strings.Contains(l, e.Key) || !strings.Contains(l, spotflowhttp.SealKeyID(sealKey(1))) {
		t.Errorf("log %q; want the entry's key and its key id", l)
	}
}
