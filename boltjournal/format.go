package boltjournal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// This file reads bbolt's on-disk format (go.etcd.io/bbolt v1.4,
// internal/common) from bytes, without mapping the file: the check that
// runs before bbolt opens a file and Salvage both use it, so that no byte
// of a damaged file reaches code that trusts it. bbolt writes its structs
// in the machine's byte order, hence binary.NativeEndian.

var ne = binary.NativeEndian

const (
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	leafElemSize   = 16 // flags u32, pos u32, ksize u32, vsize u32
	branchElemSize = 16 // pos u32, ksize u32, pgid u64
	bucketHeader   = 16 // root pgid u64, sequence u64
	metaSize       = 64

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10

	bucketLeafFlag = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	// maxPageSize bounds the page size a meta may claim; bbolt itself
	// looks for the second meta page no further than 16 MiB in.
	maxPageSize = 1 << 24
	minPageSize = 512
	// maxDepth bounds how deep a walk of the tree goes; bbolt's trees are
	// a handful of levels deep, so a deeper one is damage (or a cycle).
	maxDepth = 64
)

// meta is a bbolt meta page's fields.
type meta struct {
	pageSize uint32
	flags    uint32
	root     uint64 // root bucket's page
	freelist uint64 // freelist page, noFreelist if not synced
	pgid     uint64 // high water mark: pages in use are below it
	txid     uint64
}

