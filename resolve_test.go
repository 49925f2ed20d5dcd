package spotflowhttp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

func recordEntry(t *testing.T, j spotflowhttp.Journal, key, owner string, until time.Time) {
	t.Helper()
	err := j.Record(context.Background(), spotflowhttp.Entry{
		Key: key, Reference: "order-" + key, Method: "POST", URL: "https://api.spotflow.co/api/v1/payments",
		Body: []byte(`{"reference":"order-` + key + `"}`), Time: time.Now().Add(-time.Hour), Owner: owner, Until: until,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func pendingKeys(t *testing.T, j spotflowhttp.Journal) []string {
	t.Helper()
	es, err := j.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range es {
		keys = append(keys, e.Key)
	}
	return keys
}

func TestResolveRecordsTheDecisionBeforeRemovingTheEntry(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	recordEntry(t, j, "k1", "call-gone", time.Now().Add(-time.Minute))
	recordEntry(t, j, "k2", "", time.Time{})
	var recorded []spotflowhttp.Settlement
	s, err := spotflowhttp.Resolve(context.Background(), j, "k1", spotflowhttp.OutcomeNotCreated, "customer paid by transfer",
		func(s spotflowhttp.Settlement) error {
			if got := pendingKeys(t, j); len(got) != 2 {
				t.Errorf("pending while recording: %v, want the entry still there", got)
			}
			recorded = append(recorded, s)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if s.By != spotflowhttp.SettledByPerson || s.By.String() != "person" || s.Outcome != spotflowhttp.OutcomeNotCreated ||
		s.Note != "customer paid by transfer" || s.Entry.Reference != "order-k1" {
		t.Errorf("settlement = %+v", s)
	}
	if len(recorded) != 1 || recorded[0].Entry.Key != "k1" {
		t.Errorf("record called with %+v", recorded)
	}
	if got := pendingKeys(t, j); len(got) != 1 || got[0] != "k2" {
		t.Errorf("pending after: %v, want [k2]", got)
	}
}

func TestResolveRefusesAnEntryHeldByALiveCall(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	until := time.Now().Add(time.Hour)
	recordEntry(t, j, "k1", "call-live", until)
	called := false
	_, err := spotflowhttp.Resolve(context.Background(), j, "k1", spotflowhttp.OutcomeCreated, "",
		func(spotflowhttp.Settlement) error { called = true; return nil })
	var ce *spotflowhttp.ClaimedError
	if !errors.As(err, &ce) || ce.Owner != "call-live" || !ce.Until.Equal(until) {
		t.Fatalf("err = %v, want a *ClaimedError naming call-live", err)
	}
	if called {
		t.Error("record was called for an entry the person could not claim")
	}
	if got := pendingKeys(t, j); len(got) != 1 {
		t.Errorf("pending: %v, want the entry kept", got)
	}
}

func TestResolveUnknownKeyIsNotPending(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	recordEntry(t, j, "k1", "", time.Time{})
	_, err := spotflowhttp.Resolve(context.Background(), j, "nope", spotflowhttp.OutcomeCreated, "", nil)
	if !errors.Is(err, spotflowhttp.ErrNotPending) {
		t.Fatalf("err = %v, want ErrNotPending", err)
	}
}

func TestResolveKeepsTheEntryFreeWhenRecordingFails(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	recordEntry(t, j, "k1", "", time.Time{})
	boom := errors.New("disk full")
	_, err := spotflowhttp.Resolve(context.Background(), j, "k1", spotflowhttp.OutcomeCreated, "",
		func(spotflowhttp.Settlement) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the record error", err)
	}
	es, _ := j.Pending(context.Background())
	if len(es) != 1 || !spotflowhttp.Claimable(es[0], "someone-else", time.Now()) {
		t.Fatalf("pending = %+v, want the entry kept and free", es)
	}
}

func TestResolveRefusesOutcomesAPersonDoesNotDecide(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	recordEntry(t, j, "k1", "", time.Time{})
	for _, o := range []spotflowhttp.Outcome{spotflowhttp.OutcomeNeedsHuman, 0} {
		if _, err := spotflowhttp.Resolve(context.Background(), j, "k1", o, "", nil); err == nil {
			t.Errorf("outcome %v: no error", o)
		}
	}
	if got := pendingKeys(t, j); len(got) != 1 {
		t.Errorf("pending: %v, want the entry kept", got)
	}
}
