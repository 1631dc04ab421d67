package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Occurrence election: scheduled work that fires in every region and runs in one.
//
// Every contender (a region's timer, a cron process on each of several machines) calls RunOnce for the same
// occurrence of the same schedule. The lease document of the job's key is the job's state as well as its lease
// (job.go): it names the newest occurrence decided (the cursor) and how that occurrence's run went. An
// occurrence is decided by one conditional write of the document, so occurrences are decided one at a time, in
// schedule order, each once:
//
//  1. Watch. A contender reads the document once per PollInterval. It returns skipped as soon as the cursor has
//     reached its occurrence (another contender decided it), and when its Until comes first. Its rank r counts
//     only the regions ahead of it that the document does not mark absent; it contends from occurrence +
//     r × FailoverDelay, once the lease is free.
//  2. Claim. It takes the lease with a document whose cursor is its occurrence, conditional on the version it
//     read; the write is refused if another decision came first, and it reads again. The same write decides the
//     occurrences the cursor passes over (skipped for overlap, superseded, or missed and counted: here, once),
//     hands on the runs still to be judged and the records still to be written, and marks absent the regions
//     ahead of it that let their turn pass. With RetryAbandoned, when the previous run's claimer stopped
//     without finishing, it first takes the lease to run that occurrence again (the cursor stays), and then
//     contends for its own.
//  3. Settle. Holding the lease, after a holder that never released it, it waits for that holder's work to stop
//     (workStopMs), judges each run the document says was never finished (abandoned, unless its record shows it
//     finished) and writes the records the document holds pending. What it cannot write stays in the document
//     for the next holder.
//  4. Run. The work runs under the lease, renewed meanwhile, and never starts once the lease has ended; its
//     context ends when the lease is lost or the caller's context ends.
//  5. Finish. It writes the run's record (never over a record a later holding wrote) and releases the lease with
//     a document that carries the run's outcome, so the next holder knows it even when the record could not be
//     written. A holding that cannot release leaves the run "started" in the document: the next holder judges it.
//
// So the lease is held only while an occurrence's work runs, and is short: a contender that dies mid-work frees it
// within LeaseDuration. While the preferred contender lives it runs every occurrence; when it stops, the next one
// runs the same occurrence r × FailoverDelay late and marks it absent, and runs the occurrences after that on
// time until it comes back.

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
	// contend at the same time, and the lease decides between them. With Regions it is computed, and Rank is
	// ignored.
	Rank int
	// Regions is the preference order (most preferred first; ParseRegions, or the account's regions), in which
	// this client's Options.Region has its rank. With it, regions the job's state marks absent (they let an
	// occurrence pass, or departed: Client.Depart) do not count, so that after a failover the next region runs the
	// following occurrences without waiting for them, until they come back.
	Regions []string
	// FailoverDelay is how much later each rank contends: rank r contends no earlier than
	// occurrence + r × FailoverDelay. Default 10 s. It must exceed the time the preferred contender needs to
	// claim an occurrence after it fires (a cold start included), or another rank may run it first.
	FailoverDelay time.Duration
	// PollInterval is how often a waiting contender reads the lease document; default 1 s.
	PollInterval time.Duration
	// Until, when not zero, is the last moment this contender claims the occurrence: if it has not claimed it by
	// then (the lease was held by the work of an earlier occurrence, or its own time came too late), it returns
	// skipped, and the claim of a later occurrence records it (skipped for overlap, superseded or missed). Set it
	// to when this contender would contend for the next occurrence: the next occurrence + Rank × FailoverDelay.
	// Zero waits for as long as ctx allows.
	Until time.Time
	// RetryAbandoned runs once more the occurrence whose claimer stopped before finishing (at the new holder's
	// epoch, before its own occurrence): at least once instead of at most once for such occurrences.
	RetryAbandoned bool
	// Retention is how long run records are kept after their occurrence (their ttl is set so); default
	// DefaultRunRetention, at least MinRunRetention. An occurrence older than the retention is skipped.
	Retention time.Duration
	// Instance names this process in the record; default Options.Hostname.
	Instance string
	// PastDue marks a late run (a scheduler catching up); it is recorded.
	PastDue bool
	// Schedule is written into the records, so that readers can list missed occurrences without knowing it.
	Schedule string
	// MissedAfter is the occurrence's claim window: how long after it the last contender may still claim it (its
	// rank × FailoverDelay, plus a crashed holder's lease running out; ClaimWindow). When a later occurrence is
	// claimed first, an occurrence still inside its window is recorded as superseded, one past it as missed.
	// Default ClaimWindow over the ranks of Regions (or Rank + 1).
	MissedAfter time.Duration
	// Grace is how long the work has to return after its context ends; default 10 s. Work that does not return
	// by then is left running: RunOnce returns, keeps the lease (renewed) until the work returns so no other
	// occurrence starts beside it, and starts no other work of this lease key in this Client meanwhile.
	Grace time.Duration
	// FinishWithin bounds recording how the run ended and releasing the lease, after the work returned (or its
	// grace passed), and the writes of a new holder's settling; default twice Options.RequestTimeout.
	FinishWithin time.Duration
	// Next, when set, is the schedule: the first occurrence after a time. With it, the claim of an occurrence
	// decides the occurrences since the previous one decided (skipped for overlap, superseded or missed) and
	// records them; the missed are counted there, once (RunResult.Missed, cosmoslease.occurrence.missed).
	Next func(time.Time) time.Time
	// CatchUpWindow, when not zero, lets this call catch up its occurrence after an outage: when the occurrence's
	// claim window (MissedAfter) has passed with nobody claiming it, the claim of a later one would record it
	// missed, it is the newest such occurrence (the next one's window is still open), and it is no older than
	// CatchUpWindow, the call claims it at once, whatever its Until and rank, and runs it marked CaughtUp and
	// PastDue. The same claim decides the earlier occurrences since the cursor (missed, counted). It never claims
	// an occurrence the cursor has reached, nothing for a job that never ran (no cursor), and gives the occurrence
	// up once it is older than the window. Needs Next. Zero (the default): no catch-up.
	CatchUpWindow time.Duration
	// Overlap is what an occurrence that comes due while the previous occurrence's run is going does (see
	// OverlapWait, the default, and OverlapSkip; ParseOverlap reads them).
	Overlap string
	// TriggerPoll, when above zero, is how often RunSchedule reads the lease document between occurrences for a
	// manual run asked for with Client.Trigger (one point read each, skipped when an occurrence's contender read
	// the document within that time); zero never looks, so triggers are not served. RunOnce ignores it.
	TriggerPoll time.Duration
}

