package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Occurrence election: scheduled work that fires in every region and runs in one.
//
// Every contender (a region's timer, a cron process on each of several machines) calls RunOnce for the same
// occurrence of the same schedule. Each occurrence is its own election:
//
//  1. A contender of rank r (0 is the most preferred) contends no earlier than occurrence + r × FailoverDelay.
//     Until then it only watches the occurrence's run record, with one point read per PollInterval, and
//     returns "skipped" as soon as the record exists.
//  2. It takes the lease (TryAcquire, polled while another holds it), naming the occurrence in the lease
//     document's metadata.
//  3. Holding it, after a holder that never released it first waits for that holder's work to stop (the holding
//     wrote how long that may take, workStopMs), then settles what it left: a record still
//     "started" under an earlier epoch belongs to a claimer that died, and is marked abandoned (and, with
//     RetryAbandoned, run again once, now, at this higher epoch). It looks at the occurrence the lease document
//     names and, with one query, at every such record among the newest settleScan (a holder can die while it
//     re-runs another occurrence, or fail to settle one). Passing errors are retried; a holding that still
//     cannot settle is left unreleased, so the duty passes to the next holder.
//  4. It claims the occurrence by creating its run record, carrying a claim id of its own; a 409, a lost answer
//     or a timeout is resolved by reading the record: the claim id says whether the record is ours. A record
//     another claim left "started" under an earlier epoch (a create that landed after its claimer's lease had
//     ended) is abandoned, as in step 3.
//  5. It runs the work under the lease, renewed meanwhile, and never starts it once the lease has ended; the
//     work's context ends when the lease is lost or the caller's context ends. A holding that may leave a record
//     "started" without having run its work is left unreleased, so that the next holder settles it (step 3); a
//     claimer whose create landed after its lease had ended takes the lease again to settle its own record.
//  6. It records how the run ended, on the record's ETag, and releases the lease.
//
// So the lease is held only while an occurrence's work runs, and is short: a contender that dies mid-work
// frees it within LeaseDuration. While the preferred contender lives it runs every occurrence; when it stops,
// the next one runs the same occurrence r × FailoverDelay late; when it comes back it runs the next one.

// Defaults of RunOptions.
const (
	DefaultFailoverDelay = 10 * time.Second
	DefaultPollInterval  = time.Second
	DefaultRunGrace      = 10 * time.Second
)

// metaOccurrence names, in the lease document's metadata, the occurrence whose work the holder runs.
const metaOccurrence = "occurrence"

// metaStopMs is, in the lease document's metadata, how long after the holding's lease may be taken over its work
// may still be stopping: when the lease is lost the work's context ends at RenewDeadline, and the work then has
// Grace to return, of which LeaseDuration − RenewDeadline have passed before anyone may take over. A holder that
// takes over an unreleased lease waits that long before it starts any work, so that two occurrences' work never
// runs side by side in live processes, even while the one whose lease was lost is still stopping.
const metaStopMs = "workStopMs"

// RunOptions tunes RunOnce. Zero values take the defaults.
type RunOptions struct {
	// Rank is this contender's place in the preference order: 0 is the most preferred. Contenders of one rank
	// contend at the same time, and the lease decides between them.
	Rank int
	// FailoverDelay is how much later each rank contends: rank r contends no earlier than
	// occurrence + r × FailoverDelay. Default 10 s. It must exceed the time the preferred contender needs to
	// claim an occurrence after it fires (a cold start included), or another rank may run it first.
	FailoverDelay time.Duration
	// PollInterval is how often a waiting contender reads the run record (and, once its time has come, tries
	// the lease); default 1 s.
	PollInterval time.Duration
	// Until, when not zero, is the last moment this contender starts the occurrence. If the lease is still
	// held by someone else then (the work of another occurrence still runs), the occurrence is recorded as
	// skipped for overlap, so that it never runs beside that work; if the holder holds it for this same
	// occurrence, this contender returns skipped and records nothing, leaving the occurrence to that holder. Set it to the time this contender would
	// contend for the next occurrence: the next occurrence + Rank × FailoverDelay. Zero waits for as long as ctx
	// allows.
	Until time.Time
	// RetryAbandoned runs an abandoned occurrence once more (at the new holder's epoch, before its own
	// occurrence): at least once instead of at most once for occurrences whose claimer died mid-work.
	RetryAbandoned bool
	// Retention is how long run records are kept after their occurrence (their ttl is set so); default
	// DefaultRunRetention, at least MinRunRetention. An occurrence older than the retention is skipped: its
	// record could have expired, so claiming it could run it twice.
	Retention time.Duration
	// Instance names this process in the record; default Options.Hostname.
	Instance string
	// PastDue marks a late run (a scheduler catching up); it is recorded.
	PastDue bool
	// Schedule and MissedAfter, when set, are written into the record so that readers can list missed
	// occurrences (MissedOccurrences) without knowing the schedule.
	Schedule    string
	MissedAfter time.Duration
	// Grace is how long the work has to return after its context ends; default 10 s. Work that does not return
	// by then is left running: RunOnce returns, keeps the lease (renewed) until the work returns so no other
	// occurrence starts beside it, and starts no other work of this lease key in this Client meanwhile.
	Grace time.Duration
	// FinishWithin bounds recording how the run ended and releasing the lease, after the work returned (or its
	// grace passed); default twice Options.RequestTimeout.
	FinishWithin time.Duration
	// Next, when set, is the schedule: the first occurrence after a time. With it, the contender that runs an
	// occurrence counts the occurrences due since the one the lease last named that have no run record, as
	// missed (RunResult.Missed, the cosmoslease.occurrence.missed counter): each is counted once, by the
	// region that runs the next occurrence. That costs nothing while every occurrence is claimed (the lease
	// names the previous one), and one query of the run history when some were not.
	Next func(time.Time) time.Time
}

