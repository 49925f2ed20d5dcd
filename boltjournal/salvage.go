package boltjournal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/spotflow-go/spotflowhttp"
)

// Salvage reads out the entries a journal file still holds, however
// damaged, oldest first, for an operator to reconcile them from a fresh
// journal (`spotflow-journal salvage` does that). It reads the file as
// bytes and never writes it, nor lets bbolt near it; it takes the shared
// lock [OpenReadOnly] takes, so a file a running service holds gives an
// error wrapping [ErrInUse]. A missing file is an error; an empty one holds
// nothing.
//
// Where a meta page is valid, its tree is walked first (bbolt's choice of
// meta, the valid one with the higher transaction id), and what it reaches
// is what the journal held: if the whole tree can be read, that is all
// Salvage returns, with a nil error. Otherwise (both meta pages invalid, the
// file cut short, a page of the tree damaged) every page of the file is
// also scanned for leaf pages, and every element whose value is a journal
// entry under its own key is kept. A key found more than once keeps the
// copy the tree reaches, else the copy whose claim ends last.
//
// The error, non-nil together with the entries, is a [*SalvageError]
// wrapping [ErrDamaged]: what could not be read, and the keys of the
// entries found only by the scan. Those need care: bbolt writes every
// change to a fresh page and leaves the old one in the file, so an entry
// found only outside the tree may be an older copy of one that was settled
// (its outcome known and acted on) before the damage. Re-checking it by
// reference is safe: the verify endpoint says whether the payment exists and
// changes nothing. Sending it again with its key is safe only if Spotflow
// saw the key (it answers a repeat within its 24-hour idempotency window
// without creating twice): an entry settled because its request was never
// sent (refused by the rate limiter, cancelled first) has a key Spotflow
// never saw, and sending it would create the payment the caller was told
// failed. So give such entries to a reconciler with their body removed and
// BodyMissing set, which makes it verify them by reference and report the
// rest as needing a person, never send them; or show them to a person.
func Salvage(path string) ([]spotflowhttp.Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("boltjournal: salvage %s: no such file (%w): give the path of the damaged journal", path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("boltjournal: salvage: %w", err)
	}
	defer f.Close()
	if err := lockFile(f, false, LockTimeout); err != nil {
		if errors.Is(err, ErrInUse) {
			return nil, inUse("salvage", path)
		}
		return nil, fmt.Errorf("boltjournal: salvage %s: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("boltjournal: salvage: %w", err)
	}
	s := salvage(f, info.Size())
	if len(s.problems) == 0 && len(s.unreached) == 0 {
		return s.entries, nil
	}
	return s.entries, &SalvageError{Path: path, Problems: s.problems, Unreached: s.unreached}
}

// SalvageError is what [Salvage] could not read of a file, or could read
// only outside its tree. It wraps [ErrDamaged].
type SalvageError struct {
	// Path is the file's.
	Path string
	// Problems says what could not be read, one line each.
	Problems []string
	// Unreached holds the keys of the entries found only by scanning the
	// file's pages, not through a tree a valid meta page reaches: they may
	// have been settled already (see [Salvage]).
	Unreached []string
}

// Error returns one line: the file, what was found, what to do.
func (e *SalvageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "boltjournal: salvage %s: damaged journal", e.Path)
	if len(e.Problems) > 0 {
		fmt.Fprintf(&b, " (%s", oneLine(e.Problems[0]))
		if len(e.Problems) > 1 {
			fmt.Fprintf(&b, "; and %d more problems", len(e.Problems)-1)
		}
		b.WriteString(")")
	}
	if len(e.Unreached) > 0 {
		fmt.Fprintf(&b, ": %d entries found only outside the tree may have been settled already: verify them by reference, never send them again",
			len(e.Unreached))
	} else {
		b.WriteString(": entries may be missing")
	}
	return b.String()
}

// Unwrap returns [ErrDamaged].
func (e *SalvageError) Unwrap() error { return ErrDamaged }

// salvaged is what salvage read from a file.
type salvaged struct {
	entries   []spotflowhttp.Entry // oldest first
	problems  []string
	unreached []string // sorted
}

