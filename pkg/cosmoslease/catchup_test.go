package cosmoslease

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Catch-up after an outage (RunOptions.CatchUpWindow), on both beds: when every region was down, the first
// contender back runs the newest missed occurrence once, marked caught up; the earlier ones stay missed, decided by
// the same claim.

// every5s is a schedule that fires every 5 s.
func every5s(t time.Time) time.Time { return t.Truncate(5 * time.Second).Add(5 * time.Second) }

// catchUpOpts: the 5 s schedule, a claim window of 1 s, a one-minute catch-up window.
func catchUpOpts(rank int) RunOptions {
	o := runOpts(rank)
	o.Next, o.MissedAfter, o.CatchUpWindow, o.Schedule = every5s, time.Second, time.Minute, "*/5 * * * * *"
	return o
}

// afterOutage sets the job's cursor on an occurrence six occurrences ago, and returns the newest occurrence, m,
// which came due 1.5 s to 3.5 s ago (its 1 s claim window has passed; the next one is not due yet). The five
// occurrences between ran nowhere: every region was down.
func afterOutage(t *testing.T, c *Client, key string) (cursor, m time.Time) {
	t.Helper()
	now := time.Now().UTC()
	m = now.Truncate(5 * time.Second)
	if d := now.Sub(m); d < 1500*time.Millisecond || d >= 3500*time.Millisecond {
		// Wait for the next occurrence's +1.5 s, so that the test never straddles an occurrence.
		m = m.Add(5 * time.Second)
		time.Sleep(time.Until(m.Add(1500 * time.Millisecond)))
	}
	cursor = m.Add(-30 * time.Second)
	res, err := c.RunOnce(ctxTimeout(t, 20*time.Second), key, cursor, catchUpOpts(0), func(context.Context, Run) error { return nil })
	if err != nil || res.Status != RunExecuted {
		t.Fatalf("setting the cursor: %+v, %v", res, err)
	}
	return cursor, m
}

func TestCatchUp_TheFirstContenderBackRunsTheNewestMissedOccurrenceOnce(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		setup, _ := b.client(t, "setup", nil)
		cursor, m := afterOutage(t, setup, "job")
		w := newCounter()
		// Two regions come back at once, each told (as the Functions host's past-due tick does) of the newest
		// occurrence, whose time (Until) has passed as well as its claim window.
		var wg sync.WaitGroup
		results := make([]RunResult, 2)
		errs := make([]error, 2)
		for rank := range 2 {
			c, _ := b.client(t, fmt.Sprintf("region%d", rank), nil)
			o := catchUpOpts(rank)
			o.Until = m.Add(time.Second)
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[rank], errs[rank] = c.RunOnce(ctxTimeout(t, 20*time.Second), "job", m, o, w.work)
			}()
		}
		wg.Wait()
		executed := -1
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("region%d: %v", i, errs[i])
			}
			if r.Status == RunExecuted {
				if executed >= 0 {
					t.Fatalf("both regions executed %s", m)
				}
				executed = i
			} else if r.Status != RunSkipped {
				t.Fatalf("region%d: %+v", i, r)
			}
		}
		if executed < 0 {
			t.Fatalf("nobody caught up %s: %+v", m, results)
		}
		if n := w.count(m); n != 1 {
			t.Fatalf("%s ran %d times", m, n)
		}
		w.mu.Lock()
		run := w.runs[m][0]
		w.mu.Unlock()
		if !run.PastDue || !run.CaughtUp {
			t.Fatalf("the work was told %+v; want PastDue and CaughtUp", run)
		}
		res := results[executed]
		if rec := res.Record; rec.Status != RunCompleted || !rec.CaughtUp || !rec.PastDue {
			t.Fatalf("record %+v; want completed, caught up, past due", rec)
		}
		// The five occurrences between the cursor and m: missed, counted once, by the catch-up's own claim.
		if res.MissedCount != 5 || !res.Missed[0].Equal(cursor.Add(5*time.Second)) || !res.Missed[4].Equal(m.Add(-5*time.Second)) {
			t.Fatalf("missed by the catch-up's claim: %d %v; want the 5 between %s and %s", res.MissedCount, res.Missed, cursor, m)
		}
		recs := must[[]RunRecord](t)(setup.Runs(context.Background(), "job", 10))
		var missed, caught int
		for _, r := range recs {
			switch {
			case r.Status == RunMissed:
				missed += r.Occurrences()
				if r.Covers(m) {
					t.Fatalf("the caught-up occurrence is also recorded missed: %+v", r)
				}
			case r.Occurrence.Equal(m):
				caught++
				if !r.CaughtUp {
					t.Fatalf("%s's record %+v; want caught up", m, r)
				}
			}
		}
		if missed != 5 || caught != 1 {
			t.Fatalf("records: %d missed, %d of %s; want 5 and 1: %+v", missed, caught, m, recs)
		}
		h := must[History](t)(setup.History(context.Background(), "job", 10, every5s, time.Second))
		if h.MissedTotal != 5 {
			t.Fatalf("the document counts %d missed, want 5", h.MissedTotal)
		}
		// A region coming back later, told of an occurrence the cursor has passed: skipped, nothing run.
		late, _ := b.client(t, "region2", nil)
		for _, occ := range []time.Time{m, m.Add(-5 * time.Second)} {
			r, err := late.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, catchUpOpts(2), w.work)
			if err != nil || r.Status != RunSkipped {
				t.Fatalf("%s after the catch-up: %+v, %v; want skipped", occ, r, err)
			}
		}
		if n := w.count(m) + w.count(m.Add(-5*time.Second)); n != 1 {
			t.Fatalf("runs after the late region: %d, want 1", n)
		}
	})
}