func (o RunOptions) withDefaults(c *Client) (RunOptions, error) {
	if o.Rank < 0 {
		return o, invalid("Rank %d is negative: 0 is the most preferred contender", o.Rank)
	}
	for name, d := range map[string]time.Duration{"FailoverDelay": o.FailoverDelay, "PollInterval": o.PollInterval,
		"Retention": o.Retention, "Grace": o.Grace, "FinishWithin": o.FinishWithin, "MissedAfter": o.MissedAfter} {
		if d < 0 {
			return o, invalid("%s is negative (%s)", name, d)
		}
	}
	if o.FailoverDelay == 0 {
		o.FailoverDelay = DefaultFailoverDelay
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Retention == 0 {
		o.Retention = DefaultRunRetention
	}
	if o.Retention < MinRunRetention || o.Retention > MaxRunRetention {
		return o, invalid("Retention %s is outside %s to %s: a run record must outlive every late tick of its occurrence", o.Retention, MinRunRetention, MaxRunRetention)
	}
	if o.Grace == 0 {
		o.Grace = DefaultRunGrace
	}
	if o.FinishWithin == 0 {
		o.FinishWithin = 2 * c.opts.RequestTimeout
	}
	if o.Instance == "" {
		o.Instance = c.opts.Hostname
	}
	return o, nil
}

// Run is the occurrence a work function runs.
type Run struct {
	Key string
	// Occurrence is the schedule time this run is for.
	Occurrence time.Time
	// Epoch is the lease's fencing token for this run: pass it to any system that can refuse a superseded
	// holder's writes. For Cosmos DB items, write through Fence.
	Epoch                   int64
	Region, Owner, Instance string
	PastDue                 bool
	// Retry is set when this runs an abandoned occurrence again (RunOptions.RetryAbandoned).
	Retry bool

	out *runOutcome
}

type runOutcome struct{ exitCode *int }

// Fence returns a view of container whose writes carry this run's epoch, refused by Cosmos DB once a later
// holder of the lease has written the same item through its own fence (see Fence). Keep one per container for
// the run. A work function that gets an error wrapping ErrFenced should return it: the run is recorded lost.
func (r Run) Fence(container *azcosmos.ContainerClient) *Fence { return NewFence(container, r.Epoch) }

// SetExitCode records the exit status of a command the work ran, in the run record.
func (r Run) SetExitCode(code int) {
	if r.out != nil {
		r.out.exitCode = &code
	}
}

// RunFunc is the work of one occurrence. ctx ends when the lease is lost or RunOnce's context ends: return
// then.
type RunFunc func(ctx context.Context, run Run) error

// Outcomes of RunOnce (RunResult.Status).
const (
	RunExecuted = "executed" // the work ran here and returned nil
	// RunSkipped (the record status) also names the outcome of a contender that did not run the occurrence:
	// another claimed it, or it was skipped for overlap or for its age.
)

// RunResult is what RunOnce did.
type RunResult struct {
	Occurrence time.Time
	// Status is executed, skipped, failed, lost or timed-out.
	Status string
	// Reason says why the occurrence was skipped, or why the run failed.
	Reason string
	// Record is the occurrence's run record as RunOnce last wrote or read it: ours, or the claimer's that made
	// us skip. Its ID is set even when no record was read.
	Record RunRecord
	// Epoch is the lease epoch the work ran at (0 when it did not run here).
	Epoch int64
	// WorkStarted is when the work started here (zero when it did not); FailoverDelay is its lateness after the
	// occurrence.
	WorkStarted   time.Time
	FailoverDelay time.Duration
	// StillRunning is set when the work did not return within Grace after its context ended.
	StillRunning bool
	// Missed are the occurrences before this one that ran in no region, found by this call (RunOptions.Next).
	Missed []time.Time
	// Abandoned is the record of an earlier occurrence this call found abandoned and marked (the oldest, or this
	// occurrence's own, when it marked several; each is logged); Retried is the result of running it again
	// (RetryAbandoned).
	Abandoned *RunRecord
	Retried   *RunResult
}

// ErrStillRunning is returned by RunOnce while work of an earlier occurrence of the same lease key, stopped at
// its deadline but not yet returned, still runs in this Client.
var ErrStillRunning = errors.New("the work of an earlier occurrence still runs although its context ended; the work must return when its context ends")

// RunOnce runs work for one occurrence of a schedule at most once across every contender that calls it for the
// same lease key and occurrence, preferring contenders by rank (see the comment at the top of occurrence.go,
// and README's "Scheduled work"). It returns when the work has run here (Status executed, or failed, lost,
// timed-out with a non-nil error), when another contender claimed the occurrence or it was skipped (skipped,
// nil error), or when ctx ends while waiting (an error; nothing was recorded).
//
// Requests: a contender that is not preferred and sees the occurrence claimed makes one point read per
// PollInterval until then. The one that runs it makes a point read of the record, the lease's read and write,
// the record's create, its replace when the work ends, and the lease's release; after a holder that never
// released, also one query of the newest run records and a point read of each record to settle.
// Options.TakeOverSameOwner must be off: it would let a duplicate tick take the lease from a running occurrence.
func (c *Client) RunOnce(ctx context.Context, key string, occurrence time.Time, opts RunOptions, work RunFunc) (res RunResult, err error) {
	m := c.m.keyed(key)
	ctx, sp := c.tr.start(ctx, "cosmoslease.RunOnce", key)
	defer func() {
		if status := runMetricStatus(ctx, res, err); status != "" {
			c.m.occurrenceRan(ctx, m, status)
		}
		sp.end(res.Epoch, res.Status, err)
	}()
	return c.runOnce(ctx, key, occurrence, opts, work)
}

// runMetricStatus is the status cosmoslease.occurrence.runs counts a RunOnce call under: executed, skipped,
// failed or lost (runs of the work itself, the re-run of an abandoned occurrence included, and markings as
// abandoned are counted where they happen). A call interrupted before anything ran here counts nothing.
func runMetricStatus(ctx context.Context, res RunResult, err error) string {
	switch {
	case res.Status == RunSkipped:
		return RunSkipped
	case !res.WorkStarted.IsZero(), res.Retried != nil && res.Retried.Occurrence.Equal(res.Occurrence):
		return "" // counted by run
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		return ""
	case res.Status == RunLost:
		return RunLost
	case err != nil:
		return RunFailed
	}
	return ""
}

func (c *Client) runOnce(ctx context.Context, key string, occurrence time.Time, opts RunOptions, work RunFunc) (RunResult, error) {
	t := occurrence.UTC().Truncate(time.Millisecond)
	res := RunResult{Occurrence: t, Status: RunFailed}
	id, err := leasedoc.ID(key)
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := runIDPrefix(key); err != nil {
		return res, err
	}
	if c.pkProp == "id" {
		return res, invalid("%s", errPartitionedOnID)
	}
	if c.opts.TakeOverSameOwner {
		return res, invalid("RunOnce needs Options.TakeOverSameOwner off: with it a duplicate tick would take the lease from the process running the occurrence")
	}
	if work == nil {
		return res, invalid("RunOnce needs a work function")
	}
	o, err := opts.withDefaults(c)
	if err != nil {
		return res, err
	}
	rid := RunID(key, t)
	res.Record = RunRecord{ID: rid, LeaseKey: key, Occurrence: t}
	if c.straggling(key) {
		res.Reason = ErrStillRunning.Error()
		return res, ErrStillRunning
	}
	if c.tooOld(t, o) {
		return c.skipped(res, nil, fmt.Sprintf("occurrence %s is older than the run-record retention (%s): its record may have expired, so running it could run it twice",
			t.Format(time.RFC3339), o.Retention)), nil
	}

	// 1. Watch until this rank's time.
	contendAt := t.Add(time.Duration(o.Rank) * o.FailoverDelay)
	for {
		rec, err := c.readRun(ctx, key, rid)
		switch {
		case err != nil && !store.Retryable(err):
			return res, err
		case rec != nil:
			return c.skipped(res, rec, ""), nil
		}
		now := c.clock.Now()
		if err == nil && !now.Before(contendAt) {
			break
		}
		wait := o.PollInterval
		if err == nil {
			wait = min(wait, contendAt.Sub(now))
		}
		if werr := c.sleep(ctx, wait); werr != nil {
			return res, waitError(werr, err)
		}
	}

	// 2. Take the lease, watching the record while another holds it.
	meta := map[string]string{metaOccurrence: t.Format(time.RFC3339Nano),
		metaStopMs: strconv.FormatInt(max(0, o.Grace-(c.opts.LeaseDuration-c.opts.RenewDeadline)).Milliseconds(), 10)}
	var lease *Lease
	for {
		if lease, err = c.attempt(ctx, key, id, meta); err == nil {
			break
		}
		var held *HeldError
		if !errors.As(err, &held) && !store.Retryable(err) {
			return res, err
		}
		if held != nil && !o.Until.IsZero() && !c.clock.Now().Before(o.Until) {
			if held.Holder.Metadata[metaOccurrence] == meta[metaOccurrence] {
				// The holder holds the lease for this very occurrence (it settles a predecessor first, or its claim
				// is on its way): it is no overlap, and a skip record would stop the holder from running it.
				return c.skipped(res, nil, fmt.Sprintf("this contender's time ran out (%s) while %s (region %s) held the lease for this same occurrence; it is that holder's to claim",
					o.Until.UTC().Format(time.RFC3339), dashIfEmpty(held.Holder.Owner), dashIfEmpty(held.Holder.Region))), nil
			}
			return c.skipForOverlap(ctx, res, held.Holder, o)
		}
		wait := o.PollInterval
		if held != nil && held.Holder.ExpiresIn > 0 && held.Holder.ExpiresIn < wait {
			wait = held.Holder.ExpiresIn + 10*time.Millisecond
		}
		if werr := c.sleep(ctx, wait); werr != nil {
			return res, waitError(werr, err)
		}
		rec, rerr := c.readRun(ctx, key, rid)
		switch {
		case rerr != nil && !store.Retryable(rerr):
			return res, rerr
		case rec != nil:
			return c.skipped(res, rec, ""), nil
		}
	}
	h := &runHolding{c: c, key: key, lease: lease, o: o, work: work}
	defer h.release(ctx)
	res.Epoch = lease.Epoch()

	// 3. Settle what a holder that never released may have left started, once its work can no longer be running.
	if p := lease.Previous(); p != nil && !p.Released {
		if err := h.waitForStop(ctx, p); err != nil {
			h.leave("the previous holder's work could still be stopping when this call's context ended")
			return res, err
		}
		for _, prev := range h.unsettled(ctx, p, t) {
			ab, retried, err := h.settle(ctx, prev, t)
			if ab != nil && (res.Abandoned == nil || prev.Equal(t)) {
				res.Abandoned, res.Retried = ab, retried
			}
			if err != nil {
				h.leave("settling occurrence " + prev.Format(time.RFC3339) + " failed")
				return res, err
			}
			if prev.Equal(t) && ab != nil {
				return settledHere(res, ab, retried)
			}
		}
	}

	// 4. Claim the occurrence.
	if c.tooOld(t, o) {
		return c.skipped(res, nil, fmt.Sprintf("occurrence %s is older than the run-record retention (%s)", t.Format(time.RFC3339), o.Retention)), nil
	}
	rec := &RunRecord{ID: rid, LeaseKey: key, Type: store.TypeRun, Occurrence: t, Status: RunStarted, Region: c.opts.Region,
		Owner: c.opts.OwnerID, Instance: o.Instance, Epoch: res.Epoch, PastDue: o.PastDue, Schedule: o.Schedule,
		MissedAfterMs: o.MissedAfter.Milliseconds()}
	existing, maybe, err := h.claim(ctx, rec)
	if err != nil {
		if maybe { // our record may exist, "started", with no work run: the next holder settles it
			h.leave("the claim of occurrence " + t.Format(time.RFC3339) + " was not settled")
		}
		return res, err
	}
	if existing != nil && existing.Status == RunStarted && existing.Epoch < res.Epoch {
		// A claim of a holding that has ended (its create landed after its claimer lost the lease, after our settle
		// had looked): abandoned, as step 3 judges a record it finds started under an earlier epoch.
		ab, retried, err := h.settle(ctx, t, t)
		if err != nil {
			h.leave("settling occurrence " + t.Format(time.RFC3339) + " failed")
			res.Abandoned, res.Retried = ab, retried
			return res, err
		}
		if ab != nil {
			return settledHere(res, ab, retried)
		}
		if existing, err = c.readRun(ctx, key, rid); err != nil {
			return res, err
		}
	}
	if existing != nil {
		return c.skipped(res, existing, ""), nil
	}

	// 5 and 6. Run it, record how it ended, count what ran nowhere before it, release.
	r := h.run(ctx, rec, false)
	r.Abandoned, r.Retried = res.Abandoned, res.Retried
	if !r.WorkStarted.IsZero() {
		r.Missed = h.missed(ctx, t)
	}
	if r.WorkStarted.IsZero() && r.Status == RunLost {
		// Our claim landed, but our lease had ended before the work could start: settle our own record.
		return c.settleOwnClaim(ctx, key, id, rec, o, work, r)
	}
	return r, retriedErr(&r)
}

// settleOwnClaim settles a claim of ours whose create landed after our lease had ended, so that its work never
// started. The holder that took the lease over may have looked for records to settle before the claim landed,
// or may be there for another occurrence, so nobody else may ever look at it. Take the lease again, as any
// contender (within ctx and Until), and settle the record as any abandoned claim: marked abandoned, and with
// RetryAbandoned run now, at the new epoch. If the lease cannot be had in time, mark it abandoned without it: the
// write is conditional on our claim's version, so it changes nothing that another settler has written.
func (c *Client) settleOwnClaim(ctx context.Context, key, id string, rec *RunRecord, o RunOptions, work RunFunc, lost RunResult) (RunResult, error) {
	meta := map[string]string{metaOccurrence: rec.Occurrence.Format(time.RFC3339Nano),
		metaStopMs: strconv.FormatInt(max(0, o.Grace-(c.opts.LeaseDuration-c.opts.RenewDeadline)).Milliseconds(), 10)}
	for {
		lease, err := c.attempt(ctx, key, id, meta)
		if err == nil {
			h := &runHolding{c: c, key: key, lease: lease, o: o, work: work}
			defer h.release(ctx)
			if p := lease.Previous(); p != nil && !p.Released {
				if err := h.waitForStop(ctx, p); err != nil {
					h.leave("the previous holder's work could still be stopping when this call's context ended")
					return lost, err
				}
			}
			ab, retried, err := h.settle(ctx, rec.Occurrence, rec.Occurrence)
			if err != nil {
				h.leave("settling occurrence " + rec.Occurrence.Format(time.RFC3339) + " failed")
				return lost, err
			}
			if ab != nil {
				res := lost
				res.Epoch = lease.Epoch()
				return settledHere(res, ab, retried)
			}
			cur, err := c.readRun(ctx, key, rec.ID) // settled by another meanwhile
			if err == nil && cur != nil {
				lost.Record = *cur
			}
			return lost, retriedErr(&lost)
		}
		var held *HeldError
		if !errors.As(err, &held) && !store.Retryable(err) || !o.Until.IsZero() && !c.clock.Now().Before(o.Until) {
			break
		}
		wait := o.PollInterval
		if held != nil && held.Holder.ExpiresIn > 0 && held.Holder.ExpiresIn < wait {
			wait = held.Holder.ExpiresIn + 10*time.Millisecond
		}
		if c.sleep(ctx, wait) != nil {
			break
		}
	}
	// No lease in time: mark it abandoned, on our claim's version.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.FinishWithin)
	defer cancel()
	ab := *rec
	ab.Status, ab.FinishedAt = RunAbandoned, c.clock.Now().UTC()
	ab.Reason = "claimed after its claimer's lease had ended, so its work never started; the claimer could not take the lease again to settle it"
	if err := c.writeRun(fctx, &ab, rec.ETag, o.Retention); err == nil {
		lost.Record, lost.Abandoned = ab, &ab
		c.m.occurrenceRan(ctx, c.m.keyed(key), RunAbandoned)
	}
	return lost, retriedErr(&lost)
}

// waitForStop waits, after taking over a lease its holder never released, for as long as that holder's work may
// still be stopping (metaStopMs), renewing the lease meanwhile.
func (h *runHolding) waitForStop(ctx context.Context, p *State) error {
	ms, err := strconv.ParseInt(p.Metadata[metaStopMs], 10, 64)
	if err != nil || ms <= 0 {
		return nil
	}
	d := time.Duration(ms) * time.Millisecond
	h.c.log.Info("took over a lease its holder never released; waiting for its work to stop before starting any", "lease", h.key,
		"previous", p.Owner, "wait", d)
	ctx, cancel := h.leaseBound(ctx)
	defer cancel()
	if err := h.c.sleep(ctx, d); err != nil {
		if h.lease.Err() != nil {
			return fmt.Errorf("the lease was lost while waiting for the previous holder's work to stop: %w", h.lease.Err())
		}
		return err
	}
	return nil
}

// settledHere is RunOnce's result when the occurrence it was called for was found abandoned: its re-run, or a
// skip naming the abandoned record.
func settledHere(res RunResult, ab *RunRecord, retried *RunResult) (RunResult, error) {
	if retried != nil { // this occurrence itself was run again
		retried.Abandoned = ab
		return *retried, retriedErr(retried)
	}
	res.Abandoned = ab
	res.Status = RunSkipped
	res.Record = *ab
	res.Reason = fmt.Sprintf("its claimer (%s, instance %s, epoch %d) stopped mid-work; marked abandoned", ab.Owner, ab.Instance, ab.Epoch)
	return res, nil
}

// retriedErr is the error RunOnce returns with a result of running the work.
func retriedErr(r *RunResult) error {
	if r.Status == RunExecuted {
		return nil
	}
	if r.Reason != "" {
		return fmt.Errorf("occurrence %s: %s: %s", r.Occurrence.Format(time.RFC3339), r.Status, r.Reason)
	}
	return fmt.Errorf("occurrence %s: %s", r.Occurrence.Format(time.RFC3339), r.Status)
}

func waitError(ctxErr, last error) error {
	if last != nil {
		return fmt.Errorf("%w (last request: %v)", ctxErr, last)
	}
	return ctxErr
}

// sleep waits d on the client's clock, or until ctx ends (its cause is returned).
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-c.clock.After(d):
		return nil
	}
}