// Overlap policies (RunOptions.Overlap). Two occurrences' work never runs side by side under either.
const (
	// OverlapWait (the default, also ""): the occurrence waits for the lease while the previous run goes on, and
	// runs when that run ends if its contender's time (Until) has not run out; once it has, the call returns
	// skipped, and the claim of a later occurrence records it skipped for overlap.
	OverlapWait = "wait"
	// OverlapSkip: an occurrence that came due while the previous run was going (the same rule as the cause
	// overlap: before that run ended, and its claim window open when it started) is not run: its contenders never
	// claim it, and return skipped as soon as that is sure to be how the claim of a later occurrence records it (the
	// run went on past it by the document, and no earlier occurrence can still be claimed first); the later
	// occurrences do not wait for it, and the claim of a later occurrence records it skipped for overlap.
	OverlapSkip = "skip"
)

// ParseOverlap reads an overlap policy: skip or wait (case and spaces ignored); "" is wait.
func ParseOverlap(s string) (string, error) {
	switch p := strings.ToLower(strings.TrimSpace(s)); p {
	case "", OverlapWait:
		return OverlapWait, nil
	case OverlapSkip:
		return OverlapSkip, nil
	}
	return "", invalid("overlap policy %q: use skip (an occurrence due while the previous one runs is skipped) or wait (it runs when the previous one ends, while its time lasts; the default)", s)
}

