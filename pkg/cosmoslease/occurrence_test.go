package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The occurrence election (RunOnce), on both beds: the in-memory store and the real server.

// runOpts are short timings for tests: ranks 1 s apart, a read every 100 ms.
func runOpts(rank int) RunOptions {
	return RunOptions{Rank: rank, FailoverDelay: time.Second, PollInterval: 100 * time.Millisecond, Grace: time.Second}
}

// occurrenceNow is an occurrence that fires now, on a whole second.
func occurrenceNow() time.Time { return time.Now().UTC().Truncate(time.Second) }

// counter is work that counts its runs per occurrence.
type counter struct {
	mu   sync.Mutex
	runs map[time.Time][]Run
}

func newCounter() *counter { return &counter{runs: map[time.Time][]Run{}} }

func (w *counter) work(ctx context.Context, r Run) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs[r.Occurrence] = append(w.runs[r.Occurrence], r)
	return nil
}

func (w *counter) count(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.runs[t.UTC()])
}

func TestRunOnce_PreferredRankRunsAndTheOthersSkipEarly(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		w := newCounter()
		occ := occurrenceNow()
		type out struct {
			res  RunResult
			err  error
			took time.Duration
		}
		outs := make([]out, 3)
		var wg sync.WaitGroup
		for rank := range 3 {
			c, _ := b.client(t, fmt.Sprintf("region%d", rank), nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				res, err := c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, runOpts(rank), w.work)
				outs[rank] = out{res, err, time.Since(start)}
			}()
		}
		wg.Wait()
		if outs[0].err != nil || outs[0].res.Status != RunExecuted || outs[0].res.Epoch != 1 {
			t.Fatalf("rank 0: %+v, %v; want executed at epoch 1", outs[0].res, outs[0].err)
		}
		for rank := 1; rank < 3; rank++ {
			o := outs[rank]
			if o.err != nil || o.res.Status != RunSkipped || !strings.Contains(o.res.Reason, "region0") {
				t.Fatalf("rank %d: %+v, %v; want skipped naming region0", rank, o.res, o.err)
			}
			// It saw the claim well before its own time (rank × 1 s).
			if o.took >= time.Duration(rank)*time.Second {
				t.Errorf("rank %d waited %s, its whole delay: it should return as soon as it sees the claim", rank, o.took)
			}
		}
		if n := w.count(occ); n != 1 {
			t.Fatalf("occurrence ran %d times", n)
		}
		rec := outs[0].res.Record
		if rec.Status != RunCompleted || rec.Owner != "region0" || rec.Epoch != 1 || rec.ClaimID == "" || rec.FinishedAt.IsZero() {
			t.Fatalf("record %+v", rec)
		}
		// The lease is free between occurrences: released, not held until the next tick.
		c, _ := b.client(t, "reader", nil)
		if s := must[State](t)(c.Inspect(context.Background(), "job")); s.Status() != "released" || s.Metadata[metaOccurrence] == "" {
			t.Fatalf("lease after the run: %s %+v; want released, naming the occurrence", s.Status(), s)
		}
	})
}

func TestRunOnce_NextRankRunsTheSameOccurrenceWhenThePreferredIsGone(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		w := newCounter()
		occ := occurrenceNow()
		var wg sync.WaitGroup
		results := make([]RunResult, 3)
		for rank := 1; rank < 3; rank++ { // rank 0 is down
			c, _ := b.client(t, fmt.Sprintf("region%d", rank), nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[rank], _ = c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, runOpts(rank), w.work)
			}()
		}
		wg.Wait()
		if results[1].Status != RunExecuted || results[2].Status != RunSkipped {
			t.Fatalf("rank 1: %+v; rank 2: %+v; want rank 1 to execute", results[1], results[2])
		}
		if d := results[1].FailoverDelay; d < time.Second || d > 3*time.Second {
			t.Errorf("rank 1 started %s after the occurrence, want its delay (1 s) and a little", d)
		}
		if w.count(occ) != 1 {
			t.Fatalf("ran %d times", w.count(occ))
		}
	})
}