// tooOld reports whether an occurrence's record could already have expired.
func (c *Client) tooOld(t time.Time, o RunOptions) bool {
	return c.clock.Now().Sub(t) >= o.Retention-retentionMargin
}

// skipped completes a result for an occurrence this contender does not run: rec (when not nil) is the record
// that shows it claimed.
func (c *Client) skipped(res RunResult, rec *RunRecord, reason string) RunResult {
	res.Status = RunSkipped
	if rec != nil {
		res.Record = *rec
	}
	if reason == "" && rec != nil {
		reason = fmt.Sprintf("claimed by %s (region %s, instance %s) at epoch %d: %s", dashIfEmpty(rec.Owner), dashIfEmpty(rec.Region),
			dashIfEmpty(rec.Instance), rec.Epoch, rec.Status)
		if rec.Status == RunSkipped && rec.Reason != "" {
			reason = "recorded as skipped: " + rec.Reason
		}
	}
	res.Reason = reason
	return res
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// skipForOverlap records the occurrence as skipped because its time ran out while another holder kept the
// lease: a run record that nobody can claim after it, so the occurrence never runs beside that work. If a
// claim got there first, that claim stands.
func (c *Client) skipForOverlap(ctx context.Context, res RunResult, holder State, o RunOptions) (RunResult, error) {
	reason := fmt.Sprintf("overlap: the lease was still held by %s (region %s)", dashIfEmpty(holder.Owner), dashIfEmpty(holder.Region))
	if occ := holder.Metadata[metaOccurrence]; occ != "" {
		reason += " running occurrence " + occ
	}
	reason += fmt.Sprintf(" when this occurrence's time ran out (%s)", o.Until.UTC().Format(time.RFC3339))
	now := c.clock.Now().UTC()
	rec := &RunRecord{ID: res.Record.ID, LeaseKey: res.Record.LeaseKey, Type: store.TypeRun, Occurrence: res.Occurrence,
		Status: RunSkipped, Reason: reason, Region: c.opts.Region, Owner: c.opts.OwnerID, Instance: o.Instance,
		ClaimID: newLeaseID(), PastDue: o.PastDue, StartedAt: now, FinishedAt: now, Schedule: o.Schedule,
		MissedAfterMs: o.MissedAfter.Milliseconds()}
	existing, _, err := c.createClaim(ctx, rec, o.Retention)
	if err != nil {
		return res, err
	}
	if existing != nil {
		return c.skipped(res, existing, ""), nil
	}
	c.log.Info("occurrence skipped for overlap", "lease", rec.LeaseKey, "occurrence", res.Occurrence, "reason", reason)
	return c.skipped(res, rec, reason), nil
}

// createClaim creates rec, a record carrying a fresh claim id. It returns nil when rec is now stored (our
// create was applied, even if its answer was lost or was a 409 to the SDK's own retry), or the record another
// claim stored first. With an error, maybe says whether one of its creates may have been applied.
func (c *Client) createClaim(ctx context.Context, rec *RunRecord, ttl time.Duration) (existing *RunRecord, maybe bool, err error) {
	if rec.ClaimID == "" {
		rec.ClaimID = newLeaseID()
	}
	for attempt := 0; ; attempt++ {
		sent := ctx.Err() == nil // a request whose context had already ended was never sent
		err := c.writeRun(ctx, rec, "", ttl)
		if err == nil {
			return nil, false, nil
		}
		kind := store.KindOf(err)
		if kind != store.Conflict && !store.Retryable(err) {
			return nil, maybe, err
		}
		// Refused (throttled, unavailable) is not applied; a 409 or an unknown outcome may be our create.
		maybe = maybe || sent && (kind == store.Conflict || kind == store.Unknown)
		// 409, or the outcome is unknown: the record may be ours. Read it; a replica behind our create may
		// still answer that it is missing, so a 409 is believed over a missing record.
		got, rerr := c.readRun(ctx, rec.LeaseKey, rec.ID)
		switch {
		case rerr != nil && !store.Retryable(rerr):
			return nil, maybe, rerr
		case got != nil && got.ClaimID == rec.ClaimID:
			rec.ETag = got.ETag
			c.log.Info("claim recognised after an ambiguous answer", "lease", rec.LeaseKey, "occurrence", rec.Occurrence)
			return nil, false, nil
		case got != nil:
			return got, false, nil
		}
		if ctx.Err() != nil || attempt >= 20 {
			return nil, maybe, fmt.Errorf("claim of occurrence %s not settled: %w", rec.Occurrence.Format(time.RFC3339), err)
		}
		wait := 50 * time.Millisecond << min(attempt, 5)
		var se *store.Error
		if errors.As(err, &se) && se.RetryAfter > wait {
			wait = se.RetryAfter
		}
		if werr := c.sleep(ctx, wait); werr != nil {
			return nil, maybe, werr
		}
	}
}

// runHolding is one held lease of RunOnce.
type runHolding struct {
	c     *Client
	key   string
	lease *Lease
	o     RunOptions
	work  RunFunc
	// keep: the work outlived its grace; the lease stays held (renewed) until it returns.
	keep bool
	// unreleased: this holding may leave a record "started" whose work it did not finish (see leave).
	unreleased bool
	// pass, when set, says why this holding could not settle all that its predecessor left: it ends with leave
	// instead of a release, so that the next holder tries.
	pass string
}

// leave ends the holding without releasing the lease: the renewals stop and the document stays as it is, not
// released, so that the next holder settles what this holding may have left "started" (marks it abandoned, and
// with RetryAbandoned runs it), as it does after a crash. The lease is free again LeaseDuration after its last
// renewal.
func (h *runHolding) leave(reason string) {
	if h.keep {
		return // work left past its grace still runs: the lease stays held until it returns
	}
	h.unreleased = true
	l := h.lease
	l.mu.Lock()
	l.endLocked(fmt.Errorf("%w: left unreleased: %s", ErrLeaseLost, reason))
	l.mu.Unlock()
	h.c.log.Warn("lease left unreleased for the next holder to settle", "lease", h.key, "reason", reason)
}

// m is the lease key's metric series.
func (h *runHolding) m() *keyMetrics { return h.c.m.keyed(h.key) }

// missed finds the occurrences of the schedule (o.Next) that came due after the one the replaced lease document
// named, and before current, and that have no run record: nobody claimed them in any region. The lease names
// every occurrence anyone took it for, so while none is missed this costs no request; otherwise one query of
// the newest records. Each is counted once, by the holder of the next occurrence.
func (h *runHolding) missed(ctx context.Context, current time.Time) []time.Time {
	p := h.lease.Previous()
	if h.o.Next == nil || p == nil {
		return nil
	}
	last, err := time.Parse(time.RFC3339Nano, p.Metadata[metaOccurrence])
	if err != nil || !last.Before(current) {
		return nil
	}
	var gap []time.Time
	for t, n := h.o.Next(last), 0; t.Before(current) && len(gap) < 1000 && n < maxMissedScan; t, n = h.o.Next(t), n+1 {
		if !h.c.tooOld(t, h.o) {
			gap = append(gap, t.UTC())
		}
	}
	if len(gap) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.FinishWithin)
	defer cancel()
	recs, err := h.c.Runs(ctx, h.key, min(len(gap)+10, 1000))
	if err != nil {
		h.c.log.Warn("could not read the run history to count missed occurrences", "lease", h.key, "error", err)
		return nil
	}
	have := map[int64]bool{}
	for _, r := range recs {
		have[r.Occurrence.UTC().UnixMilli()] = true
	}
	var out []time.Time
	for _, t := range gap {
		if !have[t.UnixMilli()] {
			out = append(out, t)
		}
	}
	if len(out) > 0 {
		h.c.m.occurrencesMissed(ctx, h.m(), int64(len(out)))
		h.c.log.Warn("occurrences ran in no region", "lease", h.key, "missed", len(out), "first", out[0], "last", out[len(out)-1])
	}
	return out
}