func (o RunOptions) withDefaults(c *Client) (_ RunOptions, err error) {
	if o.Rank < 0 {
		return o, invalid("Rank %d is negative: 0 is the most preferred contender", o.Rank)
	}
	for name, d := range map[string]time.Duration{"FailoverDelay": o.FailoverDelay, "PollInterval": o.PollInterval,
		"Retention": o.Retention, "Grace": o.Grace, "FinishWithin": o.FinishWithin, "MissedAfter": o.MissedAfter,
		"CatchUpWindow": o.CatchUpWindow} {
		if d < 0 {
			return o, invalid("%s is negative (%s)", name, d)
		}
	}
	if o.Overlap, err = ParseOverlap(o.Overlap); err != nil {
		return o, err
	}
	if o.CatchUpWindow > 0 && o.Next == nil {
		return o, invalid("CatchUpWindow needs Next (the schedule): only the newest missed occurrence is caught up")
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
	if len(o.Regions) > 0 {
		regions := make([]string, 0, len(o.Regions))
		for _, r := range o.Regions {
			if n := NormalizeRegion(r); n != "" {
				regions = append(regions, n)
			}
		}
		o.Regions = regions
		o.Rank, _ = Rank(c.opts.Region, o.Regions, nil)
	}
	if o.MissedAfter == 0 {
		ranks := o.Rank + 1
		if len(o.Regions) > 0 {
			_, ranks = Rank(c.opts.Region, o.Regions, nil)
		}
		o.MissedAfter = ClaimWindow(ranks, o.FailoverDelay, c.opts.LeaseDuration)
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
	// CaughtUp is set when this runs a missed occurrence late, caught up after an outage (RunOptions.CatchUpWindow).
	CaughtUp bool
	// Retry is set when this runs an abandoned occurrence again (RunOptions.RetryAbandoned).
	Retry bool
	// Manual is set for a manual run (Client.Trigger): Occurrence is then when it was asked for, by TriggeredBy.
	Manual      bool
	TriggeredBy string

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

// Env is the run as the environment of a command that does its work (cosmoslease cron, the handler's command
// jobs): COSMOSLEASE_OCCURRENCE (RFC 3339, UTC), _EPOCH, _REGION, _LEASE and _INSTANCE, and for a manual run
// COSMOSLEASE_MANUAL=1 and COSMOSLEASE_TRIGGERED_BY (its OCCURRENCE is then when it was asked for).
func (r Run) Env() []string {
	env := []string{
		"COSMOSLEASE_OCCURRENCE=" + r.Occurrence.UTC().Format(time.RFC3339),
		"COSMOSLEASE_EPOCH=" + strconv.FormatInt(r.Epoch, 10),
		"COSMOSLEASE_REGION=" + r.Region,
		"COSMOSLEASE_LEASE=" + r.Key,
		"COSMOSLEASE_INSTANCE=" + r.Instance}
	if r.Manual {
		env = append(env, "COSMOSLEASE_MANUAL=1", "COSMOSLEASE_TRIGGERED_BY="+r.TriggeredBy)
	}
	return env
}

// RunFunc is the work of one occurrence. ctx ends when the lease is lost or RunOnce's context ends: return
// then.
type RunFunc func(ctx context.Context, run Run) error

// Outcomes of RunOnce (RunResult.Status).
const (
	RunExecuted = "executed" // the work ran here and returned nil
	// RunSkipped (the record status) also names the outcome of a contender that did not run the occurrence:
	// another decided it, or its time ran out.
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
	// Missed are the occurrences this call's claim decided as missed (RunOptions.Next): due, and claimed by no
	// region within their claim window. The newest 1,000 of them; MissedCount is how many.
	Missed      []time.Time
	MissedCount int
	// Abandoned is the record of an earlier run this call found abandoned and marked (the newest, when it marked
	// several; each is logged); Retried is the result of running it again (RetryAbandoned).
	Abandoned *RunRecord
	Retried   *RunResult
}

// ErrStillRunning is returned by RunOnce while work of an earlier occurrence of the same lease key, stopped at
// its deadline but not yet returned, still runs in this Client.
var ErrStillRunning = errors.New("the work of an earlier occurrence still runs although its context ended; the work must return when its context ends")

// errDecided stops a claim whose occurrence another decision has reached meanwhile.
var errDecided = errors.New("the occurrence has been decided")

// RunOnce runs work for one occurrence of a schedule at most once across every contender that calls it for the
// same lease key and occurrence, preferring contenders by rank (see the comment at the top of occurrence.go,
// and docs/scheduled-work.md). It returns when the work has run here (Status executed, or failed, lost,
// timed-out with a non-nil error), when the occurrence was decided elsewhere or its time ran out (skipped, nil
// error), or when ctx ends or Cosmos DB stayed unreachable until Until (an error).
//
// Occurrences of one key are decided in order: an occurrence earlier than one already decided is skipped.
//
// Requests: a contender reads the lease document (a point read) once per PollInterval until its time, and
// returns as soon as it sees the occurrence decided. The one that runs it makes that read, the claim (one
// conditional write), the run record's create when the work ends, and the release; after a holder that never
// released, also a point read of each run left unjudged; one create per record of occurrences passed over.
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
	res.Record = RunRecord{ID: RunID(key, t), LeaseKey: key, Occurrence: t}
	if c.straggling(key) {
		res.Reason = ErrStillRunning.Error()
		return res, ErrStillRunning
	}
	if c.tooOld(t, o) {
		return c.skipped(res, nil, fmt.Sprintf("occurrence %s is older than the run-record retention (%s): its record may have expired, so running it could run it twice",
			t.Format(time.RFC3339), o.Retention)), nil
	}
	e := &election{c: c, key: key, id: id, t: t, o: o, work: work, res: res}
	defer e.comeBackIfAbsent(ctx)
	return e.run(ctx)
}

// election is one RunOnce call.
type election struct {
	c    *Client
	key  string
	id   string
	t    time.Time
	o    RunOptions
	work RunFunc
	res  RunResult

	sawHeld bool // the lease was held by another while this call waited: nobody ahead can be judged absent
	// catchingUp: at the last watch, the occurrence was one to catch up (RunOptions.CatchUpWindow).
	catchingUp bool
	// scanCursor and scanFrom: where earlierWaiting's last scan stopped, for that cursor.
	scanCursor, scanFrom time.Time
	// plans are what this call's claims decided, by leaseId: the one whose answer is heard, or seen applied, is the
	// holding's (only this call adopts its claims: claimSpec.owner).
	plans  map[string]claimPlan
	absent bool // the job's state marks this client's region absent
	// failing is when the requests started failing without a break, and lastErr the newest failure.
	failing time.Time
	lastErr error
	warned  time.Time

	// manual is the trigger this election is for (Client.RunTrigger), nil for an occurrence; seenAt is when this
	// contender first saw it, from which its rank's delay counts.
	manual *Trigger
	seenAt time.Time
}

// run is steps 1 to 5, repeated after a re-run of an abandoned occurrence.
func (e *election) run(ctx context.Context) (RunResult, error) {
	c := e.c
	for {
		obs, err := c.observe(ctx, e.key, e.id, time.Time{})
		if err != nil {
			if !store.Retryable(err) {
				return e.res, err
			}
			if werr := e.failed(ctx, err); werr != nil {
				return e.res, werr
			}
			continue
		}
		e.failing, e.lastErr = time.Time{}, nil
		if obs.invalid != nil {
			return e.res, obs.invalid
		}
		job, err := decodeJob(obs.doc)
		if err != nil {
			return e.res, err
		}
		_, e.absent = job.Absent[NormalizeRegion(c.opts.Region)]
		ctl, err := decodeControl(obs.doc)
		if err != nil {
			return e.res, err
		}
		c.m.sawControl(c.m.keyed(e.key), ctl)
		// A claim this call sent whose answer never came, now seen applied: its lease is ours to take (claim adopts
		// it), whatever the document says of the occurrence, since it is this call's own decision.
		if _, mine := c.ours(e.key, obs.doc, &claimSpec{owner: e}); !mine {
			turn := e.turn
			if e.manual != nil {
				turn = func(ctx context.Context, obs observation, job jobState) (bool, bool, RunResult, error) {
					return e.triggerTurn(ctx, obs, job, ctl)
				}
			}
			now, done, res, err := turn(ctx, obs, job)
			if done {
				return res, err
			}
			if !now {
				continue
			}
		}
		h, err := e.claim(ctx)
		switch {
		case errors.Is(err, errDecided), errors.Is(err, errCatchUpClosed):
			continue
		case err != nil:
			var held *HeldError
			if errors.As(err, &held) {
				e.sawHeld = true
				continue
			}
			if !store.Retryable(err) {
				return e.res, err
			}
			if werr := e.failed(ctx, err); werr != nil {
				return e.res, werr
			}
			continue
		}
		res, again, err := h.hold(ctx, e)
		if !again {
			return res, err
		}
		// The holding re-ran an abandoned occurrence (or found it had finished): now contend for our own.
		e.res.Abandoned, e.res.Retried = res.Abandoned, res.Retried
	}
}

// turn decides, from what the watch read, whether it is this contender's turn to claim (now). When it is not, it
// has waited for the next watch, or done says to return res and err.
func (e *election) turn(ctx context.Context, obs observation, job jobState) (now, done bool, res RunResult, err error) {
	c, o := e.c, e.o
	if job.decided(e.t) {
		r, err := e.decidedElsewhere(ctx, job)
		return false, true, r, err
	}
	at := c.clock.Now()
	free := c.free(obs, at)
	// With the policy skip, an occurrence that came due during the cursor's run is not claimed; its contender
	// returns skipped once that is sure to be how the claim of a later occurrence records it: no earlier occurrence
	// can be claimed first any more (then it would be judged against that run). Until then it holds off.
	holdOff := false
	if o.Overlap == OverlapSkip && !at.Before(e.t) && e.overlaps(job, obs.doc, at, e.t) {
		if !e.earlierReachable(job, at, e.t) || !o.Until.IsZero() && !at.Before(o.Until) {
			return false, true, c.skipped(e.res, nil, fmt.Sprintf("overlap: it came due while the run of occurrence %s was going, and the overlap policy is skip; the claim of a later occurrence records it",
				job.Cursor.UTC().Format(time.RFC3339))), nil
		}
		holdOff = true
	}
	var why string
	e.catchingUp, why = e.catchUp(job, obs.doc, at)
	if !e.catchingUp && !o.Until.IsZero() && !at.Before(o.Until) {
		if why != "" {
			return false, true, e.c.skipped(e.res, nil, why), nil
		}
		return false, true, e.timeRanOut(obs, free), nil
	}
	contendAt := e.t.Add(time.Duration(job.effectiveRank(o.Regions, c.opts.Region, o.Rank)) * o.FailoverDelay)
	if e.catchingUp {
		contendAt = at // every contender back claims at once: the claim decides between them
	}
	if at.Before(contendAt) {
		if err := c.sleep(ctx, e.bounded(min(o.PollInterval, contendAt.Sub(at)))); err != nil {
			return false, true, e.res, err
		}
		return false, false, e.res, nil
	}
	if holdOff {
		e.sawHeld = true // the lease is or was held by the run it came due in: nobody ahead let a turn pass
		if err := c.sleep(ctx, e.bounded(o.PollInterval)); err != nil {
			return false, true, e.res, err
		}
		return false, false, e.res, nil
	}
	if !free {
		e.sawHeld = true
		wait := o.PollInterval
		if left := c.remaining(obs, at); left > 0 && left < wait {
			wait = left + 10*time.Millisecond
		}
		if err := c.sleep(ctx, e.bounded(wait)); err != nil {
			return false, true, e.res, err
		}
		return false, false, e.res, nil
	}
	if s, until := e.earlierWaiting(job, obs.doc, at); !e.catchingUp && !s.IsZero() && (o.Until.IsZero() || until.Before(o.Until)) {
		// An earlier occurrence nobody has claimed may still be claimed by its own contenders (it waited for the
		// lease too): let it go first, so that occurrences start in order. Not past this contender's own Until:
		// then this occurrence is claimed, and the earlier one recorded as superseded.
		if err := c.sleep(ctx, e.bounded(min(o.PollInterval, until.Sub(at)))); err != nil {
			return false, true, e.res, err
		}
		return false, false, e.res, nil
	}
	return true, false, e.res, nil
}

// earlierWaiting is the earliest occurrence after the cursor and before this one that its contenders may still
// claim (their Until, the occurrence after it + the last rank's delay, has not come), and that Until; zero when
// there is none. Without the schedule (RunOptions.Next) there is none.
func (e *election) earlierWaiting(job jobState, doc *leasedoc.Doc, now time.Time) (time.Time, time.Time) {
	if e.o.Next == nil || job.Cursor.IsZero() {
		return time.Time{}, time.Time{}
	}
	wait := time.Duration(e.lastRank()) * e.o.FailoverDelay
	// Earlier occurrences only leave their turn as time passes: the scan goes on from where the last one stopped,
	// while the cursor stays, so a long gap is walked once.
	s := e.o.Next(job.Cursor)
	if e.scanCursor.Equal(job.Cursor) && e.scanFrom.After(s) {
		s = e.scanFrom
	}
	defer func() { e.scanCursor, e.scanFrom = job.Cursor, s }()
	for n := 0; s.Before(e.t) && n < maxMissedScan; n++ {
		after := e.o.Next(s)
		if !after.After(s) {
			break
		}
		if until := after.Add(wait); now.Before(until) && !(e.o.Overlap == OverlapSkip && e.overlaps(job, doc, now, s)) {
			// (With the policy skip, an occurrence that came due during the previous run is skipped by its contenders:
			// nobody will claim it.)
			return s, until
		}
		s = after
	}
	return time.Time{}, time.Time{}
}

// limit is the last moment to claim: Until, or the end of the catch-up window while catching up.
func (e *election) limit() time.Time {
	if e.catchingUp {
		return e.t.Add(e.o.CatchUpWindow)
	}
	return e.o.Until
}

// bounded shortens a wait so that it ends at the limit.
func (e *election) bounded(d time.Duration) time.Duration {
	if until := e.limit(); !until.IsZero() {
		if left := until.Sub(e.c.clock.Now()); left < d {
			return max(left, 0)
		}
	}
	return d
}

// overlaps reports whether occurrence s came due while the cursor's run was going (the cause overlap), as the claim
// of a later occurrence replacing the lease document doc would judge it, from the job state, at now. While the run
// goes on its end is not known yet, so it is taken to be now (its holder's last renewal at least), the earliest it
// can be (the wall clocks compared, as for the claim's time): a later end only widens the overlap, so what overlaps
// now still does when that claim judges it. A holder that never released ended its run at its last renewal + lease.
func (e *election) overlaps(job jobState, doc *leasedoc.Doc, now, s time.Time) bool {
	if job.decided(s) {
		return false
	}
	p := e.c.passOverAt(job, doc, e.o, now)
	if p.ranFrom.IsZero() {
		return false
	}
	if doc != nil && !doc.Released {
		end := now
		if end.Before(doc.RenewedAt) {
			end = doc.RenewedAt
		}
		if end.Before(p.ranTo) {
			p.ranTo = end
		}
	}
	return p.cause(s) == causeOverlap
}

// earlierReachable reports whether an occurrence between the cursor and s may still be claimed by a contender of
// its own (its Until, the occurrence after it + the last rank's delay, has not passed), whatever its overlap: a
// contender whose policy is wait claims it when the run ends, and then s is judged against that run, not the
// cursor's. maxSkipScan bounds the scan (beyond it: reachable).
func (e *election) earlierReachable(job jobState, now, s time.Time) bool {
	if e.o.Next == nil || job.Cursor.IsZero() {
		return false
	}
	wait := time.Duration(e.lastRank()) * e.o.FailoverDelay
	for u, n := e.o.Next(job.Cursor), 0; u.Before(s); u, n = e.o.Next(u), n+1 {
		if n >= maxSkipScan || now.Before(e.o.Next(u).Add(wait)) {
			return true
		}
	}
	return false
}

// maxSkipScan bounds how many undecided occurrences before its own a contender with the overlap policy skip checks.
const maxSkipScan = 1000

// lastRank is the last rank of the preference order (RunOptions.Regions), or this contender's rank without one.
func (e *election) lastRank() int {
	if len(e.o.Regions) > 0 {
		_, ranks := Rank(e.c.opts.Region, e.o.Regions, nil)
		return ranks - 1
	}
	return e.o.Rank
}

// errCatchUpClosed stops a catch-up claim whose occurrence is no longer one to catch up (the document changed, or
// the window closed, between the watch and the claim).
var errCatchUpClosed = errors.New("the occurrence is no longer one to catch up")

// catchUp reports whether this call's occurrence is to be caught up now (RunOptions.CatchUpWindow), from the job
// state and lease document doc, at now: the job has run before (a cursor: a job that never ran has no outage to
// catch up) and the occurrence is not decided; its claim window passed, so that a claim now would decide it
// missed (not overlap: it did not wait behind a run); no older than the window; and the newest such occurrence
// (the next one's claim window is still open). When it is not only because a newer occurrence is to be caught
// up instead, why says so.
func (e *election) catchUp(job jobState, doc *leasedoc.Doc, now time.Time) (ok bool, why string) {
	o, t := e.o, e.t
	if o.CatchUpWindow <= 0 || o.Next == nil || job.Cursor.IsZero() || job.decided(t) || now.Before(t.Add(o.MissedAfter)) || now.Sub(t) > o.CatchUpWindow {
		return false, ""
	}
	if e.c.passOverAt(job, doc, o, now).cause(t) != causeMissed {
		return false, ""
	}
	if n := o.Next(t); n.After(t) && !now.Before(n.Add(o.MissedAfter)) {
		return false, fmt.Sprintf("not caught up: the newer occurrence %s was missed too, and only the newest missed occurrence is caught up; the claim of a later occurrence records this one missed",
			n.UTC().Format(time.RFC3339))
	}
	return true, ""
}

// failed notes a request that failed for a passing reason, waits before the next, and says so once the failures
// have lasted a while: at WARN after RetryPeriod, again every minute. It returns an error when ctx ends.
func (e *election) failed(ctx context.Context, err error) error {
	c := e.c
	now := c.clock.Now()
	if e.failing.IsZero() {
		e.failing = now
	}
	e.lastErr = err
	if d := now.Sub(e.failing); d >= c.opts.RetryPeriod && now.Sub(e.warned) >= time.Minute {
		e.warned = now
		c.log.Warn("cannot reach the lease document; will keep trying until the occurrence's time runs out", "lease", e.key,
			"occurrence", e.t, "failingFor", d.Round(time.Millisecond), "error", err)
	}
	wait := e.o.PollInterval
	var se *store.Error
	if errors.As(err, &se) && se.RetryAfter > wait {
		wait = se.RetryAfter
	}
	if werr := c.sleep(ctx, e.bounded(wait)); werr != nil {
		return waitError(werr, err)
	}
	if until := e.limit(); !until.IsZero() && !c.clock.Now().Before(until) {
		msg := fmt.Sprintf("occurrence %s given up at its time limit (%s): Cosmos DB could not be reached for %s: %v", e.t.Format(time.RFC3339),
			until.UTC().Format(time.RFC3339), c.clock.Now().Sub(e.failing).Round(time.Millisecond), err)
		c.log.Error("occurrence given up", "lease", e.key, "occurrence", e.t, "error", err)
		e.res.Reason = msg
		return errors.New(msg)
	}
	return nil
}

// decidedElsewhere is the result when the cursor has reached this occurrence.
func (e *election) decidedElsewhere(ctx context.Context, job jobState) (RunResult, error) {
	if rec := job.runOf(e.t); rec != nil {
		return e.c.skipped(e.res, rec, ""), nil
	}
	rec, err := e.c.readRun(ctx, e.key, RunID(e.key, e.t))
	if err == nil && rec != nil {
		return e.c.skipped(e.res, rec, ""), nil
	}
	return e.c.skipped(e.res, nil, fmt.Sprintf("decided: occurrence %s was claimed before this one was, which passed it over (see the run history for why)",
		job.Cursor.UTC().Format(time.RFC3339))), nil
}

// timeRanOut is the result at Until: the occurrence is left to the claim of a later one to record.
func (e *election) timeRanOut(obs observation, free bool) RunResult {
	until := e.o.Until.UTC().Format(time.RFC3339)
	if !free && obs.doc != nil {
		h := e.c.state(e.key, obs, e.c.clock.Now())
		reason := fmt.Sprintf("overlap: the lease was still held by %s (region %s)", dashIfEmpty(h.Owner), dashIfEmpty(h.Region))
		if j, _ := decodeJob(obs.doc); j.Run != nil {
			reason += " for occurrence " + j.Run.Occurrence.UTC().Format(time.RFC3339)
		}
		return e.c.skipped(e.res, nil, reason+" when this occurrence's time ran out ("+until+"); the claim of a later occurrence records it")
	}
	return e.c.skipped(e.res, nil, "late: this contender's time ran out ("+until+") before it could claim the occurrence; the claim of a later occurrence records it")
}

// comeBackIfAbsent removes this region's absent mark after a call that found it and did not claim (a claim
// removes it): once the lease is free, before Until (or within a failover delay when there is none) and while
// ctx lasts, so that the next occurrence waits for this region again.
func (e *election) comeBackIfAbsent(ctx context.Context) {
	if !e.absent || len(e.o.Regions) == 0 || ctx.Err() != nil {
		return
	}
	limit := e.c.clock.Now().Add(e.o.FailoverDelay)
	if !e.o.Until.IsZero() {
		limit = e.o.Until
	}
	ctx, cancel := context.WithTimeout(ctx, max(limit.Sub(e.c.clock.Now()), e.c.opts.RequestTimeout))
	defer cancel()
	if err := e.c.comeBack(ctx, e.key); err != nil {
		e.c.log.Info("could not clear this region's absent mark yet; the next occurrence tries again", "lease", e.key, "error", err)
	}
}

// claim takes the lease with the document that decides this occurrence, or re-runs the previous one.
func (e *election) claim(ctx context.Context) (*runHolding, error) {
	c, o := e.c, e.o
	plan := &claimPlan{}
	meta := map[string]string{metaOccurrence: e.t.Format(time.RFC3339Nano),
		metaStopMs: strconv.FormatInt(max(0, o.Grace-(c.opts.LeaseDuration-c.opts.RenewDeadline)).Milliseconds(), 10)}
	if e.plans == nil {
		e.plans = map[string]claimPlan{}
	}
	spec := &claimSpec{extra: meta, owner: e, prepare: func(prev, next *leasedoc.Doc) error {
		p, err := e.prepare(prev, next)
		if err != nil {
			return err
		}
		e.plans[next.LeaseID] = p
		return nil
	}}
	lease, err := c.attempt(ctx, e.key, e.id, spec)
	if err != nil {
		return nil, err
	}
	doc := lease.document()
	*plan = e.plans[doc.LeaseID]
	job, _ := decodeJob(doc)
	e.absent = false // the claim cleared the mark
	h := &runHolding{c: c, key: e.key, lease: lease, o: o, work: e.work, job: job, plan: *plan}
	e.res.Epoch = lease.Epoch()
	if plan.nMissed > 0 {
		e.res.Missed, e.res.MissedCount = plan.missed, plan.nMissed
		c.m.occurrencesMissed(ctx, c.m.keyed(e.key), int64(plan.nMissed))
		c.log.Warn("occurrences ran in no region", "lease", e.key, "missed", plan.nMissed, "first", plan.missed[0],
			"last", plan.missed[len(plan.missed)-1])
	}
	return h, nil
}

// claimPlan is what a claim's document decided, beside the document itself.
type claimPlan struct {
	prev    *leasedoc.Doc // the document the claim replaced
	retry   bool          // the holding re-runs the previous (abandoned) run
	retryOf string        // the claim id of that run
	// prevRun and prevSettle are the replaced document's run and runs to judge, to put back when a re-run is
	// given up.
	prevRun    *RunRecord
	prevSettle []RunRecord
	prevBusy   time.Time // the replaced document's Busy, restored with prevRun
	legacy     bool      // the replaced document had no job state: the occurrence's record must be read first
	paused     bool      // the job is paused: the occurrence is recorded skipped, and its work does not run
	missed     []time.Time
	nMissed    int
}

// prepare builds the job state of the document that would claim the occurrence (or re-run the abandoned previous
// one), from the document it replaces.
func (e *election) prepare(prev, next *leasedoc.Doc) (claimPlan, error) {
	c, o := e.c, e.o
	pj, err := decodeJob(prev)
	if err != nil {
		return claimPlan{}, err
	}
	if e.manual == nil && pj.decided(e.t) {
		return claimPlan{}, errDecided
	}
	ctl, err := decodeControl(prev)
	if err != nil {
		return claimPlan{}, err
	}
	now := c.clock.Now().UTC()
	plan := claimPlan{prev: prev, legacy: prev != nil && pj.Cursor.IsZero() && e.manual == nil}
	nj := pj.clone()
	nj.Recorded = false
	me := NormalizeRegion(c.opts.Region)
	tmpl := RunRecord{LeaseKey: e.key, Type: store.TypeRun, Region: c.opts.Region, Owner: c.opts.OwnerID, Instance: o.Instance,
		Epoch: next.Epoch, Decided: next.Epoch, StartedAt: now, FinishedAt: now, Schedule: o.Schedule, MissedAfterMs: o.MissedAfter.Milliseconds()}
	// The previous run: judged by this holding if it never finished, written by it if its record is missing.
	switch {
	case pj.unfinished():
		nj.Settle = append(nj.Settle, *pj.Run)
	case pj.Run != nil && !pj.Recorded:
		nj.Pending = append(nj.Pending, *pj.Run)
	}
	if e.manual != nil {
		return e.prepareManual(plan, nj, ctl, tmpl, next)
	}
	if pj.unfinished() && o.RetryAbandoned && !pj.Run.Retried && !pj.Run.Manual && ctl.Paused == nil && !c.tooOld(pj.Cursor, o) {
		// Run the abandoned occurrence again first (unless its record shows it finished after all): the cursor stays.
		plan.retry = true
		r := *pj.Run
		r.Status, r.Retried, r.Epoch, r.Decided, r.ClaimID = RunStarted, true, next.Epoch, next.Epoch, next.LeaseID
		r.Region, r.Owner, r.Instance, r.StartedAt, r.FinishedAt = c.opts.Region, c.opts.OwnerID, o.Instance, now, time.Time{}
		r.Reason, r.Error, r.ExitCode, r.ETag = "", "", nil, ""
		nj.Run = &r
		plan.retryOf = pj.Run.ClaimID
		// The first run went on from its start to its holder's last renewal + lease (it never released). The
		// lease was held without a break when this claim follows that promptly.
		nj.First = &runSpan{From: pj.Run.StartedAt, To: prev.RenewedAt.Add(prev.Duration), Busy: pj.Busy}
		if now.Before(e.t.Add(o.MissedAfter)) {
			// This occurrence's contender was waiting in its turn, behind the re-run from its time on. One that claims
			// after the occurrence's claim window (a catch-up, a late past-due tick) was not: the occurrence, and what
			// came due since, stay as they were (missed, when every region was down).
			nj.First.For = e.t
		}
		nj.Busy = time.Time{}
		if slack := o.PollInterval + c.opts.RequestTimeout; !now.After(nj.First.To.Add(slack)) {
			nj.Busy = nj.First.From
			if !pj.Busy.IsZero() && pj.Busy.Before(nj.Busy) {
				nj.Busy = pj.Busy
			}
		}
		prevRun := *pj.Run
		plan.prevRun, plan.prevSettle, plan.prevBusy = &prevRun, slices.Clone(pj.Settle), pj.Busy
		next.Job = nj.encode()
		return plan, nil
	}
	catchingUp := e.catchingUp
	if catchingUp {
		if ok, _ := e.catchUp(pj, prev, now); !ok {
			return claimPlan{}, errCatchUpClosed
		}
	}
	// Decide the occurrences the cursor passes over.
	p := c.passOverAt(pj, prev, o, now)
	ranges, missed, nMissed := skipOver(pj.Cursor, e.t, p, tmpl)
	// The lease stays busy without a break when this claim follows the previous run's end (a contender waiting
	// for the lease claims within a poll and a request of its release).
	nj.Busy = time.Time{}
	if !p.ranFrom.IsZero() && !now.After(p.ranTo.Add(p.slack)) {
		nj.Busy = p.ranFrom
		if !pj.Busy.IsZero() && pj.Busy.Before(p.ranFrom) {
			nj.Busy = pj.Busy
		}
	}
	nj.Pending = append(nj.Pending, ranges...)
	nj.Missed += int64(nMissed)
	plan.missed, plan.nMissed = missed, nMissed
	// Regions ahead of this one that let their turn pass are absent from now on; this one is back.
	if len(o.Regions) > 0 {
		if nj.Absent == nil {
			nj.Absent = map[string]time.Time{}
		}
		delete(nj.Absent, me)
		if !e.sawHeld && !catchingUp { // a catch-up comes after every region's turn: nobody let it pass here
			for _, r := range o.Regions {
				if r == me {
					break
				}
				if _, gone := nj.Absent[r]; !gone {
					nj.Absent[r] = now
				}
			}
		}
		if len(nj.Absent) == 0 {
			nj.Absent = nil
		}
	}
	run := tmpl
	run.ID, run.Occurrence, run.Status, run.ClaimID, run.PastDue, run.FinishedAt = RunID(e.key, e.t), e.t, RunStarted, next.LeaseID, o.PastDue, time.Time{}
	if catchingUp {
		run.PastDue, run.CaughtUp = true, true
		run.Reason = fmt.Sprintf("caught up: every region let its claim window (%s) pass; run late by the first contender back (catch-up window %s)", o.MissedAfter, o.CatchUpWindow)
	}
	if ctl.Paused != nil {
		// Paused: the occurrence is decided as any other, by this claim, and recorded skipped; its work does not run.
		run.Status, run.Cause, run.Reason, run.FinishedAt = RunSkipped, causePaused, pausedReason(ctl.Paused), now
		plan.paused = true
	}
	nj.Cursor, nj.Run, nj.First = e.t, &run, nil
	next.Job = nj.encode()
	return plan, nil
}

// runHolding is one held lease of RunOnce.
type runHolding struct {
	c     *Client
	key   string
	lease *Lease
	o     RunOptions
	work  RunFunc
	job   jobState // as this holding wrote it; edited as the holding settles and runs, and released with it
	plan  claimPlan
	// keep: the work outlived its grace; the lease stays held (renewed) until it returns.
	keep bool
}

// hold is steps 3 to 5 for a holding. again says the holding re-ran (or settled) the previous occurrence, and
// the caller contends for its own next.
func (h *runHolding) hold(ctx context.Context, e *election) (RunResult, bool, error) {
	c := h.c
	res := e.res
	p := h.lease.Previous()
	if p != nil && !p.Released {
		if err := h.waitForStop(ctx, p); err != nil {
			h.leave("the previous holder's work could still be stopping when this call's context ended")
			return res, false, err
		}
	}
	// Judge the runs never finished, then write what the document holds pending.
	abandoned, finished := h.settle(ctx)
	if abandoned != nil {
		res.Abandoned = abandoned
	}
	h.writePending(ctx)
	if h.plan.retry {
		if finished := finished[h.plan.retryOf]; finished != nil {
			// The run we came to re-run had finished after all (its record says so): nothing to re-run.
			h.job.Run, h.job.Recorded, h.job.Busy, h.job.First = finished, true, h.plan.prevBusy, nil
			h.release(ctx)
			return res, true, nil
		}
		if abandoned == nil || abandoned.ClaimID != h.plan.retryOf {
			// Its record could not be read, so it is not known to be abandoned: never re-run a run that may have
			// finished. The document goes back to naming it unfinished, for a later holder to judge.
			h.job.Run, h.job.Settle, h.job.Busy, h.job.First = h.plan.prevRun, h.plan.prevSettle, h.plan.prevBusy, nil
			h.release(ctx)
			err := fmt.Errorf("occurrence %s not started: the run of occurrence %s, to be run again, could not be judged (its record could not be read)",
				e.t.Format(time.RFC3339), h.plan.prevRun.Occurrence.Format(time.RFC3339))
			res.Reason = err.Error()
			return res, false, err
		}
		rec := *h.job.Run
		r := h.run(ctx, &rec, true)
		r.Abandoned = abandoned
		res.Retried = &r
		if r.StillRunning || h.lease.Err() != nil && !errors.Is(h.lease.Err(), ErrReleased) {
			// No second work beside it, and no claim without the lease.
			res.Status, res.Reason = r.Status, fmt.Sprintf("the re-run of abandoned occurrence %s ended %s; occurrence %s not started: %s",
				rec.Occurrence.Format(time.RFC3339), r.Status, e.t.Format(time.RFC3339), r.Reason)
			return res, false, errors.New(res.Reason)
		}
		if rec.Occurrence.Equal(e.t) {
			return r, false, retriedErr(&r)
		}
		return res, true, nil
	}
	if h.plan.legacy {
		// The document was written before it carried the job's state (a new lease, or an earlier version of this
		// library): the occurrence may have been claimed the old way, by its record.
		rec, err := h.readRunRetrying(ctx, RunID(h.key, e.t))
		if err != nil {
			// Not known whether an earlier version ran it: leave the claim to the next holder, which judges it (a
			// record of the earlier version stands; otherwise it is abandoned, and with RetryAbandoned run).
			h.leave("the record of occurrence " + e.t.Format(time.RFC3339) + " could not be read to check for an earlier version's claim")
			return res, false, fmt.Errorf("occurrence %s not started: its record could not be read to check for an earlier version's claim: %w", e.t.Format(time.RFC3339), err)
		}
		if rec != nil {
			h.job.Run, h.job.Recorded = rec, true
			h.release(ctx)
			return c.skipped(res, rec, ""), false, nil
		}
	}
	if h.plan.paused {
		return h.recordPaused(ctx, res), false, nil
	}
	rec := *h.job.Run
	r := h.run(ctx, &rec, false)
	r.Abandoned, r.Retried, r.Missed, r.MissedCount = res.Abandoned, res.Retried, res.Missed, res.MissedCount
	return r, false, retriedErr(&r)
}

// settle judges each run the document lists as never finished: abandoned (and marked so), unless its record shows
// it finished, or shows a later holding's decision (the record of a re-run). It returns the newest run it marked abandoned, and, by claim id, the records of those that had
// finished. A run it cannot judge (its record cannot be read) stays listed for the next holder.
func (h *runHolding) settle(ctx context.Context) (abandoned *RunRecord, finished map[string]*RunRecord) {
	c := h.c
	finished = map[string]*RunRecord{}
	var left []RunRecord
	for _, s := range h.job.Settle {
		cur, err := h.readRunRetrying(ctx, s.ID)
		if err != nil {
			c.log.Warn("could not read the record of a run whose holder stopped; the next holder judges it", "lease", h.key,
				"occurrence", s.Occurrence, "error", err)
			left = append(left, s)
			continue
		}
		if cur != nil && stands(cur, s) {
			// Its claimer recorded how it ended before its lease ran out; or a later holding has decided the occurrence
			// since (a re-run's record, RetryAbandoned): that record stands.
			finished[s.ClaimID] = cur
			continue
		}
		ab := s
		ab.Status, ab.FinishedAt, ab.Decided, ab.ETag = RunAbandoned, c.clock.Now().UTC(), h.lease.Epoch(), ""
		ab.Reason = fmt.Sprintf("its claimer (%s, instance %s, epoch %d) stopped before the run finished (or before it started); found by %s (instance %s) at epoch %d",
			dashIfEmpty(s.Owner), dashIfEmpty(s.Instance), s.Epoch, c.opts.OwnerID, h.o.Instance, h.lease.Epoch())
		stored, ours, err := h.put(ctx, &ab, func(cur *RunRecord) bool { return stands(cur, s) })
		switch {
		case err != nil:
			left = append(left, s)
		case !ours:
			finished[s.ClaimID] = stored
		default:
			c.log.Warn("occurrence abandoned by its claimer", "lease", h.key, "occurrence", s.Occurrence, "claimer", s.Owner,
				"instance", s.Instance, "epoch", s.Epoch)
			c.m.occurrenceRan(ctx, h.m(), RunAbandoned)
			a := ab
			abandoned = &a
			if h.plan.retry && s.ClaimID == h.plan.retryOf && h.job.Run != nil {
				h.job.Run.Reason = "re-run at least once: " + ab.Reason
			}
		}
	}
	h.job.Settle = left
	return abandoned, finished
}

// stands reports whether the stored record of a run s to be judged says how the occurrence went: the claimer's
// own final record (landed before or after the judge's read), a later holding's (a re-run's), or a final record
// an earlier version of this library wrote (no decided epoch), which ran the occurrence the old way.
func stands(cur *RunRecord, s RunRecord) bool {
	return cur.Status != RunStarted && (cur.ClaimID == s.ClaimID || cur.Decided == 0) || cur.Decided > s.Decided
}

// writePending writes the records the document holds pending; those it cannot write stay for the next holder.
func (h *runHolding) writePending(ctx context.Context) {
	var left []RunRecord
	for _, p := range h.job.Pending {
		r := p
		if _, _, err := h.put(ctx, &r, nil); err != nil {
			h.c.log.Warn("could not write a run record; the next holder writes it", "lease", h.key, "occurrence", p.Occurrence, "error", err)
			left = append(left, p)
		}
	}
	h.job.Pending = left
}

// put writes rec within FinishWithin (putRun).
func (h *runHolding) put(ctx context.Context, rec *RunRecord, keep func(*RunRecord) bool) (*RunRecord, bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.FinishWithin)
	defer cancel()
	return h.c.putRun(ctx, rec, h.o.Retention, keep)
}

// readRunRetrying reads a run record through passing errors, within FinishWithin.
func (h *runHolding) readRunRetrying(ctx context.Context, id string) (*RunRecord, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.FinishWithin)
	defer cancel()
	var rec *RunRecord
	err := retrying(ctx, h.c, func(ctx context.Context) (err error) {
		rec, err = h.c.readRun(ctx, h.key, id)
		return err
	})
	return rec, err
}

