package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The fifth review of the occurrence election (issue 23, after the redesign that keeps the job's state in the
// lease document). Each test runs in a testing/synctest bubble (review4_test.go's newBubble, hookStore, cutOff)
// and says what happens on the code it was written against.

// The deferral to an earlier unclaimed occurrence (earlierWaiting) waits until the occurrence after it + the LAST
// rank's delay, whatever this contender's own Until. With two regions, a 10 s failover delay and a 5 s schedule
// (cron: "any delay works there"), the preferred region alone alive, one occurrence left undecided (here: cron
// restarted after a stop, so the cursor is behind) makes every later contender of that region defer past its own
// Until: each gives up, the cursor never moves, and no occurrence ever runs again while the region lives.
func TestReview5_DeferringToAnEarlierOccurrenceNeverStarvesTheSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		e, _ := b.client(t, "eastus", nil)
		// westeurope is listed but never runs (down, or not deployed yet).
		o := RunOptions{Regions: []string{"eastus", "westeurope"}, FailoverDelay: 10 * time.Second, PollInterval: time.Second, Grace: time.Second}
		var log ranLog
		run := func(d time.Duration) {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			_ = e.RunSchedule(ctx, "job", everyN(5*time.Second), o, log.work(100*time.Millisecond), nil)
		}
		run(time.Minute)
		before, _ := log.snapshot()
		if len(before) < 10 {
			t.Fatalf("setup: %d occurrences ran in the first minute; want about 12", len(before))
		}
		time.Sleep(time.Minute) // cron is stopped for a minute, then started again
		restart := time.Now()
		run(2 * time.Minute)
		after, overlap := log.snapshot()
		if overlap {
			t.Fatal("two occurrences' work overlapped")
		}
		ran := after[len(before):]
		// Every occurrence from 15 s after the restart to 15 s before the stop has its turn in eastus, the only live
		// region: the first after the restart may be superseded while it waits, none after that.
		want := 0
		for occ := restart.Add(15 * time.Second); occ.Before(restart.Add(2*time.Minute - 15*time.Second)); occ = occ.Add(5 * time.Second) {
			want++
		}
		if len(ran) < want {
			h, _ := e.History(context.Background(), "job", 5, everyN(5*time.Second).Next, 30*time.Second)
			t.Fatalf("after the restart %d occurrences ran in two minutes, want at least %d (cursor %s, %s after the restart)",
				len(ran), want, h.Cursor.Format(time.RFC3339), h.Cursor.Sub(restart))
		}
	})
}

// A re-run of an abandoned occurrence (RetryAbandoned) that completes and records it, whose holder then dies
// before its release. The document still lists the first run (claim of x) to be judged, beside the re-run (claim
// of a), both of occurrence p. The next holder judges the first: p's record is not x's claim, so it writes
// "abandoned" over the re-run's "completed" record (decided at an earlier epoch); then it judges the re-run, whose
// record is now that abandoned one, and marks it abandoned too. The re-run completed and recorded it; the record
// ends up saying it was abandoned.
func TestReview5_ACompletedReRunIsNeverRecordedAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, occ, later := start.Add(20*time.Second), start.Add(60*time.Second), start.Add(120*time.Second)
		var w workLog

		// x claims p and dies as its work starts.
		x, hx := b.client(t, "x", nil)
		sleepUntil(p)
		go func() {
			_, _ = x.RunOnce(ctx, "job", p, bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				w.add(r)
				cutOff(hx)
				<-ctx.Done()
				return ctx.Err()
			})
		}()

		// a re-runs p (RetryAbandoned) before occ; the re-run completes, its record is written, and a dies right then.
		a, ha := b.client(t, "a", nil)
		ha.on("replace", RunID("job", p), 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			it, err := do(ctx)
			cutOff(ha)
			return it, err
		})
		sleepUntil(occ)
		go func() {
			o := bubbleRunOpts(0)
			o.RetryAbandoned = true
			o.Until = occ.Add(20 * time.Second)
			_, _ = a.RunOnce(ctx, "job", occ, o, func(ctx context.Context, r Run) error { w.add(r); return nil })
		}()

		c, _ := b.client(t, "c", nil)
		sleepUntil(later)
		o := bubbleRunOpts(0)
		o.RetryAbandoned = true
		res, err := c.RunOnce(ctx, "job", later, o, func(ctx context.Context, r Run) error { w.add(r); return nil })
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("c: %s %q, %v", res.Status, res.Reason, err)
		}
		b.dump(t, "job")
		runs := w.of(p)
		if len(runs) != 2 || !runs[1].Retry {
			t.Fatalf("setup: p ran %d times (%+v); want x's run and a's re-run", len(runs), runs)
		}
		rec, ok := b.recordOf(t, "job", p)
		if !ok || rec.Status != RunCompleted || !rec.Retried {
			t.Fatalf("p's re-run completed and was recorded; its record now says %s (retried %v, epoch %d): %q", rec.Status, rec.Retried, rec.Epoch, rec.Reason)
		}
		synctest.Wait()
	})
}

