package cosmoslease

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

// The fourth review of the occurrence election (issue 23). Each test runs in a testing/synctest bubble: virtual
// time, the in-memory container shared by every contender, and a hookStore per contender to cut it off from
// Cosmos DB or to hold one of its requests. Each test says what happened on the code before the fix.

// bubble is a shared in-memory container on the bubble's clock.
type bubble struct{ st *memstore.Store }

func newBubble() *bubble { return &bubble{st: memstore.New(clock.Bubble{})} }

// bubbleOptions: lease 10 s, renewed every 4 s, deadline 8 s.
func bubbleOptions(owner string) Options {
	return Options{OwnerID: owner, Region: owner, LeaseDuration: 10 * time.Second, RenewInterval: 4 * time.Second,
		RenewDeadline: 8 * time.Second, RetryPeriod: time.Second, RequestTimeout: 2 * time.Second}
}

func (b *bubble) client(t *testing.T, owner string, tweak func(*Options)) (*Client, *hookStore) {
	t.Helper()
	opts := bubbleOptions(owner)
	if tweak != nil {
		tweak(&opts)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	hs := &hookStore{Store: b.st}
	return newClient(hs, opts, clock.Bubble{}), hs
}

// cutOff refuses every request of the client from now on (503, never applied): the contender is alive but cannot
// reach Cosmos DB, or dead as far as the container can tell.
func cutOff(hs *hookStore) { hs.on("", "", -1, refuse) }

// diesInWork is work whose process dies as it starts: its client is cut off from the store (hs), so its lease
// runs out, and the work returns only when its context ends.
func diesInWork(hs *hookStore) RunFunc {
	return func(ctx context.Context, r Run) error {
		cutOff(hs)
		<-ctx.Done()
		return ctx.Err()
	}
}

// every20s is a schedule that fires every 20 s (the bubble's clock starts on a whole minute).
func every20s(t time.Time) time.Time { return t.Truncate(20 * time.Second).Add(20 * time.Second) }

// bubbleRunOpts: ranks 10 s apart, a poll every second, a grace of 1 s, the 20 s schedule.
func bubbleRunOpts(rank int) RunOptions {
	return RunOptions{Rank: rank, FailoverDelay: 10 * time.Second, PollInterval: time.Second, Grace: time.Second,
		Next: every20s, MissedAfter: 40 * time.Second, Schedule: "*/20 * * * * *"}
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// rawRecord is a run record as stored, read without this package's types, so that these tests say the same thing
// of any version of the record.
type rawRecord struct {
	Occurrence time.Time `json:"-"`
	Through    time.Time `json:"-"`
	Status     string
	Reason     string
	Epoch      int64
	ClaimID    string
	Retried    bool
}

// records reads every run record of key straight from the store.
func (b *bubble) records(t *testing.T, key string) []rawRecord {
	t.Helper()
	items, _, err := b.st.List(context.Background(), RunPrefix+key+"-")
	if err != nil {
		t.Fatal(err)
	}
	var out []rawRecord
	for _, it := range items {
		var m struct {
			Occurrence string `json:"occurrence"`
			Through    string `json:"through"`
			Status     string `json:"status"`
			Reason     string `json:"reason"`
			Epoch      int64  `json:"epoch"`
			ClaimID    string `json:"claimId"`
			Retried    bool   `json:"retried"`
		}
		if err := json.Unmarshal(it.Body, &m); err != nil {
			t.Fatal(err)
		}
		r := rawRecord{Status: m.Status, Reason: m.Reason, Epoch: m.Epoch, ClaimID: m.ClaimID, Retried: m.Retried}
		r.Occurrence, _ = time.Parse(time.RFC3339Nano, m.Occurrence)
		r.Through = r.Occurrence
		if m.Through != "" {
			r.Through, _ = time.Parse(time.RFC3339Nano, m.Through)
		}
		out = append(out, r)
	}
	return out
}

// recordOf is the record that covers occ (its own, or a range's), if any.
func (b *bubble) recordOf(t *testing.T, key string, occ time.Time) (rawRecord, bool) {
	t.Helper()
	for _, r := range b.records(t, key) {
		if !occ.Before(r.Occurrence) && !occ.After(r.Through) {
			return r, true
		}
	}
	return rawRecord{}, false
}

// results gathers what RunOnce calls returned, to see which occurrences they counted missed.
type results struct {
	mu  sync.Mutex
	all []RunResult
}

func (rs *results) add(r RunResult) RunResult {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.all = append(rs.all, r)
	return r
}

// missed counts how many times occ was counted missed, in every result and in its re-runs.
func (rs *results) missed(occ time.Time) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, r := range rs.all {
		for _, m := range r.Missed {
			if m.Equal(occ) {
				n++
			}
		}
	}
	return n
}

// Item 1. A holder takes the lease for occurrence t and first re-runs an earlier abandoned occurrence
// (RetryAbandoned); a contender reaches its Until while the lease names t and gives t up to that holder; the
// holder loses its lease during the re-run and returns without claiming t. Before the fix t never ran, had no
// record, and was not counted missed by the holder of the next occurrence, which counted only after t (the
// occurrence the lease last named).
func TestReview4_AnOccurrenceGivenUpToAHolderIsNeverLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, occ := start.Add(20*time.Second), start.Add(60*time.Second)
		var w workLog
		var rs results

		// x claims p and is cut off as its work starts: its lease runs out, unreleased.
		x, hx := b.client(t, "x", nil)
		sleepUntil(p)
		go func() {
			res, _ := x.RunOnce(ctx, "job", p, bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				w.add(r)
				cutOff(hx)
				<-ctx.Done()
				return ctx.Err()
			})
			rs.add(res)
		}()

		// a contends for occ with RetryAbandoned: it runs p again first, and is cut off while it does.
		a, ha := b.client(t, "a", nil)
		sleepUntil(occ)
		aDone := make(chan struct{})
		go func() {
			defer close(aDone)
			o := bubbleRunOpts(0)
			o.RetryAbandoned = true
			res, _ := a.RunOnce(ctx, "job", occ, o, func(ctx context.Context, r Run) error {
				w.add(r)
				if r.Retry {
					time.Sleep(5 * time.Second) // renewed meanwhile
					cutOff(ha)
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			})
			rs.add(res)
		}()

		// b, rank 1, contends 10 s after occ and reaches its Until a second later, while a holds the lease.
		bb, _ := b.client(t, "b", nil)
		ob := bubbleRunOpts(1)
		ob.Until = occ.Add(11 * time.Second)
		resB, _ := bb.RunOnce(ctx, "job", occ, ob, func(ctx context.Context, r Run) error { w.add(r); return nil })
		rs.add(resB)
		<-aDone

		// c runs a later occurrence, once everything has settled.
		c, _ := b.client(t, "c", nil)
		later := start.Add(120 * time.Second)
		sleepUntil(later)
		res, err := c.RunOnce(ctx, "job", later, bubbleRunOpts(0), func(ctx context.Context, r Run) error { w.add(r); return nil })
		rs.add(res)
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("the later occurrence: %s %q, %v", res.Status, res.Reason, err)
		}
		ran := len(w.of(occ))
		b.dump(t, "job")
		for _, r := range rs.all {
			t.Logf("result %s %s %q missed %v", r.Occurrence.Format(time.RFC3339), r.Status, r.Reason, r.Missed)
		}
		rec, recorded := b.recordOf(t, "job", occ)
		missed := rs.missed(occ)
		if ran == 0 && !recorded && missed == 0 {
			t.Fatalf("occurrence %s never ran, has no record and was not counted missed (b: %s %q)", occ.Format(time.RFC3339), resB.Status, resB.Reason)
		}
		if missed > 0 && (ran > 0 || recorded) {
			t.Fatalf("occurrence %s counted missed %d times, yet ran %d times (record %+v)", occ.Format(time.RFC3339), missed, ran, rec)
		}
		synctest.Wait()
	})
}

