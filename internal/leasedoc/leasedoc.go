// Package leasedoc is the lease document as it is stored in Cosmos DB: its JSON shape, the mapping from a
// lease key to a document id, and the checks that turn a document edited by hand into a clear error.
//
// The fields of the reference sample (id, leaseKey, leaseId, ownerId, acquiredAt, expiresAt, metadata) keep
// their names and meaning so that existing queries keep working. The fields the protocol depends on are epoch
// (the fencing token), released, renewals, renewedAt and leaseDurationMs (the duration the holder promised).
// expiresAt and the other wall-clock times are written for people and queries; the protocol never compares them
// with a clock, except, in a document of the reference sample, expiresAt with the document's own _ts.
//
// A document the reference sample wrote has none of those five fields. It is read as a lease in sample form
// (Doc.Sample): epoch 0, held by its ownerId until its expiresAt as its holder sees it. Only such a document is
// read without an epoch; one that has some of our fields but lacks epoch was edited by hand, and is invalid.
package leasedoc

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// IDPrefix starts every lease document id, as in the reference sample.
const IDPrefix = "lease-"

// maxIDBytes is Cosmos DB's limit on the length of an id.
const maxIDBytes = 255

// ErrInvalidKey is wrapped by every error about a lease key that cannot be stored.
var ErrInvalidKey = errors.New("invalid lease key")

// ID maps a lease key to its document id, or explains why the key cannot be used.
// Keys are case-sensitive and are never rewritten: a key that Cosmos DB could not store as is is refused,
// so two keys can never share a document.
func ID(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("%w: the lease key is empty; pass a name such as critical-section-lock", ErrInvalidKey)
	}
	if !utf8.ValidString(key) {
		return "", fmt.Errorf("%w: the lease key is not valid UTF-8", ErrInvalidKey)
	}
	for _, r := range key {
		switch {
		case r == '/' || r == '\\' || r == '?' || r == '#':
			return "", fmt.Errorf("%w: %q contains %q, which Cosmos DB does not allow in document ids; use letters, digits, '-', '_', '.' or ':'", ErrInvalidKey, key, r)
		case unicode.IsControl(r):
			return "", fmt.Errorf("%w: %q contains a control character; use letters, digits, '-', '_', '.' or ':'", ErrInvalidKey, key)
		}
	}
	if strings.TrimSpace(key) != key {
		return "", fmt.Errorf("%w: %q starts or ends with white space", ErrInvalidKey, key)
	}
	id := IDPrefix + key
	if len(id) > maxIDBytes {
		return "", fmt.Errorf("%w: the lease key is %d bytes long; at most %d bytes fit in a document id", ErrInvalidKey, len(key), maxIDBytes-len(IDPrefix))
	}
	return id, nil
}

// Metadata describes the holder. The four named fields are the reference sample's; Extra holds the pairs the
// caller adds, flattened into the same JSON object.
type Metadata struct {
	InstanceID string
	Region     string
	Hostname   string
	StartTime  time.Time
	Extra      map[string]string
}

var metadataFields = map[string]bool{"instanceId": true, "region": true, "hostname": true, "startTime": true}

// MarshalJSON flattens Extra beside the named fields.
func (m Metadata) MarshalJSON() ([]byte, error) {
	out := make(map[string]string, len(m.Extra)+4)
	for k, v := range m.Extra {
		if !metadataFields[k] {
			out[k] = v
		}
	}
	out["instanceId"] = m.InstanceID
	out["region"] = m.Region
	out["hostname"] = m.Hostname
	if !m.StartTime.IsZero() {
		out["startTime"] = FormatTime(m.StartTime)
	}
	return json.Marshal(out)
}

// UnmarshalJSON accepts any object of strings; values that are not strings are kept as their JSON text,
// so a hand-edited metadata object never makes the whole lease unreadable.
func (m *Metadata) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return errors.New("metadata must be a JSON object")
	}
	*m = Metadata{}
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			s = string(v)
		}
		switch k {
		case "instanceId":
			m.InstanceID = s
		case "region":
			m.Region = s
		case "hostname":
			m.Hostname = s
		case "startTime":
			m.StartTime, _ = time.Parse(time.RFC3339Nano, s)
		default:
			if m.Extra == nil {
				m.Extra = map[string]string{}
			}
			m.Extra[k] = s
		}
	}
	return nil
}

