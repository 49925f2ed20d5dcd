package spotflowhttp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SealKeySize is the size of a key of [SealJournal]: AES-256.
const SealKeySize = 32

// sealVersion is the first byte of every sealed blob; a format change gets a
// new one, and a blob of an unknown version is refused, not guessed at.
const sealVersion = 1

// The parts of a sealed blob: version, key id, nonce, then the AES-256-GCM
// ciphertext of the header and body, with its tag.
const (
	keyIDSize   = 8
	nonceSize   = 12
	sealHeadLen = 1 + keyIDSize + nonceSize
)

// ErrSealKeyMissing is matched (errors.Is) by the error of a sealed
// journal's Pending when an entry was sealed with a key the journal was not
// given: typically an old key dropped from oldKeys too soon.
var ErrSealKeyMissing = errors.New("sealed with a key this journal was not given")

// ErrSealBroken is matched (errors.Is) by the error of a sealed journal's
// Pending when an entry's sealed data does not open with the key it names:
// it was damaged, truncated, or changed (as has been its key, reference,
// account, method or URL, which the seal binds), or is of an unknown format.
var ErrSealBroken = errors.New("sealed data does not open: damaged or changed")

// SealJournal returns a [Journal] that keeps in j only a sealed copy of
// each entry's Body and Header: it encrypts them with AES-256-GCM under
// key, with a fresh random nonce per Record, into [Entry].Sealed, and
// hands j the entry with Body and Header nil. Pending opens what j returns
// and gives each entry back as it was recorded (Sealed nil). Claim and
// Settle pass through unchanged.
//
// The other fields stay readable in j, as a store and a reconciler need
// them without the key: Key (the store's index, and the claim), Time,
// Owner and Until (the claim), Method, URL, Reference and Account (which
// endpoint to verify, with which merchant's credential), and BodyMissing.
// None of them holds more of the customer than the reference the shop chose.
// The seal binds Key, Method, URL, Reference and Account as additional
// data, so a sealed body cannot be moved to another entry or pointed at
// another endpoint without failing to open.
//
// Rotation: entries are sealed with key; entries sealed with any of
// oldKeys still open. Each sealed entry names the id of its key (see
// [SealKeyID]); [PendingBySealKey] counts the pending entries each key
// seals, so an old key may be dropped once it seals none. Entries recorded
// before sealing was turned on (Sealed nil) are returned as they are.
//
// An entry no key opens is returned by Pending with Body and Header nil and
// Sealed kept, never with guessed content, alongside the others, and
// Pending's error is an [*UnsealError] naming it; a [Reconciler] settles the
// others and never sends such an entry again (it may still verify it by
// reference).
//
// Each key must be [SealKeySize] bytes, not all zero (the value of a key
// variable never filled in), and given once; SealJournal returns an error,
// naming the key by its position, never its bytes, otherwise, or if j is
// nil or is itself a sealed journal. The keys are expanded at
// construction: the caller's slices are not kept and may be wiped. The
// Journal returned is safe for concurrent use if j is.
func SealJournal(j Journal, key []byte, oldKeys ...[]byte) (Journal, error) {
	switch j.(type) {
	case nil:
		return nil, errors.New("spotflowhttp: SealJournal: the journal is nil")
	case *sealedJournal:
		// The inner one would find seals it cannot open in every entry.
		return nil, errors.New("spotflowhttp: SealJournal: the journal is sealed already; give old keys to rotate")
	}
	s := &sealedJournal{j: j, keys: make(map[[keyIDSize]byte]cipher.AEAD, 1+len(oldKeys))}
	for i, k := range append([][]byte{key}, oldKeys...) {
		name := "the key"
		if i > 0 {
			name = fmt.Sprintf("old key %d", i)
		}
		id, aead, err := newSealKey(k)
		if err != nil {
			return nil, fmt.Errorf("spotflowhttp: SealJournal: %s: %w", name, err)
		}
		if _, dup := s.keys[id]; dup {
			return nil, fmt.Errorf("spotflowhttp: SealJournal: %s (id %x) is given twice", name, id)
		}
		s.keys[id] = aead
		if i == 0 {
			s.id, s.aead = id, aead
		}
	}
	return s, nil
}

// newSealKey checks k and returns its id and cipher.
func newSealKey(k []byte) ([keyIDSize]byte, cipher.AEAD, error) {
	var id [keyIDSize]byte
	if len(k) != SealKeySize {
		return id, nil, fmt.Errorf("%d bytes; an AES-256 key is %d", len(k), SealKeySize)
	}
	zero := true
	for _, b := range k {
		zero = zero && b == 0
	}
	if zero {
		return id, nil, errors.New("all zero bytes: a key never filled in")
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return id, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return id, nil, err
	}
	copy(id[:], keyIDOf(k))
	return id, aead, nil
}

// SealKeyID returns the id by which sealed entries name key: 16 hex digits,
// the first 8 bytes of SHA-256 over a label and the key. The id reveals
// nothing usable of the key; it is what errors and [PendingBySealKey] show,
// so an operator can tell keys apart without handling them.
func SealKeyID(key []byte) string {
	return hex.EncodeToString(keyIDOf(key))
}