// Many contenders of one rank at once: the lease and the record's create let exactly one run it.
func TestRunOnce_ExactlyOnceAmongEqualRanks(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		w := newCounter()
		for round := range 3 {
			occ := occurrenceNow().Add(time.Duration(round-3) * time.Minute) // in order: occurrences are decided in order
			var wg sync.WaitGroup
			var executed atomic.Int32
			for i := range 8 {
				c, _ := b.client(t, fmt.Sprintf("c%d", i), nil)
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, runOpts(0), w.work)
					if err != nil {
						t.Errorf("contender %d: %v", i, err)
					}
					if res.Status == RunExecuted {
						executed.Add(1)
					}
				}()
			}
			wg.Wait()
			if executed.Load() != 1 || w.count(occ) != 1 {
				t.Fatalf("round %d: %d executed, work ran %d times", round, executed.Load(), w.count(occ))
			}
		}
	})
}

// An ambiguous create of the run record — applied, then answered by the SDK's retry with 409, or not at all —
// is recognised by its claim id as ours, and the occurrence runs.
func TestRunOnce_AmbiguousClaimIsRecognisedAsOurs(t *testing.T) {
	for _, fault := range []string{faultRetried, faultLostReply} {
		t.Run(fault, func(t *testing.T) {
			beds(t, func(t *testing.T, b bed) {
				w := newCounter()
				c, f := b.client(t, "region0", nil)
				// The lease document exists already, so the only create is the run record's.
				must[RunResult](t)(c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occurrenceNow().Add(-time.Minute), runOpts(0), w.work))
				occ := occurrenceNow()
				f.inject("create", fault, 1)
				res, err := c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, runOpts(0), w.work)
				if err != nil || res.Status != RunExecuted || w.count(occ) != 1 {
					t.Fatalf("%+v, %v, ran %d times; want our own claim recognised and the work run once", res, err, w.count(occ))
				}
				if res.Record.Status != RunCompleted {
					t.Fatalf("record %+v", res.Record)
				}
			})
		})
	}
}

// A duplicate tick (an admin's manual run, a scale-out, an instance overlapping a recycle) of the same owner
// while the occurrence runs: it skips, and the running work keeps its lease and completes.
func TestRunOnce_DuplicateTickNeverDisturbsTheRunningOccurrence(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		occ := occurrenceNow()
		first, _ := b.client(t, "app@eastus", nil)
		dup, _ := b.client(t, "app@eastus", nil)
		started, finish := make(chan struct{}), make(chan struct{})
		var workErr error
		done := make(chan RunResult, 1)
		go func() {
			res, _ := first.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ, runOpts(0), func(ctx context.Context, r Run) error {
				close(started)
				select {
				case <-finish:
				case <-ctx.Done():
					workErr = context.Cause(ctx)
				}
				return ctx.Err()
			})
			done <- res
		}()
		<-started
		for range 2 { // while it runs, and again after a renewal
			res, err := dup.RunOnce(ctxTimeout(t, 10*time.Second), "job", occ, runOpts(0), func(context.Context, Run) error {
				t.Error("the duplicate tick ran the work")
				return nil
			})
			if err != nil || res.Status != RunSkipped {
				t.Fatalf("duplicate: %+v, %v; want skipped", res, err)
			}
			time.Sleep(1500 * time.Millisecond)
		}
		close(finish)
		res := <-done
		if res.Status != RunExecuted || workErr != nil {
			t.Fatalf("the running occurrence ended %+v (work context: %v); want executed, undisturbed", res, workErr)
		}
	})
}

