// Package store is the narrow interface the lease protocol needs from Cosmos DB: read one document, create it,
// replace it on an ETag, list them, read the newest run records of a lease, and check the container at start. Two implementations exist: the Cosmos
// one over the official SDK (package cosmosstore) and an in-memory one with an injected clock and fault
// injection for fast tests (package memstore). Both classify failures the same way, through Error.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Item is a stored document as the protocol sees it.
type Item struct {
	Body []byte
	ETag string
	// ServerTime is the server's clock when it answered (the Date header), zero when unknown. With the
	// document's _ts it lets a contender judge a lease's age on one clock, the server's.
	ServerTime time.Time
	Charge     float64
	// Session is the response's session token (x-ms-session-token), empty when none came. A read that passes
	// the token of a write is never answered from a replica that has not applied that write.
	Session string
}

// Store is every call the protocol makes. Implementations return *Error for every failure that has a status.
type Store interface {
	// Read returns the document with this id in partition pk; Kind NotFound when there is none. session, when
	// not empty, is the token of an earlier write: the answer is at least as new as that write.
	Read(ctx context.Context, pk, id, session string) (Item, error)
	// Create stores a new document; Kind Conflict when the id exists, NotFound when the container does not.
	Create(ctx context.Context, pk string, body []byte) (Item, error)
	// Replace overwrites the document if its ETag is still etag; Kind Precondition when it is not,
	// NotFound when the document is gone.
	Replace(ctx context.Context, pk, id string, body []byte, etag string) (Item, error)
	// List returns every document whose id starts with prefix, and the request charge of the whole query.
	List(ctx context.Context, prefix string) ([]Item, float64, error)
	// Recent returns the newest run records of partition pk (type "run", id starting with prefix), newest
	// occurrence first, at most limit of them, with one single-partition query (RecentQuery), and its charge.
	Recent(ctx context.Context, pk, prefix string, limit int, session string) ([]Item, float64, error)
	// Check verifies the container exists and is partitioned on partitionKeyPath, and that the account can be
	// used safely (one write region unless allowMultiWrite).
	Check(ctx context.Context, partitionKeyPath string, allowMultiWrite bool) error
	// Exists tells a missing document from a missing container after a 404: nil when the container exists;
	// otherwise Kind NotFound, Op op, and an Err that says what is missing (the container or its database) and
	// how to fix it, as a create's 404 does.
	Exists(ctx context.Context, op string) error
}

// RecentQuery reads the newest run records of one lease. It runs in the lease's partition, filters on type (and
// on the id prefix, which keeps leases apart on servers that ignore a query's partition key) and orders by
// occurrence, written at a fixed width so that it sorts as the times do; an index on /type and /occurrence
// serves it, and TOP makes it return only what is asked for, however many records the lease has.
const RecentQuery = "SELECT TOP @limit * FROM c WHERE c.type = @type AND STARTSWITH(c.id, @prefix) ORDER BY c.occurrence DESC"

// TypeRun is the type property of every run record.
const TypeRun = "run"

// Kind is what a failure means to the protocol.
type Kind int

const (
	// Unknown: the request may or may not have been applied (timeouts, resets, 5xx, 408).
	Unknown Kind = iota
	NotFound
	Conflict
	Precondition
	// Throttled: 429, the request was not applied; RetryAfter says when to try again.
	Throttled
	// Unavailable: 503, the request was not applied by the service.
	Unavailable
	Unauthorized
	Forbidden
	BadRequest
	// Invalid: the request was refused for a reason retrying cannot fix (413, an unexpected 4xx).
	Invalid
)

var kindNames = [...]string{"unknown", "not found", "conflict", "precondition failed", "throttled", "unavailable", "unauthorized", "forbidden", "bad request", "invalid"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failed request, classified.
type Error struct {
	Op         string
	Status     int // HTTP status; 0 when no response arrived
	Kind       Kind
	RetryAfter time.Duration
	Charge     float64
	Err        error
}

func (e *Error) Error() string {
	msg := e.Op + ": " + e.Kind.String()
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf classifies any error from a Store. Context ends and errors without a status are Unknown.
func KindOf(err error) Kind {
	var se *Error
	if errors.As(err, &se) {
		return se.Kind
	}
	return Unknown
}

// Retryable reports whether trying again later can succeed: a request failure of a passing kind. Stores
// return *Error for every failed request, so anything else (a document that is not a lease, bad input) is not.
func Retryable(err error) bool {
	var se *Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Kind {
	case Unknown, Throttled, Unavailable:
		return true
	}
	return false
}

// KindForStatus maps an HTTP status to a Kind.
func KindForStatus(status int) Kind {
	switch status {
	case 404:
		return NotFound
	case 409:
		return Conflict
	case 412:
		return Precondition
	case 429:
		return Throttled
	case 503:
		return Unavailable
	case 401:
		return Unauthorized
	case 403:
		return Forbidden
	case 400:
		return BadRequest
	case 408, 410, 449:
		return Unknown
	}
	if status >= 500 {
		return Unknown
	}
	return Invalid
}

// SessionLSN reads the log sequence number of a Cosmos DB session token ("range:version#lsn#region=lsn…", or
// "range:-1#lsn"); ok is false when the token has none.
func SessionLSN(token string) (lsn int64, ok bool) {
	_, rest, found := strings.Cut(token, "#")
	if !found {
		return 0, false
	}
	rest, _, _ = strings.Cut(rest, "#")
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil
}

// NewerSession reports whether token names a later point of the partition's log than old. A token that cannot be
// compared replaces the old one.
func NewerSession(token, old string) bool {
	n, ok := SessionLSN(token)
	o, oldOK := SessionLSN(old)
	return !ok || !oldOK || n > o
}

// ETagOf reads a stored document's _etag; empty when it has none.
func ETagOf(body []byte) string {
	// Match the name exactly: encoding/json would also take a user property "_Etag" or "_ETAG" for it. Such a
	// property is rare, so decode the plain way unless one may be there.
	if !caseVariantOfETag(body) {
		var d struct {
			ETag string `json:"_etag"`
		}
		_ = json.Unmarshal(body, &d)
		return d.ETag
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	etag := ""
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return ""
		}
		if t == "_etag" {
			_ = json.Unmarshal(v, &etag)
		}
	}
	return etag
}

// caseVariantOfETag reports whether body holds a string "_etag" in another case ("_Etag", "_ETAG"), which
// encoding/json would match against the field _etag.
func caseVariantOfETag(body []byte) bool {
	const name = `"_etag"`
	for i := bytes.Index(body, []byte(`"_`)); i >= 0 && i+len(name) <= len(body); {
		if w := body[i : i+len(name)]; bytes.EqualFold(w, []byte(name)) && !bytes.Equal(w, []byte(name)) {
			return true
		}
		j := bytes.Index(body[i+2:], []byte(`"_`))
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return false
}