// retrying calls fn until it succeeds, fails for good, or ctx ends, backing off between passing errors.
func retrying(ctx context.Context, c *Client, fn func(context.Context) error) error {
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
		if c.sleep(ctx, wait) != nil {
			return err
		}
	}
}

// putRun stores rec, a decision of the holding at epoch rec.Decided: it creates it, or writes it over a stored
// version decided at an epoch no later than rec's, unless keep (when not nil) says the stored version stands. It
// returns the record as stored and whether it is rec. It never writes over a record a later holding wrote.
func (c *Client) putRun(ctx context.Context, rec *RunRecord, retention time.Duration, keep func(*RunRecord) bool) (*RunRecord, bool, error) {
	rec.ETag = ""
	same := func(cur *RunRecord) bool {
		return cur.ClaimID == rec.ClaimID && cur.Status == rec.Status && cur.Decided == rec.Decided && cur.FinishedAt.Equal(rec.FinishedAt) &&
			cur.Occurrence.Equal(rec.Occurrence) && cur.Count == rec.Count
	}
	etag := ""
	for attempt := 0; ; attempt++ {
		err := c.writeRun(ctx, rec, etag, retention)
		if err == nil {
			return rec, true, nil
		}
		kind := store.KindOf(err)
		if kind != store.Conflict && kind != store.Precondition && !store.Retryable(err) {
			return nil, false, err
		}
		// 409, 412, or the outcome is unknown: read what is stored.
		var cur *RunRecord
		rerr := retrying(ctx, c, func(ctx context.Context) (err error) {
			cur, err = c.readRun(ctx, rec.LeaseKey, rec.ID)
			return err
		})
		switch {
		case rerr != nil:
			return nil, false, rerr
		case cur == nil:
			etag = "" // not stored (a refused create, or a replica behind): create
		case same(cur):
			rec.ETag = cur.ETag
			return rec, true, nil
		case cur.Decided > rec.Decided, keep != nil && keep(cur):
			return cur, false, nil
		default:
			etag = cur.ETag
		}
		if attempt >= 8 || ctx.Err() != nil {
			return nil, false, err
		}
		if c.sleep(ctx, 50*time.Millisecond<<min(attempt, 5)) != nil {
			return nil, false, err
		}
	}
}

