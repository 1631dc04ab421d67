// Package runs records which region executed each occurrence of a scheduled job.
//
// A run record is claimed by creating it, and a document id can be created only once, so however many regions
// fire for the same occurrence — late ticks, past-due replays, restarts — at most one claim succeeds. The
// Functions handler claims only right after a renewal of the lease confirmed that it is the holder, and
// records the lease epoch in the claim. Records live in the lease container, in the lease's partition, with
// ids "run-{leaseKey}-{occurrence}", so `cosmoslease inspect --runs` can list them.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Prefix starts every run record id.
const Prefix = "run-"

// Statuses of a run.
const (
	Started   = "started"
	Completed = "completed"
	Failed    = "failed"
	// Lost: the lease was lost while the work ran; the work was stopped.
	Lost = "lost"
)

// Record is one occurrence's run.
type Record struct {
	ID         string    `json:"id"`
	LeaseKey   string    `json:"leaseKey"`
	Type       string    `json:"type"`
	Occurrence time.Time `json:"occurrence"`
	Region     string    `json:"region"`
	Instance   string    `json:"instance"`
	Epoch      int64     `json:"epoch"`
	PastDue    bool      `json:"pastDue"`
	Status     string    `json:"status"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Error      string    `json:"error,omitempty"`
	ETag       string    `json:"_etag,omitempty"`
}

// ID is the record id of one occurrence of a lease's job.
func ID(key string, occurrence time.Time) string {
	return Prefix + key + "-" + occurrence.UTC().Format("20060102T150405.000Z")
}

// AlreadyRunError says another claim of the occurrence exists.
type AlreadyRunError struct{ Existing Record }

func (e *AlreadyRunError) Error() string {
	r := e.Existing
	return fmt.Sprintf("occurrence %s was already claimed by %s (region %s) at epoch %d: %s",
		r.Occurrence.UTC().Format(time.RFC3339), r.Instance, r.Region, r.Epoch, r.Status)
}

// Store is a lease container used for run records.
type Store struct {
	st     store.Store
	pkProp string
}

// New wraps a store; pkPath is the container's partition key path.
func New(st store.Store, pkPath string) *Store {
	return &Store{st: st, pkProp: strings.TrimPrefix(orDefault(pkPath, cosmoslease.DefaultPartitionKeyPath), "/")}
}

// Open connects to the container that o names (no request is sent).
func Open(o cosmoslease.Options) (*Store, func(), error) {
	cs, err := cosmosstore.Open(cosmosstore.Config{ConnectionString: o.ConnectionString, Endpoint: o.Endpoint,
		Credential: o.Credential, Database: orDefault(o.Database, cosmoslease.DefaultDatabase),
		Container: orDefault(o.Container, cosmoslease.DefaultContainer), Transport: o.Transport})
	if err != nil {
		return nil, nil, err
	}
	return New(cs, o.PartitionKeyPath), cs.Close, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Store) pk(r *Record) string {
	if s.pkProp == "id" {
		return r.ID
	}
	return r.LeaseKey
}

func (s *Store) encode(r *Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil || s.pkProp == "leaseKey" || s.pkProp == "id" {
		return b, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m[s.pkProp] = r.LeaseKey
	return json.Marshal(m)
}

// Claim creates the record of an occurrence. It returns *AlreadyRunError when the occurrence was claimed before.
func (s *Store) Claim(ctx context.Context, r *Record) error {
	r.ID, r.Type, r.Status = ID(r.LeaseKey, r.Occurrence), "run", Started
	if len(r.ID) > 255 {
		return fmt.Errorf("the run record id for lease %q is longer than Cosmos DB allows; use a shorter lease key", r.LeaseKey)
	}
	body, err := s.encode(r)
	if err != nil {
		return err
	}
	item, err := s.st.Create(ctx, s.pk(r), body)
	if store.KindOf(err) == store.Conflict {
		got, rerr := s.st.Read(ctx, s.pk(r), r.ID, "")
		var existing Record
		if rerr == nil && json.Unmarshal(got.Body, &existing) == nil {
			return &AlreadyRunError{Existing: existing}
		}
		return &AlreadyRunError{Existing: Record{ID: r.ID, Occurrence: r.Occurrence, Status: "unknown"}}
	}
	if err != nil {
		return err
	}
	r.ETag = item.ETag
	return nil
}

// Finish records how the run ended, on the claim's ETag.
func (s *Store) Finish(ctx context.Context, r *Record, status string, finished time.Time, runErr error) error {
	r.Status, r.FinishedAt = status, finished
	if runErr != nil {
		r.Error = runErr.Error()
	}
	etag := r.ETag
	r.ETag = ""
	body, err := s.encode(r)
	if err != nil {
		return err
	}
	item, err := s.st.Replace(ctx, s.pk(r), r.ID, body, etag)
	if err != nil {
		return err
	}
	r.ETag = item.ETag
	return nil
}

// List returns the run records, newest occurrence first; key limits them to one lease.
func (s *Store) List(ctx context.Context, key string) ([]Record, error) {
	prefix := Prefix
	if key != "" {
		prefix += key + "-"
	}
	items, _, err := s.st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []Record
	var bad []string
	for _, it := range items {
		var r Record
		if err := json.Unmarshal(it.Body, &r); err != nil || r.Type != "run" {
			bad = append(bad, string(it.Body[:min(len(it.Body), 60)]))
			continue
		}
		if key != "" && r.LeaseKey != key {
			continue // "run-job-" also starts the records of lease "job-x"
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Occurrence.Equal(out[j].Occurrence) {
			return out[i].Occurrence.After(out[j].Occurrence)
		}
		return out[i].LeaseKey < out[j].LeaseKey
	})
	if len(bad) > 0 && len(out) == 0 {
		return nil, errors.New("documents named like run records could not be read as such")
	}
	return out, nil
}