// A claim on a lease document without job state (a new version's first claim after an earlier version of the
// library, or after a plain Acquire of the key) reads the occurrence's record first, in case the earlier version
// claimed it. When that read fails (a spell of 503s for FinishWithin), RunOnce returns the error and releases the
// lease with the cursor on the occurrence and no run: the occurrence is decided, so no later claim passes it over,
// and nothing runs, records or counts it. The comment says "not run: the next claim passes it over"; it does not.
func TestReview5_AFailedLegacyCheckNeverLosesTheOccurrence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		occ, later := start.Add(20*time.Second), start.Add(40*time.Second)
		// The key's lease document exists, written without job state (a plain holder, as an earlier version wrote it).
		old, _ := b.client(t, "old", nil)
		l, err := old.TryAcquire(ctx, "job")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		var w workLog
		var rs results
		a, ha := b.client(t, "a", nil)
		ha.on("read", RunID("job", occ), -1, refuse)
		sleepUntil(occ)
		res, err := a.RunOnce(ctx, "job", occ, bubbleRunOpts(0), func(ctx context.Context, r Run) error { w.add(r); return nil })
		rs.add(res)
		t.Logf("a: %s %q, %v", res.Status, res.Reason, err)
		// Another region's contender of the same occurrence, and then the next occurrence's.
		bb, _ := b.client(t, "b", nil)
		resB, _ := bb.RunOnce(ctx, "job", occ, bubbleRunOpts(1), func(ctx context.Context, r Run) error { w.add(r); return nil })
		rs.add(resB)
		sleepUntil(later)
		c, _ := b.client(t, "c", nil)
		rs.add(must[RunResult](t)(c.RunOnce(ctx, "job", later, bubbleRunOpts(0), func(ctx context.Context, r Run) error { w.add(r); return nil })))
		b.dump(t, "job")
		_, recorded := b.recordOf(t, "job", occ)
		if len(w.of(occ)) == 0 && !recorded && rs.missed(occ) == 0 {
			t.Fatalf("occurrence %s never ran, has no record and was not counted missed (b: %s %q)", occ.Format(time.RFC3339), resB.Status, resB.Reason)
		}
		synctest.Wait()
	})
}

// RetryAbandoned re-runs the cursor's run when its claimer stopped before finishing, "unless its record shows it
// finished". x completes p and records it, but its release never lands (x is cut off right after the record).
// a, the next holder with RetryAbandoned, cannot read p's record (a spell of 503s on that read for FinishWithin):
// settle leaves p unjudged for the next holder, and a re-runs p all the same. p completed once and runs again,
// though nobody judged it abandoned; the at-least-once exception is for abandoned runs only.
func TestReview5_ARunNotJudgedAbandonedIsNeverReRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, occ := start.Add(20*time.Second), start.Add(40*time.Second)
		var w workLog
		x, hx := b.client(t, "x", nil)
		hx.on("create", RunID("job", p), 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			it, err := do(ctx)
			cutOff(hx) // the record lands; the release does not
			return it, err
		})
		sleepUntil(p)
		resX, _ := x.RunOnce(ctx, "job", p, bubbleRunOpts(0), func(ctx context.Context, r Run) error { w.add(r); return nil })
		if rec, ok := b.recordOf(t, "job", p); !ok || rec.Status != RunCompleted {
			t.Fatalf("setup: p's record %+v (found %v); x: %s %q", rec, ok, resX.Status, resX.Reason)
		}
		a, ha := b.client(t, "a", nil)
		ha.on("read", RunID("job", p), -1, refuse)
		sleepUntil(occ)
		o := bubbleRunOpts(0)
		o.RetryAbandoned = true
		res, err := a.RunOnce(ctx, "job", occ, o, func(ctx context.Context, r Run) error { w.add(r); return nil })
		t.Logf("a: %s %q, %v", res.Status, res.Reason, err)
		if n := len(w.of(p)); n != 1 {
			t.Fatalf("p completed and recorded it, was never judged abandoned, and ran %d times", n)
		}
		synctest.Wait()
	})
}

