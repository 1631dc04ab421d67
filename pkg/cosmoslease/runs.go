package cosmoslease

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Run records: one per (lease key, occurrence), in the lease container, in the lease's partition, with id
// "run-{key}-{occurrence}" and type "run". Creating one is the claim of an occurrence, and an id can be created
// only once, so at most one claim of each occurrence ever succeeds. Each record carries a ttl, in seconds, set so
// that it expires the retention after its occurrence (not after its last write: records then expire in the order
// of their occurrences, however late one was rewritten): on a container whose default time-to-live is −1 records
// expire on their own, while lease documents, which carry no ttl, never do. The occurrence is stored at a fixed width so that it sorts as text.

// RunPrefix starts every run record id.
const RunPrefix = "run-"

// Run record defaults and limits.
const (
	// DefaultRunRetention is how long a run record is kept after its occurrence.
	DefaultRunRetention = 30 * 24 * time.Hour
	// MinRunRetention is the shortest retention RunOnce accepts: a record must outlive every late tick and
	// past-due replay of its occurrence, or the occurrence could run again.
	MinRunRetention = 24 * time.Hour
	// MaxRunRetention is the longest ttl Cosmos DB accepts (a 32-bit number of seconds).
	MaxRunRetention = (1<<31 - 1) * time.Second
	// DefaultRunLimit is how many records Runs reads unless told.
	DefaultRunLimit = 10
	// retentionMargin: an occurrence is judged too old to claim safely this long before its record could have
	// expired, for the clocks of this machine and of Cosmos DB's TTL, which need not agree.
	retentionMargin = 5 * time.Minute
)

// Statuses of a run record.
const (
	RunStarted   = "started"   // claimed; the work runs (or its claimer died: see RunAbandoned)
	RunCompleted = "completed" // the work returned nil
	RunFailed    = "failed"    // the work returned an error, or was interrupted
	RunLost      = "lost"      // the lease was lost, or Cosmos DB refused a fenced write, while the work ran
	RunTimedOut  = "timed-out" // the caller's deadline passed while the work ran
	// RunAbandoned: its claimer stopped (crashed, killed) while the work ran; a later holder of the lease saw
	// the record still started and marked it.
	RunAbandoned = "abandoned"
	// RunSkipped: nobody ran the occurrence, for the reason the record gives: Cause overlap (it waited behind the
	// previous occurrence's run: it came due while that run was going, or while an earlier run was going and the
	// lease stayed held until that run took it within its claim window and then outlasted its turn), superseded
	// (a later occurrence was claimed first).
	RunSkipped = "skipped"
	// RunMissed: no region claimed the occurrence within its claim window (every region down, Cosmos DB
	// unreachable from all of them, or the timer not firing). Decided, and counted, by the claim of a later
	// occurrence.
	RunMissed = "missed"
)

