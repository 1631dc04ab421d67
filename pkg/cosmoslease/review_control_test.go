package cosmoslease

import (
	"context"
	"errors"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The review of the operator's controls (issue 26: pause, resume, pause --stop, trigger). Each test runs in a
// testing/synctest bubble (review4_test.go's newBubble, hookStore, cutOff) and says what happens on the code it
// was written against.

// A holder dies during its run. An operator's script flips the job between paused and resumed every 3 s (a
// lease lasts 10 s). Each flip is a new version of the document, and a contender dates the holder's lease from when
// it first saw the current version: the documented limit is "up to one lease duration later", but every flip
// restarts the count, so the dead holder's lease never expires in the contender's eyes and the next occurrence is
// never claimed while the flips go on.
func TestReviewControl_RepeatedOperatorWritesNeverPostponeTheTakeoverOfADeadHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, q := start.Add(20*time.Second), start.Add(40*time.Second)

		// x claims p and dies as its work starts.
		x, hx := b.client(t, "x", nil)
		sleepUntil(p)
		go func() {
			_, _ = x.RunOnce(ctx, "job", p, bubbleRunOpts(0), diesInWork(hx))
		}()
		time.Sleep(time.Second)

		// The operator's script: pause, 3 s later resume, 3 s later pause, ... for two minutes.
		op, _ := b.client(t, "operator", nil)
		opCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
		defer stop()
		flips := 0
		opDone := make(chan struct{})
		go func() {
			defer close(opDone)
			for opCtx.Err() == nil {
				if _, err := op.Pause(opCtx, "job", PauseOptions{By: "script"}); err == nil {
					flips++
				}
				sleepCtx(opCtx, 3*time.Second)
				if _, err := op.Resume(opCtx, "job"); err == nil {
					flips++
				}
				sleepCtx(opCtx, 3*time.Second)
			}
		}()

		c, _ := b.client(t, "c", nil)
		sleepUntil(q)
		o := bubbleRunOpts(0)
		o.Until = q.Add(40 * time.Second) // four lease durations after x's last write
		res, err := c.RunOnce(ctx, "job", q, o, func(context.Context, Run) error { return nil })
		stop()
		<-opDone
		if err != nil || !(res.Status == RunExecuted || res.Record.Cause == causePaused) {
			b.dump(t, "job")
			t.Fatalf("x died at %s (its lease lasts 10 s); after %d operator writes c's claim of %s by %s ended %s %q, %v; want it claimed (run, or skipped for the pause)",
				p.Sub(start), flips, q.Sub(start), o.Until.Sub(start), res.Status, res.Reason, err)
		}
		synctest.Wait()
	})
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// bubbleJob makes key a job in the bubble: one occurrence run by c, at the next 20 s tick.
func bubbleJob(t *testing.T, c *Client, key string) time.Time {
	t.Helper()
	occ := every20s(time.Now())
	sleepUntil(occ)
	res, err := c.RunOnce(context.Background(), key, occ, bubbleRunOpts(0), func(context.Context, Run) error { return nil })
	if err != nil || res.Status != RunExecuted {
		t.Fatalf("setup: first occurrence %+v, %v", res, err)
	}
	return occ
}

// trigger --cancel races a contender's claim of the trigger: the cancel's write is refused (412, the claim changed
// the document), and its second read finds no trigger. CancelTrigger took that for its own withdrawal and
// answered that it withdrew the run, while the run was claimed and ran.
func TestReviewControl_ACancelThatLosesToTheClaimNeverSaysItWithdrewTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		a, _ := b.client(t, "a", nil)
		op, hop := b.client(t, "operator", nil)
		bubbleJob(t, a, "job")
		trig, err := op.Trigger(ctx, "job", "alice")
		if err != nil {
			t.Fatal(err)
		}
		ran := 0
		// Between the cancel's read and its write, a claims the trigger and runs it.
		hop.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			res, err := a.RunTrigger(ctx, "job", trig, bubbleRunOpts(0), func(context.Context, Run) error { ran++; return nil })
			if err != nil || res.Status != RunExecuted {
				t.Errorf("setup: the manual run %+v, %v", res, err)
			}
			return do(ctx)
		})
		gone, err := op.CancelTrigger(ctx, "job")
		if ran != 1 {
			t.Fatalf("setup: the manual run ran %d times", ran)
		}
		if err == nil {
			t.Fatalf("CancelTrigger answered that it withdrew trigger %s, which a contender claimed and ran; want ErrNoTrigger saying it was claimed", gone.ID)
		}
		if !errors.Is(err, ErrNoTrigger) {
			t.Fatalf("CancelTrigger: %v; want ErrNoTrigger", err)
		}
	})
}

