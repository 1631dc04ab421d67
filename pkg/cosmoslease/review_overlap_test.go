package cosmoslease

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Review of the overlap rule of skipOver (job.go) as commit 4ec40b4 widened it: an occurrence s passed over is
// skipped for overlap when it came due before the replaced run ended and its claim window was open when that run
// started. docs/scheduled-work.md: overlap means "its contenders' time ran out before the lease was free"; missed
// means "nobody claimed it within its claim window": every region down, Cosmos DB unreachable, or the timer did not
// fire. Each test below is an outage (nobody alive while the lease was free in the occurrence's window) that must
// be counted missed, so that it reaches the missed count and the alert.

// recordCovering returns the record of h that covers t, or nil.
func recordCovering(h History, t time.Time) *RunRecord {
	for i := range h.Runs {
		if h.Runs[i].Covers(t.UTC()) {
			return &h.Runs[i]
		}
	}
	return nil
}

// A standby (rank 1, failover delay 25 s on a 20 s schedule, as cron allows) claims o2 after o3 came due, runs it
// for a second and releases, and then every region is down until o20. o3's claim window (70 s) was open for 64 s
// after the lease was free, with nobody alive to claim it: o3 is missed. Since 4ec40b4 it is recorded skipped for
// overlap ("it waited behind the run of occurrence o2"), the missed count is one short, and so is the missed
// counter the alert watches. (Before 4ec40b4 o3 was missed: it came due before o2's run started.)
func TestReviewOverlap_AnOccurrenceNobodyWaitedForBeforeAShortLateRunIsMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		const delay = 25 * time.Second
		window := ClaimWindow(2, delay, 10*time.Second) // 70 s
		o1 := every20s(time.Now())
		occ := func(k int) time.Time { return o1.Add(time.Duration(k-1) * 20 * time.Second) }
		opts := func(rank int, t time.Time) RunOptions {
			o := bubbleRunOpts(rank)
			o.FailoverDelay, o.MissedAfter = delay, window
			o.Until = every20s(t).Add(time.Duration(rank) * delay)
			return o
		}
		quick := func(ctx context.Context, r Run) error { time.Sleep(time.Second); return nil }
		a, _ := b.client(t, "a", nil) // rank 0
		c, _ := b.client(t, "b", nil) // rank 1

		sleepUntil(occ(1))
		if res, err := a.RunOnce(ctx, "job", occ(1), opts(0, occ(1)), quick); err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o1: %s %v", res.Status, err)
		}
		// a is down from here on. b claims o2 in its turn (o2 + 25 s), after o3 came due.
		sleepUntil(occ(2))
		res, err := c.RunOnce(ctx, "job", occ(2), opts(1, occ(2)), quick)
		if err != nil || res.Status != RunExecuted || !res.WorkStarted.After(occ(3)) {
			t.Fatalf("setup: o2: %s %v, work started %s (want after o3 %s)", res.Status, err, res.WorkStarted, occ(3))
		}
		// b is down from here on too. Nobody runs anything until a comes back for o20.
		sleepUntil(occ(20))
		res, err = a.RunOnce(ctx, "job", occ(20), opts(0, occ(20)), quick)
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o20: %s %v", res.Status, err)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, window)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Runs {
			t.Logf("%s..%s %s %s %s", r.Occurrence.Format("15:04:05"), r.Last().Format("15:04:05"), r.Status, r.Cause, r.Reason)
		}
		// o3 .. o16: their claim windows closed before o20's claim, with the lease free and nobody alive; o17 ..
		// o19 are superseded (their windows were open at the claim).
		const want = 14
		rec := recordCovering(h, occ(3))
		switch {
		case rec == nil:
			t.Fatal("o3 has no record")
		case rec.Status != RunMissed:
			t.Errorf("o3 is recorded %s (%s): b's run of o2 ended at o3 + 6 s and o3's claim window stayed open until o3 + 70 s with every region down; it is missed", rec.Status, rec.Reason)
		}
		if res.MissedCount != want || h.MissedTotal != want {
			t.Errorf("missed counted %d by the claim, %d by the job state; want %d (o3 .. o16)", res.MissedCount, h.MissedTotal, want)
		}
		time.Sleep(time.Minute)
	})
}

