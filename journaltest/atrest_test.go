package journaltest_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// Holds finds a string wherever it sits in a base64-encoded body, and in a
// JSON-escaped header value, so that a test of encryption at rest that
// finds nothing means something.
func TestHoldsFindsEveryEncoding(t *testing.T) {
	s := "zq-Secret<ada>&7731"
	for off := range 7 {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			body := enc.EncodeToString(append(bytes.Repeat([]byte("x"), off), s+"tail"...))
			if !journaltest.Holds([]byte(body), s) {
				t.Errorf("at offset %d, %q is not found in %s", off, s, body)
			}
		}
	}
	header, _ := json.Marshal(http.Header{"X": {s}})
	if !journaltest.Holds(header, s) {
		t.Errorf("%q is not found in %s", s, header)
	}
	if journaltest.Holds([]byte(base64.StdEncoding.EncodeToString([]byte("zq-Secret<adb>&7731"))), s) {
		t.Error("a string that differs in one byte in its middle was found")
	}
}

func ExampleHolds() {
	body := []byte(`{"customer":{"email":"ada@example.com"}}`)
	stored, _ := json.Marshal(struct{ Body []byte }{body}) // as encoding/json keeps a []byte: base64
	fmt.Println(bytes.Contains(stored, []byte("ada@example.com")), journaltest.Holds(stored, "ada@example.com"))
	// Output: false true
}