// An occurrence that comes due while a crashed holder's lease still runs, whose contender waits for the lease and
// gives up at its Until, is "overlap" (the previous run was still going, from its start to its holder's last
// renewal + lease): so it is without RetryAbandoned. With it, the next holder first re-runs the abandoned run, and
// the claim after that classifies the occurrences passed over against the re-run alone (from its start): the
// occurrence is counted missed ("every region was down …") although its contender was alive and waiting.
func TestReview5_AnOccurrenceThatWaitedOnACrashedRunIsNotMissedAfterAReRun(t *testing.T) {
	for _, retry := range []bool{false, true} {
		t.Run(map[bool]string{false: "without re-run", true: "with re-run"}[retry], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBubble()
				ctx := context.Background()
				start := time.Now()
				every5s := everyN(5 * time.Second).Next
				opts := func() RunOptions {
					o := bubbleRunOpts(0)
					o.Next, o.MissedAfter, o.Schedule = every5s, 3*time.Second, "*/5 * * * * *"
					return o
				}
				p, q, occ := start.Add(20*time.Second), start.Add(25*time.Second), start.Add(30*time.Second)
				var rs results
				// x claims p and dies as its work starts: its lease runs out at 30 s, unreleased.
				x, hx := b.client(t, "x", nil)
				sleepUntil(p)
				xDone := make(chan struct{})
				go func() {
					defer close(xDone)
					_, _ = x.RunOnce(ctx, "job", p, opts(), diesInWork(hx))
				}()
				// q's contender is alive; the lease is held by x's run until its Until (30 s).
				sleepUntil(q)
				bb, _ := b.client(t, "b", nil)
				oq := opts()
				oq.Until = occ
				resQ, _ := bb.RunOnce(ctx, "job", q, oq, func(ctx context.Context, r Run) error { return nil })
				rs.add(resQ)
				// a claims occ (after re-running p when RetryAbandoned).
				a, _ := b.client(t, "a", nil)
				oa := opts()
				oa.RetryAbandoned = retry
				oa.Until = occ.Add(5 * time.Second)
				res, err := a.RunOnce(ctx, "job", occ, oa, func(ctx context.Context, r Run) error { return nil })
				rs.add(res)
				<-xDone
				b.dump(t, "job")
				if err != nil || res.Status != RunExecuted {
					t.Fatalf("a: %s %q, %v", res.Status, res.Reason, err)
				}
				rec, _ := b.recordOf(t, "job", q)
				if n := rs.missed(q); n > 0 || rec.Status != RunSkipped {
					t.Fatalf("q waited for the crashed run's lease (%s %q), yet it is recorded %s (%q) and counted missed %d times",
						resQ.Status, resQ.Reason, rec.Status, rec.Reason, n)
				}
				synctest.Wait()
			})
		})
	}
}