// Item 4. A claimer's write whose answer never comes, applied only after later holders have been and gone. Before
// the fix the claim was the create of the run record: it landed after the next holder had looked for records to
// settle, and the holders after that released cleanly, so the record said "started" until its ttl: never run,
// never marked abandoned.
func TestReview4_AClaimLandingLateNeverStaysStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		occ := start.Add(20 * time.Second)
		a, ha := b.client(t, "a", nil)
		land := make(chan struct{})
		var landed sync.WaitGroup
		// Every create of occ's run record is sent, but no answer comes: each is applied when land is closed.
		ha.on("create", RunID("job", occ), -1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			landed.Add(1)
			go func() {
				defer landed.Done()
				<-land
				_, _ = do(context.Background())
			}()
			<-ctx.Done()
			return store.Item{}, &store.Error{Op: "create", Kind: store.Unknown, Err: ctx.Err()}
		})
		sleepUntil(occ)
		actx, cancel := context.WithTimeout(ctx, 8*time.Second)
		_, _ = a.RunOnce(actx, "job", occ, bubbleRunOpts(0), func(context.Context, Run) error { return nil })
		cancel()
		for i, who := range []string{"b", "c"} {
			c, _ := b.client(t, who, nil)
			o := start.Add(time.Duration(40+20*i) * time.Second)
			sleepUntil(o)
			res, err := c.RunOnce(ctx, "job", o, bubbleRunOpts(0), func(context.Context, Run) error { return nil })
			if err != nil || res.Status != RunExecuted {
				t.Fatalf("%s: %s %q, %v", who, res.Status, res.Reason, err)
			}
			if i == 0 {
				close(land)
				landed.Wait()
			}
		}
		d, _ := b.client(t, "d", nil)
		o := start.Add(80 * time.Second)
		sleepUntil(o)
		if _, err := d.RunOnce(ctx, "job", o, bubbleRunOpts(0), func(context.Context, Run) error { return nil }); err != nil {
			t.Fatal(err)
		}
		b.dump(t, "job")
		rec, ok := b.recordOf(t, "job", occ)
		if !ok || rec.Status == RunStarted {
			t.Fatalf("occurrence %s: record %+v (found %v); want a final status after three later holders", occ.Format(time.RFC3339), rec, ok)
		}
		synctest.Wait()
	})
}