// leave ends the holding without releasing the lease: the renewals stop and the document stays as it is, naming
// this holding's run "started", so that the next holder judges it (marks it abandoned, and with RetryAbandoned
// runs it), as it does after a crash. The lease is free again LeaseDuration after its last renewal.
func (h *runHolding) leave(reason string) {
	if h.keep {
		return // work left past its grace still runs: the lease stays held until it returns
	}
	l := h.lease
	l.mu.Lock()
	l.endLocked(fmt.Errorf("%w: left unreleased: %s", ErrLeaseLost, reason))
	l.mu.Unlock()
	h.c.log.Warn("lease left unreleased for the next holder to settle", "lease", h.key, "reason", reason)
}

// m is the lease key's metric series.
func (h *runHolding) m() *keyMetrics { return h.c.m.keyed(h.key) }

// release writes the job's state as this holding leaves it and releases the lease; if the release fails, the
// lease runs out and the next holder judges this holding's run from its record.
func (h *runHolding) release(ctx context.Context) {
	if h.keep {
		return
	}
	if h.job.Run != nil {
		r := *h.job.Run
		r.ETag = ""
		h.job.Run = &r
	}
	h.lease.setReleaseJob(h.job.encode())
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.FinishWithin)
	defer cancel()
	if err := h.lease.Release(rctx); err != nil {
		h.c.log.Warn("release after the run failed; the lease expires on its own, and the next holder reads how the run ended from its record", "lease", h.key, "error", err)
	}
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

