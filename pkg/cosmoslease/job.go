package cosmoslease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// The job's state, kept in the lease document of the job's key (property "job") beside the holder. Every
// decision about an occurrence — claim it, skip it, count it missed — is one conditional write of that document,
// so decisions are made one at a time, in the order of the occurrences, each exactly once: a write based on a
// version that another decision has replaced is refused (412), and the writer reads again. Run records are the
// history written after the decisions, by the holding that made them or, if it could not, by the next one.

// jobState is the "job" property of a lease document.
type jobState struct {
	// Cursor is the newest occurrence decided. An occurrence at or before it is never claimed again; the one
	// exception is the documented re-run of the cursor's own run when its claimer abandoned it (RetryAbandoned).
	Cursor time.Time `json:"cursor"`
	// Run is the cursor occurrence's run: "started" while it runs (or when its claimer stopped without a release),
	// its final record once the holding released. Nil when the cursor was passed over without a run.
	Run *RunRecord `json:"run,omitempty"`
	// Recorded says Run's record is stored as Run says.
	Recorded bool `json:"recorded,omitempty"`
	// Settle lists runs whose holding ended without a release and that no later holding has judged yet: each is
	// abandoned unless its record shows that it finished.
	Settle []RunRecord `json:"settle,omitempty"`
	// Pending are records decided but not yet written: occurrences skipped over, and final records whose write
	// failed. The next holding writes them.
	Pending []RunRecord `json:"pending,omitempty"`
	// Absent are the regions that let an occurrence pass (or left on purpose, Depart), with when: the regions
	// after them contend without waiting for them, until they come back.
	Absent map[string]time.Time `json:"absent,omitempty"`
	// Missed counts every occurrence ever decided as missed.
	Missed int64 `json:"missed,omitempty"`
}

// decodeJob reads the job state of a lease document; zero when it has none.
func decodeJob(d *leasedoc.Doc) (jobState, error) {
	var j jobState
	if d == nil || len(d.Job) == 0 || string(d.Job) == "null" {
		return j, nil
	}
	if err := json.Unmarshal(d.Job, &j); err != nil {
		return j, fmt.Errorf("the lease document %s holds a job state this library cannot read (%v); fix or delete the document's job property by hand", d.ID, err)
	}
	return j, nil
}

// encode renders the state for the document.
func (j jobState) encode() json.RawMessage {
	b, err := json.Marshal(j)
	if err != nil {
		panic(fmt.Sprintf("cosmoslease: job state cannot be encoded: %v", err)) // only times, strings and numbers
	}
	return b
}

// clone copies the state so that the copy can be edited.
func (j jobState) clone() jobState {
	c := j
	if j.Run != nil {
		r := *j.Run
		c.Run = &r
	}
	c.Settle = slices.Clone(j.Settle)
	c.Pending = slices.Clone(j.Pending)
	c.Absent = maps.Clone(j.Absent)
	return c
}

// decided reports whether occurrence t has been decided (claimed, or passed over).
func (j jobState) decided(t time.Time) bool { return !j.Cursor.IsZero() && !j.Cursor.Before(t) }

// runOf is the record of the cursor occurrence when the cursor is t.
func (j jobState) runOf(t time.Time) *RunRecord {
	if j.Run != nil && !j.Run.Manual && j.Cursor.Equal(t) && j.Run.Occurrence.Equal(t) {
		r := *j.Run
		return &r
	}
	return nil
}

// unfinished reports whether the cursor's run was claimed and never finished as far as the document knows.
func (j jobState) unfinished() bool { return j.Run != nil && j.Run.Status == RunStarted }

// effectiveRank is region's rank in the preference order, not counting the regions the state marks absent. Without
// an order it is rank.
func (j jobState) effectiveRank(order []string, region string, rank int) int {
	if len(order) == 0 {
		return rank
	}
	me := NormalizeRegion(region)
	r := 0
	for _, reg := range order {
		if reg == me {
			return r
		}
		if _, gone := j.Absent[reg]; !gone {
			r++
		}
	}
	return r
}

