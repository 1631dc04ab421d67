// Package memstore is an in-memory store.Store for fast tests: one container, ETags that change on every
// write, a server clock (_ts, Date) taken from an injected clock.Clock, and Session consistency with replicas
// that may lag. Faults are injected around it by the tests, the same way they are injected under the SDK for the
// real server; everything it models is exercised against a real Cosmos-protocol server by the conformance suite
// in pkg/cosmoslease.
package memstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Store is the in-memory container.
type Store struct {
	mu    sync.Mutex
	clock clock.Clock
	// docs keeps every version of each document, oldest first; a deletion is a version with a nil body.
	docs  map[string][]version
	lsn   int64 // the container's log sequence number: one per write
	calls map[string]int
	lag   int  // reads still to answer from a lagging replica
	depth int  // how many writes of the document that replica lacks
	gone  bool // the container was deleted

	// PartitionKeyPath is what Check compares with; default /leaseKey.
	PartitionKeyPath string
	// MultiWrite makes Check see an account with several write regions.
	MultiWrite bool
	// DefaultTTL is the container's default time-to-live as Check sees it: nil (off), -1, or seconds.
	DefaultTTL *int32
	// AccountRegions is what Regions returns: the account's regions, write region first.
	AccountRegions []string
}

type version struct {
	body []byte // with _etag and _ts; nil for a deletion
	lsn  int64
	etag string // the _etag in body, kept so that reads need not decode it
}

var _ store.Store = (*Store)(nil)

// New returns an empty container whose server clock is c.
func New(c clock.Clock) *Store {
	return &Store{clock: c, docs: map[string][]version{}, calls: map[string]int{}, PartitionKeyPath: "/leaseKey"}
}

// Calls returns how many times op was called, faults included.
func (s *Store) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Put stores a raw body under id, as a person editing the document would; it returns the new ETag.
func (s *Store) Put(id string, body []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put(id, body)
}

// Delete removes a document, as a person might.
func (s *Store) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lsn++
	s.docs[id] = append(s.docs[id], version{lsn: s.lsn})
}

// DropContainer deletes the container: every later request answers 404.
func (s *Store) DropContainer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
}

// LagReads makes the next n reads come from a replica that lacks the last depth writes of the document read, as
// a replica of a Session-consistency account may, except that it has applied every write the read's session
// token names (otherwise Cosmos DB answers from another replica).
func (s *Store) LagReads(n, depth int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lag, s.depth = n, depth
}

func (s *Store) put(id string, body []byte) string {
	s.lsn++
	etag := `"` + strconv.FormatInt(s.lsn, 10) + `"`
	stored := ""
	if b, ok := withSystem(body, etag, s.clock.Now().Unix()); ok {
		body = b
		stored = etag // what store.ETagOf(body) would read back, without parsing the body again
	} else {
		stored = store.ETagOf(body)
	}
	s.docs[id] = append(s.docs[id], version{body: body, lsn: s.lsn, etag: stored})
	return etag
}