// Two RunOnce calls for the same occurrence in one Client (a duplicate tick in one process, or a library caller's
// retry beside the first call). Call 1's claim (here: a re-run of the abandoned p, RetryAbandoned) is applied,
// its answer slow; call 2's claim gets 412, and its read finds a document this client wrote for the same
// occurrence, so it adopts call 1's claim as its own lease. But the claim's plan (a re-run, of which claim, a
// check of an earlier version's record, the missed count) lives in call 1: call 2 holds a lease whose document
// names p's re-run and runs it as if it were its own occurrence, not as a re-run (Run.Retry false, which tells
// the work it is not a repeat).
func TestReview5_ADuplicateCallInOneClientRunsTheReRunAsARetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, occ := start.Add(20*time.Second), start.Add(40*time.Second)
		var w workLog
		x, hx := b.client(t, "x", nil)
		sleepUntil(p)
		xDone := make(chan struct{})
		go func() {
			defer close(xDone)
			_, _ = x.RunOnce(ctx, "job", p, bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				w.add(r)
				cutOff(hx)
				<-ctx.Done()
				return ctx.Err()
			})
		}()
		a, ha := b.client(t, "a", nil)
		land, second := make(chan struct{}), make(chan struct{})
		var once sync.Once
		// Both calls read the free lease before either claims.
		var read sync.WaitGroup
		read.Add(2)
		ha.on("read", leasedoc.IDPrefix+"job", 2, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			it, err := do(ctx)
			read.Done()
			read.Wait()
			return it, err
		})
		// The first claim is applied; its answer comes once the other call has taken the lease (or a second later).
		ha.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			it, err := do(context.Background())
			<-second
			select {
			case <-land:
			case <-time.After(time.Second):
			}
			return it, err
		})
		ha.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			close(second)
			return do(ctx)
		})
		work := func(ctx context.Context, r Run) error {
			w.add(r)
			once.Do(func() { close(land) })
			return nil
		}
		sleepUntil(occ)
		o := bubbleRunOpts(0)
		o.RetryAbandoned = true
		o.Until = occ.Add(15 * time.Second)
		var wg sync.WaitGroup
		var rs results
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := a.RunOnce(ctx, "job", occ, o, work)
				t.Logf("call: %s %s %q, %v", res.Occurrence.Format(time.RFC3339), res.Status, res.Reason, err)
				rs.add(res)
			}()
		}
		wg.Wait()
		<-xDone
		for _, r := range w.runs {
			t.Logf("ran %s epoch %d retry %v", r.Occurrence.Format(time.RFC3339), r.Epoch, r.Retry)
		}
		b.dump(t, "job")
		runs := w.of(p)
		if len(runs) != 2 || !runs[1].Retry {
			t.Fatalf("p ran %d times (%+v); want x's run and one re-run with Run.Retry set", len(runs), runs)
		}
		if n := len(w.of(occ)); n != 1 {
			t.Fatalf("occurrence %s ran %d times; want once", occ.Format(time.RFC3339), n)
		}
		for _, r := range rs.all {
			if r.Status == RunExecuted && !r.Occurrence.Equal(occ) {
				t.Fatalf("a call for %s answered executed for occurrence %s", occ.Format(time.RFC3339), r.Occurrence.Format(time.RFC3339))
			}
		}
		synctest.Wait()
	})
}

// A claim whose answer is lost (applied), and the one read after it that would recognise it fails (a passing
// 503). The election goes round again: the document now shows a holder (its own claim, unknown to the loop, which
// looks only at whether the lease is free), so it waits for that lease to run out, then finds its occurrence
// decided, by itself, and returns skipped. The occurrence never runs, though its claimer lived and could reach
// Cosmos DB all along; the next holder marks it abandoned. The documented limit is for a claimer that gave up.
func TestReview5_AClaimWhoseAnswerIsLostIsAdoptedByItsLiveClaimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, occ := start.Add(20*time.Second), start.Add(40*time.Second)
		var w workLog
		a, ha := b.client(t, "a", nil)
		sleepUntil(p)
		must[RunResult](t)(a.RunOnce(ctx, "job", p, bubbleRunOpts(0), func(ctx context.Context, r Run) error { w.add(r); return nil }))
		ha.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			_, _ = do(ctx)
			ha.on("read", leasedoc.IDPrefix+"job", 1, refuse) // the read after it
			return store.Item{}, &store.Error{Op: "replace", Kind: store.Unknown, Err: context.DeadlineExceeded}
		})
		sleepUntil(occ)
		o := bubbleRunOpts(0)
		o.Until = occ.Add(20 * time.Second)
		res, err := a.RunOnce(ctx, "job", occ, o, func(ctx context.Context, r Run) error { w.add(r); return nil })
		t.Logf("a: %s %q, %v", res.Status, res.Reason, err)
		if n := len(w.of(occ)); n != 1 {
			t.Fatalf("occurrence %s ran %d times; its claimer was alive and reached Cosmos DB after one failed read (%s %q)", occ.Format(time.RFC3339), n, res.Status, res.Reason)
		}
		synctest.Wait()
	})
}