func (h *runHolding) release(ctx context.Context) {
	if h.pass != "" && !h.unreleased {
		h.leave(h.pass)
	}
	if h.keep || h.unreleased {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.FinishWithin)
	defer cancel()
	if err := h.lease.Release(rctx); err != nil {
		h.c.log.Warn("release after the run failed; the lease expires on its own", "lease", h.key, "error", err)
	}
}

// claim creates the occurrence's record under the lease. It returns the record of another claim, if one was
// first.
func (h *runHolding) claim(ctx context.Context, rec *RunRecord) (*RunRecord, bool, error) {
	rec.StartedAt = h.c.clock.Now().UTC()
	ctx, cancel := h.leaseBound(ctx)
	defer cancel()
	existing, maybe, err := h.c.createClaim(ctx, rec, h.o.Retention)
	if err != nil && h.lease.Err() != nil {
		return nil, maybe, fmt.Errorf("the lease was lost before the occurrence could be claimed: %w", h.lease.Err())
	}
	return existing, maybe, err
}

// settleScan is how many of the newest run records a holder that took over an unreleased lease looks through for
// records that earlier holdings left "started".
const settleScan = 100

// unsettled lists the occurrences whose records a holding that never released may have left "started": the one
// its lease document names, and every record among the newest settleScan still started under an earlier epoch
// (a holder that died while it re-ran an abandoned occurrence, or whose settle failed, names another one).
// Oldest first; current, when listed, last, so that it is settled after the others.
func (h *runHolding) unsettled(ctx context.Context, p *State, current time.Time) []time.Time {
	seen := map[int64]bool{}
	var out []time.Time
	add := func(t time.Time) {
		t = t.UTC()
		if !seen[t.UnixMilli()] {
			seen[t.UnixMilli()] = true
			out = append(out, t)
		}
	}
	if prev, err := time.Parse(time.RFC3339Nano, p.Metadata[metaOccurrence]); err == nil {
		add(prev)
	}
	var recs []RunRecord
	err := h.retrying(ctx, func(ctx context.Context) (err error) {
		recs, err = h.c.Runs(ctx, h.key, settleScan)
		return err
	})
	if err != nil {
		h.c.log.Warn("could not read the run history to settle a holder that never released; settling the occurrence its lease names", "lease", h.key, "error", err)
		h.pass = "the run history could not be read to settle the previous holder: " + err.Error()
	}
	for _, r := range recs {
		if r.Status == RunStarted && r.Epoch < h.lease.Epoch() {
			add(r.Occurrence)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if ci, cj := out[i].Equal(current), out[j].Equal(current); ci != cj {
			return cj
		}
		return out[i].Before(out[j])
	})
	return out
}