// RunRecord is the record of one occurrence of a lease's scheduled work.
type RunRecord struct {
	ID         string    `json:"id"`
	LeaseKey   string    `json:"leaseKey"`
	Type       string    `json:"type"`
	Occurrence time.Time `json:"occurrence"`
	Status     string    `json:"status"`
	// Reason says why an occurrence was skipped or abandoned, or that it is a re-run.
	Reason string `json:"reason,omitempty"`
	Region string `json:"region"`
	// Owner is the OwnerID of the claimer; Instance its process.
	Owner    string `json:"owner,omitempty"`
	Instance string `json:"instance"`
	// Epoch is the lease's epoch under which the work ran: it fences the work's writes.
	Epoch int64 `json:"epoch"`
	// ClaimID is unique to one claim: a claimer recognises its own record by it after an ambiguous create.
	ClaimID string `json:"claimId,omitempty"`
	PastDue bool   `json:"pastDue"`
	// CaughtUp marks the run of a missed occurrence caught up after an outage (RunOptions.CatchUpWindow): every
	// region let its claim window pass, and the first contender back ran it late, once. PastDue is set with it.
	CaughtUp bool `json:"caughtUp,omitempty"`
	// Retried is set on a re-run of an abandoned occurrence (RunOptions.RetryAbandoned).
	Retried    bool      `json:"retried,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// ExitCode is the exit status of a command the work ran (Run.SetExitCode).
	ExitCode *int   `json:"exitCode,omitempty"`
	Error    string `json:"error,omitempty"`
	// Schedule and MissedAfterMs, when the claimer knew them, let a reader list missed occurrences (Missed).
	Schedule      string `json:"schedule,omitempty"`
	MissedAfterMs int64  `json:"missedAfterMs,omitempty"`
	// Through and Count make one record of several occurrences passed over at once (skipped or missed): from
	// Occurrence to Through, Count of them (the id is the first's). Zero for a record of one occurrence.
	Through time.Time `json:"through,omitzero"`
	Count   int       `json:"count,omitempty"`
	// Cause says in one word why an occurrence was not run: overlap, superseded, missed.
	Cause string `json:"cause,omitempty"`
	// Decided is the epoch of the holding that wrote this version of the record. A record is never overwritten by
	// a write from an earlier holding: a claimer that outlived its lease cannot undo what the next holder decided.
	Decided int64 `json:"decided,omitempty"`
	// Manual marks a manual run (Client.Trigger): Occurrence is when it was asked for, TriggeredBy by whom, and
	// its id is ManualRunID. It is no occurrence of the schedule.
	Manual      bool   `json:"manual,omitempty"`
	TriggeredBy string `json:"triggeredBy,omitempty"`
	ETag        string `json:"_etag,omitempty"`
}

// Last is the newest occurrence the record covers: Through for a range, else Occurrence.
func (r RunRecord) Last() time.Time {
	if r.Through.After(r.Occurrence) {
		return r.Through
	}
	return r.Occurrence
}

// Occurrences is how many occurrences the record covers.
func (r RunRecord) Occurrences() int { return max(r.Count, 1) }

// Covers reports whether the record is about occurrence t.
func (r RunRecord) Covers(t time.Time) bool { return !t.Before(r.Occurrence) && !t.After(r.Last()) }

// RunID is the id of the run record of one occurrence of a lease's work.
func RunID(key string, occurrence time.Time) string {
	return RunPrefix + key + "-" + occurrence.UTC().Format("20060102T150405.000Z")
}

// occurrenceLayout is fixed-width, so the stored text sorts as the times do.
const occurrenceLayout = "2006-01-02T15:04:05.000Z"

// encodeRun is the stored form: the record, its partition key property, the fixed-width occurrence and the ttl,
// which Cosmos DB counts from the write: retention less the occurrence's age, so the record expires retention
// after its occurrence (and at least a minute after this write).
func (c *Client) encodeRun(r *RunRecord, retention time.Duration) ([]byte, error) {
	ttl := max(retention-c.clock.Now().Sub(r.Last()), time.Minute)
	etag := r.ETag
	r.ETag = ""
	b, err := json.Marshal(r)
	r.ETag = etag
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m[c.pkProp] = r.LeaseKey
	m["occurrence"] = r.Occurrence.UTC().Format(occurrenceLayout)
	if !r.Through.IsZero() {
		m["through"] = r.Through.UTC().Format(occurrenceLayout)
	}
	m["ttl"] = int64(ttl / time.Second)
	return json.Marshal(m)
}

// readRun point-reads a run record, with this client's newest session token for the lease's partition (records
// share it), so it never returns a version older than one this client wrote or read. nil when there is none.
func (c *Client) readRun(ctx context.Context, key, id string) (*RunRecord, error) {
	rctx, cancel := c.requestContext(ctx, time.Time{})
	defer cancel()
	c.mu.Lock()
	session := c.sessions[key]
	c.mu.Unlock()
	start := c.clock.Now()
	item, err := c.st.Read(rctx, key, id, session)
	c.report("run-read", key, start, item, err)
	if store.KindOf(err) == store.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.keepSessionLocked(key, item.Session)
	c.mu.Unlock()
	var r RunRecord
	if err := json.Unmarshal(item.Body, &r); err != nil || r.ID != id {
		return nil, fmt.Errorf("the run record %s is not a run record this library wrote: %v", id, err)
	}
	if r.ETag == "" {
		r.ETag = item.ETag
	}
	return &r, nil
}

// writeRun creates the record (etag empty) or replaces it on etag, and keeps the new ETag in r.
func (c *Client) writeRun(ctx context.Context, r *RunRecord, etag string, ttl time.Duration) error {
	body, err := c.encodeRun(r, ttl)
	if err != nil {
		return err
	}
	rctx, cancel := c.requestContext(ctx, time.Time{})
	defer cancel()
	start := c.clock.Now()
	var item store.Item
	op := "run-create"
	if etag == "" {
		item, err = c.st.Create(rctx, r.LeaseKey, body)
	} else {
		op = "run-replace"
		item, err = c.st.Replace(rctx, r.LeaseKey, r.ID, body, etag)
	}
	if err == nil && item.ETag == "" {
		err = noETag(op)
	}
	c.report(op, r.LeaseKey, start, item, err)
	if store.KindOf(err) == store.NotFound && etag == "" {
		return fmt.Errorf("%w: %v", ErrSetup, err)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.keepSessionLocked(r.LeaseKey, item.Session)
	c.mu.Unlock()
	r.ETag = item.ETag
	return nil
}

// Runs returns the newest run records of a lease, newest occurrence first, at most limit of them (1 to 1000;
// DefaultRunLimit when 0), with one single-partition query that returns only those, however many records the
// lease has.
func (c *Client) Runs(ctx context.Context, key string, limit int) ([]RunRecord, error) {
	if _, err := runIDPrefix(key); err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = DefaultRunLimit
	}
	if limit < 1 || limit > 1000 {
		return nil, invalid("the number of run records to read must be from 1 to 1000, not %d", limit)
	}
	if c.pkProp == "id" {
		return nil, invalid("%s", errPartitionedOnID)
	}
	rctx, cancel := c.requestContext(ctx, time.Time{})
	defer cancel()
	c.mu.Lock()
	session := c.sessions[key]
	c.mu.Unlock()
	start := c.clock.Now()
	prefix := RunPrefix + key + "-"
	items, charge, err := c.st.Recent(rctx, key, prefix, limit, session)
	c.report("run-query", key, start, store.Item{Charge: charge}, err)
	if err != nil {
		return nil, fmt.Errorf("read the run history of lease %q: %w", key, err)
	}
	out := make([]RunRecord, 0, len(items))
	for _, it := range items {
		var r RunRecord
		if err := json.Unmarshal(it.Body, &r); err != nil {
			return nil, fmt.Errorf("a run record of lease %q cannot be read: %v", key, err)
		}
		if r.LeaseKey == key && len(out) < limit { // "run-job-" also starts the ids of lease "job-x"
			if r.ETag == "" {
				r.ETag = it.ETag
			}
			out = append(out, r)
		}
	}
	return out, nil
}

const errPartitionedOnID = "the lease container is partitioned on /id, so run records cannot share their lease's partition and the run history cannot be read with one single-partition query; use a container partitioned on /leaseKey"

// CheckRunPartitionKeyPath refuses, with ErrInvalid, a lease container partition key path on which run records
// cannot share their lease's partition (/id), so that a program can say so before it contends (RunOnce and Runs
// refuse it too). An empty path is the default, /leaseKey.
func CheckRunPartitionKeyPath(path string) error {
	if strings.TrimPrefix(path, "/") == "id" {
		return invalid("%s", errPartitionedOnID)
	}
	return nil
}

// runIDPrefix checks that a lease key can name run records (ids are at most 255 characters).
func runIDPrefix(key string) (string, error) {
	if strings.TrimSpace(key) == "" {
		return "", invalid("the lease key is empty")
	}
	id := RunID(key, time.Time{})
	if len(id) > 255 {
		return "", invalid("lease key %q is too long for run record ids (at most %d characters)", key, 255-len(RunID("", time.Time{})))
	}
	return RunPrefix + key + "-", nil
}

// Missed are the occurrences a schedule says were due, in a window, that ran in no region.
type Missed struct {
	// From and To bound the window: From is the occurrence of the oldest record given that was written under the
	// current schedule, To is now less the time an occurrence may take to be claimed (so one still being failed
	// over is not counted). Zero when the window is empty.
	From, To time.Time
	// Count is how many occurrences in the window are missed; Times lists the newest of them (at most the limit
	// given), newest first. Capped is set when the window held too many occurrences to count them all: Count is
	// then a lower bound.
	Count  int
	Times  []time.Time
	Capped bool
}

// maxMissedScan bounds how many occurrences MissedOccurrences and a claim look at.
const maxMissedScan = 100_000

// MissedOccurrences finds the missed occurrences among recs, the newest run records of a lease (as Runs returns
// them): the occurrences at which next (the schedule: the first occurrence after a time) says the work was due,
// from the oldest record given to grace before now, that a record marks missed (RunMissed: decided when a later
// occurrence was claimed) or that no record covers at all (a history written before run records marked them, or
// a decision whose records are still to be written). An occurrence is missed when no contender claimed it in any
// region: every region was down, Cosmos DB was unreachable from all of them, or the platform did not fire the
// timer. Records that name a schedule other than the newest record's (written before a schedule change) and all
// older ones are left out of the window. grace must cover the time the last contender in the preference order
// may take to claim (its rank × the failover delay, plus a crashed holder's lease running out). It lists at most
// limit of them, newest first. History gives the exact picture, with the lease document's state.
func MissedOccurrences(recs []RunRecord, next func(time.Time) time.Time, now time.Time, grace time.Duration, limit int) Missed {
	var m Missed
	if len(recs) == 0 || next == nil {
		return m
	}
	// The window opens at the oldest record written under the schedule of the newest record that names one: a
	// record of another schedule is from before a schedule change, whose period the current schedule says
	// nothing about.
	byTime := slices.DeleteFunc(slices.Clone(recs), func(r RunRecord) bool { return r.Manual }) // no occurrences
	if len(byTime) == 0 {
		return m
	}
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].Occurrence.After(byTime[j].Occurrence) })
	current := ""
	for _, r := range byTime {
		if r.Schedule != "" {
			current = r.Schedule
			break
		}
	}
	from := byTime[0].Occurrence
	for _, r := range byTime {
		if current != "" && r.Schedule != "" && r.Schedule != current {
			break
		}
		from = r.Occurrence
	}
	to := now.Add(-grace)
	if to.Before(from) {
		return m
	}
	m.From, m.To = from.UTC(), to.UTC()
	// Oldest first, for one pass.
	slices.Reverse(byTime)
	i := 0
	cover := func(t time.Time) *RunRecord {
		for i < len(byTime) && byTime[i].Last().Before(t) {
			i++
		}
		for j := i; j < len(byTime) && !byTime[j].Occurrence.After(t); j++ {
			if byTime[j].Covers(t) {
				return &byTime[j]
			}
		}
		return nil
	}
	var all []time.Time
	for t, n := from, 0; !t.After(to); t, n = next(t), n+1 {
		if n >= maxMissedScan {
			m.Capped = true
			break
		}
		if r := cover(t); r == nil || r.Status == RunMissed {
			m.Count++
			all = append(all, t.UTC())
			if len(all) > limit {
				all = all[1:]
			}
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		m.Times = append(m.Times, all[i])
	}
	return m
}

// History is a job's run history as a reader should see it: the newest run records together with what the lease
// document says and the records do not show yet.
type History struct {
	// Lease is the lease as its document shows it (as Inspect reads it).
	Lease State
	// Runs are the newest run records, newest occurrence first, with the records the lease document holds still
	// to be written in their place (a run's outcome whose record write failed, occurrences passed over), and the
	// runs it lists as claimed and not yet judged (Running, and those whose holder stopped without releasing),
	// as started.
	Runs []RunRecord
	// Cursor is the newest occurrence decided; zero before the first, or for a lease written by an earlier
	// version of this library.
	Cursor time.Time
	// Running is the cursor occurrence's run while it has not finished: its holder holds the lease, or stopped
	// without releasing it (the next holder marks it abandoned unless its record shows it finished).
	Running *RunRecord
	// Missed are the missed occurrences among the decided ones, in the window of Runs (MissedOccurrences).
	Missed Missed
	// MissedTotal is how many occurrences were ever decided missed, as the lease document counts them.
	MissedTotal int64
	// Overdue are occurrences after the cursor whose claim window has passed while nobody claimed them (the
	// newest first, at most the limit given): the claim of a later occurrence will record them, as missed unless
	// they waited behind the cursor occurrence's run (overlap: RunSkipped). Nothing is overdue while the lease is
	// held.
	Overdue []time.Time
	// Absent are the regions marked absent (RunOptions.Regions), and since when.
	Absent map[string]time.Time
}

// History reads a job's lease document and its newest limit run records (two requests) and puts them together.
// next (the schedule) and window (the claim window, as RunOptions.MissedAfter) are for the missed and overdue
// occurrences; without next, none are listed. Occurrences after the cursor are never counted missed: they are
// overdue at most, since a late claim may still decide them otherwise.
func (c *Client) History(ctx context.Context, key string, limit int, next func(time.Time) time.Time, window time.Duration) (History, error) {
	var h History
	id, err := leasedoc.ID(key)
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	obs, err := c.observe(ctx, key, id, time.Time{})
	if err != nil {
		return h, err
	}
	if obs.invalid != nil {
		return h, obs.invalid
	}
	job, err := decodeJob(obs.doc)
	if err != nil {
		return h, err
	}
	recs, err := c.Runs(ctx, key, limit)
	if err != nil {
		return h, err
	}
	h.Lease = c.state(key, obs, c.clock.Now())
	h.Cursor, h.MissedTotal, h.Absent = job.Cursor, job.Missed, job.Absent
	// The document's word is newer than a record's: its pending records and an unrecorded outcome replace
	// (or join) the records of the same id.
	byID := map[string]int{}
	for i, r := range recs {
		byID[r.ID] = i
	}
	overlay := slices.Clone(job.Pending)
	if job.Run != nil && job.Run.Status != RunStarted && !job.Recorded {
		overlay = append(overlay, *job.Run)
	}
	for _, r := range overlay {
		if i, ok := byID[r.ID]; ok {
			if recs[i].Decided <= r.Decided {
				recs[i] = r
			}
			continue
		}
		byID[r.ID] = len(recs)
		recs = append(recs, r)
	}
	// Runs that were claimed and never finished as far as the document knows: the cursor's (Running), and those
	// whose holding ended without a release and that wait for the next holder to judge them (they have no record
	// yet when their claimer died before writing one). They are shown as started, never as missed.
	unfinished := slices.Clone(job.Settle)
	if job.unfinished() {
		r := *job.Run
		h.Running = &r
		unfinished = append(unfinished, r)
	}
	for _, r := range unfinished {
		if i, ok := byID[r.ID]; ok {
			if recs[i].Decided < r.Decided {
				recs[i] = r
			}
		} else {
			byID[r.ID] = len(recs)
			recs = append(recs, r)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Occurrence.After(recs[j].Occurrence) })
	if len(recs) > limit && limit > 0 {
		recs = recs[:limit]
	}
	h.Runs = recs
	if next == nil {
		return h, nil
	}
	now := c.clock.Now()
	grace := window
	if !job.Cursor.IsZero() {
		// Only decided occurrences can be missed.
		grace = max(grace, now.Sub(job.Cursor))
	}
	h.Missed = MissedOccurrences(recs, next, now, grace, limit)
	free := c.free(obs, now)
	if !job.Cursor.IsZero() && free {
		for t, n := next(job.Cursor), 0; !t.After(now.Add(-window)) && n < maxMissedScan; t, n = next(t), n+1 {
			h.Overdue = append([]time.Time{t.UTC()}, h.Overdue...)
			if len(h.Overdue) > max(limit, 1) {
				h.Overdue = h.Overdue[:max(limit, 1)]
			}
		}
	}
	return h, nil
}
