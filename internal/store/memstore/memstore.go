// Package memstore is an in-memory store.Store for fast tests: one container, ETags that change on every
// write, and a server clock (_ts, Date) taken from an injected clock.Clock. Faults are injected around it by
// the tests, the same way they are injected under the SDK for the real server; everything it models is
// exercised against a real Cosmos-protocol server by the conformance suite in pkg/cosmoslease.
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
	docs  map[string][]byte // id → body with _etag and _ts
	seq   int
	calls map[string]int

	// PartitionKeyPath is what Check compares with; default /leaseKey.
	PartitionKeyPath string
	// MultiWrite makes Check see an account with several write regions.
	MultiWrite bool
}

var _ store.Store = (*Store)(nil)

// New returns an empty container whose server clock is c.
func New(c clock.Clock) *Store {
	return &Store{clock: c, docs: map[string][]byte{}, calls: map[string]int{}, PartitionKeyPath: "/leaseKey"}
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
	delete(s.docs, id)
}

func (s *Store) put(id string, body []byte) string {
	s.seq++
	etag := `"` + strconv.Itoa(s.seq) + `"`
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) == nil {
		m["_etag"], _ = json.Marshal(etag)
		m["_ts"], _ = json.Marshal(s.clock.Now().Unix())
		body, _ = json.Marshal(m)
	}
	s.docs[id] = body
	return etag
}

func (s *Store) begin(op string) {
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
}

func (s *Store) item(body []byte, etag string) store.Item {
	return store.Item{Body: bytes.Clone(body), ETag: etag, ServerTime: s.clock.Now(), Charge: 1}
}

func etagOf(body []byte) string {
	var m struct {
		ETag string `json:"_etag"`
	}
	_ = json.Unmarshal(body, &m)
	return m.ETag
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

func (s *Store) Read(ctx context.Context, pk, id string) (store.Item, error) {
	s.begin("read")
	if err := ctx.Err(); err != nil {
		return store.Item{}, &store.Error{Op: "memstore", Kind: store.Unknown, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	body, ok := s.docs[id]
	if !ok {
		return store.Item{}, &store.Error{Op: "read", Status: 404, Kind: store.NotFound}
	}
	return s.item(body, etagOf(body)), nil
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
	if _, ok := s.docs[id]; ok {
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
	cur, ok := s.docs[id]
	if !ok {
		return store.Item{}, &store.Error{Op: "replace", Status: 404, Kind: store.NotFound}
	}
	if etagOf(cur) != etag {
		return store.Item{}, &store.Error{Op: "replace", Status: 412, Kind: store.Precondition}
	}
	return s.item(nil, s.put(id, body)), nil
}

func (s *Store) List(ctx context.Context, prefix string) ([]store.Item, float64, error) {
	s.begin("list")
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.docs))
	for id := range s.docs {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	items := make([]store.Item, 0, len(ids))
	for _, id := range ids {
		items = append(items, s.item(s.docs[id], etagOf(s.docs[id])))
	}
	return items, 1, nil
}

func (s *Store) Check(ctx context.Context, partitionKeyPath string, allowMultiWrite bool) error {
	s.begin("check")
	if s.PartitionKeyPath != partitionKeyPath {
		return fmt.Errorf("container is partitioned on %s, not %s", s.PartitionKeyPath, partitionKeyPath)
	}
	if s.MultiWrite && !allowMultiWrite {
		return fmt.Errorf("account has multiple write regions")
	}
	return nil
}