// leaseBound is ctx, ended also when the lease ends.
func (h *runHolding) leaseBound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(h.lease.Context(), func() { cancel(context.Cause(h.lease.Context())) })
	return ctx, func() { stop(); cancel(nil) }
}

// run runs the work for rec under the lease, records how it ended, and releases the lease.
func (h *runHolding) run(ctx context.Context, rec *RunRecord, retry bool) RunResult {
	c, lease := h.c, h.lease
	res := RunResult{Occurrence: rec.Occurrence, Epoch: lease.Epoch(), Record: *rec}
	out := &runOutcome{}
	run := Run{Key: h.key, Occurrence: rec.Occurrence, Epoch: lease.Epoch(), Region: c.opts.Region, Owner: c.opts.OwnerID,
		Instance: h.o.Instance, PastDue: rec.PastDue, CaughtUp: rec.CaughtUp, Retry: retry, Manual: rec.Manual, TriggeredBy: rec.TriggeredBy, out: out}
	if lerr := lease.Err(); lerr != nil {
		// The lease ended before the work could start (a process paused, renewals failing): never start it without
		// the lease. The document names the run "started", so the next holder marks it abandoned (and with
		// RetryAbandoned runs it).
		h.leave("the lease ended before the work of occurrence " + rec.Occurrence.Format(time.RFC3339) + " could start")
		res.Status = RunLost
		res.Reason = fmt.Sprintf("the lease ended before the work could start, so it was not started (the next holder marks the occurrence abandoned): %v", lerr)
		return res
	}
	workCtx, cancel := h.leaseBound(ctx)
	defer cancel()
	var werr error
	returned := true
	var done chan error
	if ctx.Err() != nil {
		// The caller gave up after the claim: the work is not started, and the run is recorded as failed.
		werr = fmt.Errorf("interrupted before its work started: %w", context.Cause(ctx))
	} else {
		res.WorkStarted = c.clock.Now()
		res.FailoverDelay = max(0, res.WorkStarted.Sub(rec.Occurrence))
		if !rec.Manual {
			c.m.failedOver(ctx, h.m(), res.FailoverDelay)
		}
		c.log.Info("occurrence claimed; running", "lease", h.key, "occurrence", rec.Occurrence, "epoch", run.Epoch, "retry", retry)
		done = make(chan error, 1)
		go func() { done <- h.work(workCtx, run) }()
		select {
		case werr = <-done:
		case <-workCtx.Done():
			select {
			case werr = <-done:
			case <-c.clock.After(h.o.Grace):
				returned = false
			}
		}
	}
	status := RunCompleted
	switch {
	case res.WorkStarted.IsZero():
		status = RunFailed
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
	}
	rec.Status, rec.FinishedAt, rec.ExitCode, rec.Decided = status, c.clock.Now().UTC(), out.exitCode, lease.Epoch()
	if werr != nil {
		rec.Error = werr.Error()
	}
	stored, ours, err := h.put(ctx, rec, nil)
	switch {
	case err != nil:
		c.log.Warn("could not record how the run ended; it goes in the lease document for the next holder to write", "lease", h.key,
			"occurrence", rec.Occurrence, "error", err)
	case !ours:
		// A later holder judged the run (our lease had ended): its record stands.
		status, werr = RunLost, fmt.Errorf("a later holder recorded the run as %s (%s); the work's result was not recorded", stored.Status, stored.Reason)
		rec = stored
	}
	h.job.Run, h.job.Recorded = rec, err == nil && ours
	if !ours && err == nil {
		h.job.Run = nil // the run is no longer this holding's to report
	}
	if !returned {
		h.straggle(ctx, done)
	} else {
		h.release(ctx)
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

// straggle keeps the lease, and this client's lease key busy, until work left past its grace returns; then
// releases it with the job's state as the run left it.
func (h *runHolding) straggle(ctx context.Context, done <-chan error) {
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
		h.keep = false
		h.release(context.WithoutCancel(ctx))
	}()
}

func (c *Client) straggling(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stragglers[key]
}

// retriedErr is the error RunOnce returns with a result of running the work.
func retriedErr(r *RunResult) error {
	if r.Status == RunExecuted || r.Status == RunSkipped {
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
// that shows it decided.
func (c *Client) skipped(res RunResult, rec *RunRecord, reason string) RunResult {
	res.Status = RunSkipped
	if rec != nil {
		res.Record = *rec
	}
	if reason == "" && rec != nil {
		reason = fmt.Sprintf("claimed by %s (region %s, instance %s) at epoch %d: %s", dashIfEmpty(rec.Owner), dashIfEmpty(rec.Region),
			dashIfEmpty(rec.Instance), rec.Epoch, rec.Status)
		if (rec.Status == RunSkipped || rec.Status == RunMissed) && rec.Reason != "" {
			reason = "recorded as " + rec.Status + ": " + rec.Reason
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
