package cosmoslease

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Operator controls (control.go, trigger.go): pause, resume, stop, trigger, on both beds.

// everySecondOpts are runOpts(0) with the schedule "every second", so that a claim decides what it passes over.
func everySecondOpts() RunOptions {
	o := runOpts(0)
	o.Next = everyN(time.Second).Next
	return o
}

// firstRun makes key a job: one occurrence executed by c.
func firstRun(t *testing.T, c *Client, key string) time.Time {
	t.Helper()
	occ := occurrenceNow()
	res, err := c.RunOnce(ctxTimeout(t, 20*time.Second), key, occ, everySecondOpts(), func(context.Context, Run) error { return nil })
	if err != nil || res.Status != RunExecuted {
		t.Fatalf("first occurrence: %+v, %v", res, err)
	}
	return occ
}

func TestPause_OccurrencesAreRecordedSkippedNotMissed_AndResumeRunsAgain(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		occ := firstRun(t, a, "job")
		if _, err := a.Pause(context.Background(), "nosuchjob", PauseOptions{}); !errors.Is(err, ErrNoSuchJob) {
			t.Fatalf("pause of an unknown key: %v; want ErrNoSuchJob", err)
		}
		plain := must[*Lease](t)(a.TryAcquire(context.Background(), "plain"))
		_ = plain.Release(context.Background())
		if _, err := a.Pause(context.Background(), "plain", PauseOptions{}); !errors.Is(err, ErrNoSuchJob) || !strings.Contains(err.Error(), "no scheduled job's lease") {
			t.Fatalf("pause of a lease that is no job's: %v; want ErrNoSuchJob", err)
		}
		p, err := a.Pause(context.Background(), "job", PauseOptions{By: "alice", Reason: "database maintenance"})
		if err != nil || p.Pause.By != "alice" || p.Running != nil || p.Stopped != nil {
			t.Fatalf("pause: %+v, %v", p, err)
		}
		if _, err := a.Pause(context.Background(), "job", PauseOptions{By: "bob"}); !errors.Is(err, ErrAlreadyPaused) || !strings.Contains(err.Error(), "alice") {
			t.Fatalf("second pause: %v; want ErrAlreadyPaused naming alice", err)
		}
		st := must[State](t)(a.Inspect(context.Background(), "job"))
		if st.Control.Paused == nil || st.Control.Paused.Reason != "database maintenance" {
			t.Fatalf("Inspect shows control %+v; want the pause", st.Control)
		}
		// Two occurrences while paused, the second two seconds after the first (one in between never contended):
		// each contended one is skipped for the pause; the one passed over is superseded/missed as usual, never
		// run.
		ran := atomic.Int32{}
		work := func(context.Context, Run) error { ran.Add(1); return nil }
		for _, o := range []time.Time{occ.Add(time.Second), occ.Add(2 * time.Second)} {
			time.Sleep(time.Until(o))
			res, err := a.RunOnce(ctxTimeout(t, 20*time.Second), "job", o, everySecondOpts(), work)
			if err != nil || res.Status != RunSkipped || res.Record.Cause != "paused" || !strings.Contains(res.Reason, "database maintenance") ||
				!strings.Contains(res.Reason, "alice") || res.MissedCount != 0 {
				t.Fatalf("occurrence %s while paused: %+v, %v; want skipped, cause paused, naming alice and the reason", o, res, err)
			}
		}
		if ran.Load() != 0 {
			t.Fatalf("the work ran %d times while paused", ran.Load())
		}
		h := must[History](t)(a.History(context.Background(), "job", 10, everyN(time.Second).Next, 3*time.Second))
		if h.MissedTotal != 0 {
			t.Fatalf("missed total %d while paused; want 0", h.MissedTotal)
		}
		paused := 0
		for _, r := range h.Runs {
			if r.Status == RunSkipped && r.Cause == "paused" {
				paused++
			}
		}
		if paused != 2 {
			t.Fatalf("records %+v; want two skipped for the pause", h.Runs)
		}
		// Resume: the next occurrence runs; a second resume is an error.
		if p, err := a.Resume(context.Background(), "job"); err != nil || p.By != "alice" {
			t.Fatalf("resume: %+v, %v", p, err)
		}
		if _, err := a.Resume(context.Background(), "job"); !errors.Is(err, ErrNotPaused) {
			t.Fatalf("second resume: %v; want ErrNotPaused", err)
		}
		o := occ.Add(3 * time.Second)
		time.Sleep(time.Until(o))
		if res, err := a.RunOnce(ctxTimeout(t, 20*time.Second), "job", o, everySecondOpts(), work); err != nil || res.Status != RunExecuted || ran.Load() != 1 {
			t.Fatalf("after resume: %+v, %v; ran %d", res, err, ran.Load())
		}
	})
}