// Only the newest missed occurrence is caught up, and only within the window; without a window nothing is.
func TestCatchUp_OnlyTheNewestMissedOccurrenceWithinTheWindow(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		c, _ := b.client(t, "region0", nil)
		_, m := afterOutage(t, c, "job")
		never := func(_ context.Context, r Run) error {
			t.Errorf("%s ran", r.Occurrence)
			return nil
		}
		call := func(occ time.Time, o RunOptions) RunResult {
			t.Helper()
			o.Until = occ.Add(time.Second) // passed
			r, err := c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, o, never)
			if err != nil || r.Status != RunSkipped {
				t.Fatalf("%s: %+v, %v; want skipped", occ, r, err)
			}
			return r
		}
		// An older missed occurrence: not the one to catch up.
		if r := call(m.Add(-5*time.Second), catchUpOpts(0)); !strings.Contains(r.Reason, "newer") {
			t.Fatalf("older: %s; want the reason to name the newer occurrence", r.Reason)
		}
		// The newest, older than the window.
		o := catchUpOpts(0)
		o.CatchUpWindow = time.Second
		if r := call(m, o); !strings.Contains(r.Reason, "late") {
			t.Fatalf("outside the window: %s", r.Reason)
		}
		// No window: as before, its time ran out.
		o.CatchUpWindow = 0
		if r := call(m, o); !strings.Contains(r.Reason, "late") {
			t.Fatalf("no window: %s", r.Reason)
		}
		// A claim of the next occurrence then records m missed with the others.
		next := m.Add(5 * time.Second)
		o = catchUpOpts(0)
		r, err := c.RunOnce(ctxTimeout(t, 20*time.Second), "job", next, o, func(context.Context, Run) error { return nil })
		if err != nil || r.Status != RunExecuted || r.MissedCount != 6 || r.Record.CaughtUp {
			t.Fatalf("next: %+v, %v; want executed, 6 missed, not caught up", r, err)
		}
	})
}