// a claims o1 and dies in its work; its lease runs out 10 s later. Every region is down for six minutes. b comes
// back at o20 with RetryAbandoned: it runs o1 again first, then claims o20, which passes over o2 .. o19. For a
// re-run the replaced run is taken to go "from the occurrence itself" (o1) to the re-run's end (after o20), so
// every occurrence of the outage is recorded skipped for overlap ("it waited behind the run of occurrence o1,
// which was going when it came due") and none is counted missed: turning RetryAbandoned on hides the outage from
// the missed count and the alert. docs/reliability.md means only "what came due while the first run's lease ran
// out" (here nothing: o2 came due 10 s after a's lease ended) and the re-run itself.
func TestReviewOverlap_AnOutageBeforeTheReRunOfAnAbandonedRunIsMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		o1 := every20s(time.Now())
		occ := func(k int) time.Time { return o1.Add(time.Duration(k-1) * 20 * time.Second) }
		a, ha := b.client(t, "a", nil)
		sleepUntil(occ(1))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = a.RunOnce(ctx, "job", occ(1), bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				cutOff(ha) // a dies in its work: its lease (10 s) runs out
				<-ctx.Done()
				return ctx.Err()
			})
		}()
		<-done
		if now := time.Now(); !now.Before(occ(2)) {
			t.Fatalf("setup: a's lease ran out at %s, not before o2", now)
		}
		// Every region down until o20; then b, with RetryAbandoned.
		c, _ := b.client(t, "b", nil)
		sleepUntil(occ(20))
		o := bubbleRunOpts(0)
		o.RetryAbandoned = true
		res, err := c.RunOnce(ctx, "job", occ(20), o, func(ctx context.Context, r Run) error { return nil })
		if err != nil || res.Status != RunExecuted || res.Retried == nil {
			t.Fatalf("setup: o20: %s %v (retried %v)", res.Status, err, res.Retried)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, o.MissedAfter)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Runs {
			t.Logf("%s..%s %s %s %s", r.Occurrence.Format("15:04:05"), r.Last().Format("15:04:05"), r.Status, r.Cause, r.Reason)
		}
		// o2 .. o17: due after a's lease ran out, their claim windows (40 s) closed before b came back.
		for k := 2; k <= 17; k++ {
			rec := recordCovering(h, occ(k))
			if rec == nil || rec.Status != RunMissed {
				status, reason := "nothing", ""
				if rec != nil {
					status, reason = rec.Status, rec.Reason
				}
				t.Fatalf("o%d, due %s after o1 (a's lease had run out before o2), with every region down until %s after it, is recorded %s (%s); it is missed",
					k, occ(k).Sub(occ(1)), occ(20).Sub(occ(k)), status, reason)
			}
		}
		// o18's window (40 s) closes at o20, when b's claim of o20 (after the re-run) decides it: missed too.
		if res.MissedCount != 17 || h.MissedTotal != 17 {
			t.Errorf("missed counted %d by the claim, %d by the job state; want 17 (o2 .. o18)", res.MissedCount, h.MissedTotal)
		}
		time.Sleep(time.Minute)
	})
}