// Item 5. A run whose work completed but whose final record write was refused for all of FinishWithin (a spell
// of 503s). Before the fix the record stayed "started", and a holder that took over after some other crash,
// occurrences later, marked it "abandoned, stopped while the work ran" and, with RetryAbandoned, ran it again.
func TestReview4_ACompletedRunIsNeverTakenForAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		occ := start.Add(20 * time.Second)
		var w workLog
		a, ha := b.client(t, "a", nil)
		sleepUntil(occ)
		res, err := a.RunOnce(ctx, "job", occ, bubbleRunOpts(0), func(ctx context.Context, r Run) error {
			w.add(r)
			// The work completes; from now on every write of the run record is refused until RunOnce returns.
			ha.on("create", RunID("job", occ), -1, refuse)
			ha.on("replace", RunID("job", occ), -1, refuse)
			return nil
		})
		t.Logf("a: %s %q, %v", res.Status, res.Reason, err)
		ha.mu.Lock()
		ha.hooks = nil // the spell is over
		ha.mu.Unlock()

		// x runs the next occurrence and is cut off mid-work; y takes over with RetryAbandoned.
		x, hx := b.client(t, "x", nil)
		o2 := start.Add(40 * time.Second)
		sleepUntil(o2)
		go func() {
			_, _ = x.RunOnce(ctx, "job", o2, bubbleRunOpts(0), func(ctx context.Context, r Run) error {
				w.add(r)
				cutOff(hx)
				<-ctx.Done()
				return ctx.Err()
			})
		}()
		y, _ := b.client(t, "y", nil)
		o3 := start.Add(60 * time.Second)
		sleepUntil(o3)
		oy := bubbleRunOpts(0)
		oy.RetryAbandoned = true
		if _, err := y.RunOnce(ctx, "job", o3, oy, func(ctx context.Context, r Run) error { w.add(r); return nil }); err != nil {
			t.Fatal(err)
		}
		if n := len(w.of(occ)); n != 1 {
			t.Fatalf("occurrence %s, completed once, ran %d times", occ.Format(time.RFC3339), n)
		}
		if rec, ok := b.recordOf(t, "job", occ); !ok || rec.Status != RunCompleted {
			t.Fatalf("occurrence %s: record %+v (found %v); want completed", occ.Format(time.RFC3339), rec, ok)
		}
		synctest.Wait()
	})
}