// Trigger's write is applied but its answer is lost (a timeout), and a contender claims the trigger and runs it
// before Trigger tries again. The retry finds no trigger and writes it again, with the same id: the manual run
// runs a second time, over the first one's record.
func TestReviewControl_ATriggerWhoseAnswerIsLostRunsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		a, _ := b.client(t, "a", nil)
		op, hop := b.client(t, "operator", nil)
		bubbleJob(t, a, "job")
		ran := 0
		work := func(context.Context, Run) error { ran++; return nil }
		hop.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			if _, err := do(ctx); err != nil {
				return store.Item{}, err
			}
			st, err := a.Inspect(ctx, "job")
			if err != nil || st.Control.Trigger == nil {
				t.Errorf("setup: no trigger after the write: %+v, %v", st.Control, err)
				return store.Item{}, &store.Error{Op: "replace", Kind: store.Unknown, Err: context.DeadlineExceeded}
			}
			if res, err := a.RunTrigger(ctx, "job", *st.Control.Trigger, bubbleRunOpts(0), work); err != nil || res.Status != RunExecuted {
				t.Errorf("setup: the manual run %+v, %v", res, err)
			}
			return store.Item{}, &store.Error{Op: "replace", Kind: store.Unknown, Err: context.DeadlineExceeded}
		})
		trig, err := op.Trigger(ctx, "job", "alice")
		if err != nil {
			t.Fatalf("Trigger: %v", err)
		}
		// Any contender watching now runs what the document asks for.
		if st, err := a.Inspect(ctx, "job"); err == nil && st.Control.Trigger != nil {
			_, _ = a.RunTrigger(ctx, "job", *st.Control.Trigger, bubbleRunOpts(0), work)
		}
		if ran != 1 {
			b.dump(t, "job")
			t.Fatalf("trigger %s: its manual run ran %d times; want once", trig.ID, ran)
		}
	})
}

// A manual run claimed long after the previous run ended keeps the document's Busy (when the lease went held
// without a break) from before the gap. Two runs back to back (o0 runs 25 s, o1 waits behind it) set Busy; then
// every region is down from 46 s to 130 s (occurrences at 60, 80, 100 and 120 s: nobody alive while the lease was
// free); a region comes back at 130 s and claims a manual run asked for during the outage, which runs 20 s; the
// occurrence at 140 s waits behind it and passes over the outage. The occurrence at 100 s came due while the lease
// was free and nobody was alive for its turn: missed. With the stale Busy the overlap rule took the lease for held
// since 20 s, and recorded it overlap.
func TestReviewControl_AManualRunAfterAnOutageDoesNotHideItAsOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
		a, _ := b.client(t, "a", nil)
		c, _ := b.client(t, "c", nil)
		op, _ := b.client(t, "operator", nil)

		// o0 at 20 s runs 25 s; o1 at 40 s waits behind it and runs 1 s: Busy is set.
		sleepUntil(at(20))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = a.RunOnce(ctx, "job", at(20), bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				time.Sleep(25 * time.Second)
				return nil
			})
		}()
		sleepUntil(at(40))
		if res, err := c.RunOnce(ctx, "job", at(40), bubbleRunOpts(0), func(context.Context, Run) error { time.Sleep(time.Second); return nil }); err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o1 %+v, %v", res, err)
		}
		<-done

		// Every region down; the operator asks for a manual run at 50 s.
		sleepUntil(at(50))
		trig, err := op.Trigger(ctx, "job", "alice")
		if err != nil {
			t.Fatal(err)
		}
		// A region is back at 130 s: it runs the manual run (20 s), and contends for the occurrence at 140 s.
		sleepUntil(at(130))
		manual := make(chan RunResult, 1)
		go func() {
			res, _ := a.RunTrigger(ctx, "job", trig, bubbleRunOpts(0), func(context.Context, Run) error { time.Sleep(20 * time.Second); return nil })
			manual <- res
		}()
		sleepUntil(at(140))
		res, err := c.RunOnce(ctx, "job", at(140), bubbleRunOpts(0), func(context.Context, Run) error { return nil })
		if m := <-manual; m.Status != RunExecuted {
			t.Fatalf("setup: the manual run %+v", m)
		}
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o6 %+v, %v", res, err)
		}
		rec, ok := b.recordOf(t, "job", at(100))
		if !ok || rec.Status != RunSkipped || !strings.Contains(rec.Reason, "missed") && !strings.HasPrefix(rec.Reason, "nobody") {
			b.dump(t, "job")
		}
		r, _ := b.recordOf(t, "job", at(100))
		if strings.Contains(r.Reason, "overlap") || strings.Contains(r.Reason, "waited behind") {
			t.Fatalf("the occurrence at 100 s, due while the lease was free and every region down, is recorded %s %q; want missed", r.Status, r.Reason)
		}
		if res.MissedCount < 3 {
			b.dump(t, "job")
			t.Fatalf("the claim at 140 s counted %d missed; want the occurrences at 60, 80 and 100 s", res.MissedCount)
		}
	})
}