// parseMeta reads the meta in the page at the start of b, which holds at
// least pageHeaderSize+metaSize bytes.
func parseMeta(b []byte) (meta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return meta{}, errors.New("short page")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	if ne.Uint32(m[0:]) != boltMagic {
		return meta{}, errors.New("not a bolt meta page (magic)")
	}
	if v := ne.Uint32(m[4:]); v != boltVersion {
		return meta{}, fmt.Errorf("bolt version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != ne.Uint64(m[56:]) {
		return meta{}, errors.New("checksum mismatch")
	}
	if ps := ne.Uint32(m[8:]); ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return meta{}, fmt.Errorf("page size %d", ps)
	}
	return meta{
		pageSize: ne.Uint32(m[8:]),
		flags:    ne.Uint32(m[12:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, nil
}

// sane checks a valid meta against the file's size: what bbolt would
// otherwise find out by reading past the end of its memory map.
func (m meta) sane(size int64) error {
	ps := uint64(m.pageSize)
	switch {
	case m.pgid < 2 || m.pgid > uint64(size)/ps:
		return fmt.Errorf("meta says %d pages of %d bytes (%d bytes) but the file has %d bytes: truncated",
			m.pgid, ps, m.pgid*ps, size)
	case m.root < 2 || m.root >= m.pgid:
		return fmt.Errorf("root page %d outside pages 2..%d", m.root, m.pgid-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
		return fmt.Errorf("freelist page %d outside pages 2..%d", m.freelist, m.pgid-1)
	}
	return nil
}

// metas are what a file's two meta pages say; err0 and err1 say why one
// is not valid.
type metas struct {
	m0, m1     meta
	err0, err1 error
	pageSize   int64 // 0 if neither meta is valid
}

// readMetas reads the meta pages as bbolt does: the page size from meta 0,
// else from a valid meta 1 found at 1 KiB, 2 KiB, ... 16 MiB; then meta 1
// at that page size.
func readMetas(r io.ReaderAt, size int64) metas {
	var ms metas
	buf := make([]byte, pageHeaderSize+metaSize)
	ms.m0, ms.err0 = readMetaAt(r, size, 0, buf)
	if ms.err0 == nil {
		ms.pageSize = int64(ms.m0.pageSize)
	} else {
		for off := int64(1024); off <= maxPageSize && off+int64(len(buf)) <= size; off <<= 1 {
			if m, err := readMetaAt(r, size, off, buf); err == nil && int64(m.pageSize) == off {
				ms.pageSize = off
				break
			}
		}
	}
	if ms.pageSize == 0 {
		ms.err1 = errors.New("not found at any page size")
		return ms
	}
	ms.m1, ms.err1 = readMetaAt(r, size, ms.pageSize, buf)
	if ms.err1 == nil && int64(ms.m1.pageSize) != ms.pageSize {
		ms.err1 = fmt.Errorf("page size %d, meta 0 says %d", ms.m1.pageSize, ms.pageSize)
	}
	return ms
}

func readMetaAt(r io.ReaderAt, size, off int64, buf []byte) (meta, error) {
	if off+int64(len(buf)) > size {
		return meta{}, errors.New("beyond the end of the file")
	}
	if _, err := r.ReadAt(buf, off); err != nil {
		return meta{}, err
	}
	return parseMeta(buf)
}

// newest returns the meta bbolt would use (the valid one with the higher
// txid) and the other one if it is valid too; ok is false if neither is.
func (ms metas) newest() (first, second meta, n int) {
	switch {
	case ms.err0 == nil && ms.err1 == nil:
		if ms.m1.txid > ms.m0.txid {
			return ms.m1, ms.m0, 2
		}
		return ms.m0, ms.m1, 2
	case ms.err0 == nil:
		return ms.m0, meta{}, 1
	case ms.err1 == nil:
		return ms.m1, meta{}, 1
	}
	return meta{}, meta{}, 0
}

// why says in a few words why neither meta is valid.
func (ms metas) why() string {
	return fmt.Sprintf("meta pages invalid: page 0: %v; page 1: %v", ms.err0, ms.err1)
}

// page is one page (with its overflow pages) read from the file.
type page struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
	data     []byte // the whole page, header included
}

// readPage reads page id of a file of pages pages of ps bytes, with its
// overflow pages, checking that it says it is page id and fits the file.
func readPage(r io.ReaderAt, id, pages uint64, ps int64) (page, error) {
	if id >= pages {
		return page{}, fmt.Errorf("page %d beyond the last page %d", id, pages-1)
	}
	first := make([]byte, ps) // one read for the usual page without overflow
	if _, err := r.ReadAt(first, int64(id)*ps); err != nil {
		return page{}, fmt.Errorf("page %d: %w", id, err)
	}
	p := page{id: ne.Uint64(first[0:]), flags: ne.Uint16(first[8:]), count: ne.Uint16(first[10:]), overflow: ne.Uint32(first[12:]), data: first}
	if p.id != id {
		return page{}, fmt.Errorf("page %d says it is page %d", id, p.id)
	}
	if uint64(p.overflow) >= pages-id {
		return page{}, fmt.Errorf("page %d: %d overflow pages run past the last page %d", id, p.overflow, pages-1)
	}
	if p.overflow > 0 {
		p.data = make([]byte, (int64(p.overflow)+1)*ps)
		copy(p.data, first)
		if _, err := r.ReadAt(p.data[ps:], (int64(id)+1)*ps); err != nil {
			return page{}, fmt.Errorf("page %d: %w", id, err)
		}
	}
	return p, nil
}

// inlinePage reads the page held inline in a bucket's value (a bucket
// small enough to live in its parent's leaf), after the bucket header.
func inlinePage(v []byte) (page, error) {
	if len(v) < bucketHeader+pageHeaderSize {
		return page{}, errors.New("inline bucket too short")
	}
	d := v[bucketHeader:]
	p := page{id: ne.Uint64(d[0:]), flags: ne.Uint16(d[8:]), count: ne.Uint16(d[10:]), overflow: ne.Uint32(d[12:]), data: d}
	if p.flags != leafPage {
		return page{}, fmt.Errorf("inline bucket page has flags %#x, want a leaf", p.flags)
	}
	return p, nil
}

// leafElem is one key/value of a leaf page.
type leafElem struct {
	flags uint32
	key   []byte
	value []byte
}

// leafElems returns the elements of a leaf page, every one bounded by the
// page's bytes.
func (p page) leafElems() ([]leafElem, error) {
	if pageHeaderSize+int(p.count)*leafElemSize > len(p.data) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", p.id, p.count)
	}
	out := make([]leafElem, 0, p.count)
	for i := range int(p.count) {
		at := pageHeaderSize + i*leafElemSize
		e := p.data[at : at+leafElemSize]
		pos, ks, vs := uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		start := uint64(at) + pos
		if start+ks+vs > uint64(len(p.data)) {
			return nil, fmt.Errorf("page %d: element %d runs past the page", p.id, i)
		}
		out = append(out, leafElem{
			flags: ne.Uint32(e[0:]),
			key:   p.data[start : start+ks],
			value: p.data[start+ks : start+ks+vs],
		})
	}
	return out, nil
}

// branchChildren returns the pages a branch page points to.
func (p page) branchChildren() ([]uint64, error) {
	if pageHeaderSize+int(p.count)*branchElemSize > len(p.data) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", p.id, p.count)
	}
	out := make([]uint64, 0, p.count)
	for i := range int(p.count) {
		at := pageHeaderSize + i*branchElemSize
		e := p.data[at : at+branchElemSize]
		if uint64(at)+uint64(ne.Uint32(e[0:]))+uint64(ne.Uint32(e[4:])) > uint64(len(p.data)) {
			return nil, fmt.Errorf("page %d: key %d runs past the page", p.id, i)
		}
		out = append(out, ne.Uint64(e[8:]))
	}
	return out, nil
}

// freeIDs returns the page ids a freelist page lists.
func (p page) freeIDs() ([]uint64, error) {
	idx, count := 0, uint64(p.count)
	if count == 0xFFFF { // the real count is the first element
		if len(p.data) < pageHeaderSize+8 {
			return nil, fmt.Errorf("freelist page %d too short", p.id)
		}
		idx, count = 1, ne.Uint64(p.data[pageHeaderSize:])
	}
	room := uint64(len(p.data)-pageHeaderSize)/8 - uint64(idx)
	if count > room {
		return nil, fmt.Errorf("freelist page %d: %d ids do not fit", p.id, count)
	}
	out := make([]uint64, count)
	for i := range out {
		out[i] = ne.Uint64(p.data[pageHeaderSize+(idx+i)*8:])
	}
	return out, nil
}