// retrying calls fn until it succeeds, fails for good, or the lease or ctx ends, backing off between passing
// errors (a few seconds in all).
func (h *runHolding) retrying(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := h.leaseBound(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil || !store.Retryable(err) || attempt >= 8 {
			return err
		}
		wait := 50 * time.Millisecond << min(attempt, 5)
		var se *store.Error
		if errors.As(err, &se) && se.RetryAfter > wait {
			wait = se.RetryAfter
		}
		if h.c.sleep(ctx, wait) != nil {
			return err
		}
	}
}

// replaceRun replaces a run record on etag, through passing errors, and reports whether rec is now stored: our
// write was applied (its answer lost or not: mine recognises what we wrote), or, false, another write came first.
// fctx bounds it; the reads it makes to judge an answer are retried within that.
func (c *Client) replaceRun(ctx context.Context, rec *RunRecord, etag string, ttl time.Duration, mine func(*RunRecord) bool) (bool, error) {
	for attempt := 0; ; attempt++ {
		err := c.writeRun(ctx, rec, etag, ttl)
		if err == nil {
			return true, nil
		}
		if store.KindOf(err) != store.Precondition && !store.Retryable(err) {
			return false, err
		}
		// 412, or the outcome is unknown: read what is stored. A refusal (429, 503) was not applied: the read
		// shows the version we wrote on, and we write again.
		var cur *RunRecord
		var rerr error
		for r := 0; ; r++ {
			if cur, rerr = c.readRun(ctx, rec.LeaseKey, rec.ID); rerr == nil || !store.Retryable(rerr) || r >= 8 || ctx.Err() != nil {
				break
			}
			if c.sleep(ctx, 50*time.Millisecond<<min(r, 5)) != nil {
				break
			}
		}
		switch {
		case rerr != nil:
			return false, rerr
		case cur == nil:
			return false, nil
		case mine(cur):
			rec.ETag = cur.ETag
			return true, nil
		case cur.ETag != etag:
			return false, nil
		}
		if attempt >= 8 || ctx.Err() != nil {
			return false, err
		}
		if c.sleep(ctx, 50*time.Millisecond<<min(attempt, 5)) != nil {
			return false, err
		}
	}
}

