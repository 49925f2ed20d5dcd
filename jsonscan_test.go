package spotflowhttp

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// topLevel must accept exactly what json.Valid accepts as an object, and
// find the same top-level members in the same order as encoding/json.
func FuzzTopLevel(f *testing.F) {
	for _, s := range []string{`{}`, ` {"a":1} `, `{"a":"x\"}","b":[1,{"c":"]"}]}`, `{"a":}`, `{"a":1,}`,
		`{"\\":{"{":"}"}}`, `{"a":1e5,"b":true,"c":null,"d":-0.5E-3}`, `{"a":01}`, `{"a":"\u00e9\ud800"}`,
		`{"a":"\x01"}`, `{"a":"\q"}`, `{"a":tru}`, `{"a":[1,]}`, `{"a":1}x`, `[{}]`, `{"a":-}`, `{"a":1.}`,
		`{"a":.5}`, `{"a":1e}`, `{"a":"` + "\xff" + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var names [][]byte
		got := topLevel(b, func(name, value []byte) bool {
			if !json.Valid(value) {
				t.Fatalf("member value %q of %q is not valid JSON", value, b)
			}
			names = append(names, name)
			return true
		})
		trimmed := bytes.TrimLeft(b, " \t\r\n")
		want := json.Valid(b) && len(trimmed) > 0 && trimmed[0] == '{'
		if got != want {
			t.Fatalf("topLevel(%q) = %v, json.Valid says object %v", b, got, want)
		}
		if !got {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.Token() // {
		for i := 0; dec.More(); i++ {
			tok, _ := dec.Token()
			var raw json.RawMessage
			dec.Decode(&raw)
			var name string
			json.Unmarshal(append(append([]byte{'"'}, names[i]...), '"'), &name)
			if name != tok.(string) {
				t.Fatalf("member %d of %q: %q, encoding/json says %q", i, b, name, tok)
			}
		}
	})
}

// Nesting deeper than encoding/json's limit is invalid to both.
// On a valid JSON object, skimHas finds a top-level member named field
// exactly when the validating scan does: it may skip validation, never the
// answer.
func FuzzSkimHas(f *testing.F) {
	for _, s := range []string{`{}`, `{"reference":"r"}`, `{"a":"x\"","reference":1}`, `{"a":"\\","Reference":1}`,
		`{"a":{"reference":1}}`, `{"a":["reference"],"b":"reference"}`, `{"refer\u0065nce":"r"}`, `{"a":"\\\"}"}`,
		` { "a" : [ {"b":"]"} , "}" ] , "REFERENCE" : null } `, `{"a":1e5,"b":true,"c":null,"reference":-0.5}`,
		`{"a":{"b":{"c":[[]]}},"d":"x"}`, `{"\u017fReference":1}`, `{"ref":1}`, `{"referencex":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, field := range []string{"reference", "ref", "K"} {
			present := false
			if !topLevel(b, func(name, _ []byte) bool {
				present = present || nameIs(name, field)
				return true
			}) {
				return // not a valid object: skimHas may say either
			}
			if got := skimHas(b, field); got != present {
				t.Fatalf("skimHas(%q, %q) = %v, the validating scan says %v", b, field, got, present)
			}
		}
	})
}

func TestTopLevelDepth(t *testing.T) {
	for _, depth := range []int{maxJSONDepth, maxJSONDepth + 1} {
		b := []byte(strings.Repeat(`{"a":`, depth-1) + `[1]` + strings.Repeat(`}`, depth-1))
		if got, want := topLevel(b, func(_, _ []byte) bool { return true }), json.Valid(b); got != want {
			t.Errorf("depth %d: topLevel %v, json.Valid %v", depth, got, want)
		}
	}
}

func TestAddFieldInPlace(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{}`, `{"reference":"k"}`},
		{` {"a":1} `, ` {"a":1,"reference":"k"} `},
		{"{\"a\":{\"b\":\"}\"}}\n", "{\"a\":{\"b\":\"}\"},\"reference\":\"k\"}\n"},
	} {
		for _, room := range []int{0, 64} {
			b := make([]byte, len(c.in), len(c.in)+room)
			copy(b, c.in)
			got, ok := addField(b, []byte(`"reference"`), "reference", "k")
			if !ok || string(got) != c.want {
				t.Errorf("addField(%q) with room %d = %q %v, want %q", c.in, room, got, ok, c.want)
			}
		}
	}
	if got := appendJSONString(nil, `a"<b>`); string(got) != `"a\"\u003cb\u003e"` {
		t.Errorf("appendJSONString = %s", got)
	}
}

// The string scan looks at many bytes at a time (a window, words within
// it): every byte value at every offset of a short string, and at the
// offsets around the window's edges in a long one, alone and after another
// special byte, must be judged as encoding/json judges it.
func TestTopLevelStringBytes(t *testing.T) {
	type place struct{ n, from, to int }
	for _, p := range []place{{19, 0, 19}, {600, 236, 276}, {600, 492, 532}} {
		plain := strings.Repeat("x", p.n)
		for c := range 256 {
			for at := p.from; at < p.to; at++ {
				for _, before := range []string{"", `\n`, `\\`} {
					s := before + plain[:at] + string([]byte{byte(c)}) + plain[at:]
					b := []byte(`{"a":"` + s + `","b":1}`)
					got := topLevel(b, func(_, _ []byte) bool { return true })
					if want := json.Valid(b); got != want {
						t.Fatalf("topLevel(%q) = %v, json.Valid %v", b, got, want)
					}
				}
			}
		}
	}
}

// BenchmarkTopLevel scans a 1 KiB payment body, mostly one long string, as
// the reference path does for every create.
func BenchmarkTopLevel(b *testing.B) {
	head := `{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"},"metadata":{"order_id":"ord-000001","note":"`
	body := []byte(head + strings.Repeat("x", 1024-len(head)-3) + `"}}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !topLevel(body, func(_, _ []byte) bool { return true }) {
			b.Fatal("invalid")
		}
	}
}
