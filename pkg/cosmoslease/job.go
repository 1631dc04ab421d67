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
	// Busy is when the lease went held without a break before Run's claim: that claim followed the end of the run
	// before it (within a poll and a request), so Busy is that run's start (or its own Busy). Zero when the lease
	// was free before Run's claim, or Run is nil. An occurrence that came due before Run started waited behind it
	// only if it came due after Busy (skipOver).
	Busy time.Time `json:"busy,omitzero"`
	// First is, while Run is a re-run (Retried), the abandoned first run's span: from its start to its holder's
	// last renewal + lease. What came due in it waited behind that run; what came due between it and the re-run's
	// start did not (skipOver).
	First *runSpan `json:"first,omitempty"`
}

// runSpan is a stretch of time a run went on.
type runSpan struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// For, on First, is the occurrence whose contender claimed the re-run, when it claimed within that
	// occurrence's claim window: it waited behind the re-run from its time on, even when the claim came after it
	// (skipOver's ranFrom is then no later than For). Zero when the claim came later (a catch-up, a late past-due
	// tick): that contender was not waiting, and the re-run goes from its claim.
	For time.Time `json:"for,omitzero"`
	// Busy, on First, is the document's Busy when the first run was claimed: an occurrence that came due before
	// that run started waited behind it by the same rule as behind the previous run (passOver.cause).
	Busy time.Time `json:"busy,omitzero"`
}

// holds reports whether t is in the span (nil holds nothing).
func (p *runSpan) holds(t time.Time) bool {
	return p != nil && !t.Before(p.From) && t.Before(p.To)
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
			var item store.Item
			var start time.Time
			item, start, err = c.replaceDoc(ctx, "job", key, id, &next, obs.etag)
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
// occurrence being claimed), as the claim p judges them (passOver.cause): it returns one range record per run of
// occurrences with the same cause, in order (fields from tmpl), and the missed occurrences (the newest
// maxListedMissed of them) and their number.
func skipOver(after, before time.Time, p passOver, tmpl RunRecord) (ranges []RunRecord, missed []time.Time, nMissed int) {
	next, window := p.next, p.window
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
		cause := p.cause(s)
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
			behind := "the run of occurrence " + after.UTC().Format(time.RFC3339)
			if m := p.manual; m != nil && !p.first.holds(s) {
				behind = fmt.Sprintf("the manual run triggered by %s at %s (%s)", dashIfEmpty(m.TriggeredBy), m.Occurrence.UTC().Format(time.RFC3339), m.ID)
			}
			r.Reason = fmt.Sprintf("overlap: it waited behind %s, which was going when it came due, or took the lease from an earlier run going then, within its claim window, and outlasted its turn", behind)
		case causeSuperseded:
			r.Reason = fmt.Sprintf("superseded: occurrence %s was claimed (by %s, region %s) before anyone claimed this one", before.UTC().Format(time.RFC3339),
				dashIfEmpty(tmpl.Owner), dashIfEmpty(tmpl.Region))
		}
		cur = &r
	}
	flush()
	return ranges, missed, nMissed
}

// passOver is what a claim at now judges the occurrences it passes over by: the previous run's span (ranFrom to
// ranTo; zero when the cursor was passed over without a run), the first run's span when the previous run was a
// re-run of an abandoned one (first), since when the lease was held without a break (busy), the claim window, and
// slack (how long before its time a live contender polling the lease may miss its release: a poll and a request).
type passOver struct {
	next                      func(time.Time) time.Time
	busy, ranFrom, ranTo, now time.Time
	first                     *runSpan
	window, slack             time.Duration
	manual                    *RunRecord // the previous run, when it was a manual run (Client.Trigger)
}