// leaseBound is ctx, ended also when the lease ends.
func (h *runHolding) leaseBound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(h.lease.Context(), func() { cancel(context.Cause(h.lease.Context())) })
	return ctx, func() { stop(); cancel(nil) }
}

// settle looks at the run record of occurrence prev, which the previous holder of the lease was running when it
// stopped without releasing. A record still "started" at an earlier epoch is abandoned: its claimer's holding
// ended before ours began. Mark it so, and with RetryAbandoned run it again once. current is the occurrence
// this call is for.
func (h *runHolding) settle(ctx context.Context, prev, current time.Time) (*RunRecord, *RunResult, error) {
	c := h.c
	var rec *RunRecord
	err := h.retrying(ctx, func(ctx context.Context) (err error) {
		rec, err = c.readRun(ctx, h.key, RunID(h.key, prev))
		return err
	})
	if err != nil || rec == nil || rec.Status != RunStarted || rec.Epoch >= h.lease.Epoch() {
		return nil, nil, err
	}
	wctx, cancel := h.leaseBound(ctx)
	defer cancel()
	abandoned := *rec
	now := c.clock.Now().UTC()
	reason := fmt.Sprintf("its claimer (%s, instance %s, epoch %d) stopped while the work ran; found by %s (instance %s) at epoch %d",
		dashIfEmpty(rec.Owner), dashIfEmpty(rec.Instance), rec.Epoch, c.opts.OwnerID, h.o.Instance, h.lease.Epoch())
	rec.Status, rec.Reason, rec.FinishedAt = RunAbandoned, reason, now
	applied, err := c.replaceRun(wctx, rec, rec.ETag, h.o.Retention, func(cur *RunRecord) bool {
		return cur.Status == RunAbandoned && cur.Reason == reason
	})
	if err != nil {
		return nil, nil, err
	}
	if !applied {
		return nil, nil, nil // its claimer (a paused process) or another holder finished it first
	}
	c.log.Warn("occurrence abandoned by its claimer", "lease", h.key, "occurrence", prev, "claimer", abandoned.Owner,
		"instance", abandoned.Instance, "epoch", abandoned.Epoch)
	c.m.occurrenceRan(ctx, h.m(), RunAbandoned)
	marked := *rec
	if !h.o.RetryAbandoned || abandoned.Retried || c.tooOld(prev, h.o) {
		return &marked, nil, nil
	}
	// Run it again, once: the record becomes this holder's claim, on the ETag of the marking.
	rec.Status, rec.Retried, rec.Epoch, rec.ClaimID = RunStarted, true, h.lease.Epoch(), newLeaseID()
	rec.Region, rec.Owner, rec.Instance, rec.StartedAt, rec.FinishedAt = c.opts.Region, c.opts.OwnerID, h.o.Instance, now, time.Time{}
	rec.Reason = "re-run at least once: " + reason
	rec.Error, rec.ExitCode = "", nil
	claimID := rec.ClaimID
	applied, err = c.replaceRun(wctx, rec, rec.ETag, h.o.Retention, func(cur *RunRecord) bool { return cur.ClaimID == claimID })
	if err != nil {
		return &marked, nil, err
	}
	if !applied {
		return &marked, nil, nil
	}
	c.log.Info("running an abandoned occurrence again", "lease", h.key, "occurrence", prev, "epoch", rec.Epoch)
	r := h.run(ctx, rec, true)
	if r.StillRunning || h.lease.Err() != nil {
		// No second work beside it, and no claim without the lease.
		return &marked, &r, fmt.Errorf("the re-run of abandoned occurrence %s ended %s; occurrence %s not started: %s",
			prev.Format(time.RFC3339), r.Status, current.Format(time.RFC3339), r.Reason)
	}
	return &marked, &r, nil
}