// Occurrence t+1 never runs beside t's work: its contender waits for the lease while t runs, runs t+1 when it
// is released, and, if t still runs when t+1's time runs out (Until), records t+1 as skipped for overlap.
func TestRunOnce_NoOverlap(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		other, _ := b.client(t, "region1", nil)
		occ := occurrenceNow()
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
		// t runs 2 s; t+1's contender waits and runs it after.
		doneT := make(chan RunResult, 1)
		go func() {
			res, _ := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ, runOpts(0), long(2*time.Second))
			doneT <- res
		}()
		time.Sleep(300 * time.Millisecond)
		o := runOpts(0)
		o.Until = time.Now().Add(10 * time.Second)
		res1, err := other.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ.Add(time.Second), o, long(0))
		resT := <-doneT
		if err != nil || res1.Status != RunExecuted || resT.Status != RunExecuted || overlapped.Load() {
			t.Fatalf("t: %+v; t+1: %+v, %v; overlapped %v", resT, res1, err, overlapped.Load())
		}
		if !res1.WorkStarted.After(resT.Record.FinishedAt.Add(-50 * time.Millisecond)) {
			t.Fatalf("t+1 started at %s, before t finished at %s", res1.WorkStarted, resT.Record.FinishedAt)
		}

		// t+2 runs 4 s; t+3's time runs out after 1 s: skipped for overlap, and recorded so by the claim of t+4.
		occ2 := occ.Add(2 * time.Second)
		go func() {
			res, _ := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ2, runOpts(0), long(4*time.Second))
			doneT <- res
		}()
		time.Sleep(300 * time.Millisecond)
		o.Until = time.Now().Add(time.Second)
		res3, err := other.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ2.Add(time.Second), o, func(context.Context, Run) error {
			t.Error("t+3 ran beside t+2")
			return nil
		})
		if err != nil || res3.Status != RunSkipped || !strings.Contains(res3.Reason, "overlap") || !strings.Contains(res3.Reason, occ2.Format(time.RFC3339)) {
			t.Fatalf("t+3: %+v, %v; want skipped for overlap with t+2", res3, err)
		}
		if r := <-doneT; r.Status != RunExecuted {
			t.Fatalf("t+2: %+v", r)
		}
		o4 := runOpts(0)
		o4.Next = func(x time.Time) time.Time { return x.Truncate(time.Second).Add(time.Second) }
		if res4, err := other.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ2.Add(2*time.Second), o4, long(0)); err != nil || res4.Status != RunExecuted {
			t.Fatalf("t+4: %+v, %v", res4, err)
		}
		recs := must[[]RunRecord](t)(other.Runs(context.Background(), "job", 10))
		var rec3 *RunRecord
		for i := range recs {
			if recs[i].Covers(occ2.Add(time.Second)) {
				rec3 = &recs[i]
			}
		}
		if rec3 == nil || rec3.Status != RunSkipped || rec3.Cause != "overlap" || !strings.Contains(rec3.Reason, occ2.Format(time.RFC3339)) {
			t.Fatalf("t+3's record: %+v; want skipped for overlap with t+2", rec3)
		}
		if overlapped.Load() {
			t.Fatal("two occurrences' work overlapped")
		}
	})
}

