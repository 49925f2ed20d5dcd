package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/redislimit"
)

// env is what a run of the command reads and writes besides its arguments.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
}

func newEnv(stdout, stderr io.Writer) *env {
	return &env{stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
}

// storeFlags name the journal a subcommand works on, and the keys of a
// sealed one.
type storeFlags struct {
	file, redisURL, name, admin string
	keyFile                     string
	oldKeyFiles                 filesFlag
}

// filesFlag is a flag that may be repeated.
type filesFlag []string

func (f *filesFlag) String() string     { return strings.Join(*f, ",") }
func (f *filesFlag) Set(v string) error { *f = append(*f, v); return nil }

// addStoreFlags registers the flags naming the journal on fs; -admin only
// where the command can work through a journaladmin handler.
func addStoreFlags(fs *flag.FlagSet, admin bool) *storeFlags {
	s := &storeFlags{}
	fs.StringVar(&s.file, "file", "", "the journal file (boltjournal) at `PATH`; it must exist")
	fs.StringVar(&s.redisURL, "redis", "", "the `URL` of the Redis holding a redislimit journal: redis://host:port/db, or rediss:// for TLS;\nthe password from SPOTFLOW_REDIS_PASSWORD rather than the URL (flags land in shell history)")
	fs.StringVar(&s.name, "name", "", "with -redis: the journal's `name`, as given to redislimit.NewJournal")
	if admin {
		fs.StringVar(&s.admin, "admin", "", "the `URL` where a running service mounts its journaladmin handler,\nsuch as http://127.0.0.1:9090/spotflow/journal; its bearer token from SPOTFLOW_ADMIN_TOKEN")
	}
	fs.StringVar(&s.keyFile, "key-file", "", "the `PATH` of a file holding the key of a sealed journal (32 bytes as 64 hex digits or base64);\nelse SPOTFLOW_JOURNAL_KEY")
	fs.Var(&s.oldKeyFiles, "old-key-file", "the `PATH` of a file holding an old key of a sealed journal, repeated for several;\nelse SPOTFLOW_JOURNAL_OLD_KEYS (comma separated)")
	return s
}

// check reports bad usage: not exactly one journal, or -name astray.
func (s *storeFlags) check() error {
	n := 0
	for _, v := range []string{s.file, s.redisURL, s.admin} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("no journal: give -file PATH, -redis URL -name NAME, or -admin URL")
	case n > 1:
		return errors.New("give one journal: -file, -redis or -admin, not several")
	case s.redisURL != "" && s.name == "":
		return errors.New("-redis needs -name, the journal's name as given to redislimit.NewJournal")
	case s.redisURL == "" && s.name != "":
		return errors.New("-name goes with -redis")
	case s.admin != "" && (s.keyFile != "" || len(s.oldKeyFiles) > 0):
		return errors.New("-key-file goes with -file or -redis: through -admin the service's own journal opens its entries")
	}
	return nil
}

// journal is an open journal: a store, and the same through SealJournal
// when a key was given, or a running service's handler.
type journal struct {
	name   string               // for messages and audit records: the file, or Redis address and name, or admin URL
	plain  spotflowhttp.Journal // the store as it is; nil with -admin
	sealed spotflowhttp.Journal // plain through SealJournal; nil without a key
	keyIDs []string             // ids of the keys given, the current one first
	admin  *adminClient
	audit  string // the default audit file
	close  func()
}

// opener is how a subcommand wants its journal.
type opener struct {
	writable bool // resolve and reconcile change it; list and show must not
}

// open opens the journal s names. Looking (not writable) takes and frees no
// claim: a bolt file is opened read-only, with a shared lock.
func (o opener) open(ctx context.Context, e *env, s *storeFlags) (*journal, error) {
	var (
		j   *journal
		err error
	)
	switch {
	case s.admin != "":
		return openAdmin(e, s.admin)
	case s.file != "":
		j, err = o.openFile(s.file)
	default:
		j, err = openRedis(ctx, e, s.redisURL, s.name)
	}
	if err != nil {
		return nil, err
	}
	if err := j.seal(e, s); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// openFile opens a bolt journal. It never creates one: boltjournal.Open
// would, so a mistyped path is caught first.
func (o opener) openFile(path string) (*journal, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, badInput(fmt.Errorf("journal file %s: %w", path, unwrapPath(err)))
	case fi.IsDir():
		return nil, badInput(fmt.Errorf("journal file %s: is a directory", path))
	}
	var bj *boltjournal.Journal
	if o.writable {
		bj, err = boltjournal.Open(path)
	} else {
		bj, err = boltjournal.OpenReadOnly(path)
	}
	switch {
	case errors.Is(err, boltjournal.ErrInUse):
		return nil, problem(fmt.Errorf("journal file %s is in use by another process (a running service holds its lock): "+
			"see its entries with -admin URL of the service's journaladmin handler, or stop the service first", path))
	case errors.Is(err, boltjournal.ErrDamaged):
		return nil, badInput(err) // it names the file and says: spotflow-journal salvage -file PATH
	case err != nil:
		return nil, badInput(fmt.Errorf("journal file %s: %w", path, err))
	}
	return &journal{name: path, plain: bj, audit: path + ".audit.jsonl", close: func() { bj.Close() }}, nil
}