// Item 6. o1's work runs past o2's and o3's times; o2's rank-1 contender waits for the lease. When o1 releases,
// o3's rank-0 contender (cron's loop jumping to the latest due occurrence) wins. Before the fix it counted o2 as
// "ran in no region", and o2 then ran, after o3.
func TestReview4_OccurrencesStartInOrderAndNothingCountedMissedRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		o1, o2, o3 := start.Add(20*time.Second), start.Add(40*time.Second), start.Add(60*time.Second)
		var rs results
		var mu sync.Mutex
		var order []time.Time
		work := func(ctx context.Context, r Run) error {
			mu.Lock()
			order = append(order, r.Occurrence)
			mu.Unlock()
			if r.Occurrence.Equal(o1) {
				sleepUntil(o3.Add(2 * time.Second))
			}
			return nil
		}
		a, _ := b.client(t, "a", nil)
		bb, _ := b.client(t, "b", nil)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ob := bubbleRunOpts(1)
			ob.Until = o3.Add(10 * time.Second)
			sleepUntil(o2)
			res, _ := bb.RunOnce(ctx, "job", o2, ob, work)
			rs.add(res)
		}()
		sleepUntil(o1)
		res, _ := a.RunOnce(ctx, "job", o1, bubbleRunOpts(0), work)
		rs.add(res)
		oa := bubbleRunOpts(0)
		oa.PastDue = true
		res, _ = a.RunOnce(ctx, "job", o3, oa, work)
		rs.add(res)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(order); i++ {
			if order[i].Before(order[i-1]) {
				t.Fatalf("occurrences started in the order %v", order)
			}
		}
		for _, o := range order {
			if n := rs.missed(o); n > 0 {
				t.Fatalf("occurrence %s ran after it was counted missed", o.Format(time.RFC3339))
			}
		}
		if _, ok := b.recordOf(t, "job", o2); !ok && rs.missed(o2) == 0 {
			t.Fatalf("o2 has no record and was not counted missed")
		}
		synctest.Wait()
	})
}

// Item 7. Occurrences that ran nowhere are counted by the holder of the next occurrence. Before the fix it
// counted them after its work returned: a holder cut off (or killed) mid-work never counted them, and the holder
// after it counted only after the occurrence the lease named.
func TestReview4_MissedAreCountedEvenWhenTheNextHolderDiesMidWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		var rs results
		// One region, whose claim window is 15 s.
		opts := func() RunOptions { o := bubbleRunOpts(0); o.MissedAfter = 15 * time.Second; return o }
		a, _ := b.client(t, "a", nil)
		o1 := start.Add(20 * time.Second)
		sleepUntil(o1)
		rs.add(must[RunResult](t)(a.RunOnce(ctx, "job", o1, opts(), func(context.Context, Run) error { return nil })))
		// Nobody contends for the next two occurrences. b runs the one after, and is cut off mid-work.
		o4 := start.Add(80 * time.Second)
		bb, hb := b.client(t, "b", nil)
		sleepUntil(o4)
		res, _ := bb.RunOnce(ctx, "job", o4, opts(), diesInWork(hb))
		rs.add(res)
		c, _ := b.client(t, "c", nil)
		o5 := start.Add(100 * time.Second)
		sleepUntil(o5)
		rs.add(must[RunResult](t)(c.RunOnce(ctx, "job", o5, opts(), func(context.Context, Run) error { return nil })))
		for _, o := range []time.Time{start.Add(40 * time.Second), start.Add(60 * time.Second)} {
			if n := rs.missed(o); n != 1 {
				t.Errorf("occurrence %s, run nowhere, counted missed %d times; want once", o.Format(time.RFC3339), n)
			}
		}
		synctest.Wait()
	})
}