func keyIDOf(key []byte) []byte {
	h := sha256.New()
	h.Write([]byte("spotflowhttp journal seal key id\x00"))
	h.Write(key)
	return h.Sum(nil)[:keyIDSize]
}

// SealKeyIDOf returns the id of the key that sealed e (see [SealKeyID]),
// read without any key, and false if e is not sealed or its sealed data is
// too short to name one.
func SealKeyIDOf(e Entry) (string, bool) {
	if len(e.Sealed) < sealHeadLen || e.Sealed[0] != sealVersion {
		return "", false
	}
	return hex.EncodeToString(e.Sealed[1 : 1+keyIDSize]), true
}

// PendingBySealKey counts j's pending entries by the id of the key that
// sealed them (see [SealKeyID]); entries recorded without sealing count
// under "". It reads the store without any key: given a Journal returned by
// [SealJournal], it reads the journal that one wraps (a type of your own
// around it hides the store: give it the store itself). Entries whose sealed
// data is too short or of an unknown format to name a key count under "?".
// An old key may be
// dropped from SealJournal's oldKeys, and destroyed, once no pending entry
// is sealed with it, and once no process seals with it any more (every
// process runs with the new key first).
func PendingBySealKey(ctx context.Context, j Journal) (map[string]int, error) {
	if s, ok := j.(*sealedJournal); ok {
		j = s.j
	}
	es, err := j.Pending(ctx)
	n := make(map[string]int)
	for _, e := range es {
		if e.Sealed == nil {
			n[""]++
			continue
		}
		id, ok := SealKeyIDOf(e)
		if !ok {
			id = "?"
		}
		n[id]++
	}
	return n, err
}

// UnsealError is the error of a sealed journal's Pending when it could not
// open some entries. Those entries are returned too, with Body and Header
// nil and Sealed kept.
type UnsealError struct {
	// Entries are the entries no key opened, oldest first.
	Entries []UnsealFailure
}

// UnsealFailure is one entry a sealed journal could not open.
type UnsealFailure struct {
	// Key is the entry's idempotency key.
	Key string
	// KeyID is the id of the key its seal names (see [SealKeyID]), ""
	// if the sealed data is too damaged to name one.
	KeyID string
	// Err is [ErrSealKeyMissing] or [ErrSealBroken].
	Err error
}

// Error names the first three entries, their key ids and why.
func (e *UnsealError) Error() string {
	var b strings.Builder
	if len(e.Entries) == 1 {
		b.WriteString("spotflowhttp: sealed journal: a pending entry no key opens:")
	} else {
		fmt.Fprintf(&b, "spotflowhttp: sealed journal: %d pending entries no key opens:", len(e.Entries))
	}
	for i, f := range e.Entries {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Entries)-i)
			break
		}
		if i > 0 {
			b.WriteString(";")
		}
		id := f.KeyID
		if id == "" {
			id = "unknown"
		}
		fmt.Fprintf(&b, " entry %q (key id %s): %v", f.Key, id, f.Err)
	}
	return b.String()
}

// Unwrap returns the reasons, so errors.Is(err, [ErrSealKeyMissing]) tells
// whether a key is missing.
func (e *UnsealError) Unwrap() []error {
	errs := make([]error, len(e.Entries))
	for i, f := range e.Entries {
		errs[i] = f.Err
	}
	return errs
}

// sealedJournal is what SealJournal returns.
type sealedJournal struct {
	j    Journal
	id   [keyIDSize]byte // of the key that seals new entries
	aead cipher.AEAD
	keys map[[keyIDSize]byte]cipher.AEAD // every key, by id; read-only
}

// Record seals e's Header and Body into e.Sealed and records the rest in
// the journal it wraps. An entry already sealed (as Pending returns an
// entry no key opens) is recorded as it is.
func (s *sealedJournal) Record(ctx context.Context, e Entry) error {
	if e.Sealed != nil {
		if e.Body != nil || e.Header != nil {
			return fmt.Errorf("spotflowhttp: sealed journal: entry %q is sealed and has a body or headers as well", e.Key)
		}
		return s.j.Record(ctx, e)
	}
	sealed, err := s.seal(e)
	if err != nil {
		return fmt.Errorf("spotflowhttp: sealed journal: entry %q: %w", e.Key, err)
	}
	e.Sealed, e.Body, e.Header = sealed, nil, nil
	return s.j.Record(ctx, e)
}

// Claim implements [Journal].
func (s *sealedJournal) Claim(ctx context.Context, key, owner string, now, until time.Time) (bool, error) {
	return s.j.Claim(ctx, key, owner, now, until)
}

// Settle implements [Journal].
func (s *sealedJournal) Settle(ctx context.Context, key, owner string) (bool, error) {
	return s.j.Settle(ctx, key, owner)
}