// run runs the work for rec under the lease and records how it ended.
func (h *runHolding) run(ctx context.Context, rec *RunRecord, retry bool) RunResult {
	c, lease := h.c, h.lease
	res := RunResult{Occurrence: rec.Occurrence, Epoch: lease.Epoch(), Record: *rec}
	out := &runOutcome{}
	run := Run{Key: h.key, Occurrence: rec.Occurrence, Epoch: lease.Epoch(), Region: c.opts.Region, Owner: c.opts.OwnerID,
		Instance: h.o.Instance, PastDue: rec.PastDue, Retry: retry, out: out}
	if lerr := lease.Err(); lerr != nil {
		// The lease ended before the work could start (the claim's answer came late, the process was paused): never
		// start it without the lease. The record stays "started" and the lease unreleased, so the next holder marks
		// the occurrence abandoned (and with RetryAbandoned runs it).
		h.leave("the lease ended before the work of occurrence " + rec.Occurrence.Format(time.RFC3339) + " could start")
		res.Status = RunLost
		res.Reason = fmt.Sprintf("the lease ended before the work could start, so it was not started (the next holder marks the occurrence abandoned): %v", lerr)
		return res
	}
	workCtx, cancel := h.leaseBound(ctx)
	defer cancel()
	res.WorkStarted = c.clock.Now()
	res.FailoverDelay = max(0, res.WorkStarted.Sub(rec.Occurrence))
	c.m.failedOver(ctx, h.m(), res.FailoverDelay)
	c.log.Info("occurrence claimed; running", "lease", h.key, "occurrence", rec.Occurrence, "epoch", run.Epoch, "retry", retry)
	done := make(chan error, 1)
	go func() { done <- h.work(workCtx, run) }()
	var werr error
	returned := true
	select {
	case werr = <-done:
	case <-workCtx.Done():
		select {
		case werr = <-done:
		case <-c.clock.After(h.o.Grace):
			returned = false
		}
	}
	status := RunCompleted
	switch {
	case lease.Err() != nil && !errors.Is(lease.Err(), ErrReleased):
		status, werr = RunLost, fmt.Errorf("the lease was lost while the work ran: %v", lease.Err())
	case errors.Is(werr, ErrFenced):
		status, werr = RunLost, fmt.Errorf("a later holder of the lease has written, so Cosmos DB refused the work's write: %w", werr)
	case returned && werr == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		status, werr = RunTimedOut, context.Cause(ctx)
	case ctx.Err() != nil:
		status, werr = RunFailed, fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case werr != nil:
		status = RunFailed
	}
	if !returned {
		werr = fmt.Errorf("%w; the work did not return within %s after its context ended and may still be running", werr, h.o.Grace)
		res.StillRunning = true
		h.straggle(done)
	}
	rec.Status, rec.FinishedAt, rec.ExitCode = status, c.clock.Now().UTC(), out.exitCode
	if werr != nil {
		rec.Error = werr.Error()
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.FinishWithin)
	defer fcancel()
	finished := rec.FinishedAt
	applied, err := c.replaceRun(fctx, rec, rec.ETag, h.o.Retention, func(cur *RunRecord) bool {
		return cur.ClaimID == rec.ClaimID && cur.Status == status && cur.FinishedAt.Equal(finished)
	})
	switch {
	case err != nil:
		c.log.Warn("could not record how the run ended", "lease", h.key, "occurrence", rec.Occurrence, "error", err)
	case !applied:
		// A later holder marked it abandoned: our lease had ended. Say so.
		if cur, _ := c.readRun(fctx, h.key, rec.ID); cur != nil && cur.ClaimID != rec.ClaimID || cur != nil && cur.Status == RunAbandoned {
			status, werr = RunLost, fmt.Errorf("a later holder marked the run abandoned (%s); the work's result was not recorded", cur.Reason)
			rec = cur
		}
	}
	res.Record = *rec
	res.Status = status
	if status == RunCompleted {
		res.Status = RunExecuted
	}
	switch res.Status {
	case RunExecuted, RunLost:
		c.m.occurrenceRan(ctx, h.m(), res.Status)
	default:
		c.m.occurrenceRan(ctx, h.m(), RunFailed)
	}
	if werr != nil {
		res.Reason = werr.Error()
	}
	return res
}

// straggle keeps the lease, and this client's lease key busy, until work left past its grace returns.
func (h *runHolding) straggle(done <-chan error) {
	h.keep = true
	c := h.c
	c.mu.Lock()
	if c.stragglers == nil {
		c.stragglers = map[string]bool{}
	}
	c.stragglers[h.key] = true
	c.mu.Unlock()
	go func() {
		err := <-done
		c.log.Info("work left past its deadline has returned", "lease", h.key, "error", err)
		c.mu.Lock()
		delete(c.stragglers, h.key)
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), h.o.FinishWithin)
		defer cancel()
		_ = h.lease.Release(ctx)
	}()
}

func (c *Client) straggling(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stragglers[key]
}
