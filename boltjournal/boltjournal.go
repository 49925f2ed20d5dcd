// Package boltjournal keeps a [spotflowhttp.Journal] in a single file with
// bbolt (go.etcd.io/bbolt): the default choice for a service on one machine.
// Every Record is on disk (fsync) before it returns, so the request it
// describes leaves only once its entry would survive a crash.
//
// Writes that arrive while another is being committed are committed
// together, with one fsync, so concurrent calls share the cost of durability
// instead of queueing for it; a lone write never waits for company.
//
// The file is locked while open: one process at a time. That is also why
// [Open] frees every entry it finds: the process that held them is gone.
// [OpenReadOnly] looks at a file without changing it.
//
// A damaged file (cut short, garbled, not a journal) never crashes the
// process that opens it: [Open] returns an error wrapping [ErrDamaged], and
// [Salvage] reads out the entries the file still holds.
package boltjournal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/spotflow-go/spotflowhttp"
)

// Journal is a [spotflowhttp.Journal] in a bbolt file. It is safe for
// concurrent use by multiple goroutines.
type Journal struct {
	db       *bolt.DB
	readOnly bool

	mu     sync.Mutex
	queue  []*write // writes waiting for the next commit
	busy   bool     // a writer is committing
	closed bool
}

var _ spotflowhttp.Journal = (*Journal)(nil)

var bucket = []byte("entries")

// LockTimeout is how long Open waits for another process to release the
// file before it fails.
const LockTimeout = time.Second

// ErrClosed is returned by the methods of a closed Journal.
var ErrClosed = errors.New("boltjournal: journal closed")

// ErrDamaged is wrapped by the error [Open], [OpenReadOnly] and [Salvage]
// return for a file that is not a sound journal: meta pages zeroed or
// garbled, a file cut short, a page that is not what the tree says, random
// bytes, an entry that is not one. Test for it with [errors.Is]. The error
// names the file and says what to do: move it aside, read out what it still
// holds with [Salvage] (or `spotflow-journal salvage -file PATH`), and start
// with a new file.
var ErrDamaged = errors.New("boltjournal: damaged journal")

// ErrInUse is wrapped by the error [Open] and [OpenReadOnly] return when
// another process holds the file's lock for longer than [LockTimeout]: a
// running service has it open.
var ErrInUse = errors.New("boltjournal: journal in use by another process")

// ErrReadOnly is returned by Record, Claim and Settle of a Journal opened
// with [OpenReadOnly].
var ErrReadOnly = errors.New("boltjournal: journal opened read-only")

// Open opens the journal file at path, creating it (mode 0600: entries hold
// request bodies) if needed. Every entry in it is freed, its claim ended
// now, since the file can only have been held by a process that has exited:
// a reconciler may settle them at once. The caller must Close the journal.
//
// Before bbolt maps the file, Open reads it as bytes and checks it: its
// meta pages, its size against what they say, every page of the tree and
// the freelist. A file that fails is never handed to bbolt, and a panic or
// memory fault inside bbolt while opening is recovered; either way Open
// returns an error wrapping [ErrDamaged] that names the file and says what
// to do, rather than crash the process. A file another process holds gives
// an error wrapping [ErrInUse] after [LockTimeout]. The check reads each
// page of the tree once: its cost grows with the entries held, like that
// of freeing them (see the README for figures).
func Open(path string) (*Journal, error) {
	return open(path, false)
}

// OpenReadOnly opens the journal file at path to look at it without
// changing it: it takes a shared lock (other readers may open it too, a
// writer may not, and a process that has it open with [Open] makes it fail
// with [ErrInUse]), frees no claim and takes none. Pending works; Record,
// Claim and Settle return [ErrReadOnly]. The file is checked as [Open]
// checks it. A missing file is an error, never created. The caller must
// Close the journal, which releases the lock.
func OpenReadOnly(path string) (*Journal, error) {
	return open(path, true)
}

func open(path string, readOnly bool) (*Journal, error) {
	f, err := openChecked(path, readOnly)
	if err != nil {
		return nil, err
	}
	db, err := openBolt(path, f, readOnly)
	if err != nil {
		return nil, err
	}
	if !readOnly {
		now := time.Now()
		if err := protect("open", path, func() error { return freeClaims(db, now) }); err != nil {
			db.Close()
			if errors.Is(err, errBadEntry) {
				err = damaged("open", path, err.Error())
			}
			return nil, openErr(path, err)
		}
	}
	return &Journal{db: db, readOnly: readOnly}, nil
}

// openChecked opens and locks the file as bbolt will, then checks it.
func openChecked(path string, readOnly bool) (*os.File, error) {
	flag := os.O_RDWR | os.O_CREATE
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if readOnly && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("boltjournal: open %s: no journal file there (%w): give the path of an existing journal", path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("boltjournal: %w", err)
	}
	err = lockFile(f, !readOnly, LockTimeout)
	var info os.FileInfo
	if err == nil {
		info, err = f.Stat()
	}
	if err == nil && info.Size() > 0 {
		if why := checkFile(f, info.Size()); why != nil {
			err = damaged("open", path, why.Error())
		}
	} else if err == nil && readOnly {
		err = fmt.Errorf("boltjournal: open %s: empty file, no journal written to it yet: nothing to read", path)
	}
	if err != nil {
		f.Close() // releases the lock
		return nil, openErr(path, err)
	}
	return f, nil
}