// A claimer that dies mid-work leaves its record started; the next holder marks it abandoned, and with
// RetryAbandoned runs it once more, at its higher epoch, before its own occurrence.
func TestRunOnce_AbandonedOccurrence(t *testing.T) {
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			beds(t, func(t *testing.T, b bed) {
				w := newCounter()
				dying, f := b.client(t, "region0", nil)
				occ := occurrenceNow()
				// The claimer "dies" once its work has started: from then on none of its writes get through (its
				// renewals, the record's end, the release), as for a process killed mid-work.
				res, err := dying.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, runOpts(0), func(ctx context.Context, r Run) error {
					f.inject("replace", faultUnavailable, 1000)
					f.inject("create", faultUnavailable, 1000)
					<-ctx.Done() // the lease runs out
					return ctx.Err()
				})
				if err == nil || res.Status != RunLost {
					t.Fatalf("dying claimer: %+v, %v; want lost", res, err)
				}
				next, _ := b.client(t, "region1", nil)
				o := runOpts(0)
				o.RetryAbandoned = retry
				occ2 := occ.Add(time.Second)
				res2, err := next.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ2, o, w.work)
				// With RetryAbandoned the re-run of occ is a holding of its own (epoch 2), before occ2's (epoch 3).
				wantEpoch := int64(2)
				if retry {
					wantEpoch = 3
				}
				if err != nil || res2.Status != RunExecuted || res2.Epoch != wantEpoch {
					t.Fatalf("next occurrence: %+v, %v; want executed at epoch %d", res2, err, wantEpoch)
				}
				if res2.Abandoned == nil || res2.Abandoned.Status != RunAbandoned || !res2.Abandoned.Occurrence.Equal(occ) || res2.Abandoned.Epoch != 1 {
					t.Fatalf("abandoned: %+v; want occurrence %s marked abandoned", res2.Abandoned, occ)
				}
				recs := must[[]RunRecord](t)(next.Runs(context.Background(), "job", 10))
				byOcc := map[time.Time]RunRecord{}
				for _, r := range recs {
					byOcc[r.Occurrence.UTC()] = r
				}
				first := byOcc[occ]
				if !retry {
					if res2.Retried != nil || w.count(occ) != 0 || first.Status != RunAbandoned || !strings.Contains(first.Reason, "stopped") {
						t.Fatalf("without retry: retried %+v, ran %d, record %+v", res2.Retried, w.count(occ), first)
					}
					return
				}
				if res2.Retried == nil || res2.Retried.Status != RunExecuted || w.count(occ) != 1 || !w.runs[occ][0].Retry || w.runs[occ][0].Epoch != 2 {
					t.Fatalf("with retry: retried %+v, runs %+v", res2.Retried, w.runs[occ])
				}
				if first.Status != RunCompleted || !first.Retried || first.Epoch != 2 {
					t.Fatalf("re-run record %+v", first)
				}
				if ran := w.runs[occ][0]; !w.runs[occ2][0].Retry && ran.Occurrence.After(w.runs[occ2][0].Occurrence) {
					t.Fatal("the re-run came after the current occurrence")
				}
			})
		})
	}
}

// An occurrence older than the run-record retention is skipped without a request: its record may have
// expired, so claiming it could run it twice.
func TestRunOnce_OlderThanRetentionIsSkipped(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		c, f := b.client(t, "region0", nil)
		o := runOpts(0)
		o.Retention = 24 * time.Hour
		res, err := c.RunOnce(context.Background(), "job", occurrenceNow().Add(-25*time.Hour), o, func(context.Context, Run) error {
			t.Error("ran")
			return nil
		})
		if err != nil || res.Status != RunSkipped || !strings.Contains(res.Reason, "retention") {
			t.Fatalf("%+v, %v", res, err)
		}
		if n := f.count("read") + f.count("create") + f.count("replace"); n != 0 {
			t.Fatalf("%d requests", n)
		}
		o.Retention = time.Hour
		if _, err := c.RunOnce(context.Background(), "job", occurrenceNow(), o, func(context.Context, Run) error { return nil }); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a retention of an hour: %v, want ErrInvalid", err)
		}
	})
}

// Work that ignores its context is left running past its grace: RunOnce returns, the lease stays held so no
// other occurrence starts beside it anywhere, this client starts no other work for the key, and once the work
// returns the lease is released.
func TestRunOnce_WorkIgnoringItsDeadline(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		c, _ := b.client(t, "region0", nil)
		other, _ := b.client(t, "region1", nil)
		release := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		o := runOpts(0)
		o.Grace = 200 * time.Millisecond
		res, err := c.RunOnce(ctx, "job", occurrenceNow(), o, func(context.Context, Run) error {
			<-release
			return nil
		})
		if err == nil || res.Status != RunTimedOut || !res.StillRunning || res.Record.Status != RunTimedOut {
			t.Fatalf("%+v, %v; want timed out, still running", res, err)
		}
		if _, err := c.RunOnce(context.Background(), "job", occurrenceNow().Add(time.Minute), o, func(context.Context, Run) error { return nil }); !errors.Is(err, ErrStillRunning) {
			t.Fatalf("second occurrence in the same client: %v, want ErrStillRunning", err)
		}
		time.Sleep(2500 * time.Millisecond) // past a renewal: the lease is kept, not just left to expire
		heldErr(t, func() error { _, err := other.TryAcquire(context.Background(), "job"); return err }())
		close(release)
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := must[State](t)(other.Inspect(context.Background(), "job"))
			if s.Status() == "released" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lease not released after the work returned: %+v", s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func TestRunOnce_RejectsTakeOverSameOwner(t *testing.T) {
	c, _ := newMemBed().client(t, "x", func(o *Options) { o.TakeOverSameOwner = true })
	if _, err := c.RunOnce(context.Background(), "job", occurrenceNow(), runOpts(0), func(context.Context, Run) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%v", err)
	}
}

