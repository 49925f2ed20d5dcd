package boltjournal

import (
	"bytes"
	"hash/fnv"
	"testing"
)

// TestMetaWithBadPageSizeIsInvalid: a meta page whose checksum holds but
// whose page size is not one bbolt could have written (here 3 bytes) is
// not valid, so neither the check nor Salvage reads pages of that size.
func TestMetaWithBadPageSizeIsInvalid(t *testing.T) {
	const ps = 4096
	data := make([]byte, 4*ps)
	for _, off := range []int{0, ps} {
		m := data[off+pageHeaderSize:]
		ne.PutUint32(m[0:], boltMagic)
		ne.PutUint32(m[4:], boltVersion)
		ne.PutUint32(m[8:], 3)
		ne.PutUint64(m[16:], 3)
		ne.PutUint64(m[32:], 2)
		ne.PutUint64(m[40:], 4)
		h := fnv.New64a()
		h.Write(m[:56])
		ne.PutUint64(m[56:], h.Sum64())
	}
	r := bytes.NewReader(data)
	if err := checkFile(r, int64(len(data))); err == nil {
		t.Error("checkFile accepted a page size of 3")
	}
	salvage(r, int64(len(data))) // must not panic
}