// The catch-up and the next occurrence: the older one runs first, and the next waits behind it, as usual.
func TestCatchUp_TheNextOccurrenceWaitsBehindTheCatchUp(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		setup, _ := b.client(t, "setup", nil)
		_, m := afterOutage(t, setup, "job")
		next := m.Add(5 * time.Second)
		var running atomic.Int32
		var overlapped atomic.Bool
		var mu sync.Mutex
		var order []time.Time
		work := func(hold time.Time) RunFunc {
			return func(ctx context.Context, r Run) error {
				if running.Add(1) > 1 {
					overlapped.Store(true)
				}
				defer running.Add(-1)
				mu.Lock()
				order = append(order, r.Occurrence)
				mu.Unlock()
				time.Sleep(time.Until(hold))
				return nil
			}
		}
		a, _ := b.client(t, "region0", nil)
		bb, _ := b.client(t, "region1", nil)
		var wg sync.WaitGroup
		var resM, resNext RunResult
		wg.Add(2)
		go func() {
			defer wg.Done()
			o := catchUpOpts(0)
			o.Until = m.Add(time.Second)
			resM, _ = a.RunOnce(ctxTimeout(t, 30*time.Second), "job", m, o, work(next.Add(500*time.Millisecond)))
		}()
		go func() {
			defer wg.Done()
			o := catchUpOpts(0)
			o.Until = next.Add(5 * time.Second)
			resNext, _ = bb.RunOnce(ctxTimeout(t, 30*time.Second), "job", next, o, work(time.Now()))
		}()
		wg.Wait()
		if resM.Status != RunExecuted || !resM.Record.CaughtUp || resNext.Status != RunExecuted || resNext.Record.CaughtUp {
			t.Fatalf("m: %+v\nnext: %+v; want both executed, m caught up", resM, resNext)
		}
		if overlapped.Load() || len(order) != 2 || !order[0].Equal(m) || !resNext.WorkStarted.After(resM.Record.FinishedAt.Add(-50*time.Millisecond)) {
			t.Fatalf("order %v, overlapped %v; next started %s, m finished %s", order, overlapped.Load(), resNext.WorkStarted, resM.Record.FinishedAt)
		}
	})
}

// RunSchedule (cron) with a catch-up window: at start it catches up the newest missed occurrence, then runs the
// schedule as usual. Without the window it starts at the next occurrence.
func TestCatchUp_RunScheduleCatchesUpAtStart(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		setup, _ := b.client(t, "setup", nil)
		_, m := afterOutage(t, setup, "job")
		c, _ := b.client(t, "region0", nil)
		w := newCounter()
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var results []RunResult
		done := make(chan error, 1)
		o := catchUpOpts(0)
		o.Next = nil // RunSchedule sets it
		go func() {
			done <- c.RunSchedule(ctx, "job", everyN(5*time.Second), o, w.work, func(r RunResult, _ error) {
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if r.Occurrence.After(m) {
					cancel()
				}
			})
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cancel()
			<-done
			t.Fatal("RunSchedule did not reach the next occurrence")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(results) != 2 || !results[0].Occurrence.Equal(m) || results[0].Status != RunExecuted || !results[0].Record.CaughtUp ||
			results[1].Status != RunExecuted || results[1].Record.CaughtUp {
			t.Fatalf("results %+v; want %s caught up, then the next occurrence run as usual", results, m)
		}
		if w.count(m) != 1 {
			t.Fatalf("%s ran %d times", m, w.count(m))
		}
	})
}