// Doc is one lease document. ETag and TS are the server's _etag and _ts; they are read, never written.
type Doc struct {
	ID         string    `json:"id"`
	LeaseKey   string    `json:"leaseKey"`
	LeaseID    string    `json:"leaseId"`
	OwnerID    string    `json:"ownerId"`
	AcquiredAt time.Time `json:"-"`
	ExpiresAt  time.Time `json:"-"`
	RenewedAt  time.Time `json:"-"`
	ReleasedAt time.Time `json:"-"`
	Metadata   Metadata  `json:"metadata"`
	Epoch      int64     `json:"epoch"`
	Renewals   int64     `json:"renewals"`
	Released   bool      `json:"released"`
	// Duration is how long the holder promised the lease lasts after each renewal; contenders use it
	// rather than their own setting, so instances configured differently still agree.
	Duration time.Duration `json:"-"`
	// Sample marks a document the reference sample wrote (no epoch, leaseDurationMs, renewals or released):
	// Epoch is 0, Duration is 0, and its holder believes it holds the lease until its own clock reads
	// ExpiresAt. Encode never writes one: taking it over writes a full document at epoch 1.
	Sample bool `json:"-"`
	// Job is the state of the scheduled work elected through this lease (pkg/cosmoslease's occurrence
	// election), kept as JSON this package does not read: absent for a lease that is only a lease.
	Job json.RawMessage `json:"-"`
	// Control is the operator's word on the job (pause, stop, trigger: pkg/cosmoslease's control.go), written by
	// operators beside the holder's fields and carried unchanged by every holder's write.
	Control json.RawMessage `json:"-"`

	ETag string `json:"-"`
	TS   int64  `json:"-"`
}

// wire is Doc as JSON: times as RFC 3339 text, the duration in milliseconds, and the pass-through of the
// partition key property when the container's path is not /leaseKey.
type wire struct {
	ID              string          `json:"id"`
	LeaseKey        string          `json:"leaseKey"`
	LeaseID         string          `json:"leaseId"`
	OwnerID         string          `json:"ownerId"`
	AcquiredAt      string          `json:"acquiredAt,omitempty"`
	ExpiresAt       string          `json:"expiresAt,omitempty"`
	RenewedAt       string          `json:"renewedAt,omitempty"`
	ReleasedAt      string          `json:"releasedAt,omitempty"`
	Metadata        Metadata        `json:"metadata"`
	Epoch           *int64          `json:"epoch"`
	Renewals        int64           `json:"renewals"`
	Released        bool            `json:"released"`
	LeaseDurationMs int64           `json:"leaseDurationMs"`
	Job             json.RawMessage `json:"job,omitempty"`
	Control         json.RawMessage `json:"control,omitempty"`
	ETag            string          `json:"_etag,omitempty"`
	TS              int64           `json:"_ts,omitempty"`
}

// OwnProperty reports whether name is a top-level property the lease document holds for itself: one of the
// fields Encode writes or Decode reads (leaseKey and id included), one Cosmos DB adds (_etag, _ts, _rid, …), or
// ttl. Case is ignored, because encoding/json matches field names without regard to case when it decodes: a
// property "LeaseId" would be read as leaseId.
func OwnProperty(name string) bool {
	if strings.HasPrefix(name, "_") || strings.EqualFold(name, "ttl") {
		return true
	}
	t := reflect.TypeOf(wire{})
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); strings.EqualFold(tag, name) {
			return true
		}
	}
	return false
}

// FormatTime writes a time as the documents do: RFC 3339 in UTC.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Encode renders d for a create or replace. pkProperty is the top-level property named by the container's
// partition key path; when it is neither leaseKey nor id it is added with the lease key as its value.
func Encode(d *Doc, pkProperty string) ([]byte, error) {
	epoch := d.Epoch
	w := wire{
		ID: d.ID, LeaseKey: d.LeaseKey, LeaseID: d.LeaseID, OwnerID: d.OwnerID,
		AcquiredAt: FormatTime(d.AcquiredAt), ExpiresAt: FormatTime(d.ExpiresAt),
		RenewedAt: FormatTime(d.RenewedAt), ReleasedAt: FormatTime(d.ReleasedAt),
		Metadata: d.Metadata, Epoch: &epoch, Renewals: d.Renewals, Released: d.Released,
		LeaseDurationMs: d.Duration.Milliseconds(), Job: d.Job, Control: d.Control,
	}
	b, err := json.Marshal(w)
	if err != nil || pkProperty == "" || pkProperty == "leaseKey" || pkProperty == "id" {
		return b, err
	}
	// Add the partition key property by hand: a map would reorder the fields people read.
	extra, err := json.Marshal(map[string]string{pkProperty: d.LeaseKey})
	if err != nil {
		return nil, err
	}
	return append(append(b[:len(b)-1], ','), extra[1:]...), nil
}

