package main

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/redislimit/redistest"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// startRedis starts a throwaway redis-server, skipping the test only where
// there is none (CI installs it), and returns a journal named name in it,
// sealed if key is not nil, with its URL.
func startRedis(t *testing.T, name string, key []byte) (spotflowhttp.Journal, string) {
	t.Helper()
	srv, err := redistest.Start()
	if err != nil {
		if !redistest.Available() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	rj, err := redislimit.NewJournal(rdb, name)
	if err != nil {
		t.Fatal(err)
	}
	var j spotflowhttp.Journal = rj
	if key != nil {
		if j, err = spotflowhttp.SealJournal(rj, key); err != nil {
			t.Fatal(err)
		}
	}
	return j, "redis://" + srv.Addr() + "/0"
}

func record(t *testing.T, j spotflowhttp.Journal, entries []spotflowhttp.Entry) {
	t.Helper()
	for _, e := range entries {
		if err := j.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListShowAndResolveARedisJournal(t *testing.T) {
	j, url := startRedis(t, "shop", nil)
	record(t, j, testEntries(time.Now()))
	r := sj(t, nil, "list", "-redis", url, "-name", "shop")
	r.want(t, 0)
	for _, part := range []string{"key-old", "key-shop", "call-4b1d until"} {
		if !strings.Contains(r.stdout, part) {
			t.Errorf("list -redis lacks %q:\n%s", part, r.stdout)
		}
	}
	if strings.Contains(r.stdout, secret) {
		t.Errorf("list shows a body:\n%s", r.stdout)
	}
	if r := sj(t, nil, "list", "-redis", url, "-name", "other"); r.stdout != "" || r.code != 0 {
		t.Errorf("another name: %+v", r)
	}
	if r := sj(t, nil, "show", "-body", "-redis", url, "-name", "shop", "key-old"); !strings.Contains(r.stdout, secret) {
		t.Errorf("show -body -redis:\n%s%s", r.stdout, r.stderr)
	}

	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	sj(t, nil, "resolve", "-redis", url, "-name", "shop", "-audit", audit, "-outcome", "created", "key-live").
		want(t, 1, `entry "key-live" is held by call-4b1d until`, "try again after")
	r = sj(t, nil, "resolve", "-redis", url, "-name", "shop", "-audit", audit, "-outcome", "created", "key-old")
	r.want(t, 0)
	es, _ := j.Pending(context.Background())
	if len(es) != 2 {
		t.Errorf("%d pending after resolve, want 2", len(es))
	}
	sj(t, nil, "list", "-redis", "redis://127.0.0.1:1/0", "-name", "shop").want(t, 1, "redis 127.0.0.1:1")
	sj(t, nil, "list", "-redis", "mysql://x", "-name", "shop").want(t, 2, "-redis")
}

func TestASealedRedisJournal(t *testing.T) {
	j, url := startRedis(t, "shop", sealKey)
	record(t, j, testEntries(time.Now()))
	r := sj(t, nil, "list", "-json", "-redis", url, "-name", "shop")
	r.want(t, 0)
	if strings.Count(r.stdout, `"sealed":true`) != 3 {
		t.Errorf("list -json:\n%s", r.stdout)
	}
	sj(t, nil, "show", "-body", "-redis", url, "-name", "shop", "key-old").want(t, 2, "is sealed with key id "+spotflowhttp.SealKeyID(sealKey))
	r = sj(t, []string{"SPOTFLOW_JOURNAL_KEY=" + hex.EncodeToString(sealKey)}, "show", "-body", "-redis", url, "-name", "shop", "key-old")
	if !strings.Contains(r.stdout, secret) {
		t.Errorf("show -body with the key:\n%s%s", r.stdout, r.stderr)
	}
}

func TestReconcileARedisJournal(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	j, url := startRedis(t, "shop", nil)
	entries := reconcileEntries(t, sim, time.Now())[:3]
	entries[2].Owner, entries[2].Until = "call-live", time.Now().Add(time.Hour) // a live call of another process
	record(t, j, entries)
	r := sj(t, []string{"SPOTFLOW_SECRET_KEY=" + sim.SecretKey()}, "reconcile", "-redis", url, "-name", "shop",
		"-base-url", sim.BaseURL(), "-audit", filepath.Join(t.TempDir(), "a.jsonl"))
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "settled 2: created 2, not_created 0; needs_human 0, left pending for resolve; pending 1 in all") {
		t.Errorf("reconcile -redis:\n%s", r.stdout)
	}
	es, _ := j.Pending(context.Background())
	if len(es) != 1 || es[0].Key != "key-c" || es[0].Owner != "call-live" {
		t.Errorf("pending after: %+v, want key-c still held by its call", es)
	}
}
