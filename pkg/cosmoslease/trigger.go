package cosmoslease

import (
	"context"
	"fmt"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
)

// Manual runs (Client.Trigger) and paused occurrences, in the occurrence election.
//
// A manual run is elected as an occurrence is: each contender that sees the trigger in the lease document waits
// its rank's delay (counted from when it first saw it), and claims it with one conditional write that takes the
// lease at a new epoch, removes the trigger from the control, and names the manual run as the job's run in
// progress; the cursor stays. So it runs once, never beside another run (the lease is free only between runs), and
// its work is fenced by its epoch. Scheduled occurrences that come due meanwhile wait behind it, as behind any run.

// RunTrigger runs work for the manual run t of the job of key, through the election: the most preferred live
// contender claims it. It returns skipped when another contender claimed it (or it was withdrawn), and the run's
// result when it ran here. o.Until and o.Next are not used; ctx bounds the wait. RunSchedule calls it for the
// triggers its poll finds (RunOptions.TriggerPoll); the Functions handler, for those its ticks find.
func (c *Client) RunTrigger(ctx context.Context, key string, t Trigger, o RunOptions, work RunFunc) (res RunResult, err error) {
	at := t.At.UTC().Truncate(time.Millisecond)
	res = RunResult{Occurrence: at, Status: RunFailed}
	id, err := leasedoc.ID(key)
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := runIDPrefix(key); err != nil {
		return res, err
	}
	switch {
	case t.ID == "":
		return res, invalid("RunTrigger needs a trigger with an ID (Client.Trigger returns one; State.Control.Trigger shows the pending one)")
	case c.pkProp == "id":
		return res, invalid("%s", errPartitionedOnID)
	case c.opts.TakeOverSameOwner:
		return res, invalid("RunTrigger needs Options.TakeOverSameOwner off")
	case work == nil:
		return res, invalid("RunTrigger needs a work function")
	}
	o.Until, o.Next = time.Time{}, nil
	full, err := o.withDefaults(c)
	if err != nil {
		return res, err
	}
	res.Record = RunRecord{ID: ManualRunID(key, t.ID), LeaseKey: key, Occurrence: at, Manual: true, TriggeredBy: t.By}
	if c.straggling(key) {
		res.Reason = ErrStillRunning.Error()
		return res, ErrStillRunning
	}
	m := c.m.keyed(key)
	ctx, sp := c.tr.start(ctx, "cosmoslease.RunTrigger", key)
	defer func() {
		if status := runMetricStatus(ctx, res, err); status != "" {
			c.m.occurrenceRan(ctx, m, status)
		}
		sp.end(res.Epoch, res.Status, err)
	}()
	e := &election{c: c, key: key, id: id, t: at, o: full, work: work, res: res, manual: &t, seenAt: c.clock.Now()}
	return e.run(ctx)
}

// triggerTurn is turn for a manual run: done (skipped) once the trigger is gone from the control, now once this
// contender's rank's delay since it saw the trigger has passed and the lease is free.
func (e *election) triggerTurn(ctx context.Context, obs observation, job jobState, ctl Control) (now, done bool, res RunResult, err error) {
	c, o := e.c, e.o
	if ctl.Trigger == nil || ctl.Trigger.ID != e.manual.ID {
		return false, true, e.triggerTaken(ctx, job), nil
	}
	at := c.clock.Now()
	contendAt := e.seenAt.Add(time.Duration(job.effectiveRank(o.Regions, c.opts.Region, o.Rank)) * o.FailoverDelay)
	if at.Before(contendAt) {
		if err := c.sleep(ctx, min(o.PollInterval, contendAt.Sub(at))); err != nil {
			return false, true, e.res, err
		}
		return false, false, e.res, nil
	}
	if !c.free(obs, at) {
		e.sawHeld = true
		wait := o.PollInterval
		if left := c.remaining(obs, at); left > 0 && left < wait {
			wait = left + 10*time.Millisecond
		}
		if err := c.sleep(ctx, wait); err != nil {
			return false, true, e.res, err
		}
		return false, false, e.res, nil
	}
	return true, false, e.res, nil
}

// triggerTaken is the result for a trigger another contender claimed.
func (e *election) triggerTaken(ctx context.Context, job jobState) RunResult {
	id := ManualRunID(e.key, e.manual.ID)
	if job.Run != nil && job.Run.ID == id {
		return e.c.skipped(e.res, job.Run, "")
	}
	if rec, err := e.c.readRun(ctx, e.key, id); err == nil && rec != nil {
		return e.c.skipped(e.res, rec, "")
	}
	return e.c.skipped(e.res, nil, "the manual run was claimed by another contender, or withdrawn")
}

