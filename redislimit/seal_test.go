package redislimit_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/redislimit/redistest"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// sealRedis starts a redis-server of t's own, so that everything in it is
// the journal's, and returns a client of it; it skips t if redis-server is
// not installed.
func sealRedis(t *testing.T) *redis.Client {
	t.Helper()
	s, err := redistest.Start()
	if errors.Is(err, redistest.ErrNoServer) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestSealedRedisJournal: a sealed Redis journal keeps the Journal
// contract.
func TestSealedRedisJournal(t *testing.T) {
	rdb := sealRedis(t)
	n := 0
	journaltest.Run(t, func(t *testing.T) spotflowhttp.Journal {
		n++
		j, err := redislimit.NewJournal(rdb, "sealed-"+string(rune('a'+n)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := spotflowhttp.SealJournal(j, bytes.Repeat([]byte{1}, 32))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// redisDump returns every key of rdb's database and every value under it,
// whatever its type (string; hash fields and values; set, sorted set and
// list members; stream entries), found with SCAN.
func redisDump(t *testing.T, rdb *redis.Client) []byte {
	t.Helper()
	ctx := context.Background()
	var out bytes.Buffer
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	keys := 0
	for iter.Next(ctx) {
		k := iter.Val()
		keys++
		out.WriteString(k + "\n")
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		switch typ {
		case "string":
			vals = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "set":
			vals = rdb.SMembers(ctx, k).Val()
		case "zset":
			vals = rdb.ZRange(ctx, k, 0, -1).Val()
		case "list":
			vals = rdb.LRange(ctx, k, 0, -1).Val()
		case "stream":
			for _, m := range rdb.XRange(ctx, k, "-", "+").Val() {
				for f, v := range m.Values {
					vals = append(vals, f, v.(string))
				}
			}
		default:
			t.Fatalf("key %q has type %q, which this test cannot read", k, typ)
		}
		for _, v := range vals {
			out.WriteString(v + "\n")
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if keys == 0 {
		t.Fatal("Redis holds no key at all")
	}
	return out.Bytes()
}

// TestSealedRedisHoldsNoCustomerData: with sealing, no key or value in
// Redis holds a pending entry's body or header in any encoding; without it
// (the control run), each is found, so the search would see a leak.
func TestSealedRedisHoldsNoCustomerData(t *testing.T) {
	const body, header = "zq-RedisBody<ada>7731@example.com", "zq-RedisHeader<ada>7731"
	for _, sealed := range []bool{false, true} {
		rdb := sealRedis(t)
		store, err := redislimit.NewJournal(rdb, "shop")
		if err != nil {
			t.Fatal(err)
		}
		var j spotflowhttp.Journal = store
		if sealed {
			if j, err = spotflowhttp.SealJournal(store, bytes.Repeat([]byte{7}, 32)); err != nil {
				t.Fatal(err)
			}
		}
		e := journaltest.Sample("k1", 0)
		e.Body = []byte(`{"amount":5000,"customer":{"email":"` + body + `"}}`)
		e.Header.Set("X-Note", header)
		if err := j.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if es, err := j.Pending(context.Background()); err != nil || len(es) != 1 || !bytes.Equal(es[0].Body, e.Body) {
			t.Fatalf("sealed %v: Pending = %+v, %v", sealed, es, err)
		}
		dump := redisDump(t, rdb)
		for _, s := range []string{body, header} {
			if found := journaltest.Holds(dump, s); found == sealed {
				t.Errorf("sealed %v: %q found in Redis: %v", sealed, s, found)
			}
		}
		if !strings.Contains(string(dump), "ref-k1") {
			t.Errorf("sealed %v: the reference is not readable in Redis", sealed)
		}
	}
}

// TestReconcileSealedRedis: a payment whose connection reset before it was
// created, journaled in Redis through a sealed journal, is sent again by a
// reconciler with the body as sent.
func TestReconcileSealedRedis(t *testing.T) {
	const email = "zq-Customer7731@example.com"
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetBeforeCommit}}))
	defer srv.Close()
	rdb := sealRedis(t)
	store, err := redislimit.NewJournal(rdb, "shop")
	if err != nil {
		t.Fatal(err)
	}
	j, err := spotflowhttp.SealJournal(store, bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: spotflowhttp.NewTransport(srv.Client().Transport,
		spotflowhttp.WithJournal(j), spotflowhttp.WithMaxAttempts(1))}
	req, _ := http.NewRequest(http.MethodPost, srv.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","reference":"ord-1","customer":{"email":"`+email+`"}}`))
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	if _, err := client.Do(req); err == nil {
		t.Fatal("want the reset")
	}
	if journaltest.Holds(redisDump(t, rdb), email) {
		t.Fatal("the customer's email is in Redis")
	}
	var settled []spotflowhttp.Settlement
	rec, err := spotflowhttp.NewReconciler(j, srv.Client().Transport,
		func(req *http.Request, _ spotflowhttp.Entry) error {
			req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
			return nil
		},
		func(s spotflowhttp.Settlement) { settled = append(settled, s) },
		spotflowhttp.WithVerifyAfter(0))
	if err != nil {
		t.Fatal(err)
	}
	if left, err := rec.ReconcileOnce(context.Background()); left != 0 || err != nil {
		t.Fatalf("ReconcileOnce = %d, %v", left, err)
	}
	if len(settled) != 1 || settled[0].By != spotflowhttp.SettledByResend || settled[0].Outcome != spotflowhttp.OutcomeCreated {
		t.Fatalf("settled %+v; want created by re-send", settled)
	}
	if p := srv.Payments(); len(p) != 1 || p[0].CustomerEmail != email || srv.Charges("ord-1") != 1 {
		t.Errorf("ledger %+v; want the body as sent, charged once", p)
	}
}