func TestMissedOccurrences(t *testing.T) {
	base := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	every := func(d time.Duration) func(time.Time) time.Time {
		return func(t time.Time) time.Time { return t.Truncate(d).Add(d) }
	}
	rec := func(min int) RunRecord { return RunRecord{Occurrence: base.Add(time.Duration(min) * time.Minute)} }
	// Records at 10:00, 10:01, 10:04 (newest first, as Runs returns them); now 10:07:30, grace 1 min.
	recs := []RunRecord{rec(4), rec(1), rec(0)}
	m := MissedOccurrences(recs, every(time.Minute), base.Add(7*time.Minute+30*time.Second), time.Minute, 10)
	want := []time.Time{base.Add(6 * time.Minute), base.Add(5 * time.Minute), base.Add(3 * time.Minute), base.Add(2 * time.Minute)}
	if m.Count != 4 || fmt.Sprint(m.Times) != fmt.Sprint(want) || !m.From.Equal(base) || m.Capped {
		t.Fatalf("%+v, want %v", m, want)
	}
	if m := MissedOccurrences(recs, every(time.Minute), base.Add(7*time.Minute+30*time.Second), time.Minute, 2); m.Count != 4 || len(m.Times) != 2 || !m.Times[0].Equal(want[0]) {
		t.Fatalf("limit 2: %+v", m)
	}
	if m := MissedOccurrences(nil, every(time.Minute), base, time.Minute, 10); m.Count != 0 {
		t.Fatalf("no records: %+v", m)
	}
	// A per-second schedule silent for years: counted up to the scan limit, and said to be capped.
	if m := MissedOccurrences([]RunRecord{rec(0)}, every(time.Second), base.Add(1000*time.Hour), 0, 3); !m.Capped || m.Count < 99_000 || len(m.Times) != 3 {
		t.Fatalf("capped: %+v", m)
	}
}

// With the schedule (RunOptions.Next), the contender that runs an occurrence counts the earlier ones that ran in
// no region, once: none when the lease names the previous occurrence (and then no request is made for it), the
// gap when occurrences went unclaimed; an occurrence skipped for overlap has a record and is not missed.
func TestRunOnce_CountsMissedOccurrencesOnce(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		c, _ := b.client(t, "region0", nil)
		every := func(t time.Time) time.Time { return t.Truncate(time.Second).Add(time.Second) }
		o := runOpts(0)
		o.Next = every
		base := occurrenceNow().Add(-time.Minute)
		run := func(occ time.Time) RunResult {
			t.Helper()
			res, err := c.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, o, func(context.Context, Run) error { return nil })
			if err != nil || res.Status != RunExecuted {
				t.Fatalf("%s: %+v, %v", occ, res, err)
			}
			return res
		}
		if r := run(base); len(r.Missed) != 0 {
			t.Fatalf("the first occurrence ever: missed %v", r.Missed)
		}
		if r := run(base.Add(time.Second)); len(r.Missed) != 0 {
			t.Fatalf("the next one: missed %v", r.Missed)
		}
		r := run(base.Add(4 * time.Second)) // +2 and +3 ran nowhere
		if fmt.Sprint(r.Missed) != fmt.Sprint([]time.Time{base.Add(2 * time.Second), base.Add(3 * time.Second)}) {
			t.Fatalf("after a gap: missed %v", r.Missed)
		}
		if r := run(base.Add(5 * time.Second)); len(r.Missed) != 0 {
			t.Fatalf("counted again: %v", r.Missed)
		}
	})
}