// The same outage behind a run that o2 came due during: a runs o1 for 25 s (until o2 + 5 s) and releases, and
// then every region is down until o20. The review asked for o2 to be missed (the lease was free for the rest of its
// turn, and nobody claimed it). Decided otherwise (docs/scheduled-work.md, "Occurrences passed over"): an occurrence
// that came due while the previous run was going is overlap, whatever happened after that run ended, because the
// document cannot tell a region that was down from a contender whose time ran out before the run ended (a
// Functions invocation's deadline caps its Until, so an hourly job's contenders give up after functionTimeout
// while a long run goes on); counting those missed would raise the outage alert, with a false reason, for a run
// that merely overran. The outage is still counted: from the first occurrence that came due after the run ended.
func TestReviewOverlap_AnOccurrenceDueDuringARunIsOverlapAndTheOutageAfterItIsMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		o1 := every20s(time.Now())
		occ := func(k int) time.Time { return o1.Add(time.Duration(k-1) * 20 * time.Second) }
		a, _ := b.client(t, "a", nil)
		sleepUntil(occ(1))
		res, err := a.RunOnce(ctx, "job", occ(1), bubbleRunOpts(0), func(ctx context.Context, r Run) error {
			time.Sleep(25 * time.Second)
			return nil
		})
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o1: %s %v", res.Status, err)
		}
		if now := time.Now(); !now.After(occ(2)) || !now.Before(occ(3)) {
			t.Fatalf("setup: o1's run ended at %s, want between o2 and o3", now)
		}
		sleepUntil(occ(20))
		o := bubbleRunOpts(0)
		res, err = a.RunOnce(ctx, "job", occ(20), o, func(ctx context.Context, r Run) error { return nil })
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o20: %s %v", res.Status, err)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, o.MissedAfter)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Runs {
			t.Logf("%s..%s %s %s %s", r.Occurrence.Format("15:04:05"), r.Last().Format("15:04:05"), r.Status, r.Cause, r.Reason)
		}
		rec := recordCovering(h, occ(2))
		switch {
		case rec == nil:
			t.Fatal("o2 has no record")
		case rec.Status != RunSkipped || rec.Cause != causeOverlap:
			t.Errorf("o2, due 5 s before o1's run ended, is recorded %s %s (%s); want skipped for overlap", rec.Status, rec.Cause, rec.Reason)
		}
		if rec := recordCovering(h, occ(3)); rec == nil || rec.Status != RunMissed {
			t.Errorf("o3, due after o1's run ended with every region down, is recorded %+v; want missed", rec)
		}
		// o3 .. o18: o18's window (40 s) closes at o20, when a claims.
		if res.MissedCount != 16 || h.MissedTotal != 16 {
			t.Errorf("missed counted %d by the claim, %d by the job state; want 16 (o3 .. o18)", res.MissedCount, h.MissedTotal)
		}
		time.Sleep(time.Minute)
	})
}

// Found while trying a stricter overlap rule (TestReview5_ChaosWithPassingFaultsAccountsForEveryOccurrenceOnce,
// seed 39, where only the overlap rule kept the occurrence from being counted missed): RunSchedule first clears
// this region's mark (comeBack), which waits while the lease document is not released — held, or left unreleased
// by a holder that crashed — for up to FinishWithin (2 × RequestTimeout: 20 s by default), and only then takes
// the first occurrence after the clock. An occurrence that comes due while it waits is never contended for by a
// process that was up before it: here b crashed holding o1, a starts 2 s before o2 with the lease free (expired)
// but unreleased, and o2 never runs although a was up from before o2 until after o3.
func TestReviewOverlap_RunScheduleContendsForAnOccurrenceDueWhileItClearsItsMark(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		o1 := every20s(time.Now())
		o2, o3 := o1.Add(20*time.Second), o1.Add(40*time.Second)
		opts := func() RunOptions {
			o := bubbleRunOpts(0)
			o.Regions = []string{"a", "b"}
			return o
		}
		x, hx := b.client(t, "b", nil)
		sleepUntil(o1)
		xDone := make(chan struct{})
		go func() {
			defer close(xDone)
			_, _ = x.RunOnce(context.Background(), "job", o1, opts(), func(ctx context.Context, r Run) error {
				cutOff(hx) // b crashes in its work: the lease is never released
				<-ctx.Done()
				return ctx.Err()
			})
		}()
		sleepUntil(o2.Add(-2 * time.Second)) // b's lease ran out at o1 + 10 s
		a, _ := b.client(t, "a", nil)
		var mu sync.Mutex
		ran := map[time.Time]bool{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = a.RunSchedule(ctx, "job", everyN(20*time.Second), opts(), func(ctx context.Context, r Run) error {
				mu.Lock()
				ran[r.Occurrence.UTC()] = true
				mu.Unlock()
				return nil
			}, func(r RunResult, err error) {
				t.Logf("a: %s %s %q %v", r.Occurrence.Format("15:04:05"), r.Status, r.Reason, err)
			})
		}()
		sleepUntil(o3.Add(30 * time.Second))
		cancel()
		<-done
		<-xDone
		mu.Lock()
		defer mu.Unlock()
		if !ran[o3.UTC()] {
			t.Fatalf("setup: a did not run o3 (ran %v)", ran)
		}
		if !ran[o2.UTC()] {
			t.Errorf("a, up from 2 s before o2, never ran o2 (the lease was free: b's had run out at o1 + 10 s); it ran %v", ran)
		}
		time.Sleep(time.Minute)
	})
}