// Item 8. Until is the last moment a contender starts its occurrence. Before the fix it was checked only while
// another held the lease: a holder whose re-run of an abandoned occurrence lasted past Until still started its own
// occurrence afterwards, after the next occurrence's contenders had given theirs up for overlap.
func TestReview4_UntilHoldsAfterTheLeaseIsTaken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		ctx := context.Background()
		start := time.Now()
		p, occ := start.Add(20*time.Second), start.Add(60*time.Second)
		x, hx := b.client(t, "x", nil)
		sleepUntil(p)
		go func() {
			_, _ = x.RunOnce(ctx, "job", p, bubbleRunOpts(0), diesInWork(hx))
		}()
		a, _ := b.client(t, "a", nil)
		sleepUntil(occ)
		o := bubbleRunOpts(0)
		o.RetryAbandoned = true
		o.Until = occ.Add(20 * time.Second)
		var startedOcc time.Time
		res, err := a.RunOnce(ctx, "job", occ, o, func(ctx context.Context, r Run) error {
			if r.Retry {
				time.Sleep(30 * time.Second) // the re-run of p lasts past occ's Until
				return nil
			}
			startedOcc = time.Now()
			return nil
		})
		if !startedOcc.IsZero() && startedOcc.After(o.Until) {
			t.Fatalf("occurrence %s started at %s, after its Until %s (%s %q, %v)", occ.Format(time.RFC3339), startedOcc.Format(time.RFC3339),
				o.Until.Format(time.RFC3339), res.Status, res.Reason, err)
		}
		synctest.Wait()
	})
}

// reasonHas reports whether a result's reason mentions s, for messages.
func reasonHas(r RunResult, s string) bool { return strings.Contains(r.Reason, s) }

func (b *bubble) dump(t *testing.T, key string) {
	t.Helper()
	for _, r := range b.records(t, key) {
		t.Logf("record %s..%s %s epoch %d %q", r.Occurrence.Format(time.RFC3339), r.Through.Format(time.RFC3339), r.Status, r.Epoch, r.Reason)
	}
}

// schedule20s is every20s as a Schedule.
type everyN time.Duration

func (e everyN) Next(t time.Time) time.Time {
	d := time.Duration(e)
	return t.Truncate(d).Add(d)
}

// ranLog records each run of the work: its occurrence, the region that ran it, and when it started and ended.
type ranLog struct {
	mu      sync.Mutex
	runs    []ranEntry
	running int
	overlap bool
}

type ranEntry struct {
	occ, start, end time.Time
	region          string
}

func (l *ranLog) work(d time.Duration) RunFunc {
	return func(ctx context.Context, r Run) error {
		l.mu.Lock()
		l.running++
		if l.running > 1 {
			l.overlap = true
		}
		i := len(l.runs)
		l.runs = append(l.runs, ranEntry{occ: r.Occurrence, start: time.Now(), region: r.Region})
		l.mu.Unlock()
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		l.mu.Lock()
		l.running--
		l.runs[i].end = time.Now()
		l.mu.Unlock()
		return ctx.Err()
	}
}

func (l *ranLog) snapshot() ([]ranEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ranEntry(nil), l.runs...), l.overlap
}