// errJobBusy: the lease is held (or its holder stopped without releasing); the job state can be changed only by
// a holder then.
var errJobBusy = errors.New("the lease is held")

// updateJob changes the job state of a released (or missing) lease document without taking the lease: fn edits
// the state and reports whether it changed anything. fn must be idempotent: after an ambiguous answer or a 412 it
// is applied again to the newest version. errJobBusy while the lease is held or was never released.
func (c *Client) updateJob(ctx context.Context, key string, fn func(*jobState) bool) error {
	id, err := leasedoc.ID(key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for attempt := 0; ; attempt++ {
		obs, err := c.observe(ctx, key, id, time.Time{})
		switch {
		case err != nil && !store.Retryable(err):
			return err
		case err == nil && obs.invalid != nil:
			return obs.invalid
		case err == nil && obs.doc == nil:
			return nil // no job yet: nothing to mark
		case err == nil && !obs.doc.Released:
			return errJobBusy
		}
		if err == nil {
			j, jerr := decodeJob(obs.doc)
			if jerr != nil {
				return jerr
			}
			if !fn(&j) {
				return nil
			}
			next := *obs.doc
			next.Job = j.encode()
			body, berr := leasedoc.Encode(&next, c.pkProp)
			if berr != nil {
				return berr
			}
			rctx, cancel := c.requestContext(ctx, time.Time{})
			start := c.clock.Now()
			var item store.Item
			item, err = c.st.Replace(rctx, c.pk(key, id), id, body, obs.etag)
			cancel()
			if err == nil && item.ETag == "" {
				err = noETag("job")
			}
			c.report("job", key, start, item, err)
			if err == nil {
				next.ETag = item.ETag
				c.remember(key, &next, start, item.Session)
				return nil
			}
			if k := store.KindOf(err); k != store.Precondition && !store.Retryable(err) {
				return err
			}
		}
		if attempt >= 8 {
			return err
		}
		if serr := c.sleep(ctx, 50*time.Millisecond<<min(attempt, 5)); serr != nil {
			return serr
		}
	}
}

// Depart marks this client's region (Options.Region) as gone in the job state of key, so that the regions after
// it in the preference order contend for the next occurrences without waiting for it (RunOptions.Regions): call
// it when a contender stops on purpose (RunSchedule does when its context ends). The mark goes when the region
// claims an occurrence again, or when it next takes part in an election and finds the lease free. It waits while
// another holder holds the lease, until ctx ends; it writes nothing when the lease document does not exist yet.
func (c *Client) Depart(ctx context.Context, key string) error {
	me := NormalizeRegion(c.opts.Region)
	if me == "" {
		return invalid("Depart needs Options.Region")
	}
	now := c.clock.Now().UTC()
	return c.whenFree(ctx, key, func(j *jobState) bool {
		if _, ok := j.Absent[me]; ok {
			return false
		}
		if j.Absent == nil {
			j.Absent = map[string]time.Time{}
		}
		j.Absent[me] = now
		return true
	})
}

// comeBack removes this client's region from the regions marked absent, waiting while another holds the lease,
// until ctx ends.
func (c *Client) comeBack(ctx context.Context, key string) error {
	me := NormalizeRegion(c.opts.Region)
	return c.whenFree(ctx, key, func(j *jobState) bool {
		if _, ok := j.Absent[me]; !ok {
			return false
		}
		delete(j.Absent, me)
		return true
	})
}

// whenFree applies fn with updateJob, polling every RetryPeriod while the lease is held, until ctx ends.
func (c *Client) whenFree(ctx context.Context, key string, fn func(*jobState) bool) error {
	for {
		err := c.updateJob(ctx, key, fn)
		if !errors.Is(err, errJobBusy) {
			return err
		}
		if serr := c.sleep(ctx, c.opts.RetryPeriod); serr != nil {
			return fmt.Errorf("%w (the lease stayed held)", serr)
		}
	}
}

// skipOver decides the occurrences of the schedule strictly between after (the old cursor) and before (the
// occurrence being claimed): those that waited behind the previous run (from ranFrom to ranTo) are skipped for
// overlap, those whose claim window (window after them) is still open are superseded by the claim, and the others
// are missed. An occurrence waited behind the run when it came due before the run ended and its claim window was
// still open when the run started: it came due while the run was going, or it came due first and the run (of an
// earlier occurrence, claimed in order) took the lease before anyone could claim it. It returns one range record
// per run of occurrences with the same cause, in order (fields from tmpl), and the missed occurrences (the newest
// maxListedMissed of them) and their number.
func skipOver(next func(time.Time) time.Time, after, before, ranFrom, ranTo, now time.Time, window time.Duration, tmpl RunRecord) (ranges []RunRecord, missed []time.Time, nMissed int) {
	if next == nil || after.IsZero() {
		return nil, nil, 0
	}
	var cur *RunRecord
	flush := func() {
		if cur != nil {
			if cur.Count == 1 {
				cur.Count, cur.Through = 0, time.Time{}
			}
			ranges = append(ranges, *cur)
			cur = nil
		}
	}
	prev := after
	for s, n := next(after), 0; s.Before(before); s, n = next(s), n+1 {
		if !s.After(prev) || n >= maxClaimScan {
			// A schedule that does not move forward, or one that fires too often to list: one last range, uncounted
			// beyond this point.
			if cur != nil {
				cur.Reason += fmt.Sprintf("; more occurrences until %s were not counted", before.Format(time.RFC3339))
			}
			break
		}
		prev = s
		s = s.UTC()
		cause := causeMissed
		switch {
		case !ranFrom.IsZero() && s.Before(ranTo) && s.Add(window).After(ranFrom):
			cause = causeOverlap
		case now.Before(s.Add(window)):
			cause = causeSuperseded
		}
		if cause == causeMissed {
			nMissed++
			missed = append(missed, s)
			if len(missed) > maxListedMissed {
				missed = missed[1:]
			}
		}
		if cur != nil && cur.Cause == cause {
			cur.Through, cur.Count = s, cur.Count+1
			continue
		}
		flush()
		r := tmpl
		r.ID, r.Occurrence, r.Through, r.Count, r.Cause = RunID(tmpl.LeaseKey, s), s, s, 1, cause
		r.Status = RunSkipped
		switch cause {
		case causeMissed:
			r.Status = RunMissed
			r.Reason = fmt.Sprintf("no region claimed it within its claim window (%s): every region was down, Cosmos DB was unreachable from them, or the timer did not fire", window)
		case causeOverlap:
			r.Reason = fmt.Sprintf("overlap: it waited behind the run of occurrence %s, which was going when it came due or took the lease within its claim window", after.UTC().Format(time.RFC3339))
		case causeSuperseded:
			r.Reason = fmt.Sprintf("superseded: occurrence %s was claimed (by %s, region %s) before anyone claimed this one", before.UTC().Format(time.RFC3339),
				dashIfEmpty(tmpl.Owner), dashIfEmpty(tmpl.Region))
		}
		cur = &r
	}
	flush()
	return ranges, missed, nMissed
}

// maxClaimScan bounds how many occurrences one claim decides: ten million is 115 days of a schedule that fires
// every second, walked in a few seconds. Beyond it the rest of the gap is not recorded, and its missed ones are
// not counted (the last range's reason says so).
const maxClaimScan = 10_000_000

// maxListedMissed bounds RunResult.Missed.
const maxListedMissed = 1000

// Causes of a skipped occurrence (RunRecord.Cause).
const (
	causeOverlap    = "overlap"    // it waited behind the previous occurrence's run (see skipOver)
	causeSuperseded = "superseded" // a later occurrence was claimed before anyone claimed it
	causeMissed     = "missed"     // nobody claimed it in its claim window
	causeLate       = "late"       // its contender's time (Until) ran out before it could claim
)
