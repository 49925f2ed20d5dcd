package spotflowhttp

import (
	"net/http"
	"reflect"
	"testing"
)

// TestPlainRoundTrip: what appendPlain writes, parsePlain reads back, and
// plainSize bounds it.
func TestPlainRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{},
		{Body: []byte("{}")},
		{Header: http.Header{"Content-Type": {"application/json"}, "X-Many": {"a", "", "c"}, "X-None": {}}},
		{Header: http.Header{"Idempotency-Key": {"k"}}, Body: make([]byte, 300)},
	} {
		p := appendPlain(nil, e)
		if len(p) > plainSize(e) {
			t.Errorf("%+v: %d bytes, plainSize %d", e, len(p), plainSize(e))
		}
		h, body, ok := parsePlain(p)
		if !ok || !reflect.DeepEqual(h, e.Header) || !reflect.DeepEqual(body, e.Body) {
			t.Errorf("round trip of %+v: %v, %q, %v", e, h, body, ok)
		}
	}
}

// FuzzParsePlain: a plaintext of any bytes is read or refused, without a
// panic or an allocation it does not hold the bytes for.
func FuzzParsePlain(f *testing.F) {
	f.Add(appendPlain(nil, Entry{Header: http.Header{"A": {"b", "c"}}, Body: []byte("body")}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{1, 1, 'a', 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, body, ok := parsePlain(p)
		if !ok {
			return
		}
		h2, body2, ok := parsePlain(appendPlain(nil, Entry{Header: h, Body: body}))
		if !ok || !reflect.DeepEqual(h2, h) || !reflect.DeepEqual(body2, body) {
			t.Errorf("%q read as %v, %q, which does not read back", p, h, body)
		}
	})
}
