package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// Event is one verified webhook delivery. Spotflow's payment events have
// the body
//
//	{"event":"payment_successful","data":{"id":…,"reference":…,"status":"successful",…}}
//
// and carry the latest state of the payment at the time of delivery, which
// is not necessarily the order in which things happened.
type Event struct {
	ID        string          // webhook-id: the same on every delivery of one event
	Type      string          // the body's "event", e.g. "payment_successful"
	Timestamp time.Time       // webhook-timestamp, in UTC: when this delivery was signed
	Reference string          // data.reference, "" if absent
	Status    string          // data.status, "" if absent
	Data      json.RawMessage // the body's "data" object as sent; nil if absent
}

var errNotObject = errors.New("the body is not a JSON object")

// parseEvent fills ev from a verified body. Only a body that is not a JSON
// object is refused: a member of an unexpected type is left empty, because
// refusing a genuine delivery only makes the sender repeat it.
func parseEvent(ev *Event, body []byte) error {
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return errNotObject
	}
	ev.Type = stringMember(top, "event")
	if data, ok := top["data"]; ok {
		ev.Data = data
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) == nil {
			ev.Reference = stringMember(fields, "reference")
			ev.Status = stringMember(fields, "status")
		}
	}
	return nil
}

// stringMember returns m[name] if it is a JSON string, else "".
func stringMember(m map[string]json.RawMessage, name string) string {
	var s string
	if raw, ok := m[name]; ok && len(raw) > 0 && raw[0] == '"' {
		json.Unmarshal(raw, &s)
	}
	return s
}
