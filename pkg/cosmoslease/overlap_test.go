package cosmoslease

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The overlap policy (RunOptions.Overlap), on both beds. wait (the default) is TestRunOnce_NoOverlap's: the
// occurrence waits for the previous run and runs after it while its time lasts. skip: an occurrence that came due
// while the previous one ran is skipped at once, and the claim of the next occurrence records it overlap.

func TestOverlap_SkipAnswersAtOnceAndTheNextClaimRecordsIt(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "region0", nil)
		other, _ := b.client(t, "region1", nil)
		every := func(x time.Time) time.Time { return x.Truncate(time.Second).Add(time.Second) }
		o := runOpts(0)
		o.Next, o.Overlap = every, OverlapSkip
		occ := occurrenceNow()
		release := make(chan struct{})
		var running atomic.Int32
		done := make(chan RunResult, 1)
		go func() {
			res, _ := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ, o, func(ctx context.Context, r Run) error {
				running.Add(1)
				defer running.Add(-1)
				<-release
				return nil
			})
			done <- res
		}()
		for running.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		// occ+1 comes due while occ runs: skipped at once, though its time (Until) is far off.
		o1 := o
		o1.Until = time.Now().Add(time.Minute)
		time.Sleep(time.Until(occ.Add(time.Second)))
		res1, err := other.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ.Add(time.Second), o1, func(context.Context, Run) error {
			t.Error("occ+1 ran")
			return nil
		})
		stillRunning := running.Load() == 1
		close(release)
		if err != nil || res1.Status != RunSkipped || !strings.Contains(res1.Reason, "overlap") || !strings.Contains(res1.Reason, "skip") || !stillRunning {
			t.Fatalf("occ+1: %+v, %v (answered while occ ran: %v); want skipped for overlap at once", res1, err, stillRunning)
		}
		if r := <-done; r.Status != RunExecuted {
			t.Fatalf("occ: %+v", r)
		}
		// The next occurrence after the run: it runs, and its claim records occ+1 (and any other that came due during
		// the run) as skipped for overlap, not missed.
		next := every(time.Now())
		time.Sleep(time.Until(next))
		res2, err := other.RunOnce(ctxTimeout(t, 30*time.Second), "job", next, o, func(context.Context, Run) error { return nil })
		if err != nil || res2.Status != RunExecuted || res2.MissedCount != 0 {
			t.Fatalf("next: %+v, %v", res2, err)
		}
		recs := must[[]RunRecord](t)(other.Runs(context.Background(), "job", 10))
		found := false
		for _, r := range recs {
			if r.Covers(occ.Add(time.Second)) {
				found = r.Status == RunSkipped && r.Cause == causeOverlap
			}
		}
		if !found {
			t.Fatalf("occ+1's record: %+v; want skipped, cause overlap", recs)
		}
	})
}

// With skip, the next occurrence's contenders do not wait for an earlier occurrence that overlapped the previous
// run (every contender skipped it): the preferred region runs the next one in its own turn, not the last region's.
func TestOverlap_SkipNeverHoldsTheNextOccurrenceBack(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "r0", func(o *Options) { o.Region = "r0" })
		every := func(x time.Time) time.Time { return x.Truncate(2 * time.Second).Add(2 * time.Second) }
		o := runOpts(0)
		o.Regions, o.FailoverDelay, o.Next, o.Overlap = []string{"r0", "r1"}, 5*time.Second, every, OverlapSkip
		occ := every(time.Now())
		time.Sleep(time.Until(occ))
		// occ runs 2.5 s: occ+2 comes due during it, and every contender of occ+2 skips it.
		if r, err := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ, o, func(context.Context, Run) error {
			time.Sleep(2500 * time.Millisecond)
			return nil
		}); err != nil || r.Status != RunExecuted {
			t.Fatalf("occ: %+v, %v", r, err)
		}
		if r, err := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ.Add(2*time.Second), o, func(context.Context, Run) error {
			t.Error("occ+2 ran")
			return nil
		}); err != nil || r.Status != RunSkipped {
			t.Fatalf("occ+2: %+v, %v", r, err)
		}
		next := occ.Add(4 * time.Second)
		time.Sleep(time.Until(next))
		r, err := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", next, o, func(context.Context, Run) error { return nil })
		if err != nil || r.Status != RunExecuted {
			t.Fatalf("occ+4: %+v, %v", r, err)
		}
		// Waiting for occ+2 would have started it at occ+2's last turn, occ+4 + 5 s.
		if r.FailoverDelay >= 4*time.Second {
			t.Fatalf("occ+4 started %s late: it waited for occ+2, which every contender had skipped", r.FailoverDelay)
		}
	})
}

func TestOverlap_BadPolicyIsRefused(t *testing.T) {
	c, _ := newMemBed().client(t, "region0", nil)
	o := runOpts(0)
	o.Overlap = "sometimes"
	_, err := c.RunOnce(context.Background(), "job", occurrenceNow(), o, func(context.Context, Run) error { return nil })
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Fatalf("%v; want ErrInvalid naming the value", err)
	}
	if p, err := ParseOverlap(" Skip "); err != nil || p != OverlapSkip {
		t.Fatalf("ParseOverlap: %q, %v", p, err)
	}
}
