package cosmoslease

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// Review 26: the overlap rule's passOver, the overlap policy skip and catch-up after an outage, against the
// guarantees of docs/reliability.md ("The overlap policy changes only when a contender gives up, never a
// decision's write: with skip it returns skipped as soon as it sees that its occurrence came due during the
// cursor's run (the classification the claim of a later occurrence makes, overlap)").

// o0 runs long (o0 .. o2 + 5 s). a (rank 0, policy wait) gives o1 up at o2; b (rank 1, wait: settings are per
// region) claims o1 at o2 + 5 s, within a poll of o0's release, and runs it for 8 s. o2's contenders (policy skip)
// see the cursor at o0 while o0 runs: o2 came due during the cursor's run, so they skip it at once. But the claim
// that decides o2 is not one that replaces o0's document: o1 is claimed first, and the claim of o6 (every region
// is down after o1's release until then) judges o2 against o1's run, which ended at o2 + 13 s, well inside o2's
// turn: o2 is recorded missed ("every region was down") and counted, though two live regions skipped it on purpose
// and were told the claim of a later occurrence would record it overlap. The same happens with every region on
// skip when o1 is claimed late by a standby whose delay exceeds the period (o1 came due before o0's late start, so
// o1 is no overlap and nobody skips it); and, through the busy clause, when the skip is judged from the holder's
// last renewal + lease while the run goes on, and the run then ends sooner.
func TestReview26_AnOccurrenceSkippedForOverlapIsRecordedOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		o0 := every20s(time.Now())
		occ := func(k int) time.Time { return o0.Add(time.Duration(k) * 20 * time.Second) }
		opts := func(rank int, at time.Time, policy string) RunOptions {
			o := bubbleRunOpts(rank)
			o.Until = every20s(at).Add(time.Duration(rank) * o.FailoverDelay)
			o.Overlap = policy
			o.Regions = []string{"a", "b"}
			return o
		}
		hold := func(d time.Duration) RunFunc {
			return func(ctx context.Context, r Run) error { time.Sleep(d); return nil }
		}
		ran := map[int64]int{}
		count := func(r RunResult) {
			if r.Status == RunExecuted {
				ran[r.Occurrence.Unix()]++
			}
		}
		a, _ := b.client(t, "a", nil)
		c, _ := b.client(t, "b", nil)
		sleepUntil(occ(0))
		type call struct {
			cl     *Client
			rank   int
			k      int
			policy string
			work   RunFunc
		}
		calls := []call{
			{a, 0, 0, OverlapWait, hold(45 * time.Second)},
			{a, 0, 1, OverlapWait, hold(8 * time.Second)},
			{c, 1, 1, OverlapWait, hold(8 * time.Second)},
			{a, 0, 2, OverlapSkip, hold(time.Second)},
			{c, 1, 2, OverlapSkip, hold(time.Second)},
		}
		results := make([]RunResult, len(calls))
		done := make(chan int)
		for i, cl := range calls {
			go func() {
				sleepUntil(occ(cl.k))
				r, err := cl.cl.RunOnce(ctx, "job", occ(cl.k), opts(cl.rank, occ(cl.k), cl.policy), cl.work)
				if err != nil {
					t.Errorf("o%d (rank %d): %v", cl.k, cl.rank, err)
				}
				results[i] = r
				done <- i
			}()
		}
		for range calls {
			<-done
		}
		for i, r := range results {
			count(r)
			t.Logf("o%d rank %d: %s (%s) work started %v", calls[i].k, calls[i].rank, r.Status, r.Reason, r.WorkStarted)
		}
		if ran[occ(0).Unix()] != 1 || ran[occ(1).Unix()] != 1 {
			t.Fatalf("setup: o0 and o1 ran %d and %d times, want once each", ran[occ(0).Unix()], ran[occ(1).Unix()])
		}
		skippedForOverlap := ran[occ(2).Unix()] == 0
		// Every region is down until o6.
		sleepUntil(occ(6))
		res, err := a.RunOnce(ctx, "job", occ(6), opts(0, occ(6), OverlapSkip), hold(time.Second))
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("o6: %s %v", res.Status, err)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, 40*time.Second)
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
		case skippedForOverlap && (rec.Status != RunSkipped || rec.Cause != causeOverlap):
			t.Errorf("o2's contenders skipped it for overlap (policy skip), but it is recorded %s, cause %s (%s)", rec.Status, rec.Cause, rec.Reason)
		case !skippedForOverlap && ran[occ(2).Unix()] != 1:
			t.Errorf("o2 ran %d times", ran[occ(2).Unix()])
		}
		for _, m := range res.Missed {
			if m.Equal(occ(2)) {
				t.Errorf("o2, skipped on purpose by two live regions, is counted missed")
			}
		}
		time.Sleep(time.Minute)
	})
}