// salvage reads the entries of a bbolt journal of size bytes from r,
// whatever its bytes: every length is bounded by size, every page read
// checked against it.
func salvage(r io.ReaderAt, size int64) salvaged {
	var s salvaged
	live := map[string]spotflowhttp.Entry{}
	ms := readMetas(r, size)
	m, _, n := ms.newest()
	complete := false
	if n == 0 {
		s.problems = append(s.problems, ms.why())
	} else {
		complete = salvageTree(r, size, m, live, &s.problems)
	}
	found := live
	if !complete {
		found = map[string]spotflowhttp.Entry{}
		salvageScan(r, size, ms.pageSize, found, &s.problems)
		for k, e := range live {
			found[k] = e // the tree's copy wins
		}
		for k := range found {
			if _, ok := live[k]; !ok {
				s.unreached = append(s.unreached, k)
			}
		}
		slices.Sort(s.unreached)
	}
	for _, e := range found {
		s.entries = append(s.entries, e)
	}
	spotflowhttp.SortEntries(s.entries)
	return s
}

// salvageTree collects the entries of the tree m reaches into live, as far
// as the file holds it, and reports whether all of it could be read.
func salvageTree(r io.ReaderAt, size int64, m meta, live map[string]spotflowhttp.Entry, problems *[]string) bool {
	ps := uint64(m.pageSize) // a power of two in [minPageSize, maxPageSize]: parseMeta checked
	pages := min(m.pgid, uint64(size)/ps)
	complete := m.pgid <= pages
	if !complete {
		*problems = append(*problems, fmt.Sprintf("file cut short: %d of %d pages", pages, m.pgid))
	}
	w := walker{r: r, pages: pages, ps: int64(ps), seen: make([]bool, pages)}
	w.leaf = func(es []leafElem) { keepEntries(es, live) }
	w.skip = func(err error) {
		complete = false
		*problems = append(*problems, err.Error())
	}
	if err := w.tree(m.root, 0, nil); err != nil {
		w.skip(err)
	}
	return complete
}

// salvageScan looks at every page of the file for leaf pages and keeps the
// entries they hold in found. ps is the page size a valid meta gave, 0 if
// none did.
func salvageScan(r io.ReaderAt, size, ps int64, found map[string]spotflowhttp.Entry, problems *[]string) {
	if ps == 0 {
		if ps = guessPageSize(r, size); ps == 0 {
			*problems = append(*problems, "no bbolt page found at any page size: not a journal file")
			return
		}
	}
	pages := uint64(size / ps)
	for id := uint64(2); id < pages; id++ {
		p, err := readPage(r, id, pages, ps)
		if err != nil || p.flags != leafPage {
			continue // not a page, or a page's overflow
		}
		es, err := p.leafElems()
		if err != nil {
			continue
		}
		keepEntries(es, found)
		for _, e := range es {
			if e.flags&bucketLeafFlag != 0 && len(e.value) >= bucketHeader && ne.Uint64(e.value) == 0 {
				if ip, err := inlinePage(e.value); err == nil {
					if ies, err := ip.leafElems(); err == nil {
						keepEntries(ies, found)
					}
				}
			}
		}
	}
}

// keepEntries keeps in found the elements that are journal entries under
// their own key; of two copies of one, the one whose claim ends last.
func keepEntries(es []leafElem, found map[string]spotflowhttp.Entry) {
	for _, el := range es {
		if el.flags&bucketLeafFlag != 0 || len(el.key) == 0 {
			continue
		}
		var e spotflowhttp.Entry
		if json.Unmarshal(el.value, &e) != nil || e.Key != string(el.key) {
			continue
		}
		if old, ok := found[e.Key]; !ok || e.Until.After(old.Until) {
			found[e.Key] = e
		}
	}
}

// guessPageSize returns the page size at which most of the file's first
// pages name themselves (a bbolt page header holds its own id), 0 if at
// none.
func guessPageSize(r io.ReaderAt, size int64) int64 {
	const sample = 1024 // pages looked at per size
	var best, bestN int64
	var h [pageHeaderSize]byte
	for _, ps := range pageSizes() {
		n := int64(0)
		for id := int64(2); id < min(size/ps, sample); id++ {
			if _, err := r.ReadAt(h[:], id*ps); err != nil {
				break
			}
			f := ne.Uint16(h[8:])
			if ne.Uint64(h[0:]) == uint64(id) && (f == leafPage || f == branchPage || f == freelistPage) {
				n++
			}
		}
		if n > bestN {
			best, bestN = ps, n
		}
	}
	return best
}

// pageSizes lists the page sizes to try, the machine's first.
func pageSizes() []int64 {
	out := []int64{int64(os.Getpagesize())}
	for ps := int64(minPageSize); ps <= 1<<16; ps <<= 1 {
		if ps != out[0] {
			out = append(out, ps)
		}
	}
	return out
}
