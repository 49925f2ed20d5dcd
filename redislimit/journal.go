package redislimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
)

// Journal is a [spotflowhttp.Journal] in Redis, for many processes that
// send payments and reconcile them: every process sees every pending
// entry, and the claims kept in Redis let several Reconcilers share the
// work without settling one entry twice.
//
// An entry is as durable as the Redis that holds it: run it with
// "appendonly yes" and "appendfsync always" for Record to be on disk before
// the request leaves, or ask for replicas with [WithReplicas]. Each method
// is one round trip (Pending: two), with its context as the only bound;
// give the client ContextTimeoutEnabled: true, as for a Limiter.
//
// A Journal is safe for concurrent use by multiple goroutines.
type Journal struct {
	rdb            redis.UniversalClient
	prefix         string // entry hashes: prefix + key
	setKey         string // the keys of the pending entries
	replicas       int
	replicaTimeout time.Duration
}

var _ spotflowhttp.Journal = (*Journal)(nil)

// JournalOption configures a [Journal].
type JournalOption func(*Journal)

// WithReplicas makes Record wait, with Redis's WAIT, until n replicas have
// the entry, for at most timeout; if fewer do, Record removes the entry and
// fails, so the call is not sent. The default is 0: no wait.
//
// WAIT counts the writes of the connection it is sent on, so Record sends
// the entry and WAIT together on one connection to the primary that holds
// the entry: the client's own for a single primary (a *redis.Client,
// Sentinel's failover client included), the master that owns the entry's
// hash slot for Redis Cluster (a *redis.ClusterClient). A *redis.Ring has
// no such connection to offer, and NewJournal refuses this option with one.
// NewJournal also refuses a negative n, and a timeout under a millisecond
// with n above 0: WAIT's 0 means wait forever.
//
// An entry whose Record returned nil then survives the loss of the primary
// if a replica that acknowledged it is promoted. Without WithReplicas,
// replication is asynchronous, and a failover loses what the primary had
// acknowledged but the replica had not yet received: see the README for
// what was measured.
func WithReplicas(n int, timeout time.Duration) JournalOption {
	return func(j *Journal) { j.replicas, j.replicaTimeout = n, timeout }
}

// NewJournal returns the journal named name in rdb's Redis. It keeps each
// entry in a hash "spotflowhttp:{name}:journal:<key>" and the keys of the
// pending ones in the set "spotflowhttp:{name}:journal"; the braces put
// them in one hash slot in Redis Cluster. It returns an error if rdb is nil,
// name is empty or an option was given values it cannot keep (see
// WithReplicas); it does not dial Redis.
func NewJournal(rdb redis.UniversalClient, name string, opts ...JournalOption) (*Journal, error) {
	switch {
	case isNil(rdb):
		return nil, errors.New("redislimit: the Redis client is nil")
	case name == "":
		return nil, errors.New("redislimit: the journal's name is empty")
	}
	j := &Journal{
		rdb:    rdb,
		prefix: "spotflowhttp:{" + name + "}:journal:",
		setKey: "spotflowhttp:{" + name + "}:journal",
	}
	for _, o := range opts {
		if o != nil {
			o(j)
		}
	}
	if err := j.checkReplicas(); err != nil {
		return nil, err
	}
	return j, nil
}

// checkReplicas refuses what WithReplicas cannot keep.
func (j *Journal) checkReplicas() error {
	switch {
	case j.replicas < 0:
		return fmt.Errorf("redislimit: WithReplicas(%d, %v): the number of replicas must not be negative", j.replicas, j.replicaTimeout)
	case j.replicas == 0:
		return nil
	case j.replicaTimeout < time.Millisecond:
		return fmt.Errorf("redislimit: WithReplicas(%d, %v): the timeout must be at least a millisecond (WAIT's 0 waits forever)", j.replicas, j.replicaTimeout)
	}
	if _, ok := j.rdb.(*redis.Ring); ok {
		return errors.New("redislimit: WithReplicas needs one connection to the primary holding each entry, for WAIT, which a *redis.Ring does not give; use a *redis.Client per primary or a *redis.ClusterClient")
	}
	return nil
}

// Claim times are kept as Unix microseconds: Lua's numbers are doubles,
// exact up to 2^53, which nanoseconds since 1970 exceed.
func micros(t time.Time) int64 { return t.UnixMicro() }

var recordScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'owner', ARGV[2], 'until', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
return 1`)

// claimScript: ARGV owner, now, until. The entry is held by another while
// its claim ends after now.
var claimScript = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'owner', 'until')
if not c[1] then return 0 end
if c[1] ~= '' and c[1] ~= ARGV[1] and tonumber(c[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', ARGV[3])
return 1`)

var settleScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1`)

// Record implements [spotflowhttp.Journal].
func (j *Journal) Record(ctx context.Context, e spotflowhttp.Entry) error {
	if e.Key == "" {
		return errors.New("redislimit: journal entry without a key")
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	keys := []string{j.prefix + e.Key, j.setKey}
	if j.replicas <= 0 {
		if err := recordScript.Run(ctx, j.rdb, keys, v, e.Owner, micros(e.Until), e.Key).Err(); err != nil {
			return fmt.Errorf("redislimit: journal: %w", err)
		}
		return nil
	}
	if err := j.recordReplicated(ctx, keys, v, e); err != nil {
		return fmt.Errorf("redislimit: journal: %w", err)
	}
	return nil
}

// removeTimeout bounds the removal of an entry whose Record failed. If it
// cannot be removed, the entry stays pending, for a create that was not
// sent, which the reconciler treats as any pending entry.
const removeTimeout = 500 * time.Millisecond

// recordReplicated writes the entry and WAITs for the replicas on one
// connection to the primary that holds it: WAIT counts the writes of its
// own connection. Through a ClusterClient's own pipeline, WAIT, which names
// no key, would go to whichever node go-redis picks, and count nothing
// written there. If too few replicas acknowledge, it removes the entry from
// that primary again.
func (j *Journal) recordReplicated(ctx context.Context, keys []string, v []byte, e spotflowhttp.Entry) error {
	var primary redis.Cmdable = j.rdb
	if cc, ok := j.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return err
		}
		primary = m
	}
	err := j.writeAndWait(ctx, primary, keys, v, e)
	if err != nil {
		// Even if ctx is done, but within a bound: a primary that is gone
		// or cut off would otherwise hold the caller for the client's own
		// timeouts and retries, many seconds.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		settleScript.Run(cctx, primary, keys, e.Owner, e.Key)
	}
	return err
}

// writeAndWait sends the entry and WAIT in one pipeline to primary.
func (j *Journal) writeAndWait(ctx context.Context, primary redis.Cmdable, keys []string, v []byte, e spotflowhttp.Entry) error {
	var wait *redis.Cmd
	_, err := primary.Pipelined(ctx, func(p redis.Pipeliner) error {
		recordScript.Eval(ctx, p, keys, v, e.Owner, micros(e.Until), e.Key)
		wait = p.Do(ctx, "WAIT", j.replicas, j.replicaTimeout.Milliseconds())
		return nil
	})
	if err != nil {
		return err
	}
	if n, _ := wait.Int64(); n < int64(j.replicas) {
		return fmt.Errorf("%d of %d replicas acknowledged the entry within %v", n, j.replicas, j.replicaTimeout)
	}
	return nil
}

// Claim implements [spotflowhttp.Journal].
func (j *Journal) Claim(ctx context.Context, key, owner string, now, until time.Time) (bool, error) {
	n, err := claimScript.Run(ctx, j.rdb, []string{j.prefix + key}, owner, micros(now), micros(until)).Int()
	if err != nil {
		return false, fmt.Errorf("redislimit: journal: %w", err)
	}
	return n == 1, nil
}

// Settle implements [spotflowhttp.Journal].
func (j *Journal) Settle(ctx context.Context, key, owner string) (bool, error) {
	n, err := settleScript.Run(ctx, j.rdb, []string{j.prefix + key, j.setKey}, owner, key).Int()
	if err != nil {
		return false, fmt.Errorf("redislimit: journal: %w", err)
	}
	return n == 1, nil
}

// Pending implements [spotflowhttp.Journal].
func (j *Journal) Pending(ctx context.Context) ([]spotflowhttp.Entry, error) {
	keys, err := j.rdb.SMembers(ctx, j.setKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redislimit: journal: %w", err)
	}
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err = j.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HMGet(ctx, j.prefix+k, "e", "owner", "until")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redislimit: journal: %w", err)
	}
	out := make([]spotflowhttp.Entry, 0, len(keys))
	for i, cmd := range cmds {
		v := cmd.Val()
		raw, ok := v[0].(string)
		if !ok {
			continue // settled since SMEMBERS
		}
		var e spotflowhttp.Entry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("redislimit: journal entry %q: %w", keys[i], err)
		}
		e.Owner, _ = v[1].(string)
		if s, ok := v[2].(string); ok {
			var us int64
			fmt.Sscan(s, &us)
			e.Until = time.UnixMicro(us).UTC()
		}
		out = append(out, e)
	}
	spotflowhttp.SortEntries(out)
	return out, nil
}