// An occurrence that waited behind a long run is overlap, not missed: never caught up, even once its claim
// window has passed (in a bubble: virtual time).
func TestCatchUp_AnOccurrenceThatWaitedBehindARunIsNotCaughtUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		o0 := start.Add(20 * time.Second)
		a, _ := b.client(t, "a", nil)
		sleepUntil(o0)
		// o0's run lasts 70 s: o0+20, o0+40 and o0+60 come due while it goes on.
		if r, err := a.RunOnce(ctx, "job", o0, bubbleRunOpts(0), func(context.Context, Run) error {
			time.Sleep(70 * time.Second)
			return nil
		}); err != nil || r.Status != RunExecuted {
			t.Fatalf("o0: %+v, %v", r, err)
		}
		// Past o0+60's claim window (40 s) and before o0+80's: o0+60 would be the one to catch up, were it missed.
		sleepUntil(o0.Add(105 * time.Second))
		m := o0.Add(60 * time.Second)
		o := bubbleRunOpts(0)
		o.CatchUpWindow, o.Until = time.Hour, m.Add(20*time.Second)
		r, err := a.RunOnce(ctx, "job", m, o, func(context.Context, Run) error {
			t.Error("an occurrence that waited behind a run was caught up")
			return nil
		})
		if err != nil || r.Status != RunSkipped {
			t.Fatalf("%+v, %v; want skipped", r, err)
		}
		// The next claim records the three as overlap (o0+80, due after the run ended, is missed: nobody called for it).
		o = bubbleRunOpts(0)
		next := o0.Add(120 * time.Second)
		sleepUntil(next)
		if r, err := a.RunOnce(ctx, "job", next, o, func(context.Context, Run) error { return nil }); err != nil || r.Status != RunExecuted ||
			r.MissedCount != 1 || !r.Missed[0].Equal(o0.Add(80*time.Second)) {
			t.Fatalf("next: %+v, %v; want executed, o0+80 missed", r, err)
		}
		recs := must[[]RunRecord](t)(a.Runs(ctx, "job", 10))
		overlap := 0
		for _, rec := range recs {
			if rec.Status == RunSkipped && rec.Cause == causeOverlap {
				overlap += rec.Occurrences()
				if !rec.Covers(m) && !rec.Last().Before(m) {
					t.Fatalf("overlap record %+v", rec)
				}
			}
		}
		if overlap != 3 {
			t.Fatalf("%d recorded overlap, want 3 (o0+20 to o0+60): %+v", overlap, recs)
		}
		synctest.Wait()
	})
}

// Two regions back at once, in a bubble, many times over: exactly one runs the caught-up occurrence, and the
// cursor never goes back.
func TestCatchUp_TwoRegionsBackAtOnceRunItOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		o0 := start.Add(20 * time.Second)
		x, _ := b.client(t, "x", nil)
		sleepUntil(o0)
		if r, err := x.RunOnce(ctx, "job", o0, bubbleRunOpts(0), func(context.Context, Run) error { return nil }); err != nil || r.Status != RunExecuted {
			t.Fatalf("o0: %+v, %v", r, err)
		}
		var mu sync.Mutex
		runs := map[int64]int{}
		work := func(_ context.Context, r Run) error {
			mu.Lock()
			runs[r.Occurrence.Unix()]++
			mu.Unlock()
			return nil
		}
		// Each round: an outage of 5 occurrences, then both regions back, each told of the newest occurrence.
		for round := range 10 {
			m := o0.Add(time.Duration(round*6+5) * 20 * time.Second)
			sleepUntil(m.Add(41 * time.Second))
			m = m.Add(40 * time.Second) // the newest whose 40 s window has passed: 2 more occurrences of outage
			sleepUntil(m.Add(41 * time.Second))
			var wg sync.WaitGroup
			for _, name := range []string{"a", "b"} {
				c, _ := b.client(t, name, nil)
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := bubbleRunOpts(0)
					o.CatchUpWindow, o.Until = time.Hour, m.Add(20*time.Second)
					if r, err := c.RunOnce(ctx, "job", m, o, work); err != nil || r.Status != RunExecuted && r.Status != RunSkipped {
						t.Errorf("%s: %+v, %v", name, r, err)
					}
				}()
			}
			wg.Wait()
			if runs[m.Unix()] != 1 || len(runs) != round+1 {
				t.Fatalf("round %d: %s ran %d times; runs %v", round, m, runs[m.Unix()], runs)
			}
		}
		synctest.Wait()
	})
}

// A job that never ran has no outage to catch up: its first contender does not run an occurrence already past.
func TestCatchUp_NotForAJobThatNeverRan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		a, _ := b.client(t, "a", nil)
		m := time.Now().Add(20 * time.Second)
		sleepUntil(m.Add(45 * time.Second)) // m's 40 s window has passed; m+20's has not
		o := bubbleRunOpts(0)
		o.CatchUpWindow, o.Until = time.Hour, m.Add(20*time.Second)
		r, err := a.RunOnce(context.Background(), "job", m, o, func(context.Context, Run) error {
			t.Error("the first occurrence ever was caught up")
			return nil
		})
		if err != nil || r.Status != RunSkipped {
			t.Fatalf("%+v, %v; want skipped", r, err)
		}
		synctest.Wait()
	})
}
