package cosmoslease

import (
	"context"
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
			_, _ = x.RunOnce(ctx, "job", p, bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				cutOff(hx)
				<-ctx.Done()
				return ctx.Err()
			})
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