// An operator's write while a holder runs changes only the control: the holder keeps its lease and epoch, its run
// completes, and its release keeps the control.
func TestPause_OperatorWriteDuringARunDoesNotCostTheLease(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		op, _ := b.client(t, "operator", nil)
		occ := firstRun(t, a, "job")
		started := make(chan struct{})
		var paused PauseResult
		var perr error
		work := func(ctx context.Context, r Run) error {
			close(started)
			// Three renewals (RenewInterval 1 s) after the operator's write.
			select {
			case <-time.After(3500 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		done := make(chan RunResult, 1)
		go func() {
			o := occ.Add(time.Second)
			time.Sleep(time.Until(o))
			res, _ := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", o, everySecondOpts(), work)
			done <- res
		}()
		<-started
		paused, perr = op.Pause(context.Background(), "job", PauseOptions{By: "alice", Reason: "let it finish"})
		if perr != nil || paused.Running == nil || paused.Stopped != nil {
			t.Fatalf("pause during the run: %+v, %v; want the run in progress named, not stopped", paused, perr)
		}
		res := <-done
		if res.Status != RunExecuted || res.Record.Status != RunCompleted {
			t.Fatalf("the run under the operator's write: %+v; want executed (the lease kept)", res)
		}
		st := must[State](t)(op.Inspect(context.Background(), "job"))
		if !st.Released || st.Epoch != res.Epoch || st.Control.Paused == nil || st.Control.Paused.Reason != "let it finish" {
			t.Fatalf("after the run: %+v; want released at epoch %d, still paused", st, res.Epoch)
		}
	})
}

// pause --stop: the holder loses its lease at its next renewal, its work's context ends, the run is recorded lost;
// the next occurrence is skipped for the pause and the stop order is gone.
func TestPause_StopEndsTheRunInProgress(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		op, _ := b.client(t, "operator", nil)
		occ := firstRun(t, a, "job")
		started := make(chan struct{})
		work := func(ctx context.Context, r Run) error {
			close(started)
			select {
			case <-time.After(25 * time.Second):
				return errors.New("the work was not stopped")
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		done := make(chan RunResult, 1)
		go func() {
			o := occ.Add(time.Second)
			time.Sleep(time.Until(o))
			res, _ := a.RunOnce(ctxTimeout(t, 40*time.Second), "job", o, everySecondOpts(), work)
			done <- res
		}()
		<-started
		p, err := op.Pause(context.Background(), "job", PauseOptions{By: "alice", Reason: "runaway", Stop: true})
		if err != nil || p.Running == nil || p.Stopped == nil {
			t.Fatalf("pause --stop: %+v, %v", p, err)
		}
		res := <-done
		if res.Status != RunLost || !strings.Contains(res.Reason, "stopped by alice") || res.Record.Status != RunLost {
			t.Fatalf("the stopped run: %+v; want lost, stopped by alice", res)
		}
		st := must[State](t)(op.Inspect(context.Background(), "job"))
		if !st.Released || st.Control.Paused == nil {
			t.Fatalf("after the stop: %+v; want released (the stopped holder released), still paused", st)
		}
		o := occ.Add(3 * time.Second)
		if d := time.Until(o); d > 0 {
			time.Sleep(d)
		} else {
			o = occurrenceNow()
		}
		next, err := a.RunOnce(ctxTimeout(t, 20*time.Second), "job", o, everySecondOpts(), work)
		if err != nil || next.Status != RunSkipped || next.Record.Cause != "paused" {
			t.Fatalf("next occurrence: %+v, %v; want skipped for the pause", next, err)
		}
		if st := must[State](t)(op.Inspect(context.Background(), "job")); st.Control.Stop != nil {
			t.Fatalf("the stop order outlived its holding: %+v", st.Control)
		}
	})
}

// A trigger runs once among two contenders of the same rank, while paused, recorded manual; a second trigger while
// one waits is refused.
func TestTrigger_RunsOnceWithTwoContendersEvenWhilePaused(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		c2, _ := b.client(t, "region0b", nil)
		op, _ := b.client(t, "operator", nil)
		firstRun(t, a, "job")
		if _, err := op.Trigger(context.Background(), "nosuchjob", "alice"); !errors.Is(err, ErrNoSuchJob) {
			t.Fatalf("trigger of an unknown key: %v", err)
		}
		must[PauseResult](t)(op.Pause(context.Background(), "job", PauseOptions{By: "alice"}))
		trig := must[Trigger](t)(op.Trigger(context.Background(), "job", "alice"))
		if _, err := op.Trigger(context.Background(), "job", "bob"); !errors.Is(err, ErrTriggerPending) {
			t.Fatalf("second trigger: %v; want ErrTriggerPending", err)
		}
		// Withdrawn, then asked for again.
		if gone, err := op.CancelTrigger(context.Background(), "job"); err != nil || gone.ID != trig.ID {
			t.Fatalf("cancel: %+v, %v", gone, err)
		}
		if _, err := op.CancelTrigger(context.Background(), "job"); !errors.Is(err, ErrNoTrigger) {
			t.Fatalf("second cancel: %v; want ErrNoTrigger", err)
		}
		trig = must[Trigger](t)(op.Trigger(context.Background(), "job", "alice"))
		st := must[State](t)(op.Inspect(context.Background(), "job"))
		if st.Control.Trigger == nil || st.Control.Trigger.ID != trig.ID {
			t.Fatalf("control %+v; want the trigger", st.Control)
		}
		var ran atomic.Int32
		var manual atomic.Bool
		work := func(ctx context.Context, r Run) error {
			ran.Add(1)
			manual.Store(r.Manual && r.TriggeredBy == "alice")
			return nil
		}
		results := make([]RunResult, 2)
		var wg sync.WaitGroup
		for i, c := range []*Client{a, c2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.RunTrigger(ctxTimeout(t, 20*time.Second), "job", *st.Control.Trigger, runOpts(0), work)
				if err != nil {
					t.Errorf("contender %d: %v", i, err)
				}
				results[i] = res
			}()
		}
		wg.Wait()
		if ran.Load() != 1 || !manual.Load() {
			t.Fatalf("the manual run ran %d times (manual %v); want once, marked manual", ran.Load(), manual.Load())
		}
		statuses := results[0].Status + "," + results[1].Status
		if statuses != "executed,skipped" && statuses != "skipped,executed" {
			t.Fatalf("results %+v", results)
		}
		rec := must[RunRecord](t)(op.WaitRun(ctxTimeout(t, 10*time.Second), "job", ManualRunID("job", trig.ID), 100*time.Millisecond))
		if rec.Status != RunCompleted || !rec.Manual || rec.TriggeredBy != "alice" {
			t.Fatalf("manual run record %+v", rec)
		}
		st = must[State](t)(op.Inspect(context.Background(), "job"))
		if st.Control.Trigger != nil || st.Control.Paused == nil {
			t.Fatalf("after the manual run, control %+v; want no trigger, still paused", st.Control)
		}
	})
}