// passOverAt is the passOver of a claim at now replacing the document prev, whose job state is pj. The previous
// run goes from its start to its release, or to its holder's last renewal + lease when it never released; a
// re-run from its claim, or from the occurrence whose contender claimed it when that came due earlier (it waited
// behind the re-run from its time on).
func (c *Client) passOverAt(pj jobState, prev *leasedoc.Doc, o RunOptions, now time.Time) passOver {
	p := passOver{next: o.Next, busy: pj.Busy, first: pj.First, now: now, window: o.MissedAfter, slack: o.PollInterval + c.opts.RequestTimeout}
	if pj.Run != nil && prev != nil {
		if pj.Run.Manual {
			p.manual = pj.Run
		}
		p.ranFrom = pj.Run.StartedAt
		if pj.First != nil && pj.Run.Retried && !pj.First.For.IsZero() && pj.First.For.Before(p.ranFrom) {
			p.ranFrom = pj.First.For
		}
		p.ranTo = prev.ReleasedAt
		if !prev.Released || p.ranTo.IsZero() {
			p.ranTo = prev.RenewedAt.Add(prev.Duration)
		}
		if prev.LeaseID != pj.Run.ClaimID && !pj.Run.FinishedAt.IsZero() && pj.Run.FinishedAt.Before(p.ranTo) {
			// The document was last held by a holding that did not run it (it came to judge or re-run the run and
			// found its record final): the run ended when its record says, not when that holding released.
			p.ranTo = pj.Run.FinishedAt
		}
	}
	return p
}

// cause is why the claim passes over occurrence s: overlap, superseded or missed. It waited behind the previous run
// (overlap) when it came due while that run was going (or, for a re-run, while the first run was going), or when
// it came due while an earlier run was going (after busy: each claim since followed the previous run's end, so
// the lease was held without a break) and the previous run (of an earlier occurrence, claimed in order) took the
// lease before anyone could claim it: its claim window was still open when that run started, and the run outlasted
// its turn, ending after the next occurrence (when the first contender's time, Until, runs out) less slack. One
// that came due while the lease was free (before busy, or busy zero), or before a run that ended sooner, could have
// been claimed by any contender alive: when its claim window is still open it is superseded by this claim,
// otherwise nobody was alive (every region down) and it is missed.
func (p passOver) cause(s time.Time) string {
	switch {
	case p.first.holds(s), p.first != nil && s.Before(p.first.To) && p.waitedBehind(s, p.first.Busy, p.first.From, p.first.To):
		return causeOverlap
	case !p.ranFrom.IsZero() && s.Before(p.ranTo) && (!s.Before(p.ranFrom) || p.waitedBehind(s, p.busy, p.ranFrom, p.ranTo)):
		return causeOverlap
	case p.now.Before(s.Add(p.window)):
		return causeSuperseded
	}
	return causeMissed
}

// waitedBehind reports whether occurrence s, due before a run from..to started, waited behind it: it came due while
// an earlier run was going (at or after busy, since when the lease was held without a break), the run took the
// lease while s's claim window was open, and outlasted s's turn (ended after the next occurrence, less slack).
func (p passOver) waitedBehind(s, busy, from, to time.Time) bool {
	return !busy.IsZero() && !s.Before(busy) && s.Add(p.window).After(from) && p.next != nil && to.Add(p.slack).After(p.next(s))
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

// replaceDoc writes next over the lease document of key (id) if it is still the version etag: the conditional
// write of the read-modify-write loops that change only the job state (whenFree) or the control (Client.control),
// reported as op. It returns the answer and when the request was sent.
func (c *Client) replaceDoc(ctx context.Context, op, key, id string, next *leasedoc.Doc, etag string) (store.Item, time.Time, error) {
	body, err := leasedoc.Encode(next, c.pkProp)
	if err != nil {
		return store.Item{}, time.Time{}, err
	}
	rctx, cancel := c.requestContext(ctx, time.Time{})
	defer cancel()
	start := c.clock.Now()
	item, err := c.st.Replace(rctx, c.pk(key, id), id, body, etag)
	if err == nil && item.ETag == "" {
		err = noETag(op)
	}
	c.report(op, key, start, item, err)
	return item, start, err
}
