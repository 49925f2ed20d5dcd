package spotflowhttp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
)

// The idempotency layer reads request bodies to find or add a reference. It
// must change only what encoding/json would take for a JSON object, so it
// validates exactly as json.Valid does; doing that in the same pass that
// finds the top-level members, without a decoder or an allocation, keeps
// the payments path near the cost of a bare transport.

// maxJSONDepth is encoding/json's limit on nesting: deeper documents are
// invalid to it, so they are to us.
const maxJSONDepth = 10000

// topLevel validates b as a JSON object, as json.Valid would, and calls fn
// with the raw name (the bytes between its quotes) and raw value of each
// top-level member until fn returns false. It reports whether b is a valid
// JSON object.
func topLevel(b []byte, fn func(name, value []byte) bool) bool {
	s := jsonScan{b: b, quote: -1, slash: -1}
	s.space()
	if s.peek() != '{' {
		return false
	}
	if !s.object(fn) {
		return false
	}
	s.space()
	return s.i == len(b)
}

// skimHas reports whether b, a JSON object, has a top-level member named
// field (as nameIs matches names), stopping at the first. It validates
// nothing: for a valid document it is exact, for an invalid one it may say
// either, which is harmless where it serves: a body it finds the field in
// is left as it is, and a body that is not valid JSON is left as it is too.
// Finding a body's own reference this way costs a fraction of validating
// it, and does not read past the member.
func skimHas(b []byte, field string) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	ascii := -1 // whether field is ASCII, once asked: then no shorter name is field (see nameIs)
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return false
		}
		end := skipString(b, i)
		if end < 0 {
			return false
		}
		name := b[i+1 : end-1]
		if len(name) < len(field) && ascii < 0 {
			ascii = 0
			if isASCII(field) {
				ascii = 1
			}
		}
		if !(len(name) < len(field) && ascii == 1) && nameIs(name, field) {
			return true
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		if i = skipValue(b, skipSpace(b, i+1)); i < 0 {
			return false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i // no space, as nearly always
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i], or -1
// if it does not end: the first quote after it that an even number of
// backslashes precedes.
func skipString(b []byte, i int) int {
	for j := i + 1; ; {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return -1
		}
		j += q
		k := j
		for k > i+1 && b[k-1] == '\\' {
			k--
		}
		j++
		if (j-1-k)%2 == 0 {
			return j
		}
	}
}

// skipValue returns the index after the value that starts at b[i], or -1:
// a string, an object or array (its strings skipped, its brackets
// counted), or anything else up to the next delimiter.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	// A number or a literal: up to a comma, a closing bracket or space.
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] > ' ' {
		i++
	}
	return i
}

// jsonScan is a validating scanner over one document.
type jsonScan struct {
	b     []byte
	i     int
	depth int

	// The next quote and backslash at or after where they were last
	// looked for (len(b) if none), so that each is searched for once over
	// the document, however many strings it has.
	quote, slash int
}

func (s *jsonScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object scans the object at s.i, calling member for its members while it
// returns true; member may be nil.
func (s *jsonScan) object(member func(name, value []byte) bool) bool {
	if s.depth++; s.depth > maxJSONDepth {
		return false
	}
	s.i++ // '{'
	s.space()
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		start := s.i
		if !s.string() {
			return false
		}
		name := s.b[start+1 : s.i-1]
		s.space()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.space()
		vstart := s.i
		if !s.value() {
			return false
		}
		if member != nil && !member(name, s.b[vstart:s.i]) {
			member = nil
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *jsonScan) array() bool {
	if s.depth++; s.depth > maxJSONDepth {
		return false
	}
	s.i++ // '['
	s.space()
	if s.peek() == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *jsonScan) value() bool {
	switch c := s.peek(); {
	case c == '{':
		return s.object(nil)
	case c == '[':
		return s.array()
	case c == '"':
		return s.string()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

func (s *jsonScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// string scans the string at s.i: no control characters, valid escapes.
// Like encoding/json it does not check UTF-8.
func (s *jsonScan) string() bool {
	b := s.b
	i := s.i + 1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i = s.plainRun(i + 1)
		}
	}
	return false
}

// plainRun returns the index of the first byte at or after i that ends a
// run of plain string bytes: a quote, a backslash or a control character,
// or len(b). Payment bodies are mostly long plain strings: a byte at a
// time, this was the reference path's largest cost. It finds the next quote
// and backslash with bytes.IndexByte, remembering where they are, then
// checks the run before them for control characters 32 bytes at a time.
func (s *jsonScan) plainRun(i int) int {
	b := s.b
	if s.quote < i {
		s.quote = indexFrom(b, i, '"')
	}
	if s.slash < i {
		s.slash = indexFrom(b, i, '\\')
	}
	return i + controlAt(b[i:min(s.quote, s.slash)])
}

// indexFrom is the index of the first c in b at or after i, or len(b).
func indexFrom(b []byte, i int, c byte) int {
	if j := bytes.IndexByte(b[i:], c); j >= 0 {
		return i + j
	}
	return len(b)
}

// controlAt is the index of the first control character (below 0x20) in w,
// or len(w). It looks at 64 bytes a step (see plain).
func controlAt(w []byte) int {
	j := 0
	for ; j+64 <= len(w); j += 64 {
		p := (*[64]byte)(w[j : j+64])
		le := binary.LittleEndian
		if plain(le.Uint64(p[0:8]))&plain(le.Uint64(p[8:16]))&plain(le.Uint64(p[16:24]))&plain(le.Uint64(p[24:32]))&
			plain(le.Uint64(p[32:40]))&plain(le.Uint64(p[40:48]))&plain(le.Uint64(p[48:56]))&plain(le.Uint64(p[56:64]))&high != high {
			break
		}
	}
	for ; j+8 <= len(w); j += 8 {
		if plain(binary.LittleEndian.Uint64(w[j:j+8]))&high != high {
			break
		}
	}
	for j < len(w) && w[j] >= 0x20 {
		j++
	}
	return j
}

// high is the top bit of every byte of a word.
const high = 0x80 * ones

// plain has the top bit of each byte of w set where that byte is not a
// control character (not below 0x20), and may have other bits set. With the
// top bit forced on, subtracting 0x20 borrows from no other byte, and leaves
// the top bit on exactly where the low seven bits are 0x20 or more; a byte
// of 0x80 or more is no control character either.
func plain(w uint64) uint64 {
	return ((w | high) - 0x20*ones) | w
}

const ones = 0x0101010101010101

func (s *jsonScan) number() bool {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = digits(b, i)
	}
	s.i = i
	return true
}

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// appendJSONString appends s as a JSON string. Keys and references are
// plain ASCII nearly always, and are copied as they are; anything else goes
// through encoding/json's rules (see jsonQuote).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return append(b, jsonQuote(s)...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func jsonQuote(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