// unwrapPath drops the *os.PathError's repetition of the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// openRedis opens a redislimit journal and checks that Redis answers.
func openRedis(ctx context.Context, e *env, rawURL, name string) (*journal, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, badInput(fmt.Errorf("-redis: %w", err))
	}
	if pw := e.getenv("SPOTFLOW_REDIS_PASSWORD"); pw != "" {
		opts.Password = pw
	}
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = 3 * time.Second
	opts.MaxRetries = 1
	rdb := redis.NewClient(opts)
	where := fmt.Sprintf("redis %s db %d", opts.Addr, opts.DB)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, problem(fmt.Errorf("%s: %w", where, err))
	}
	rj, err := redislimit.NewJournal(rdb, name)
	if err != nil {
		rdb.Close()
		return nil, badInput(err)
	}
	return &journal{
		name:  fmt.Sprintf("%s journal %q", where, name),
		plain: rj,
		audit: "spotflow-journal-" + safeName(name) + ".audit.jsonl",
		close: func() { rdb.Close() },
	}, nil
}

// safeName is name fit for a file name.
func safeName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name)
}

func openAdmin(e *env, raw string) (*journal, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, badInput(fmt.Errorf("-admin %q: not an http:// or https:// URL", raw))
	}
	c := newAdminClient(u, e.getenv("SPOTFLOW_ADMIN_TOKEN"))
	return &journal{name: "admin " + u.Redacted(), admin: c, close: c.close}, nil
}

// seal wraps the store in SealJournal if a key was given.
func (j *journal) seal(e *env, s *storeFlags) error {
	key, old, err := sealKeys(e, s)
	if err != nil || key == nil {
		return err
	}
	sj, err := spotflowhttp.SealJournal(j.plain, key, old...)
	if err != nil {
		return badInput(fmt.Errorf("sealing key: %w", err))
	}
	j.sealed = sj
	j.keyIDs = append(j.keyIDs, spotflowhttp.SealKeyID(key))
	for _, k := range old {
		j.keyIDs = append(j.keyIDs, spotflowhttp.SealKeyID(k))
	}
	return nil
}

// sealKeys reads the key of a sealed journal and its old keys from the
// files named by flags, else from the environment; nil if none is given.
func sealKeys(e *env, s *storeFlags) (key []byte, old [][]byte, err error) {
	var src []string // where each key comes from, for messages
	var texts []string
	if s.keyFile != "" {
		b, err := os.ReadFile(s.keyFile)
		if err != nil {
			return nil, nil, badInput(fmt.Errorf("-key-file %s: %w", s.keyFile, unwrapPath(err)))
		}
		src, texts = append(src, "-key-file "+s.keyFile), append(texts, string(b))
	} else if v := e.getenv("SPOTFLOW_JOURNAL_KEY"); v != "" {
		src, texts = append(src, "SPOTFLOW_JOURNAL_KEY"), append(texts, v)
	}
	if len(texts) == 0 {
		if len(s.oldKeyFiles) > 0 || e.getenv("SPOTFLOW_JOURNAL_OLD_KEYS") != "" {
			return nil, nil, badInput(errors.New("old keys given without the current one (SPOTFLOW_JOURNAL_KEY or -key-file)"))
		}
		return nil, nil, nil
	}
	for _, f := range s.oldKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, badInput(fmt.Errorf("-old-key-file %s: %w", f, unwrapPath(err)))
		}
		src, texts = append(src, "-old-key-file "+f), append(texts, string(b))
	}
	if len(s.oldKeyFiles) == 0 {
		for i, v := range strings.Split(e.getenv("SPOTFLOW_JOURNAL_OLD_KEYS"), ",") {
			if strings.TrimSpace(v) != "" {
				src, texts = append(src, fmt.Sprintf("SPOTFLOW_JOURNAL_OLD_KEYS item %d", i+1)), append(texts, v)
			}
		}
	}
	keys := make([][]byte, len(texts))
	for i, t := range texts {
		if keys[i], err = decodeKey(t); err != nil {
			return nil, nil, badInput(fmt.Errorf("%s: %w", src[i], err))
		}
	}
	return keys[0], keys[1:], nil
}

// decodeKey reads a 32-byte key written as 64 hex digits or as base64. The
// error never quotes the text: it is a secret.
func decodeKey(text string) ([]byte, error) {
	t := strings.TrimSpace(text)
	if len(t) == 2*spotflowhttp.SealKeySize {
		if b, err := hex.DecodeString(t); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(t); err == nil && len(b) == spotflowhttp.SealKeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("not a key of %d bytes written as %d hex digits or base64", spotflowhttp.SealKeySize, 2*spotflowhttp.SealKeySize)
}