// Chaos in a bubble: three regions run the schedule (RunSchedule, RetryAbandoned), and at random moments one is
// crashed (cut off from Cosmos DB, then stopped), stopped gracefully, or started again; some works outlast the
// schedule's gap. Then all three run healthy for a while. The history must account for every occurrence once:
// each occurrence from the first decided to the cursor is covered by exactly one record (or one the document
// holds pending); nothing recorded skipped or missed ever ran; nothing ran twice except as a re-run; no two
// works overlapped; the document's missed count is the number of occurrences recorded missed.
func TestReview5_ChaosAccountsForEveryOccurrenceOnce(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { chaosRun(t, seed, false) })
		})
	}
}

// The same chaos, with passing faults besides: some requests are refused (503, not applied), some writes are
// applied with their answer lost, and some reads come from a replica behind.
func TestReview5_ChaosWithPassingFaultsAccountsForEveryOccurrenceOnce(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { chaosRun(t, seed, true) })
		})
	}
}

func chaosRun(t *testing.T, seed int64, faults bool) {
	rng := rand.New(rand.NewPCG(uint64(seed), 5))
	b := newBubble()
	regions := []string{"eastus", "westeurope", "southeastasia"}
	sched := everyN(10 * time.Second)
	o := RunOptions{Regions: regions, FailoverDelay: 3 * time.Second, PollInterval: time.Second, Grace: time.Second, RetryAbandoned: true}
	type entry struct {
		occ        time.Time
		retry      bool
		region     string
		start, end time.Time
	}
	var mu sync.Mutex
	var ran []entry
	running := 0
	overlap := false
	work := func(ctx context.Context, r Run) error {
		d := 500 * time.Millisecond
		if (r.Occurrence.Unix()/10+seed)%6 == 0 {
			d = 13 * time.Second // outlasts the gap
		}
		mu.Lock()
		running++
		overlap = overlap || running > 1
		i := len(ran)
		ran = append(ran, entry{occ: r.Occurrence.UTC(), retry: r.Retry, region: r.Region, start: time.Now()})
		mu.Unlock()
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		mu.Lock()
		running--
		ran[i].end = time.Now()
		mu.Unlock()
		return ctx.Err()
	}
	type proc struct {
		cancel context.CancelFunc
		done   chan struct{}
		hs     *hookStore
	}
	procs := map[string]*proc{}
	type span struct{ from, to time.Time }
	up := map[string][]span{} // when each region ran, healthy
	var logMu sync.Mutex
	var logs []string
	startRegion := func(r string) {
		up[r] = append(up[r], span{from: time.Now(), to: time.Now().Add(time.Hour)})
		c, hs := b.client(t, r, func(o *Options) {
			o.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
				logMu.Lock()
				defer logMu.Unlock()
				logs = append(logs, time.Now().Format("15:04:05.000")+" "+r+" "+string(p))
				return len(p), nil
			}), &slog.HandlerOptions{Level: slog.LevelInfo}))
		})
		ctx, cancel := context.WithCancel(context.Background())
		p := &proc{cancel: cancel, done: make(chan struct{}), hs: hs}
		if faults {
			var fmu sync.Mutex
			frng := rand.New(rand.NewPCG(uint64(seed), uint64(len(up[r]))))
			hs.on("", "", -1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
				fmu.Lock()
				n := frng.IntN(100)
				fmu.Unlock()
				switch {
				case n < 3:
					return refuse(ctx, do)
				case n < 6:
					it, err := do(ctx)
					if err != nil {
						return it, err
					}
					return store.Item{}, &store.Error{Op: "test", Kind: store.Unknown, Err: errors.New("answer lost")}
				case n < 8:
					b.st.LagReads(1, 1)
				}
				return do(ctx)
			})
		}
		go func() {
			defer close(p.done)
			_ = c.RunSchedule(ctx, "job", sched, o, work, nil)
		}()
		procs[r] = p
	}
	stop := func(r string, crash bool) {
		p := procs[r]
		up[r][len(up[r])-1].to = time.Now()
		if crash {
			cutOff(p.hs)
		}
		p.cancel()
		<-p.done
		delete(procs, r)
	}
	for _, r := range regions {
		startRegion(r)
	}
	var events []string
	for step := 0; step < 40; step++ {
		time.Sleep(time.Duration(2+rng.IntN(15)) * time.Second)
		r := regions[rng.IntN(len(regions))]
		switch _, up := procs[r]; {
		case !up:
			startRegion(r)
			events = append(events, fmt.Sprintf("%s start %s", time.Now().Format("15:04:05"), r))
		case rng.IntN(2) == 0:
			stop(r, true)
			events = append(events, fmt.Sprintf("%s crash %s", time.Now().Format("15:04:05"), r))
		default:
			stop(r, false)
			events = append(events, fmt.Sprintf("%s stop %s", time.Now().Format("15:04:05"), r))
		}
	}
	for _, r := range regions {
		if _, up := procs[r]; !up {
			startRegion(r)
		}
	}
	time.Sleep(2 * time.Minute)
	for _, r := range regions {
		stop(r, false)
	}
	synctest.Wait()

	fail := func(format string, args ...any) {
		t.Helper()
		for _, e := range events {
			t.Log(e)
		}
		if os.Getenv("CHAOS_LOGS") != "" {
			logMu.Lock()
			for _, l := range logs {
				t.Log(l)
			}
			logMu.Unlock()
		}
		for _, e := range ran {
			t.Logf("ran %s in %s retry %v from %s to %s", e.occ.Format("15:04:05"), e.region, e.retry, e.start.Format("15:04:05.000"), e.end.Format("15:04:05.000"))
		}
		b.dump(t, "job")
		t.Fatalf(format, args...)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		fail("two works overlapped")
	}
	runs := map[time.Time][]entry{}
	for _, e := range ran {
		runs[e.occ] = append(runs[e.occ], e)
	}
	for occ, es := range runs {
		first := 0
		for _, e := range es {
			if !e.retry {
				first++
			}
		}
		if first > 1 || len(es) > 2 {
			fail("occurrence %s ran %d times (%d not as a re-run)", occ.Format(time.RFC3339), len(es), first)
		}
	}
	// The records, with what the document still holds pending.
	h, err := newClientFor(t, b).History(context.Background(), "job", 1000, sched.Next, ClaimWindow(3, o.FailoverDelay, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h.Running != nil {
		fail("a run still started after every region stopped gracefully: %+v", *h.Running)
	}
	cover := map[time.Time]RunRecord{}
	var missedRecorded int64
	first := h.Cursor
	for _, r := range h.Runs {
		if r.Status == RunMissed {
			missedRecorded += int64(r.Occurrences())
		}
		for s := r.Occurrence.UTC(); !s.After(r.Last()); s = sched.Next(s) {
			if prev, dup := cover[s]; dup {
				fail("occurrence %s is covered by two records: %s %q and %s %q", s.Format(time.RFC3339), prev.Status, prev.Reason, r.Status, r.Reason)
			}
			cover[s] = r
			if s.Before(first) {
				first = s
			}
		}
	}
	for s := first; !s.After(h.Cursor); s = sched.Next(s) {
		r, ok := cover[s]
		es := runs[s]
		switch {
		case !ok:
			fail("occurrence %s (ran %d times) has no record, though the cursor is at %s", s.Format(time.RFC3339), len(es), h.Cursor.Format(time.RFC3339))
		case (r.Status == RunSkipped || r.Status == RunMissed) && len(es) > 0:
			fail("occurrence %s recorded %s (%q) ran %d times", s.Format(time.RFC3339), r.Status, r.Reason, len(es))
		case r.Status == RunCompleted && len(es) == 0:
			fail("occurrence %s recorded completed never ran", s.Format(time.RFC3339))
		case r.Status == RunMissed:
			// Missed: no region claimed it in its window. A region up and healthy from before it until its Until
			// would have (or found the lease held, which is overlap).
			for reg, spans := range up {
				rank := slices.Index(regions, reg)
				for _, sp := range spans {
					if sp.from.Before(s) && sp.to.After(sched.Next(s).Add(time.Duration(rank)*o.FailoverDelay)) {
						fail("occurrence %s recorded missed (%q) while %s was up from %s to %s", s.Format(time.RFC3339), r.Reason, reg,
							sp.from.Format("15:04:05"), sp.to.Format("15:04:05"))
					}
				}
			}
		}
	}
	t.Logf("%d works, %d records, cursor %s, %d missed, %d events", len(ran), len(h.Runs), h.Cursor.Format(time.RFC3339), h.MissedTotal, len(events))
	if h.MissedTotal != missedRecorded {
		fail("the document counts %d missed; the records say %d", h.MissedTotal, missedRecorded)
	}
}

// newClientFor is a reader of the bubble's container.
func newClientFor(t *testing.T, b *bubble) *Client {
	c, _ := b.client(t, "reader", nil)
	return c
}

// jumpClock is the bubble's clock, moved forward by hand as a machine's is when it wakes from a suspend.
type jumpClock struct{ off atomic.Int64 }

func (j *jumpClock) Now() time.Time { return time.Now().Add(time.Duration(j.off.Load())) }
func (j *jumpClock) Stamp() clock.Stamp {
	t := j.Now()
	return clock.Stamp{Mono: t, Wall: t.Round(0)}
}
func (j *jumpClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RunSchedule on a machine that wakes from an hour's suspend (or a process stopped for an hour): every occurrence
// of that hour is past, and each one's Until too. RunSchedule starts one RunOnce call per past occurrence at
// once, each of which reads the lease document only to find its time ran out: 720 calls and as many reads in a
// burst for a 5-second schedule (a week's suspend with a per-second schedule: 604,800 goroutines and reads).
// The claim of the next occurrence records them all anyway.
func TestReview5_RunScheduleAfterASuspendStartsNoCallPerPastOccurrence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		opts, err := bubbleOptions("eastus").withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		var jc jumpClock
		c := newClient(&hookStore{Store: b.st}, opts, &jc)
		var calls atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			done <- c.RunSchedule(ctx, "job", everyN(5*time.Second), RunOptions{FailoverDelay: 10 * time.Second, Grace: time.Second},
				func(context.Context, Run) error { return nil }, func(RunResult, error) { calls.Add(1) })
		}()
		time.Sleep(30 * time.Second)
		before, reads := calls.Load(), b.st.Calls("read")
		jc.off.Store(int64(time.Hour)) // the machine wakes an hour later
		time.Sleep(30 * time.Second)
		cancel()
		<-done
		n, r := calls.Load()-before, b.st.Calls("read")-reads
		t.Logf("%d calls and %d reads in the 30 s after the suspend", n, r)
		if n > 20 || r > 100 {
			t.Fatalf("%d RunOnce calls and %d reads of the lease document in the 30 s after an hour's suspend; want those of the ~6 occurrences due since (one per past occurrence was started at once)", n, r)
		}
	})
}

