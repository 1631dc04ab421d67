package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/store"
)

// The fence runs as users run it: the real Fence over the real SDK (azcosmos), whose HTTP requests this
// transport answers in process, from the same container and through the same fault layer as the lease's store
// requests. So the SDK's own retries (of a write whose answer was lost, of a 429 or 503) happen as they would
// against Cosmos DB, and their 409s and 412s reach the fence. No socket is opened. It answers the subset of the
// Cosmos DB REST API the fence uses: the account read, and a document's read, create, replace (If-Match) and
// patch, whose filter predicate it evaluates only in the exact form fence.go sends (anything else is a 400, so a
// change of that form cannot pass unnoticed).

// transport is one incarnation's HTTP connection to the account.
type transport struct {
	s *procStore
}

var _ policy.Transporter = (*transport)(nil)

// fencePredicate is Fence.condition's form: never fenced, or a whole number no greater than the epoch.
var fencePredicate = regexp.MustCompile(`^from c where NOT IS_DEFINED\(c\['([A-Za-z][A-Za-z0-9_]*)'\]\) OR \(c\['([A-Za-z][A-Za-z0-9_]*)'\] >= 0 AND c\['([A-Za-z][A-Za-z0-9_]*)'\] <= (\d+) AND FLOOR\(c\['([A-Za-z][A-Za-z0-9_]*)'\]\) = c\['([A-Za-z][A-Za-z0-9_]*)'\]\)$`)

func (t *transport) Do(r *http.Request) (*http.Response, error) {
	path := strings.Trim(r.URL.Path, "/")
	if path == "" {
		return t.account(r), nil
	}
	parts := strings.Split(path, "/")
	// dbs/{db}/colls/{coll}/docs[/{id}]
	if len(parts) < 5 || parts[0] != "dbs" || parts[2] != "colls" || parts[4] != "docs" {
		return respond(r, 400, nil, errBody("BadRequest", "the simulator answers only document requests")), nil
	}
	var pks []string
	if err := json.Unmarshal([]byte(r.Header.Get("x-ms-documentdb-partitionkey")), &pks); err != nil || len(pks) != 1 {
		return respond(r, 400, nil, errBody("BadRequest", "one string partition key, please")), nil
	}
	pk := pks[0]
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
	}
	minimal := r.Header.Get("Prefer") == "return=minimal"
	ctx := r.Context()
	var id string
	if len(parts) == 6 {
		id = parts[5]
	}
	switch {
	case r.Method == http.MethodGet && id != "":
		it, err := t.s.Read(ctx, pk, id, r.Header.Get("x-ms-session-token"))
		if err != nil {
			return t.failed(r, err)
		}
		return respond(r, 200, itemHeaders(it.ETag, it.Session), it.Body), nil
	case r.Method == http.MethodPost && id == "":
		it, err := t.s.Create(ctx, pk, body)
		if err != nil {
			return t.failed(r, err)
		}
		return t.written(r, pk, idOf(body), 201, it, minimal), nil
	case r.Method == http.MethodPut && id != "":
		// Without If-Match a replace is unconditional, in Cosmos DB and here (the fence never sends one).
		it, err := t.s.Replace(ctx, pk, id, body, r.Header.Get("If-Match"))
		if err != nil {
			return t.failed(r, err)
		}
		return t.written(r, pk, id, 200, it, minimal), nil
	case r.Method == http.MethodPatch && id != "":
		return t.patch(ctx, r, pk, id, body, minimal)
	}
	return respond(r, 400, nil, errBody("BadRequest", "the simulator does not answer "+r.Method+" "+r.URL.Path)), nil
}

// account answers the SDK's read of the account: one write region, this endpoint.
func (t *transport) account(r *http.Request) *http.Response {
	loc := []map[string]string{{"name": "East US", "databaseAccountEndpoint": t.s.w.endpoint}}
	b, _ := json.Marshal(map[string]any{"id": "sim", "writableLocations": loc, "readableLocations": loc,
		"enableMultipleWriteLocations": false, "userConsistencyPolicy": map[string]string{"defaultConsistencyLevel": "Session"}})
	return respond(r, 200, nil, b)
}

// written answers a write: its headers, and the stored item unless the SDK asked for a minimal answer.
func (t *transport) written(r *http.Request, pk, id string, status int, it store.Item, minimal bool) *http.Response {
	var body []byte
	if !minimal {
		// The stored version, as Cosmos DB returns it with the answer (part of the answer: no fault applies).
		w := t.s.w
		w.mu.Lock()
		if cur, err := w.mem.Read(bg, pk, id, ""); err == nil && cur.ETag == it.ETag {
			body = cur.Body
		}
		w.mu.Unlock()
	}
	return respond(r, status, itemHeaders(it.ETag, it.Session), body)
}