// openBolt hands f, open, locked and checked, to bbolt. bbolt closes f when
// it fails and when the DB is closed.
func openBolt(path string, f *os.File, readOnly bool) (*bolt.DB, error) {
	opts := &bolt.Options{
		Timeout:  LockTimeout,
		ReadOnly: readOnly,
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil },
	}
	var db *bolt.DB
	err := protect("open", path, func() (err error) {
		db, err = bolt.Open(path, 0o600, opts)
		return err
	})
	if err != nil {
		f.Close() // after a panic bbolt has not; otherwise a no-op
		return nil, openErr(path, err)
	}
	return db, nil
}

// errBadEntry marks an entry that is not JSON: damage bbolt cannot see.
var errBadEntry = errors.New("entry is not a journal entry")

// freeClaims ends every claim in the file now.
func freeClaims(db *bolt.DB, now time.Time) error {
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var e spotflowhttp.Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("%w: %q: %v", errBadEntry, k, err)
			}
			if !e.Until.After(now) {
				return nil
			}
			e.Until = now
			return put(b, e)
		})
	})
}

// Close waits for the writes in progress and closes the file. Later calls
// of the Journal's methods return [ErrClosed].
func (j *Journal) Close() error {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	return j.db.Close() // waits for a commit in progress

}

// Record implements [spotflowhttp.Journal]: the entry is on disk when it
// returns.
func (j *Journal) Record(ctx context.Context, e spotflowhttp.Entry) error {
	if j.readOnly {
		return ErrReadOnly
	}
	if e.Key == "" {
		return errors.New("boltjournal: entry without a key")
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.commit(func(b *bolt.Bucket) error { return b.Put([]byte(e.Key), v) })
}

// Claim implements [spotflowhttp.Journal].
func (j *Journal) Claim(ctx context.Context, key, owner string, now, until time.Time) (bool, error) {
	if j.readOnly {
		return false, ErrReadOnly
	}
	var ok bool
	err := j.commit(func(b *bolt.Bucket) error {
		ok = false
		e, found, err := get(b, key)
		if err != nil || !found || !spotflowhttp.Claimable(e, owner, now) {
			return err
		}
		e.Owner, e.Until = owner, until
		ok = true
		return put(b, e)
	})
	return ok, err
}

// Settle implements [spotflowhttp.Journal].
func (j *Journal) Settle(ctx context.Context, key, owner string) (bool, error) {
	if j.readOnly {
		return false, ErrReadOnly
	}
	var ok bool
	err := j.commit(func(b *bolt.Bucket) error {
		ok = false
		e, found, err := get(b, key)
		if err != nil || !found || e.Owner != owner {
			return err
		}
		ok = true
		return b.Delete([]byte(key))
	})
	return ok, err
}

// Pending implements [spotflowhttp.Journal].
func (j *Journal) Pending(ctx context.Context) ([]spotflowhttp.Entry, error) {
	var out []spotflowhttp.Entry
	// Protected: a read-only Journal is how an operator looks at a file
	// that may be damaged in ways the check at opening does not see.
	err := protect("read", j.db.Path(), func() error {
		return j.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			if b == nil { // a file bbolt made but Open never finished
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				var e spotflowhttp.Entry
				if err := json.Unmarshal(v, &e); err != nil {
					return damaged("read", j.db.Path(), fmt.Sprintf("entry %q: %v", k, err))
				}
				out = append(out, e)
				return nil
			})
		})
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	spotflowhttp.SortEntries(out)
	return out, err
}

func get(b *bolt.Bucket, key string) (e spotflowhttp.Entry, found bool, err error) {
	v := b.Get([]byte(key))
	if v == nil {
		return e, false, nil
	}
	if err := json.Unmarshal(v, &e); err != nil {
		return e, false, fmt.Errorf("boltjournal: entry %q: %w", key, err)
	}
	return e, true, nil
}

func put(b *bolt.Bucket, e spotflowhttp.Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put([]byte(e.Key), v)
}

// write is one change waiting for a commit. lead tells a waiter that it is
// to commit the queue; otherwise err is its result.
type write struct {
	fn   func(*bolt.Bucket) error
	err  error
	done chan bool // receives lead
}

// commit applies fn in a transaction and returns once it is on disk.
// Group commit: the first writer to find no commit running commits
// everything queued in one transaction (one fsync); the writers that queue
// up meanwhile wait, and the first of them commits the next batch. A batch
// whose transaction fails is retried one write at a time, so one bad write
// fails alone.
func (j *Journal) commit(fn func(*bolt.Bucket) error) error {
	w := &write{fn: fn, done: make(chan bool, 1)}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.queue = append(j.queue, w)
	if j.busy {
		j.mu.Unlock()
		if lead := <-w.done; !lead {
			return w.err
		}
		j.mu.Lock()
	}
	j.busy = true
	batch := j.queue
	j.queue = nil
	j.mu.Unlock()

	j.run(batch)

	j.mu.Lock()
	if len(j.queue) > 0 {
		j.queue[0].done <- true // it commits the next batch
	} else {
		j.busy = false
	}
	j.mu.Unlock()
	return w.err
}

// run commits batch and gives every writer in it its result.
func (j *Journal) run(batch []*write) {
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, w := range batch {
			if err := w.fn(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for _, w := range batch {
			w.err = j.db.Update(func(tx *bolt.Tx) error { return w.fn(tx.Bucket(bucket)) })
		}
	} else {
		for _, w := range batch {
			w.err = err
		}
	}
	for _, w := range batch {
		if errors.Is(w.err, berrors.ErrDatabaseNotOpen) {
			w.err = ErrClosed
		}
		w.done <- false // buffered: the leader, not waiting, never reads it
	}
}