// a claims o1 and dies in its work; its lease runs out 10 s later, and every region is down until b comes back at
// o6 + 41 s (o6's claim window of 40 s has passed, o7's is open), with RetryAbandoned and a catch-up window, told
// of o6 as the handler's past-due tick is (its Until has passed). docs/scheduled-work.md: the first contender back
// runs the newest missed occurrence once, marked caught up; RetryAbandoned runs the abandoned o1 again first. The
// catch-up call's claim re-runs o1 (the cursor stays), and names o6 as the occurrence whose contender claimed the
// re-run (first.For): o6 is then judged to have waited behind the re-run "from its time on", so it is no longer
// missed, the catch-up gives it up, and the claim of a later occurrence records it skipped for overlap, as it does
// o7, which came due while every region was down. Nothing runs o6, and o7's miss is hidden.
func TestReview26_ACatchUpAfterAnAbandonedRunRunsTheNewestMissedOccurrence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		o1 := every20s(time.Now())
		occ := func(k int) time.Time { return o1.Add(time.Duration(k-1) * 20 * time.Second) }
		a, ha := b.client(t, "a", nil)
		sleepUntil(occ(1))
		if _, err := a.RunOnce(ctx, "job", occ(1), bubbleRunOpts(0), func(ctx context.Context, r Run) error {
			cutOff(ha) // a dies in its work: its lease (10 s) runs out
			<-ctx.Done()
			return ctx.Err()
		}); err == nil {
			t.Log("a's run of o1 returned no error")
		}
		c, _ := b.client(t, "b", nil)
		sleepUntil(occ(6).Add(41 * time.Second))
		ran := map[int64]int{}
		var caughtUp []time.Time
		work := func(ctx context.Context, r Run) error {
			ran[r.Occurrence.Unix()]++
			if r.CaughtUp {
				caughtUp = append(caughtUp, r.Occurrence)
			}
			time.Sleep(time.Second)
			return nil
		}
		o := bubbleRunOpts(0)
		o.RetryAbandoned, o.CatchUpWindow, o.PastDue = true, 5*time.Minute, true
		o.Until = occ(7)
		res, err := c.RunOnce(ctx, "job", occ(6), o, work)
		t.Logf("o6: %s (%s), retried %v", res.Status, res.Reason, res.Retried != nil)
		if err != nil {
			t.Fatalf("o6: %v", err)
		}
		// Every region is down again until o10.
		sleepUntil(occ(10))
		o = bubbleRunOpts(0)
		if r, err := c.RunOnce(ctx, "job", occ(10), o, work); err != nil || r.Status != RunExecuted {
			t.Fatalf("o10: %s %v", r.Status, err)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, o.MissedAfter)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Runs {
			t.Logf("%s..%s %s %s %s", r.Occurrence.Format("15:04:05"), r.Last().Format("15:04:05"), r.Status, r.Cause, r.Reason)
		}
		if ran[occ(1).Unix()] != 1 {
			t.Errorf("o1 was re-run %d times, want once (RetryAbandoned)", ran[occ(1).Unix()])
		}
		if ran[occ(6).Unix()] != 1 || len(caughtUp) != 1 {
			t.Errorf("o6, the newest occurrence every region missed, ran %d times (caught up: %v); want once, caught up", ran[occ(6).Unix()], caughtUp)
		}
		// o7 came due while every region was down (b came back after it), and its claim window closed with the lease
		// free: missed.
		if rec := recordCovering(h, occ(7)); rec == nil || rec.Status != RunMissed {
			t.Errorf("o7, due while every region was down, is recorded %+v; want missed", rec)
		}
		time.Sleep(time.Minute)
	})
}

