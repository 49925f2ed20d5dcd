// Package journaladmin shows an operator the pending entries of a
// [spotflowhttp.Journal] while the service that writes it runs, and lets a
// person settle one if the service allows it: [NewHandler] is an
// [http.Handler] the service mounts on its admin port, which the
// spotflow-journal command reads with -admin URL. It also holds what that
// command and the handler share: the view of an entry an operator sees
// ([EntryView]) and the audit record of a person's decision
// ([AuditRecord], [AppendAudit]).
//
// The handler has no authentication of its own beyond an optional bearer
// token ([WithToken]), and it lists the references and URLs of payments in
// flight: mount it on a listener bound to 127.0.0.1 (or a Unix socket, or
// behind the service's own authentication), never on the port that faces
// the Internet.
package journaladmin

import (
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// EntryView is what an operator sees of a journal entry: everything the
// entry says of the call but its body and headers, unless Body is asked for.
// Its JSON form, one object per line, is what `spotflow-journal list -json`
// prints and GET /entries returns; the field names are stable.
type EntryView struct {
	Key       string    `json:"key"`
	Reference string    `json:"reference"`
	Account   string    `json:"account"`
	Method    string    `json:"method"`
	URL       string    `json:"url"`
	Time      time.Time `json:"time"` // when the call began; RFC 3339 in JSON
	// Owner holds the entry's claim until Until; "" and the zero time if
	// none. The entry is free once Until has passed.
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
	// Sealed: the body and headers are encrypted ([spotflowhttp.SealJournal]);
	// they can be read only with the key.
	Sealed bool `json:"sealed"`
	// BodyMissing: the body could not be kept; the entry cannot be sent
	// again.
	BodyMissing bool `json:"bodyMissing"`
	// KeyID is the id of the key that sealed the entry
	// ([spotflowhttp.SealKeyIDOf]), "" if it is not sealed.
	KeyID string `json:"keyId,omitempty"`
	// Body is the request body, only where asked for (show -body, or
	// GET /entries/{key}?body=1 on a handler [WithBodies]); base64 in JSON.
	Body []byte `json:"body,omitempty"`
}

// ViewOf returns the view of e, without its body.
func ViewOf(e spotflowhttp.Entry) EntryView {
	v := EntryView{
		Key:         e.Key,
		Reference:   e.Reference,
		Account:     e.Account,
		Method:      e.Method,
		URL:         e.URL,
		Time:        e.Time,
		Owner:       e.Owner,
		Until:       e.Until,
		Sealed:      len(e.Sealed) > 0,
		BodyMissing: e.BodyMissing,
	}
	if v.Sealed {
		v.KeyID, _ = spotflowhttp.SealKeyIDOf(e)
	}
	if v.Until.IsZero() {
		v.Owner = ""
	}
	return v
}

// Free reports whether no one holds the entry's claim at now.
func (v EntryView) Free(now time.Time) bool {
	return v.Owner == "" || !v.Until.After(now)
}