// An outage of two days under a per-second schedule: the claim after it passes over 172,799 occurrences. Before
// the fix skipOver stopped at 100,000 (maxMissedScan): the other 72,799 had no record and were not in the
// document's missed count, though the cursor had passed them, and no doc said so. A claim now walks up to ten
// million (maxClaimScan, stated in reliability.md).
func TestReview5_AHugeGapIsCountedInFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		perSecond := everyN(time.Second).Next
		o := bubbleRunOpts(0)
		o.Next, o.Schedule, o.MissedAfter = perSecond, "* * * * * *", 30*time.Second
		a, _ := b.client(t, "a", nil)
		first := perSecond(time.Now())
		sleepUntil(first)
		must[RunResult](t)(a.RunOnce(ctx, "job", first, o, func(context.Context, Run) error { return nil }))
		later := first.Add(48 * time.Hour)
		sleepUntil(later)
		res, err := a.RunOnce(ctx, "job", later, o, func(context.Context, Run) error { return nil })
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("%s %q, %v", res.Status, res.Reason, err)
		}
		h, err := a.History(ctx, "job", 10, perSecond, o.MissedAfter)
		if err != nil {
			t.Fatal(err)
		}
		// All passed over; the last 29 were still inside their 30 s claim window when later was claimed, so they are
		// superseded, and the others missed.
		passed := int64(48*time.Hour/time.Second) - 1
		want := passed - 29
		if h.MissedTotal != want || int64(res.MissedCount) != want {
			t.Fatalf("%d occurrences passed over, %d of them missed; the document counts %d, the claim's result %d", passed, want, h.MissedTotal, res.MissedCount)
		}
	})
}