// Error explains why a stored document is not a usable lease. The protocol never overwrites such a
// document: a person has to look at it.
type Error struct {
	ID     string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("lease document %q is not a valid lease: %s; fix the document by hand, or delete it (its epoch then starts again at 1)", e.ID, e.Reason)
}

// Decode parses a stored document and checks it is a lease the protocol can reason about.
// wantID, when not empty, is the id the caller asked for.
func Decode(b []byte, wantID string) (*Doc, error) {
	var w wire
	err := json.Unmarshal(b, &w)
	id := wantID
	if w.ID != "" {
		id = w.ID
	} else if err != nil {
		var probe struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &probe) == nil && probe.ID != "" {
			id = probe.ID
		}
	}
	fail := func(format string, args ...any) (*Doc, error) {
		return nil, &Error{ID: id, Reason: fmt.Sprintf(format, args...)}
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fail("field %s holds a JSON %s, not a %s", te.Field, te.Value, te.Type)
		}
		return fail("%v", err)
	}
	if wantID != "" && w.ID != wantID {
		return fail("its id is %q", w.ID)
	}
	if !strings.HasPrefix(w.ID, IDPrefix) || w.LeaseKey != strings.TrimPrefix(w.ID, IDPrefix) {
		return fail("leaseKey %q does not match the id", w.LeaseKey)
	}
	sample := w.Epoch == nil
	if sample {
		if why := notSample(b, &w); why != "" {
			return fail("%s", why)
		}
		w.Epoch = new(int64)
	}
	if *w.Epoch < 0 || w.Renewals < 0 || w.LeaseDurationMs < 0 {
		return fail("epoch, renewals and leaseDurationMs must not be negative")
	}
	if !w.Released && (w.OwnerID == "" || w.LeaseID == "") {
		return fail("it is not released but has no ownerId or leaseId")
	}
	d := &Doc{
		ID: w.ID, LeaseKey: w.LeaseKey, LeaseID: w.LeaseID, OwnerID: w.OwnerID, Metadata: w.Metadata,
		Epoch: *w.Epoch, Renewals: w.Renewals, Released: w.Released,
		Duration: time.Duration(w.LeaseDurationMs) * time.Millisecond, ETag: w.ETag, TS: w.TS, Sample: sample,
		Job: w.Job, Control: w.Control,
	}
	for _, f := range []struct {
		name string
		text string
		into *time.Time
	}{
		{"acquiredAt", w.AcquiredAt, &d.AcquiredAt},
		{"expiresAt", w.ExpiresAt, &d.ExpiresAt},
		{"renewedAt", w.RenewedAt, &d.RenewedAt},
		{"releasedAt", w.ReleasedAt, &d.ReleasedAt},
	} {
		if f.text == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.text)
		if err != nil {
			return fail("field %s is %q, not an RFC 3339 time", f.name, f.text)
		}
		*f.into = t.UTC()
	}
	return d, nil
}

// ourFields are the fields the protocol adds to the sample's document. The sample writes none of them.
var ourFields = []string{"epoch", "leaseDurationMs", "renewals", "released", "renewedAt", "releasedAt"}

// notSample says why a document without an epoch is not one the reference sample wrote, or "" when it is: none
// of our fields, and the holder and expiry that the sample always writes.
func notSample(b []byte, w *wire) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return "it is not a JSON object"
	}
	for _, f := range ourFields {
		if _, ok := fields[f]; ok {
			return "field epoch is missing"
		}
	}
	if w.OwnerID == "" || w.LeaseID == "" || w.ExpiresAt == "" {
		return "it has no epoch, as the reference sample writes, but lacks the sample's ownerId, leaseId or expiresAt"
	}
	return ""
}