// A very long claim window (a 2 min failover delay on a 20 s schedule, as cron allows: window 4 min 20 s). a runs
// o1 and is down from then on; b, rank 1, claims o2 in its turn (o2 + 2 min = o8), runs it for 25 s and releases,
// and is down from then on too, until a comes back at o40. o3 .. o7 came due while the lease was free and nobody
// but b (waiting out its delay for o2) was up; b's own turns for them (s + 2 min, after o2's run) came after it
// stopped. Nobody claimed them within their windows: missed. Since 4ec40b4 they are overlap whenever b's run
// outlasted the occurrence after them (o8 + 25 s, after every o(k+1) up to o9): the longer the delay, the longer
// the outage the rule hides. Requiring the run to outlast the occurrence's turn does not help here; the document
// must know that the lease was free before o2's claim (its busy). (o8 and o9, which came due during o2's short
// run, are overlap by the rule before 4ec40b4 too; this test leaves them out.)
func TestReviewOverlap_ALongFailoverDelayDoesNotHideAnOutageAsOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		const delay = 2 * time.Minute
		window := ClaimWindow(2, delay, 10*time.Second)
		o1 := every20s(time.Now())
		occ := func(k int) time.Time { return o1.Add(time.Duration(k-1) * 20 * time.Second) }
		opts := func(rank int, t time.Time) RunOptions {
			o := bubbleRunOpts(rank)
			o.FailoverDelay, o.MissedAfter = delay, window
			o.Until = every20s(t).Add(time.Duration(rank) * delay)
			return o
		}
		a, _ := b.client(t, "a", nil)
		c, _ := b.client(t, "b", nil)
		sleepUntil(occ(1))
		if res, err := a.RunOnce(ctx, "job", occ(1), opts(0, occ(1)), func(ctx context.Context, r Run) error { return nil }); err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o1: %s %v", res.Status, err)
		}
		sleepUntil(occ(2))
		res, err := c.RunOnce(ctx, "job", occ(2), opts(1, occ(2)), func(ctx context.Context, r Run) error { time.Sleep(25 * time.Second); return nil })
		if err != nil || res.Status != RunExecuted || res.WorkStarted.Before(occ(8)) {
			t.Fatalf("setup: o2: %s %v, started %s (want at o8 %s)", res.Status, err, res.WorkStarted, occ(8))
		}
		sleepUntil(occ(40))
		res, err = a.RunOnce(ctx, "job", occ(40), opts(0, occ(40)), func(ctx context.Context, r Run) error { return nil })
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("setup: o40: %s %v", res.Status, err)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, window)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Runs {
			t.Logf("%s..%s %s %s %s", r.Occurrence.Format("15:04:05"), r.Last().Format("15:04:05"), r.Status, r.Cause, r.Reason)
		}
		for k := 3; k <= 7; k++ {
			if rec := recordCovering(h, occ(k)); rec == nil || rec.Status != RunMissed {
				status, reason := "nothing", ""
				if rec != nil {
					status, reason = rec.Status, rec.Reason
				}
				t.Errorf("o%d, due while the lease was free and never claimed in its window (every region down but b, waiting out its delay for o2), is recorded %s (%s); it is missed",
					k, status, reason)
			}
		}
		time.Sleep(time.Minute)
	})
}