// patch applies a fenced patch: the condition evaluated against the current version, the operations applied,
// one conditional write, all under the world's lock.
func (t *transport) patch(ctx context.Context, r *http.Request, pk, id string, body []byte, minimal bool) (*http.Response, error) {
	var spec struct {
		Condition  *string `json:"condition"`
		Operations []struct {
			Op    string          `json:"op"`
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		} `json:"operations"`
	}
	if err := json.Unmarshal(body, &spec); err != nil {
		return respond(r, 400, nil, errBody("BadRequest", "patch body: "+err.Error())), nil
	}
	field, limit := "", int64(-1)
	if spec.Condition != nil {
		m := fencePredicate.FindStringSubmatch(*spec.Condition)
		if m == nil || m[1] != m[2] || m[1] != m[3] || m[1] != m[5] || m[1] != m[6] {
			return respond(r, 400, nil, errBody("BadRequest", "the simulator evaluates only the fence's predicate, not "+*spec.Condition)), nil
		}
		field = m[1]
		limit, _ = strconv.ParseInt(m[4], 10, 64)
	}
	ifMatch := r.Header.Get("If-Match")
	written := int64(-1)
	for _, o := range spec.Operations {
		if o.Path == "/fence" && o.Op == "set" {
			var n float64
			if json.Unmarshal(o.Value, &n) == nil {
				written = int64(n)
			}
		}
	}
	s := t.s
	w := s.w
	var etag, session string
	var out []byte
	a := w.call(ctx, s.p, s.inc, request{kind: opPatch, doc: id, cond: ifMatch, fence: written, limit: limit, apply: func(int) (int, string) {
		cur, err := w.mem.Read(bg, pk, id, "")
		if err != nil {
			return 404, ""
		}
		if ifMatch != "" && cur.ETag != ifMatch {
			return 412, ""
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(cur.Body, &doc); err != nil {
			return 400, ""
		}
		if field != "" {
			if raw, ok := doc[field]; ok {
				var n float64
				if json.Unmarshal(raw, &n) != nil || n < 0 || n > float64(limit) || n != math.Floor(n) {
					return 412, ""
				}
			}
		}
		for _, o := range spec.Operations {
			name := strings.TrimPrefix(o.Path, "/")
			switch o.Op {
			case "set", "add", "replace":
				doc[name] = o.Value
			case "remove":
				delete(doc, name)
			default:
				return 400, ""
			}
		}
		nb, _ := json.Marshal(doc)
		it, err := w.mem.Replace(bg, pk, id, nb, cur.ETag)
		if err != nil {
			return statusOf(err), ""
		}
		etag, session = it.ETag, it.Session
		if now, err := w.mem.Read(bg, pk, id, ""); err == nil {
			out = now.Body
		}
		return 200, it.ETag
	}})
	if a.status != 200 {
		return t.failed(r, s.fail("patch", a))
	}
	if minimal {
		out = nil
	}
	return respond(r, 200, itemHeaders(etag, session), out), nil
}

// failed turns a fault layer answer into what the SDK would get: a response with a status, or a connection
// error.
func (t *transport) failed(r *http.Request, err error) (*http.Response, error) {
	var e *store.Error
	if errors.As(err, &e) && e.Status != 0 {
		h := http.Header{}
		code := http.StatusText(e.Status)
		switch e.Status {
		case 429:
			h.Set("x-ms-retry-after-ms", strconv.FormatInt(e.RetryAfter.Milliseconds(), 10))
			code = "TooManyRequests"
		case 404:
			if e.Kind == store.Unknown { // a replica behind the read's session: 404/1002
				h.Set("x-ms-substatus", "1002")
			}
			code = "NotFound"
		case 409:
			code = "Conflict"
		case 412:
			code = "PreconditionFailed"
		case 503:
			code = "ServiceUnavailable"
		}
		return respond(r, e.Status, h, errBody(code, e.Error())), nil
	}
	if r.Context().Err() != nil {
		return nil, context.Cause(r.Context())
	}
	return nil, fmt.Errorf("sim transport: %w", err)
}

func itemHeaders(etag, session string) http.Header {
	h := http.Header{}
	if etag != "" {
		h.Set("ETag", etag)
	}
	if session != "" {
		h.Set("x-ms-session-token", session)
	}
	h.Set("x-ms-request-charge", "1")
	return h
}

func errBody(code, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	return b
}

func respond(r *http.Request, status int, h http.Header, body []byte) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Header: h,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

func idOf(body []byte) string {
	var d struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &d)
	return d.ID
}

// container returns an SDK client of the container for incarnation s, over this transport. A fake key: nothing
// checks it.
func (s *procStore) container() (*azcosmos.ContainerClient, error) {
	cred, err := azcosmos.NewKeyCredential("c2ltdWxhdGlvbg==")
	if err != nil {
		return nil, err
	}
	// The SDK's retry policy stays (it retries what it retries against Cosmos DB: transport errors, 408, 429,
	// 500, 502, 503, 504), but without its backoff, whose jitter comes from math/rand's global source and would
	// make no two runs of a seed alike: it retries at once, or after the answer's Retry-After.
	opts := &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: &transport{s: s},
		Retry: policy.RetryOptions{RetryDelay: -1}}}
	c, err := azcosmos.NewClientWithKey(s.w.endpoint, cred, opts)
	if err != nil {
		return nil, err
	}
	return c.NewContainer("db", "leases")
}