// withSystem is body with its _etag and _ts set, as stored: the bytes json.Marshal gives for the body decoded
// into a map[string]json.RawMessage with those two set (properties in sorted order, the last of a repeated
// name, compact, HTML characters escaped), built without decoding into a map, which made storing a document a
// large part of the simulator's cost. ok is false when body is not a JSON object.
func withSystem(body []byte, etag string, ts int64) (out []byte, ok bool) {
	if !json.Valid(body) {
		return nil, false
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return nil, false
	}
	type prop struct {
		name string
		v    []byte
	}
	props := make([]prop, 0, 24)
	set := func(name string, v []byte) {
		for j := range props {
			if props[j].name == name {
				props[j].v = v
				return
			}
		}
		props = append(props, prop{name, v})
	}
	for i = skipSpace(body, i+1); body[i] != '}'; {
		end := skipString(body, i)
		raw, name := body[i:end], ""
		if plainName(raw[1 : len(raw)-1]) {
			name = string(raw[1 : len(raw)-1])
		} else if json.Unmarshal(raw, &name) != nil {
			return nil, false
		}
		i = skipSpace(body, skipSpace(body, end)+1) // past the colon
		end = skipValue(body, i)
		set(name, body[i:end])
		if i = skipSpace(body, end); body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	e, _ := json.Marshal(etag)
	set("_etag", e)
	set("_ts", strconv.AppendInt(nil, ts, 10))
	sort.Slice(props, func(a, b int) bool { return props[a].name < props[b].name })
	out = make([]byte, 0, len(body)+64)
	out = append(out, '{')
	for j, p := range props {
		if j > 0 {
			out = append(out, ',')
		}
		if plainName([]byte(p.name)) {
			out = append(out, '"')
			out = append(out, p.name...)
			out = append(out, '"')
		} else {
			q, _ := json.Marshal(p.name)
			out = append(out, q...)
		}
		out = append(out, ':')
		if compactSafe(p.v) {
			out = append(out, p.v...)
			continue
		}
		var c, h bytes.Buffer
		if json.Compact(&c, p.v) != nil {
			return nil, false
		}
		json.HTMLEscape(&h, c.Bytes())
		out = append(out, h.Bytes()...)
	}
	return append(out, '}'), true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString is the index after the string of valid JSON that starts at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; ; j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
}

// skipValue is the index after the value of valid JSON that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\r' && b[j] != '\n' {
		j++
	}
	return j
}

// compactSafe reports whether json.Marshal writes the valid JSON v as it is: no white space outside its strings
// to remove, nothing to escape (<, >, &, and U+2028 and U+2029, which start with the byte 0xE2).
func compactSafe(v []byte) bool {
	in := false
	for j := 0; j < len(v); j++ {
		switch c := v[j]; c {
		case '<', '>', '&', 0xE2:
			return false
		case ' ', '\t', '\r', '\n':
			if !in {
				return false
			}
		case '"':
			in = !in
		case '\\':
			j++ // inside a string: the escaped character is not its end
		}
	}
	return true
}

