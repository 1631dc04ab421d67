package cosmoslease

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Schedule is what RunSchedule needs of a schedule: the first occurrence after a time (internal/ncrontab's
// Schedule is one).
type Schedule interface {
	Next(after time.Time) time.Time
}

// RunSchedule runs work once per occurrence of sched through RunOnce, from the next occurrence on, until ctx
// ends: what `cosmoslease cron` does on each machine. Each occurrence's call starts when the occurrence fires, beside
// the calls for earlier occurrences that still wait for their turn or run, so that every occurrence is contended
// for however long the ranks' delays are (a call that waits never holds back the next occurrence), and the
// election decides them in order. Each call's options are o with Next set to the schedule, and Until to the next
// occurrence + this contender's delay (its rank in o.Regions, or o.Rank, × FailoverDelay); o.PastDue is ignored.
//
// With o.TriggerPoll it also serves manual runs (Client.Trigger, RunTrigger): their results go to report too, with
// Record.Manual set.
//
// report, when not nil, is called with each call's result, one call at a time. An occurrence whose Until has
// already passed when RunSchedule comes to it (after a suspend or a pause) gets no call: the claim of a later
// occurrence records it. With o.CatchUpWindow, the newest occurrence already due when it starts, no older than the
// window, gets a call too (see RunOptions.CatchUpWindow: it is caught up if every region let it pass). When ctx
// ends, RunSchedule waits
// for the calls in flight (their work is told to stop, and its run recorded), marks this region departed
// (Depart) within FinishWithin so that the next region runs the following occurrences without waiting for it, and
// returns ctx's cause. At start it clears a departed mark this region left.
func (c *Client) RunSchedule(ctx context.Context, key string, sched Schedule, o RunOptions, work RunFunc, report func(RunResult, error)) error {
	if sched == nil {
		return invalid("RunSchedule needs a schedule")
	}
	if work == nil {
		return invalid("RunSchedule needs a work function")
	}
	o.Next, o.PastDue = sched.Next, false
	full, err := o.withDefaults(c)
	if err != nil {
		return err
	}
	delay := time.Duration(full.Rank) * full.FailoverDelay
	// The first occurrence is the first after the call, not after clearing the mark below: that waits while the
	// lease document is not released (up to FinishWithin), and an occurrence that came due meanwhile is still
	// this process's to contend for (within its Until, as below).
	start := c.clock.Now()
	next := sched.Next(start)
	if len(full.Regions) > 0 {
		ctx, cancel := context.WithTimeout(ctx, full.FinishWithin)
		if err := c.comeBack(ctx, key); err != nil && ctx.Err() == nil {
			c.log.Warn("could not clear this region's departed mark; the next occurrence tries again", "lease", key, "error", err)
		}
		cancel()
	}
	var mu sync.Mutex // one report at a time
	var wg sync.WaitGroup
	if o.TriggerPoll > 0 {
		// Manual runs (Client.Trigger), between and beside the occurrences: the lease keeps them apart.
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.pollTriggers(ctx, key, o, o.TriggerPoll, work, func(res RunResult, err error) {
				if report != nil {
					mu.Lock()
					report(res, err)
					mu.Unlock()
				}
			})
		}()
	}
	defer func() {
		wg.Wait()
		if len(full.Regions) > 0 {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), full.FinishWithin)
			defer cancel()
			if err := c.Depart(dctx, key); err != nil {
				c.log.Warn("could not mark this region departed; the next occurrence waits for it once", "lease", key, "error", err)
			}
		}
	}()
	if full.CatchUpWindow > 0 {
		// Catch-up after an outage: the newest occurrence already due when RunSchedule was called (before next),
		// within the window, gets a call of its own, beside the loop. It runs the occurrence, marked caught up, when every region let its claim window pass
		// (RunOptions.CatchUpWindow); it contends as any call does while its time has not run out; otherwise it
		// finds it decided, or gives it up.
		if m := latestDue(sched, start, full.CatchUpWindow); !m.IsZero() {
			call := o
			call.Until = sched.Next(m).Add(delay)
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.RunOnce(ctx, key, m, call, work)
				if report != nil {
					mu.Lock()
					report(res, err)
					mu.Unlock()
				}
			}()
		}
	}
	for {
		if err := c.sleep(ctx, next.Sub(c.clock.Now())); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		occ := next
		after := sched.Next(occ)
		if !after.After(occ) {
			return fmt.Errorf("%w: the schedule's next occurrence after %s is %s, not later", ErrInvalid, occ.Format(time.RFC3339), after.Format(time.RFC3339))
		}
		call := o
		call.Until = after.Add(delay)
		if !call.Until.After(c.clock.Now()) {
			// Past, and so is its last moment to claim (the machine slept, the process was paused): a call would only
			// read the lease document to find its time ran out. The claim of a later occurrence records it.
			next = after
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.RunOnce(ctx, key, occ, call, work)
			if report != nil {
				mu.Lock()
				report(res, err)
				mu.Unlock()
			}
		}()
		next = after
		// An occurrence already past whose last moment to claim has not come is still contended for: its call
		// returns skipped at once if another decided it, and the claim of a later one records it otherwise.
	}
}

// latestDue is the newest occurrence of sched at or before now and no older than window; zero when there is none.
// A schedule that can say it (Prev, as internal/ncrontab's does) answers at once; otherwise the window is walked,
// up to maxClaimScan occurrences.
func latestDue(sched Schedule, now time.Time, window time.Duration) time.Time {
	from := now.Add(-window)
	if p, ok := sched.(interface{ Prev(time.Time) time.Time }); ok {
		if m := p.Prev(now); !m.Before(from) && !m.After(now) {
			return m
		}
		return time.Time{}
	}
	var m time.Time
	for s, n := sched.Next(from.Add(-time.Nanosecond)), 0; !s.After(now) && n < maxClaimScan; s, n = sched.Next(s), n+1 {
		if !s.After(m) && !m.IsZero() {
			break
		}
		m = s
	}
	return m
}