// A trigger never runs beside a scheduled run: it waits for the lease.
func TestTrigger_NeverBesideAScheduledRun(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		other, _ := b.client(t, "region1", nil)
		occ := firstRun(t, a, "job")
		var running atomic.Int32
		var overlapped atomic.Bool
		long := func(d time.Duration) RunFunc {
			return func(ctx context.Context, r Run) error {
				if running.Add(1) > 1 {
					overlapped.Store(true)
				}
				defer running.Add(-1)
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				return ctx.Err()
			}
		}
		started := make(chan struct{})
		done := make(chan RunResult, 1)
		go func() {
			o := occ.Add(time.Second)
			time.Sleep(time.Until(o))
			res, _ := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", o, everySecondOpts(), func(ctx context.Context, r Run) error {
				close(started)
				return long(2*time.Second)(ctx, r)
			})
			done <- res
		}()
		<-started
		trig := must[Trigger](t)(other.Trigger(context.Background(), "job", "alice"))
		res, err := other.RunTrigger(ctxTimeout(t, 30*time.Second), "job", trig, runOpts(0), long(0))
		sched := <-done
		if err != nil || res.Status != RunExecuted || sched.Status != RunExecuted || overlapped.Load() {
			t.Fatalf("manual %+v, %v; scheduled %+v; overlapped %v", res, err, sched, overlapped.Load())
		}
		if res.WorkStarted.Before(sched.Record.FinishedAt.Add(-50*time.Millisecond)) || res.Epoch <= sched.Epoch {
			t.Fatalf("manual run started %s at epoch %d; the scheduled one finished %s at epoch %d", res.WorkStarted, res.Epoch, sched.Record.FinishedAt, sched.Epoch)
		}
	})
}

