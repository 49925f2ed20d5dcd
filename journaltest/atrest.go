package journaltest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// Holds reports whether stored, the raw bytes a journal's store keeps (a
// file's contents, every key and value of a database), holds s in any form
// a store that keeps entries as JSON may hold it: as it is, as the content
// of a JSON string (a header value), or inside standard or URL-safe base64
// (a body, which encoding/json writes as base64). Base64 turns each 3 bytes
// into 4 characters, so the characters that stand for s depend on its
// offset modulo 3: Holds looks for each of the three.
//
// It is for tests of encryption at rest, such as a journal wrapped with
// [spotflowhttp.SealJournal]: a search for the raw string alone finds
// nothing in a store that keeps bodies as base64, sealed or not, so such a
// test should also run without sealing and see Holds find s there.
func Holds(stored []byte, s string) bool {
	for _, f := range forms(s) {
		if bytes.Contains(stored, []byte(f)) {
			return true
		}
	}
	return false
}

// forms returns the forms of s that Holds looks for. For base64, at each
// offset it keeps only the characters that bits of s alone decide.
func forms(s string) []string {
	q, _ := json.Marshal(s)
	out := []string{s, string(q[1 : len(q)-1])}
	for off := range 3 {
		in := append(make([]byte, off), s...)
		first := (8*off + 5) / 6     // the first character made only of s's bits
		last := 8*(off+len(s))/6 - 1 // the last
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			if first <= last {
				out = append(out, enc.EncodeToString(in)[first:last+1])
			}
		}
	}
	return out
}