// As the first test, o0 runs until o2 + 5 s and b claims o1 then (the lease busy since o0's start); o2's
// contenders (policy skip) skip o2 once o1's run has gone past o3 − 3 s (the busy clause). But b dies in o1's work
// at o2 + 50 s; its lease runs out by o5, and a, with RetryAbandoned, re-runs o1 at o5 and then claims o5. That
// claim judges o2 against the re-run (from o5, the occurrence whose contender claimed it) and the first run's
// span (o2 + 5 s ..), which holds only what came due in it: o2, due before either and with its claim window closed
// when the re-run started, is recorded missed, though two live regions skipped it for overlap.
func TestReview26_AnOccurrenceSkippedForOverlapStaysOverlapAfterAReRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		o0 := every20s(time.Now())
		occ := func(k int) time.Time { return o0.Add(time.Duration(k) * 20 * time.Second) }
		opts := func(rank int, at time.Time, policy string) RunOptions {
			o := bubbleRunOpts(rank)
			o.Until = every20s(at).Add(time.Duration(rank) * o.FailoverDelay)
			o.Overlap, o.Regions = policy, []string{"a", "b"}
			return o
		}
		a, _ := b.client(t, "a", nil)
		c, hc := b.client(t, "b", nil)
		sleepUntil(occ(0))
		hold := func(d time.Duration) RunFunc {
			return func(ctx context.Context, r Run) error { time.Sleep(d); return nil }
		}
		dies := func(ctx context.Context, r Run) error {
			time.Sleep(45 * time.Second)
			cutOff(hc)
			<-ctx.Done()
			return ctx.Err()
		}
		type call struct {
			cl     *Client
			rank   int
			k      int
			policy string
			work   RunFunc
		}
		calls := []call{
			{a, 0, 0, OverlapWait, hold(45 * time.Second)},
			{a, 0, 1, OverlapWait, hold(time.Second)},
			{c, 1, 1, OverlapWait, dies},
			{a, 0, 2, OverlapSkip, hold(time.Second)},
			{c, 1, 2, OverlapSkip, hold(time.Second)},
		}
		results := make([]RunResult, len(calls))
		done := make(chan int)
		for i, cl := range calls {
			go func() {
				sleepUntil(occ(cl.k))
				results[i], _ = cl.cl.RunOnce(ctx, "job", occ(cl.k), opts(cl.rank, occ(cl.k), cl.policy), cl.work)
				done <- i
			}()
		}
		for range calls {
			<-done
		}
		skipped := true
		for i, r := range results {
			t.Logf("o%d rank %d: %s (%s) work started %v", calls[i].k, calls[i].rank, r.Status, r.Reason, r.WorkStarted)
			if calls[i].k == 2 && r.Status != RunSkipped {
				skipped = false
			}
		}
		sleepUntil(occ(5))
		o := opts(0, occ(5), OverlapWait)
		o.RetryAbandoned = true
		res, err := a.RunOnce(ctx, "job", occ(5), o, hold(time.Second))
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("o5: %s %v: %s (retried %+v)", res.Status, err, res.Reason, res.Retried)
		}
		reader, _ := b.client(t, "reader", nil)
		h, err := reader.History(ctx, "job", 50, every20s, 40*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Runs {
			t.Logf("%s..%s %s %s %s", r.Occurrence.Format("15:04:05"), r.Last().Format("15:04:05"), r.Status, r.Cause, r.Reason)
		}
		if rec := recordCovering(h, occ(2)); skipped && (rec == nil || rec.Status != RunSkipped || rec.Cause != causeOverlap) {
			t.Errorf("o2's contenders skipped it for overlap, but it is recorded %+v", rec)
		}
		time.Sleep(time.Minute)
	})
}