// RunSchedule with TriggerPoll serves a trigger between occurrences, within a few polls.
func TestTrigger_RunScheduleServesTriggers(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		op, _ := b.client(t, "operator", nil)
		firstRun(t, a, "job")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		reports := make(chan RunResult, 10)
		o := runOpts(0)
		o.TriggerPoll = 200 * time.Millisecond
		ran := make(chan Run, 10)
		go func() {
			_ = a.RunSchedule(ctx, "job", everyN(time.Hour), o, func(ctx context.Context, r Run) error { ran <- r; return nil },
				func(res RunResult, err error) { reports <- res })
		}()
		trig := must[Trigger](t)(op.Trigger(context.Background(), "job", "alice"))
		rec := must[RunRecord](t)(op.WaitRun(ctxTimeout(t, 20*time.Second), "job", ManualRunID("job", trig.ID), 100*time.Millisecond))
		if rec.Status != RunCompleted || !rec.Manual {
			t.Fatalf("record %+v", rec)
		}
		if r := <-ran; !r.Manual || r.TriggeredBy != "alice" {
			t.Fatalf("run %+v; want manual", r)
		}
		if res := <-reports; res.Status != RunExecuted || !res.Record.Manual {
			t.Fatalf("report %+v", res)
		}
	})
}

// cosmoslease.job.paused: absent before the process read the job's document, then 1 while paused, 0 after resume;
// a stop is counted as a loss with reason stopped.
func TestTelemetry_PausedGaugeAndStoppedLoss(t *testing.T) {
	tb := newTelemetryBed(t)
	b := newServerBed(t, DefaultPartitionKeyPath)
	a, _ := b.client(t, "app@eastus", tb.options)
	op, _ := b.client(t, "operator", nil)
	tb.absent(t, "cosmoslease.job.paused", "cosmoslease.lease.key=job")
	occ := firstRun(t, a, "job")
	if v := tb.value(t, "cosmoslease.job.paused", "cosmoslease.lease.key=job"); v != 0 {
		t.Fatalf("paused = %v before the pause, want 0", v)
	}
	must[PauseResult](t)(op.Pause(context.Background(), "job", PauseOptions{By: "alice"}))
	o := occ.Add(time.Second)
	time.Sleep(time.Until(o))
	if res, err := a.RunOnce(ctxTimeout(t, 20*time.Second), "job", o, everySecondOpts(), func(context.Context, Run) error { return nil }); err != nil || res.Status != RunSkipped {
		t.Fatalf("%+v, %v", res, err)
	}
	if v := tb.value(t, "cosmoslease.job.paused", "cosmoslease.lease.key=job"); v != 1 {
		t.Fatalf("paused = %v while paused, want 1", v)
	}
	if v := tb.value(t, "cosmoslease.occurrence.runs", "cosmoslease.lease.key=job", "cosmoslease.occurrence.status=skipped"); v != 1 {
		t.Fatalf("skipped runs = %v, want 1", v)
	}
	// A manual run while paused, stopped by pause --stop: a loss with reason stopped.
	trig := must[Trigger](t)(op.Trigger(context.Background(), "job", "alice"))
	started := make(chan struct{})
	done := make(chan RunResult, 1)
	go func() {
		res, _ := a.RunTrigger(ctxTimeout(t, 30*time.Second), "job", trig, runOpts(0), func(ctx context.Context, r Run) error {
			close(started)
			<-ctx.Done()
			return context.Cause(ctx)
		})
		done <- res
	}()
	<-started
	if p, err := op.Pause(context.Background(), "job", PauseOptions{By: "alice", Stop: true}); err != nil || p.Stopped == nil || !p.Running.Manual {
		t.Fatalf("pause --stop of the manual run: %+v, %v", p, err)
	}
	if res := <-done; res.Status != RunLost || !res.Record.Manual {
		t.Fatalf("the stopped manual run: %+v", res)
	}
	if v := tb.value(t, "cosmoslease.lease.losses", "cosmoslease.lease.key=job", "cosmoslease.loss.reason=stopped"); v != 1 {
		t.Fatalf("losses (stopped) = %v, want 1", v)
	}
	must[Pause](t)(op.Resume(context.Background(), "job"))
	o = occurrenceNow().Add(time.Second)
	time.Sleep(time.Until(o))
	if res, err := a.RunOnce(ctxTimeout(t, 20*time.Second), "job", o, everySecondOpts(), func(context.Context, Run) error { return nil }); err != nil || res.Status != RunExecuted {
		t.Fatalf("after resume: %+v, %v", res, err)
	}
	if v := tb.value(t, "cosmoslease.job.paused", "cosmoslease.lease.key=job"); v != 0 {
		t.Fatalf("paused = %v after resume, want 0", v)
	}
}