// Pending opens every sealed entry the journal it wraps returns. The
// entries no key opens are returned as they are stored, and named by an
// *UnsealError joined to the store's own error, if any.
func (s *sealedJournal) Pending(ctx context.Context) ([]Entry, error) {
	es, err := s.j.Pending(ctx)
	var ue UnsealError
	for i := range es {
		if es[i].Sealed == nil {
			continue // recorded before sealing was turned on
		}
		if f := s.open(&es[i]); f != nil {
			ue.Entries = append(ue.Entries, *f)
		}
	}
	switch {
	case len(ue.Entries) == 0:
	case err == nil:
		err = &ue
	default:
		err = errors.Join(err, &ue)
	}
	return es, err
}

// seal returns the sealed blob of e's Header and Body: version, key id,
// nonce, then the ciphertext of appendPlain's plaintext, with e's binding
// as additional data.
func (s *sealedJournal) seal(e Entry) ([]byte, error) {
	blob := make([]byte, sealHeadLen, sealHeadLen+plainSize(e)+s.aead.Overhead())
	blob[0] = sealVersion
	copy(blob[1:], s.id[:])
	rand.Read(blob[1+keyIDSize : sealHeadLen]) // never fails (crypto/rand, Go 1.24+)
	plain := appendPlain(blob, e)
	// Sealed in place: the ciphertext overwrites the plaintext exactly.
	return s.aead.Seal(blob, blob[1+keyIDSize:sealHeadLen], plain[sealHeadLen:], sealBinding(blob[:1+keyIDSize], e)), nil
}

// open replaces e's Sealed with the Header and Body it holds, or leaves e
// as it is (Body and Header nil) and says why it cannot.
func (s *sealedJournal) open(e *Entry) *UnsealFailure {
	blob := e.Sealed
	e.Body, e.Header = nil, nil
	f := &UnsealFailure{Key: e.Key, Err: ErrSealBroken}
	if len(blob) < sealHeadLen+s.aead.Overhead() || blob[0] != sealVersion {
		return f
	}
	var id [keyIDSize]byte
	copy(id[:], blob[1:])
	f.KeyID = hex.EncodeToString(id[:])
	aead, ok := s.keys[id]
	if !ok {
		f.Err = ErrSealKeyMissing
		return f
	}
	plain, err := aead.Open(nil, blob[1+keyIDSize:sealHeadLen], blob[sealHeadLen:], sealBinding(blob[:1+keyIDSize], *e))
	if err != nil {
		return f
	}
	h, body, ok := parsePlain(plain)
	if !ok {
		return f // authentic but malformed: a bug, not an attack; refused all the same
	}
	e.Header, e.Body, e.Sealed = h, body, nil
	return nil
}

// The plaintext of a seal is the header, as a count of names and, for each,
// its name and its values, every string preceded by its length (uvarint);
// then the body, to the end.

// plainSize bounds the size of e's plaintext.
func plainSize(e Entry) int {
	n := binary.MaxVarintLen64 + len(e.Body)
	for k, vs := range e.Header {
		n += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vs {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	return n
}

func appendPlain(b []byte, e Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for k, vs := range e.Header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return append(b, e.Body...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// parsePlain reads a plaintext appendPlain wrote; false if it is malformed.
func parsePlain(p []byte) (http.Header, []byte, bool) {
	r := plainReader{p: p, ok: true}
	n := r.uvarint()
	if !r.ok || n > uint64(len(r.p)) { // each name takes a byte at least
		return nil, nil, false
	}
	var h http.Header
	if n > 0 {
		h = make(http.Header, n)
	}
	for i := uint64(0); i < n && r.ok; i++ {
		k := r.string()
		m := r.uvarint()
		if m > uint64(len(r.p)) {
			r.ok = false
			break
		}
		vs := make([]string, 0, m)
		for j := uint64(0); j < m && r.ok; j++ {
			vs = append(vs, r.string())
		}
		h[k] = vs
	}
	if !r.ok {
		return nil, nil, false
	}
	if len(r.p) == 0 {
		return h, nil, true
	}
	return h, r.p, true
}

// plainReader reads uvarints and strings from p; ok turns false, for good,
// at the first that p does not hold.
type plainReader struct {
	p  []byte
	ok bool
}

func (r *plainReader) uvarint() uint64 {
	if !r.ok {
		return 0
	}
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.ok = false
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *plainReader) string() string {
	n := r.uvarint()
	if !r.ok || n > uint64(len(r.p)) {
		r.ok = false
		return ""
	}
	s := string(r.p[:n])
	r.p = r.p[n:]
	return s
}

// sealBinding is the additional data of e's seal: a label, the blob's
// version and key id, then e's Key, Method, URL, Reference and Account,
// each preceded by its length so that no two entries bind the same bytes.
func sealBinding(head []byte, e Entry) []byte {
	const label = "spotflowhttp journal entry\x00"
	fields := [...]string{e.Key, e.Method, e.URL, e.Reference, e.Account}
	n := len(label) + len(head)
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := append(append(make([]byte, 0, n), label...), head...)
	for _, f := range fields {
		b = appendString(b, f)
	}
	return b
}
