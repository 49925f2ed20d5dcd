package journaladmin

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// AuditRecord is one line of an audit file: a settlement of a journal
// entry by a person ([spotflowhttp.Resolve]) or by the spotflow-journal
// command's reconcile, with who made it and from where. Its JSON field
// names are stable.
type AuditRecord struct {
	Time time.Time `json:"time"`
	// User is who decided: the operating-system user of the command, or,
	// through the handler, what [WithOperator] returns (else the name
	// the client gave, marked "(unverified)").
	User string `json:"user"`
	// Host is the machine the decision was made on; Remote, through the
	// handler, the client's address.
	Host   string `json:"host,omitempty"`
	Remote string `json:"remote,omitempty"`
	// Journal names the journal: its file, or the Redis address and name.
	Journal   string `json:"journal"`
	Key       string `json:"key"`
	Reference string `json:"reference,omitempty"`
	Account   string `json:"account,omitempty"`
	Outcome   string `json:"outcome"`
	By        string `json:"by"` // person, or how a reconcile learnt it
	Status    string `json:"status,omitempty"`
	Note      string `json:"note,omitempty"`
	Error     string `json:"error,omitempty"` // Settlement.Err, for needs_human
}

// RecordOf returns the audit record of s, made at now; the caller sets
// User, Host, Remote and Journal.
func RecordOf(s spotflowhttp.Settlement, now time.Time) AuditRecord {
	r := AuditRecord{
		Time:      now.UTC(),
		Key:       s.Entry.Key,
		Reference: s.Entry.Reference,
		Account:   s.Entry.Account,
		Outcome:   s.Outcome.String(),
		By:        s.By.String(),
		Status:    s.Status,
		Note:      s.Note,
	}
	if s.Err != nil {
		r.Error = s.Err.Error()
	}
	return r
}

// AppendAudit appends r as one JSON line to the file at path, creating it
// with mode 0600 if needed, and returns once the line is on disk (fsync).
// Lines are written with O_APPEND in one write, so processes appending to
// one file at once do not interleave them.
func AppendAudit(path string, r AuditRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journaladmin: audit file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("journaladmin: audit file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("journaladmin: audit file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("journaladmin: audit file %s: %w", path, err)
	}
	return nil
}
