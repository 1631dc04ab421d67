// Package runs records which region executed each occurrence of a scheduled job.
//
// A run record is claimed by creating it, and a document id can be created only once, so however many regions
// fire for the same occurrence — late ticks, past-due replays, restarts — at most one claim succeeds. The
// Functions handler claims only right after a renewal of the lease confirmed that it is the holder, and
// records the lease epoch in the claim.
//
// Records live in the lease container, in the lease's partition, with ids "run-{leaseKey}-{occurrence}",
// type "run", and the occurrence written at a fixed width so that it sorts as text. Each carries a ttl
// (seconds, the retention), so on a container whose default time-to-live is −1 they expire on their own,
// while lease documents, which carry no ttl, never do. Reading the history is one single-partition query that
// returns only the newest records (HistoryQuery), so its cost does not grow with the years of records kept.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Prefix starts every run record id.
const Prefix = "run-"

// Defaults.
const (
	// DefaultLeaseKey is the lease the Functions handler holds unless LeaseTimerLeaseKey names another.
	DefaultLeaseKey = "timer-singleton"
	// DefaultLimit is how many of the newest records a history read returns.
	DefaultLimit = 10
	// DefaultRetention is how long a record is kept after its last write.
	DefaultRetention = 30 * 24 * time.Hour
	// MaxRetention is the longest ttl Cosmos DB accepts (a 32-bit number of seconds).
	MaxRetention = (1<<31 - 1) * time.Second
)

// HistoryQuery reads the newest records of one lease. It runs in the lease's partition, filters on type (and
// on the id prefix, which keeps leases apart on servers that ignore a query's partition key) and orders by
// occurrence, so an index on /type and /occurrence serves it.
const HistoryQuery = "SELECT TOP @limit * FROM c WHERE c.type = @type AND STARTSWITH(c.id, @prefix) ORDER BY c.occurrence DESC"

// typeRun is the type of every run record.
const typeRun = "run"

// occurrenceLayout is fixed-width, so the stored text sorts as the times do.
const occurrenceLayout = "2006-01-02T15:04:05.000Z"

// Statuses of a run.
const (
	Started   = "started"
	Completed = "completed"
	Failed    = "failed"
	// Lost: the lease was lost while the work ran; the work was stopped.
	Lost = "lost"
	// TimedOut: the invocation's deadline, below the host's functionTimeout, passed; the work was stopped.
	TimedOut = "timed-out"
)

// Record is one occurrence's run.
type Record struct {
	ID         string    `json:"id"`
	LeaseKey   string    `json:"leaseKey"`
	Type       string    `json:"type"`
	Occurrence time.Time `json:"occurrence"`
	Region     string    `json:"region"`
	// Owner is the region's app that holds the lease; Instance the process of it that ran the occurrence.
	Owner      string    `json:"owner,omitempty"`
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
	return fmt.Sprintf("occurrence %s was already claimed in region %s (instance %s) at epoch %d: %s",
		r.Occurrence.UTC().Format(time.RFC3339), r.Region, r.Instance, r.Epoch, r.Status)
}

// Store is a lease container used for run records.
type Store struct {
	st        store.Store
	container *azcosmos.ContainerClient
	pkProp    string
	ttl       int64
}

// CheckPartitionKeyPath refuses a container on which a lease's runs cannot share its partition.
func CheckPartitionKeyPath(pkPath string) error {
	if strings.TrimPrefix(pkPath, "/") == "id" {
		return errors.New("the lease container is partitioned on /id, so run records cannot share their lease's partition and the run history cannot be read with one single-partition query; use a container partitioned on /leaseKey")
	}
	return nil
}