// Item 3. One machine runs the schedule, ranked after a region that never comes (its delay, 10 s, twice the
// schedule's gap of 5 s). Before the fix cron's loop was serial: while it waited on occurrence t, t+5 s fired, and
// the loop then jumped to the latest due occurrence, so every other occurrence ran nowhere. RunSchedule contends
// for each occurrence from its own time: every one runs, in order, never two at once.
func TestReview4_RunScheduleRunsEveryOccurrenceWhenTheDelayExceedsTheGap(t *testing.T) {
	for _, withRegions := range []bool{false, true} {
		t.Run(map[bool]string{false: "by rank", true: "by region"}[withRegions], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBubble()
				w, _ := b.client(t, "westeurope", nil)
				o := RunOptions{Rank: 1, FailoverDelay: 10 * time.Second, PollInterval: time.Second, Grace: time.Second}
				if withRegions {
					o.Regions = []string{"eastus", "westeurope"}
				}
				var log ranLog
				ctx, cancel := context.WithCancel(context.Background())
				start := time.Now()
				done := make(chan error)
				var rs results
				go func() {
					done <- w.RunSchedule(ctx, "job", everyN(5*time.Second), o, log.work(time.Second), func(r RunResult, err error) { rs.add(r) })
				}()
				time.Sleep(2 * time.Minute)
				cancel()
				<-done
				runs, overlap := log.snapshot()
				if overlap {
					t.Fatal("two occurrences' work overlapped")
				}
				if len(runs) == 0 {
					for _, r := range rs.all[:min(3, len(rs.all))] {
						t.Logf("%s %s %q", r.Occurrence.Format(time.RFC3339), r.Status, r.Reason)
					}
				}
				// Every occurrence up to the last whose turn (10 s late) came a few seconds before the stop ran once, in order.
				last := start.Add(2*time.Minute - 15*time.Second)
				want := 0
				for occ := everyN(5 * time.Second).Next(start); !occ.After(last); occ = occ.Add(5 * time.Second) {
					want++
				}
				ran := map[time.Time]int{}
				for i, r := range runs {
					ran[r.occ.UTC()]++
					if i > 0 && r.occ.Before(runs[i-1].occ) {
						t.Fatalf("occurrence %s started after %s", r.occ.Format(time.RFC3339), runs[i-1].occ.Format(time.RFC3339))
					}
				}
				n := 0
				for occ := everyN(5 * time.Second).Next(start); !occ.After(last); occ = occ.Add(5 * time.Second) {
					if ran[occ.UTC()] != 1 {
						t.Errorf("occurrence %s ran %d times", occ.Format(time.RFC3339), ran[occ])
					}
					n++
				}
				if n != want || len(runs) < want {
					t.Fatalf("%d runs for %d occurrences", len(runs), want)
				}
				if withRegions {
					// The first occurrence runs 10 s late and marks eastus absent; the two that came due meanwhile run right
					// after it, in order; from then on every occurrence runs on time.
					for _, r := range runs[3:] {
						if late := r.start.Sub(r.occ); late > 2*time.Second {
							t.Errorf("occurrence %s started %s late; want on time once eastus is known absent", r.occ.Format(time.RFC3339), late)
						}
					}
				}
			})
		})
	}
}

