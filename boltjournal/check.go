package boltjournal

import (
	"errors"
	"fmt"
	"io"
)

// checkFile reads a journal file of size bytes as bytes and returns an
// error saying what is wrong if bbolt could not use it safely: meta pages
// that are not valid, a file shorter than its meta says, a page of the tree
// or the freelist that is not what its parent says it is, or a free page
// that is also in use (bbolt would write over live entries). It reads every
// page of the tree once and never more than the file holds; it is what
// keeps a damaged file away from bbolt, which trusts the file and panics,
// or faults reading past its memory map, on one that lies.
//
// Pages that are neither reachable nor free (leaked) are not an error: they
// cost space, not entries.
func checkFile(r io.ReaderAt, size int64) error {
	ms := readMetas(r, size)
	m, _, n := ms.newest()
	if n == 0 {
		return errors.New(ms.why())
	}
	if err := m.sane(size); err != nil {
		return err
	}
	w := walker{r: r, pages: m.pgid, ps: int64(m.pageSize), seen: make([]bool, m.pgid)}
	w.seen[0], w.seen[1] = true, true
	if err := w.tree(m.root, 0, nil); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		return w.freelist(m.freelist)
	}
	return nil
}

// walker walks the pages of one bbolt file, marking each page it reaches
// (with its overflow pages) in seen; a page reached twice is an error, so
// a cycle ends the walk rather than the stack.
type walker struct {
	r     io.ReaderAt
	pages uint64 // high water mark
	ps    int64
	seen  []bool
	// leaf, if set, is given the elements of every leaf page of the tree
	// that are not buckets.
	leaf func([]leafElem)
	// skip, if set, is given the error of a subtree that cannot be read,
	// and the walk goes on with the next; if nil, the walk stops there.
	skip func(error)
}

// failed ends the walk with err, or records it and goes on.
func (w *walker) failed(err error) error {
	if err == nil || w.skip == nil {
		return err
	}
	w.skip(err)
	return nil
}

func (w *walker) mark(p page) error {
	for i := p.id; i <= p.id+uint64(p.overflow); i++ {
		if w.seen[i] {
			return fmt.Errorf("page %d is reached twice", i)
		}
		w.seen[i] = true
	}
	return nil
}

// tree walks the bucket tree rooted at page id. path names the bucket, for
// errors.
func (w *walker) tree(id uint64, depth int, path []byte) error {
	if depth > maxDepth {
		return fmt.Errorf("bucket %q: tree deeper than %d", path, maxDepth)
	}
	if id < 2 {
		return fmt.Errorf("bucket %q: points at meta page %d", path, id)
	}
	p, err := readPage(w.r, id, w.pages, w.ps)
	if err != nil {
		return fmt.Errorf("bucket %q: %w", path, err)
	}
	if err := w.mark(p); err != nil {
		return fmt.Errorf("bucket %q: %w", path, err)
	}
	switch p.flags {
	case branchPage:
		kids, err := p.branchChildren()
		if err != nil {
			return fmt.Errorf("bucket %q: %w", path, err)
		}
		for _, k := range kids {
			if err := w.failed(w.tree(k, depth+1, path)); err != nil {
				return err
			}
		}
		return nil
	case leafPage:
		return w.leafPage(p, depth, path)
	}
	return fmt.Errorf("bucket %q: page %d has flags %#x, not a branch or leaf page", path, id, p.flags)
}

// leafPage walks the buckets a leaf page holds and gives its other
// elements to w.leaf.
func (w *walker) leafPage(p page, depth int, path []byte) error {
	es, err := p.leafElems()
	if err != nil {
		return fmt.Errorf("bucket %q: %w", path, err)
	}
	kv := es[:0:0]
	for _, e := range es {
		if e.flags&bucketLeafFlag == 0 {
			kv = append(kv, e)
			continue
		}
		if err := w.failed(w.bucket(e, depth, path)); err != nil {
			return err
		}
	}
	if w.leaf != nil && len(kv) > 0 {
		w.leaf(kv)
	}
	return nil
}

// bucket walks the nested bucket a leaf element holds: inline in the value,
// or rooted at the page its header names.
func (w *walker) bucket(e leafElem, depth int, path []byte) error {
	sub := append(append(path[:len(path):len(path)], '/'), e.key...)
	if len(e.value) < bucketHeader {
		return fmt.Errorf("bucket %q: header too short", sub)
	}
	if root := ne.Uint64(e.value); root != 0 {
		return w.tree(root, depth+1, sub)
	}
	ip, err := inlinePage(e.value)
	if err != nil {
		return fmt.Errorf("bucket %q: %w", sub, err)
	}
	return w.leafPage(ip, depth+1, sub)
}

// freelist checks the freelist page at id: every id it lists is a page
// below the high water mark, listed once, in order (bbolt's map freelist
// panics on ids out of order), and not in use by the tree.
func (w *walker) freelist(id uint64) error {
	p, err := readPage(w.r, id, w.pages, w.ps)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if p.flags != freelistPage {
		return fmt.Errorf("freelist: page %d has flags %#x, not a freelist page", id, p.flags)
	}
	if err := w.mark(p); err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	ids, err := p.freeIDs()
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	var last uint64
	for _, f := range ids {
		switch {
		case f < 2 || f >= w.pages:
			return fmt.Errorf("freelist: lists page %d outside pages 2..%d", f, w.pages-1)
		case f <= last:
			return fmt.Errorf("freelist: lists page %d after page %d", f, last)
		case w.seen[f]:
			return fmt.Errorf("freelist: lists page %d, which is in use", f)
		}
		last = f
	}
	return nil
}
