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
	var m map[string]json.RawMessage
	stored := ""
	if json.Unmarshal(body, &m) == nil {
		m["_etag"], _ = json.Marshal(etag)
		m["_ts"], _ = json.Marshal(s.clock.Now().Unix())
		body, _ = json.Marshal(m)
		stored = etag // what store.ETagOf(body) would read back, without parsing the body again
	} else {
		stored = store.ETagOf(body)
	}
	s.docs[id] = append(s.docs[id], version{body: body, lsn: s.lsn, etag: stored})
	return etag
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