// An occurrence that waits behind a manual run until its time runs out is recorded overlap, as behind any run. Its
// record named "the run of occurrence" of the cursor (the last scheduled run, long finished), not the manual run it
// waited behind.
func TestReviewControl_AnOccurrenceThatWaitedBehindAManualRunNamesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
		a, _ := b.client(t, "a", nil)
		op, _ := b.client(t, "operator", nil)
		bubbleJob(t, a, "job") // the occurrence at 20 s
		sleepUntil(at(45))
		trig, err := op.Trigger(ctx, "job", "alice")
		if err != nil {
			t.Fatal(err)
		}
		// The manual run goes from 45 s to 125 s; the occurrences at 60, 80 and 100 s wait behind it.
		manual := make(chan RunResult, 1)
		go func() {
			res, _ := a.RunTrigger(ctx, "job", trig, bubbleRunOpts(0), func(context.Context, Run) error { time.Sleep(80 * time.Second); return nil })
			manual <- res
		}()
		sleepUntil(at(120))
		res, err := a.RunOnce(ctx, "job", at(120), bubbleRunOpts(0), func(context.Context, Run) error { return nil })
		if m := <-manual; m.Status != RunExecuted || err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: manual %+v; occurrence at 120 s %+v, %v", m, res, err)
		}
		r, ok := b.recordOf(t, "job", at(80))
		if !ok || !strings.HasPrefix(r.Reason, "overlap") {
			b.dump(t, "job")
			t.Fatalf("setup: the occurrence at 80 s is recorded %s %q; want overlap", r.Status, r.Reason)
		}
		if !strings.Contains(r.Reason, "manual run") || !strings.Contains(r.Reason, "alice") {
			t.Fatalf("the occurrence at 80 s waited behind alice's manual run; its record says %q", r.Reason)
		}
	})
}

// trigger --wait on a manual run that another operator withdraws (trigger --cancel): WaitRun read the record that
// will never come until its timeout (10 minutes by default on the command line), and the command then said "it
// was claimed and runs".
func TestReviewControl_WaitRunOfAWithdrawnTriggerSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		a, _ := b.client(t, "a", nil)
		op, _ := b.client(t, "operator", nil)
		bubbleJob(t, a, "job")
		trig, err := op.Trigger(ctx, "job", "alice")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(3 * time.Second)
			_, _ = op.CancelTrigger(ctx, "job")
		}()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		start := time.Now()
		_, err = op.WaitRun(wctx, "job", ManualRunID("job", trig.ID), time.Second)
		if !errors.Is(err, ErrNoTrigger) {
			t.Fatalf("WaitRun of a withdrawn trigger returned %v after %s; want ErrNoTrigger as soon as it sees the trigger gone", err, time.Since(start))
		}
		synctest.Wait()
	})
}

// Review of the controls, left open there and fixed here: a Pause whose write was applied but whose answer was
// lost, while another operator resumed the job before the retry, must not pause the job again (the retry would undo
// the resume with no one asking). It says what is known instead: the job is not paused, and this pause may have been
// applied and ended.
func TestReviewControl_ALostPauseAnswerNeverUndoesAResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		a, _ := b.client(t, "a", nil)
		op, hop := b.client(t, "operator", nil)
		other, _ := b.client(t, "other", nil)
		bubbleJob(t, a, "job")
		hop.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			if _, err := do(ctx); err != nil {
				return store.Item{}, err
			}
			if _, err := other.Resume(ctx, "job"); err != nil {
				t.Errorf("setup: the other operator's resume: %v", err)
			}
			return store.Item{}, &store.Error{Op: "replace", Kind: store.Unknown, Err: context.DeadlineExceeded}
		})
		_, err := op.Pause(ctx, "job", PauseOptions{By: "alice", Reason: "maintenance"})
		st, ierr := a.Inspect(ctx, "job")
		if ierr != nil {
			t.Fatal(ierr)
		}
		if st.Control.Paused != nil {
			t.Fatalf("the job is paused again (%+v) after another operator resumed it: the lost pause was written twice", st.Control.Paused)
		}
		if err == nil || !errors.Is(err, ErrPauseUncertain) {
			t.Fatalf("Pause = %v; want ErrPauseUncertain (the job is not paused; this pause may have been applied and resumed)", err)
		}
	})
}