// Open connects to the container that o names (no request is sent). Records are kept for retention after
// their last write (DefaultRetention when zero).
func Open(o cosmoslease.Options, retention time.Duration) (*Store, func(), error) {
	pkPath := orDefault(o.PartitionKeyPath, cosmoslease.DefaultPartitionKeyPath)
	if err := CheckPartitionKeyPath(pkPath); err != nil {
		return nil, nil, err
	}
	if retention == 0 {
		retention = DefaultRetention
	}
	if retention < time.Second || retention > MaxRetention {
		return nil, nil, fmt.Errorf("the run retention %s is outside 1 s to %s", retention, MaxRetention)
	}
	container := orDefault(o.Container, cosmoslease.DefaultContainer)
	cs, err := cosmosstore.Open(cosmosstore.Config{ConnectionString: o.ConnectionString, Endpoint: o.Endpoint,
		Credential: o.Credential, Database: orDefault(o.Database, cosmoslease.DefaultDatabase),
		Container: container, Transport: o.Transport})
	if err != nil {
		return nil, nil, err
	}
	cc, err := cs.Database().NewContainer(container)
	if err != nil {
		cs.Close()
		return nil, nil, err
	}
	return &Store{st: cs, container: cc, pkProp: strings.TrimPrefix(pkPath, "/"), ttl: int64(retention / time.Second)}, cs.Close, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// encode is the stored form: the record, its partition key property, a fixed-width occurrence and the ttl.
func (s *Store) encode(r *Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m[s.pkProp] = r.LeaseKey
	m["occurrence"] = r.Occurrence.UTC().Format(occurrenceLayout)
	m["ttl"] = s.ttl
	return json.Marshal(m)
}

// Claim creates the record of an occurrence. It returns *AlreadyRunError when the occurrence was claimed before.
func (s *Store) Claim(ctx context.Context, r *Record) error {
	r.ID, r.Type, r.Status = ID(r.LeaseKey, r.Occurrence), typeRun, Started
	if len(r.ID) > 255 {
		return fmt.Errorf("the run record id for lease %q is longer than Cosmos DB allows; use a shorter lease key", r.LeaseKey)
	}
	body, err := s.encode(r)
	if err != nil {
		return err
	}
	item, err := s.st.Create(ctx, r.LeaseKey, body)
	if store.KindOf(err) == store.Conflict {
		got, rerr := s.st.Read(ctx, r.LeaseKey, r.ID, "")
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
	item, err := s.st.Replace(ctx, r.LeaseKey, r.ID, body, etag)
	if err != nil {
		return err
	}
	r.ETag = item.ETag
	return nil
}

// Recent returns the newest records of one lease, newest occurrence first, at most limit of them, with one
// query (HistoryQuery) in the lease's partition.
func (s *Store) Recent(ctx context.Context, key string, limit int) ([]Record, error) {
	if limit < 1 {
		return nil, fmt.Errorf("the number of runs to read must be at least 1, not %d", limit)
	}
	pager := s.container.NewQueryItemsPager(HistoryQuery, azcosmos.NewPartitionKeyString(key), &azcosmos.QueryOptions{
		PageSizeHint: int32(min(limit, 1000)),
		QueryParameters: []azcosmos.QueryParameter{{Name: "@limit", Value: limit}, {Name: "@type", Value: typeRun},
			{Name: "@prefix", Value: Prefix + key + "-"}}})
	out := []Record{}
	for pager.More() && len(out) < limit {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the run history of lease %q: %w", key, cosmosError(err))
		}
		for _, body := range page.Items {
			var r Record
			if err := json.Unmarshal(body, &r); err != nil {
				return nil, fmt.Errorf("a run record of lease %q cannot be read: %v", key, err)
			}
			if r.LeaseKey == key && len(out) < limit { // "run-job-" also starts the ids of lease "job-x"
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// cosmosError keeps the status and code of an SDK error and drops its multi-line dump.
func cosmosError(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return &store.Error{Op: "query", Status: re.StatusCode, Kind: store.KindForStatus(re.StatusCode), Err: errors.New(re.ErrorCode)}
	}
	return err
}