// prepareManual completes the document that claims the manual run: the trigger leaves the control, the manual run
// becomes the job's run in progress, and the cursor stays.
func (e *election) prepareManual(plan claimPlan, nj jobState, ctl Control, tmpl RunRecord, next *leasedoc.Doc) (claimPlan, error) {
	if ctl.Trigger == nil || ctl.Trigger.ID != e.manual.ID {
		return claimPlan{}, errDecided
	}
	if len(e.o.Regions) > 0 && nj.Absent != nil {
		delete(nj.Absent, NormalizeRegion(e.c.opts.Region)) // this region is back
		if len(nj.Absent) == 0 {
			nj.Absent = nil
		}
	}
	// The lease stays busy without a break only when this claim follows the previous run's end, as for an
	// occurrence's claim (prepare); otherwise the Busy of the runs before a gap would make the next claim take the
	// gap for time the lease was held, and record an occurrence due while it was free overlap, not missed.
	p := e.c.passOverAt(nj, plan.prev, e.o, e.c.clock.Now().UTC())
	nj.Busy = time.Time{}
	if !p.ranFrom.IsZero() && !p.now.After(p.ranTo.Add(p.slack)) {
		nj.Busy = p.ranFrom
		if !p.busy.IsZero() && p.busy.Before(p.ranFrom) {
			nj.Busy = p.busy
		}
	}
	run := tmpl
	run.ID, run.Occurrence, run.Status, run.ClaimID, run.FinishedAt = ManualRunID(e.key, e.manual.ID), e.t, RunStarted, next.LeaseID, time.Time{}
	run.Manual, run.TriggeredBy = true, e.manual.By
	run.Reason = fmt.Sprintf("manual run, triggered by %s at %s", dashIfEmpty(e.manual.By), e.manual.At.UTC().Format(time.RFC3339))
	nj.Run = &run
	next.Job = nj.encode()
	ctl.Trigger, ctl.Stop = nil, nil
	next.Control = ctl.encode()
	return plan, nil
}

// recordPaused writes the record of an occurrence decided while the job was paused, and releases the lease.
func (h *runHolding) recordPaused(ctx context.Context, res RunResult) RunResult {
	rec := *h.job.Run
	stored, ours, err := h.put(ctx, &rec, nil)
	switch {
	case err != nil:
		h.c.log.Warn("could not record an occurrence skipped while paused; the next holder writes it", "lease", h.key, "occurrence", rec.Occurrence, "error", err)
	case !ours:
		rec = *stored
	}
	h.job.Run, h.job.Recorded = &rec, err == nil && ours
	if !ours && err == nil {
		h.job.Run = nil // a later holding decided it: no longer this holding's to report
	}
	h.release(ctx)
	h.c.log.Info("occurrence skipped: the job is paused", "lease", h.key, "occurrence", rec.Occurrence, "reason", rec.Reason)
	res.Epoch = h.lease.Epoch()
	return h.c.skipped(res, &rec, rec.Reason)
}

// pollTriggers reads the lease document of key every poll (or uses a read this client made within poll, while an
// occurrence's contender watches it) and runs each manual run it finds through RunTrigger, one at a time, until ctx
// ends.
func (c *Client) pollTriggers(ctx context.Context, key string, o RunOptions, poll time.Duration, work RunFunc, report func(RunResult, error)) {
	id, err := leasedoc.ID(key)
	if err != nil {
		return
	}
	m := c.m.keyed(key)
	for {
		if c.sleep(ctx, poll) != nil {
			return
		}
		obs, ok := c.cached(key)
		if !ok || c.clock.Now().Sub(obs.observedAt) >= poll {
			if obs, err = c.observe(ctx, key, id, time.Time{}); err != nil {
				continue // a passing failure: the next poll tries again (the occurrences' calls report lasting ones)
			}
		}
		if obs.invalid != nil || obs.doc == nil {
			continue
		}
		ctl, err := decodeControl(obs.doc)
		if err != nil {
			continue
		}
		c.m.sawControl(m, ctl)
		if ctl.Trigger == nil {
			continue
		}
		res, err := c.RunTrigger(ctx, key, *ctl.Trigger, o, work)
		if ctx.Err() != nil && res.WorkStarted.IsZero() {
			return
		}
		if report != nil {
			report(res, err)
		}
	}
}