// plainName reports whether a property name is written as it is, between quotes, in JSON and by json.Marshal:
// printable ASCII with nothing to escape.
func plainName(k []byte) bool {
	for _, c := range k {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// current is the newest version of id, nil when there is none.
func (s *Store) current(id string) []byte {
	v := s.docs[id]
	if len(v) == 0 {
		return nil
	}
	return v[len(v)-1].body
}

func (s *Store) begin(op string) {
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
}

func (s *Store) item(body []byte, etag string) store.Item {
	return store.Item{Body: bytes.Clone(body), ETag: etag, ServerTime: s.clock.Now(), Charge: 1, Session: token(s.lsn)}
}

// token renders a session token as Cosmos DB does: partition key range, then the log sequence number.
func token(lsn int64) string { return "0:-1#" + strconv.FormatInt(lsn, 10) }

func lsnOf(token string) int64 {
	n, _ := store.SessionLSN(token)
	return n
}

func idOf(body []byte) (string, error) {
	var m struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.ID == "" {
		return "", &store.Error{Op: "create", Status: 400, Kind: store.BadRequest, Err: fmt.Errorf("body has no id")}
	}
	return m.ID, nil
}

func (s *Store) containerGone(op string) error {
	if s.gone {
		return &store.Error{Op: op, Status: 404, Kind: store.NotFound, Err: fmt.Errorf("container does not exist")}
	}
	return nil
}

func (s *Store) Read(ctx context.Context, pk, id, session string) (store.Item, error) {
	s.begin("read")
	if err := ctx.Err(); err != nil {
		return store.Item{}, &store.Error{Op: "memstore", Kind: store.Unknown, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.containerGone("read"); err != nil {
		return store.Item{}, err
	}
	versions := s.docs[id]
	n := len(versions)
	if s.lag > 0 {
		s.lag--
		for behind := 0; behind < s.depth && n > 0 && versions[n-1].lsn > lsnOf(session); behind++ {
			n--
		}
	}
	if n == 0 || versions[n-1].body == nil {
		return store.Item{}, &store.Error{Op: "read", Status: 404, Kind: store.NotFound}
	}
	body := versions[n-1].body
	it := s.item(body, versions[n-1].etag)
	it.Session = token(versions[n-1].lsn)
	return it, nil
}

func (s *Store) Create(ctx context.Context, pk string, body []byte) (store.Item, error) {
	id, err := idOf(body)
	if err != nil {
		return store.Item{}, err
	}
	s.begin("create")
	if err := ctx.Err(); err != nil {
		return store.Item{}, &store.Error{Op: "memstore", Kind: store.Unknown, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.containerGone("create"); err != nil {
		return store.Item{}, err
	}
	if s.current(id) != nil {
		return store.Item{}, &store.Error{Op: "create", Status: 409, Kind: store.Conflict}
	}
	return s.item(nil, s.put(id, body)), nil
}

func (s *Store) Replace(ctx context.Context, pk, id string, body []byte, etag string) (store.Item, error) {
	s.begin("replace")
	if err := ctx.Err(); err != nil {
		return store.Item{}, &store.Error{Op: "memstore", Kind: store.Unknown, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.containerGone("replace"); err != nil {
		return store.Item{}, err
	}
	cur := s.current(id)
	if cur == nil {
		return store.Item{}, &store.Error{Op: "replace", Status: 404, Kind: store.NotFound}
	}
	if v := s.docs[id]; etag == "" || v[len(v)-1].etag != etag {
		return store.Item{}, &store.Error{Op: "replace", Status: 412, Kind: store.Precondition}
	}
	return s.item(nil, s.put(id, body)), nil
}

func (s *Store) List(ctx context.Context, prefix string) ([]store.Item, float64, error) {
	s.begin("list")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.containerGone("list"); err != nil {
		return nil, 0, err
	}
	ids := make([]string, 0, len(s.docs))
	for id := range s.docs {
		if strings.HasPrefix(id, prefix) && s.current(id) != nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	items := make([]store.Item, 0, len(ids))
	for _, id := range ids {
		body := s.current(id)
		items = append(items, s.item(body, store.ETagOf(body)))
	}
	return items, 1, nil
}

// Recent answers store.RecentQuery: documents of type "run" in partition pk whose id starts with prefix,
// newest occurrence first (the stored occurrence text sorts as the times do).
func (s *Store) Recent(ctx context.Context, pk, prefix string, limit int, session string) ([]store.Item, float64, error) {
	s.begin("query")
	if err := ctx.Err(); err != nil {
		return nil, 0, &store.Error{Op: "memstore", Kind: store.Unknown, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.containerGone("query"); err != nil {
		return nil, 0, err
	}
	type rec struct {
		occurrence string
		body       []byte
	}
	var recs []rec
	for id := range s.docs {
		body := s.current(id)
		if !strings.HasPrefix(id, prefix) || body == nil {
			continue
		}
		var d struct {
			Type       string `json:"type"`
			Occurrence string `json:"occurrence"`
		}
		if json.Unmarshal(body, &d) == nil && d.Type == store.TypeRun {
			recs = append(recs, rec{d.Occurrence, body})
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].occurrence > recs[j].occurrence })
	items := make([]store.Item, 0, min(len(recs), limit))
	for _, r := range recs[:min(len(recs), limit)] {
		items = append(items, s.item(r.body, store.ETagOf(r.body)))
	}
	return items, 1, nil
}

// Regions returns AccountRegions.
func (s *Store) Regions() []string { return s.AccountRegions }

func (s *Store) Exists(ctx context.Context, op string) error {
	s.begin("exists")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.containerGone(op)
}

func (s *Store) Check(ctx context.Context, partitionKeyPath string, allowMultiWrite bool) error {
	s.begin("check")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return fmt.Errorf("container does not exist")
	}
	if s.PartitionKeyPath != partitionKeyPath {
		return fmt.Errorf("container is partitioned on %s, not %s", s.PartitionKeyPath, partitionKeyPath)
	}
	if s.DefaultTTL != nil && *s.DefaultTTL > 0 {
		return fmt.Errorf("container expires items after %d s (default time-to-live)", *s.DefaultTTL)
	}
	if s.MultiWrite && !allowMultiWrite {
		return fmt.Errorf("account has multiple write regions")
	}
	return nil
}