// Item 10. Three regions run the schedule. After a crash of the preferred region only the first occurrence is
// late (one failover delay); the next region runs the later ones on time, and hands them back within two
// occurrences when the preferred region returns. A graceful stop makes no occurrence late. Before the fix every
// occurrence after a crash, and the first after a graceful stop, waited the delay.
func TestReview4_FailoverCostsTheDelayOnceAndAGracefulStopNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		regions := []string{"eastus", "westeurope", "southeastasia"}
		o := RunOptions{Regions: regions, FailoverDelay: 5 * time.Second, PollInterval: time.Second, Grace: time.Second}
		var log ranLog
		type proc struct {
			cancel context.CancelFunc
			done   chan error
			hs     *hookStore
		}
		startRegion := func(r string) proc {
			c, hs := b.client(t, r, nil)
			ctx, cancel := context.WithCancel(context.Background())
			p := proc{cancel: cancel, done: make(chan error, 1), hs: hs}
			go func() { p.done <- c.RunSchedule(ctx, "job", everyN(20*time.Second), o, log.work(time.Second), nil) }()
			return p
		}
		procs := map[string]proc{}
		for _, r := range regions {
			procs[r] = startRegion(r)
		}
		start := time.Now()
		at := func(d time.Duration) { sleepUntil(start.Add(d)) }
		byOcc := func() map[time.Time]ranEntry {
			runs, overlap := log.snapshot()
			if overlap {
				t.Fatal("two occurrences' work overlapped")
			}
			m := map[time.Time]ranEntry{}
			for _, r := range runs {
				if _, dup := m[r.occ.UTC()]; dup {
					t.Fatalf("occurrence %s ran twice", r.occ.Format(time.RFC3339))
				}
				m[r.occ.UTC()] = r
			}
			return m
		}
		occ := func(i int) time.Time {
			return everyN(20 * time.Second).Next(start).Add(time.Duration(i) * 20 * time.Second).UTC()
		}
		check := func(i int, region string, maxLate time.Duration) {
			t.Helper()
			r, ok := byOcc()[occ(i)]
			switch {
			case !ok:
				t.Errorf("occurrence %d (%s) did not run", i, occ(i).Format(time.RFC3339))
			case region != "" && r.region != region:
				t.Errorf("occurrence %d ran in %s, want %s", i, r.region, region)
			case r.start.Sub(r.occ) > maxLate:
				t.Errorf("occurrence %d ran in %s %s late, want at most %s", i, r.region, r.start.Sub(r.occ), maxLate)
			}
		}
		// eastus runs occurrences 0 and 1, then crashes: cut off, and gone.
		at(occ(1).Sub(start) + 3*time.Second)
		cutOff(procs["eastus"].hs)
		procs["eastus"].cancel()
		<-procs["eastus"].done
		at(occ(5).Sub(start) + 3*time.Second)
		check(0, "eastus", time.Second)
		check(1, "eastus", time.Second)
		check(2, "westeurope", 6*time.Second)
		for i := 3; i <= 5; i++ {
			check(i, "westeurope", time.Second)
		}
		// eastus comes back: it runs the next occurrences again, from the second at the latest.
		procs["eastus"] = startRegion("eastus")
		at(occ(8).Sub(start) + 3*time.Second)
		check(6, "", time.Second)
		check(7, "eastus", time.Second)
		check(8, "eastus", time.Second)
		// A graceful stop of eastus: westeurope runs the next occurrence on time.
		procs["eastus"].cancel()
		<-procs["eastus"].done
		at(occ(10).Sub(start) + 3*time.Second)
		check(9, "westeurope", time.Second)
		check(10, "westeurope", time.Second)
		for _, r := range []string{"westeurope", "southeastasia"} {
			procs[r].cancel()
			<-procs[r].done
		}
		synctest.Wait()
	})
}

// Item 9. Against a store that answers every request with a failure, RunOnce says so: a WARN once the failures
// have lasted a retry period (not only when its time runs out), an ERROR naming the cause when the occurrence is
// given up at its time limit, and an error from RunOnce. Before the fix a contender that could not read printed
// nothing while it waited.
func TestReview4_PersistentFailuresAreNeverSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble()
		var logs strings.Builder
		var mu sync.Mutex
		c, hs := b.client(t, "eastus", func(o *Options) {
			o.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				return logs.Write(p)
			}), nil))
		})
		hs.on("read", "", -1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			return store.Item{}, &store.Error{Op: "read", Status: 500, Kind: store.Unknown}
		})
		occ := time.Now().Add(time.Second)
		sleepUntil(occ)
		o := bubbleRunOpts(0)
		o.Until = occ.Add(30 * time.Second)
		var warnedAt time.Time
		go func() {
			for range 30 {
				time.Sleep(time.Second)
				mu.Lock()
				w := strings.Contains(logs.String(), "level=WARN")
				mu.Unlock()
				if w {
					warnedAt = time.Now()
					return
				}
			}
		}()
		res, err := c.RunOnce(context.Background(), "job", occ, o, func(context.Context, Run) error { return nil })
		synctest.Wait()
		mu.Lock()
		out := logs.String()
		mu.Unlock()
		if err == nil || !strings.Contains(err.Error(), "given up") || !strings.Contains(err.Error(), "HTTP 500") {
			t.Fatalf("RunOnce: %s %q, %v; want an error saying the occurrence was given up and why", res.Status, res.Reason, err)
		}
		if warnedAt.IsZero() || warnedAt.Sub(occ) > 5*time.Second {
			t.Fatalf("first WARN at %v after the occurrence; want within a few seconds:\n%s", warnedAt.Sub(occ), out)
		}
		if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "occurrence given up") {
			t.Fatalf("no ERROR when the occurrence was given up:\n%s", out)
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
