package spotflowhttp

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// hex8 writes eight hex digits at once; it must agree with fmt for every
// digit in every position.
func TestHex8IsFmtHex(t *testing.T) {
	xs := []uint32{0, 1, 9, 10, 15, 16, 0x99999999, 0xaaaaaaaa, 0xffffffff}
	for i := 0; i < 8; i++ {
		for d := uint32(0); d < 16; d++ {
			xs = append(xs, d<<(4*i), 0x12345678^d<<(4*i))
		}
	}
	for _, x := range xs {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], hex8(x))
		if got, want := string(b[:]), fmt.Sprintf("%08x", x); got != want {
			t.Errorf("hex8(%#x) = %q, want %q", x, got, want)
		}
	}
}

// Keys are all different, no quarter of a key repeats another (a chance
// of 6 in 2^32), and every position of a key takes every digit: both words
// of the stream reach the key whole.
func TestKeysUseEveryDigitEverywhere(t *testing.T) {
	seen := map[string]bool{}
	var digits [32]map[byte]bool
	for i := range digits {
		digits[i] = map[byte]bool{}
	}
	for i := 0; i < 2000; i++ {
		k := newKey()
		if seen[k] {
			t.Fatalf("key %s made twice", k)
		}
		seen[k] = true
		for a := 0; a < 32; a += 8 {
			for b := a + 8; b < 32; b += 8 {
				if k[a:a+8] == k[b:b+8] {
					t.Fatalf("key %s repeats its digits %d..%d at %d", k, a, a+7, b)
				}
			}
		}
		for j := 0; j < len(k); j++ {
			digits[j][k[j]] = true
		}
	}
	for j, d := range digits {
		if len(d) != 16 {
			t.Errorf("position %d took %d digits in 2,000 keys, want 16", j, len(d))
		}
	}
}
