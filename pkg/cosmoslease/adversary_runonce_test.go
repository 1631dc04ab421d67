package cosmoslease

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Interleavings of the occurrence election (RunOnce) found by an adversarial review of commits 2090722 and
// 52c7231. Each test describes its interleaving step by step. Most run on the fake clock with the shared
// in-memory container; each client reaches it through a hookStore, which lets a test delay, refuse or answer one
// request of one document at a chosen moment.

// hookStore passes requests to the store, except those a hook matches (by operation and document id).
type hookStore struct {
	store.Store
	mu    sync.Mutex
	hooks []*hook
}

// hook stands in for n requests (n < 0: every one) of op on id ("" matches any id). do sends the request to the
// store with the context given.
type hook struct {
	op, id string
	n      int
	fn     func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error)
}

func (s *hookStore) on(op, id string, n int, fn func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, &hook{op: op, id: id, n: n, fn: fn})
}

func (s *hookStore) run(ctx context.Context, op, id string, do func(context.Context) (store.Item, error)) (store.Item, error) {
	s.mu.Lock()
	var h *hook
	for _, x := range s.hooks {
		if x.n != 0 && (x.op == "" || x.op == op) && (x.id == "" || x.id == id) {
			h = x
			if x.n > 0 {
				x.n--
			}
			break
		}
	}
	s.mu.Unlock()
	if h == nil {
		return do(ctx)
	}
	return h.fn(ctx, do)
}

func (s *hookStore) Read(ctx context.Context, pk, id, session string) (store.Item, error) {
	return s.run(ctx, "read", id, func(ctx context.Context) (store.Item, error) { return s.Store.Read(ctx, pk, id, session) })
}

func (s *hookStore) Create(ctx context.Context, pk string, body []byte) (store.Item, error) {
	var m struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &m)
	return s.run(ctx, "create", m.ID, func(ctx context.Context) (store.Item, error) { return s.Store.Create(ctx, pk, body) })
}

func (s *hookStore) Replace(ctx context.Context, pk, id string, body []byte, etag string) (store.Item, error) {
	return s.run(ctx, "replace", id, func(ctx context.Context) (store.Item, error) { return s.Store.Replace(ctx, pk, id, body, etag) })
}

func (s *hookStore) Recent(ctx context.Context, pk, prefix string, limit int, session string) ([]store.Item, float64, error) {
	var items []store.Item
	var charge float64
	_, err := s.run(ctx, "query", "", func(ctx context.Context) (store.Item, error) {
		var err error
		items, charge, err = s.Store.Recent(ctx, pk, prefix, limit, session)
		return store.Item{}, err
	})
	return items, charge, err
}

// refuse answers 503 without sending the request.
func refuse(context.Context, func(context.Context) (store.Item, error)) (store.Item, error) {
	return store.Item{}, &store.Error{Op: "test", Status: 503, Kind: store.Unavailable}
}

// hclient opens a contender on the fake bed whose requests go through a hookStore.
func (b *fakeBed) hclient(t *testing.T, owner string, tweak func(*Options)) (*Client, *hookStore) {
	t.Helper()
	hs := &hookStore{Store: b.st}
	return newClient(hs, fakeClientOptions(t, owner, tweak), b.fc), hs
}

// fakeRunOpts: ranks 10 s apart, a poll every 100 ms, a grace of 1 s, on the fake clock.
func fakeRunOpts(rank int, retry bool) RunOptions {
	return RunOptions{Rank: rank, FailoverDelay: 10 * time.Second, PollInterval: 100 * time.Millisecond, Grace: time.Second,
		RetryAbandoned: retry}
}

// record reads the run record of occ straight from the store; ok is false when there is none.
func (b *fakeBed) record(t *testing.T, key string, occ time.Time) (RunRecord, bool) {
	t.Helper()
	it, err := b.st.Read(context.Background(), key, RunID(key, occ), "")
	if store.KindOf(err) == store.NotFound {
		return RunRecord{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var r RunRecord
	if err := json.Unmarshal(it.Body, &r); err != nil {
		t.Fatal(err)
	}
	return r, true
}

// pump moves the fake clock by step every couple of real milliseconds until done is closed, so that code waiting
// on the fake clock (polls, backoffs, renewals) makes progress.
func (b *fakeBed) pump(done <-chan struct{}, step time.Duration) {
	for {
		select {
		case <-done:
			return
		case <-time.After(2 * time.Millisecond):
			b.fc.Advance(step)
		}
	}
}

// crashedClaimer leaves what a claimer killed mid-work leaves: the lease held (never released) at epoch 1, its
// document naming occurrence p as the job's cursor with p's run "started" at epoch 1 and no record. Then the clock
// moves past the lease's duration.
func (b *fakeBed) crashedClaimer(t *testing.T, key string, p time.Time) {
	t.Helper()
	x, _ := b.client(t, "x", nil)
	id := must[string](t)(leasedoc.ID(key))
	_ = must[*Lease](t)(x.attempt(context.Background(), key, id, crashedSpec(key, p, "x")))
	b.at(b.fc.Now().Sub(t0) + 12*time.Second) // x's lease (10 s) has run out; nobody released it
}

// crashedSpec claims occurrence p for owner as RunOnce does, so that the document names p's run "started".
func crashedSpec(key string, p time.Time, owner string) *claimSpec {
	p = p.UTC()
	return &claimSpec{extra: map[string]string{metaOccurrence: p.Format(time.RFC3339Nano)}, prepare: func(prev, next *leasedoc.Doc) error {
		run := RunRecord{ID: RunID(key, p), LeaseKey: key, Type: store.TypeRun, Occurrence: p, Status: RunStarted, Region: "region-" + owner,
			Owner: owner, Instance: owner, Epoch: next.Epoch, Decided: next.Epoch, ClaimID: next.LeaseID, StartedAt: next.AcquiredAt}
		next.Job = jobState{Cursor: p, Run: &run}.encode()
		return nil
	}}
}

// workLog records every run of the work: its occurrence, epoch and whether it was a re-run.
type workLog struct {
	mu   sync.Mutex
	runs []Run
}

func (w *workLog) add(r Run) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs = append(w.runs, r)
}

func (w *workLog) of(occ time.Time) []Run {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Run
	for _, r := range w.runs {
		if r.Occurrence.Equal(occ) {
			out = append(out, r)
		}
	}
	return out
}

// An ambiguous claim that is never settled: the claim is applied but its answer is lost, and every read after it
// fails until the invocation's deadline. RunOnce returns an error without running the work. Before the first
// fix the claim was the create of the run record, and the record stayed "started" for ever under a holding that
// released. Since issue 23 the claim is the write of the lease document: the document names the occurrence's run
// "started" under a holding that never released, so the next holder judges it abandoned and, with
// RetryAbandoned, runs it.
func TestAdversary_RunOnce_UnsettledClaimIsLeftForTheNextHolder(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		w := newCounter()
		a, fa := b.client(t, "region0", nil)
		// An earlier occurrence, so that the lease document exists and a's view of it is cached.
		must[RunResult](t)(a.RunOnce(ctxTimeout(t, 20*time.Second), "job", occurrenceNow().Add(-2*time.Minute), runOpts(0), w.work))
		occ := occurrenceNow().Add(-time.Minute)
		fa.inject("read", "", 1)                    // the watch read of the lease document passes
		fa.inject("replace", faultLostReply, 1)     // the claim is applied, its answer lost
		fa.inject("read", faultUnavailable, 10_000) // the reads that would settle it fail
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		res, err := a.RunOnce(ctx, "job", occ, runOpts(0), w.work)
		cancel()
		if err == nil || w.count(occ) != 0 {
			t.Fatalf("the unsettled claim: %+v, %v, ran %d times; want an error and no run", res, err, w.count(occ))
		}
		// The next occurrence's holder, with RetryAbandoned.
		next, _ := b.client(t, "region1", nil)
		o := runOpts(0)
		o.RetryAbandoned = true
		res2, err := next.RunOnce(ctxTimeout(t, 20*time.Second), "job", occurrenceNow(), o, w.work)
		if err != nil || res2.Status != RunExecuted {
			t.Fatalf("next occurrence: %+v, %v", res2, err)
		}
		recs := must[[]RunRecord](t)(next.Runs(context.Background(), "job", 10))
		for _, r := range recs {
			if r.Occurrence.Equal(occ) && r.Status == RunStarted {
				t.Fatalf("occurrence %s never ran, and its record stays %q for ever (claimer %s, epoch %d): the holding that left it "+
					"released the lease, so no later holder settles it; res2.Abandoned = %+v", occ, r.Status, r.Owner, r.Epoch, res2.Abandoned)
			}
		}
		if w.count(occ) != 1 {
			t.Fatalf("occurrence %s ran %d times; with RetryAbandoned the next holder should run it once", occ, w.count(occ))
		}
	})
}

// A claim that lands late. a sends the write that claims occurrence t (the lease document's create); the request
// is slow. b, a contender of the same occurrence whose time has come, claims it meanwhile. Then a's create lands:
// 409. a must not run t, nor take the lease; b runs t once, at its epoch. (Before issue 23 the claim was the
// run record's create, and a landing late after a takeover made a run the work without the lease.)
func TestAdversary_RunOnce_ClaimLandingAfterATakeover(t *testing.T) {
	b := newFakeBed()
	a, ha := b.hclient(t, "a", nil)
	bb, _ := b.hclient(t, "b", nil)
	occ := t0
	var w workLog
	var bad atomic.Value
	work := b.leaseCheckedWork(t, &w, &bad)
	entered, land, landed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ha.on("create", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
		close(entered)
		<-land
		it, err := do(context.Background()) // the server applies it whatever the client's context says
		close(landed)
		return it, err
	})
	doneA := make(chan RunResult, 1)
	go func() {
		res, _ := a.RunOnce(context.Background(), "job", occ, fakeRunOpts(0, false), work)
		doneA <- res
	}()
	<-entered
	var bRan atomic.Bool
	resB, errB := bb.RunOnce(ctxTimeout(t, 10*time.Second), "job", occ, fakeRunOpts(0, true), func(ctx context.Context, r Run) error {
		bRan.Store(true)
		close(land) // b holds the lease and runs: a's create lands now
		<-landed
		return work(ctx, r)
	})
	resA := waitAdvancing(t, b, doneA)
	if r, ok := bad.Load().(Run); ok {
		t.Errorf("the work of %s started at epoch %d in %s while the lease was at epoch %d: a process without the lease ran it "+
			"(a: %s %q; b: %s %q, %v)", r.Occurrence.Format(time.RFC3339), r.Epoch, r.Owner, b.doc(t, "job").Epoch, resA.Status, resA.Reason,
			resB.Status, resB.Reason, errB)
	}
	if runs := w.of(occ); len(runs) != 1 || runs[0].Owner != "b" || !bRan.Load() {
		t.Errorf("occurrence ran %d times (%+v); want once, by b", len(runs), runs)
	}
	if resA.Status != RunSkipped {
		t.Errorf("a: %s %q; want skipped (claimed by b)", resA.Status, resA.Reason)
	}
	if rec, ok := b.record(t, "job", occ); !ok || rec.Status != RunCompleted {
		t.Errorf("record %+v (found %v); want completed", rec, ok)
	}
}

// A holder that dies while it re-runs an abandoned occurrence. y takes the lease (epoch 2) for occurrence q,
// naming q in the lease document; it marks p (whose claimer x died) abandoned and, with RetryAbandoned, re-runs
// p: p's record becomes "started" at epoch 2. y is killed during that re-run. The next holder z settles the
// occurrence the lease document names, q, which has no record, and never looks at p: p's record stays "started"
// for ever. The claim: a claimer that dies mid-work leaves its record started and the next holder marks it
// abandoned.
func TestAdversary_RunOnce_HolderDyingInAReRunLeavesItStarted(t *testing.T) {
	b := newFakeBed()
	p := t0
	b.crashedClaimer(t, "job", p)
	y, hy := b.hclient(t, "y", nil)
	var dead atomic.Bool
	hy.on("", "", -1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
		if dead.Load() { // killed: nothing it sends arrives
			return refuse(ctx, do)
		}
		return do(ctx)
	})
	q := p.Add(10 * time.Second)
	reRunning := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = y.RunOnce(context.Background(), "job", q, fakeRunOpts(0, true), func(ctx context.Context, r Run) error {
			if r.Retry {
				dead.Store(true)
				close(reRunning)
				<-ctx.Done()
			}
			return ctx.Err()
		})
	}()
	<-reRunning
	b.pump(done, 100*time.Millisecond) // y's lease runs out; what it still tries to write is lost
	if rec, _ := b.record(t, "job", p); rec.Status != RunAbandoned || rec.Epoch != 1 {
		t.Fatalf("setup: p's record %+v; want x's run marked abandoned", rec)
	}
	if j := must[jobState](t)(decodeJob(b.doc(t, "job"))); j.Run == nil || !j.Run.Retried || j.Run.Status != RunStarted || j.Run.Epoch != 2 {
		t.Fatalf("setup: the lease document's run %+v; want p's re-run started at epoch 2", j.Run)
	}
	b.at(b.fc.Now().Sub(t0) + 12*time.Second)
	z, _ := b.hclient(t, "z", nil)
	r := q.Add(10 * time.Second)
	res, err := z.RunOnce(ctxTimeout(t, 10*time.Second), "job", r, fakeRunOpts(0, true), func(context.Context, Run) error { return nil })
	if err != nil || res.Status != RunExecuted {
		t.Fatalf("z: %+v, %v", res, err)
	}
	if rec, _ := b.record(t, "job", p); rec.Status == RunStarted {
		t.Fatalf("p's re-run, whose claimer y died mid-work, stays %q at epoch %d for ever: the lease document named q, so z "+
			"settled q and never looked at p (z found abandoned: %+v)", rec.Status, rec.Epoch, res.Abandoned)
	}
}

// A passing error while settling. y takes over from a claimer x that died mid-work on p; the point read of p's
// record fails once with 503. RunOnce returns the error, without running its own occurrence q, and releases the
// lease. From then on the lease's previous holder is y, released, so nobody settles p: it stays "started" for
// ever and RetryAbandoned never re-runs it. One 503 loses the duty to settle.
func TestAdversary_RunOnce_PassingErrorWhileSettlingLosesTheAbandonedOccurrence(t *testing.T) {
	b := newFakeBed()
	p := t0
	b.crashedClaimer(t, "job", p)
	y, hy := b.hclient(t, "y", nil)
	hy.on("read", RunID("job", p), 1, refuse)
	var w workLog
	work := func(ctx context.Context, r Run) error { w.add(r); return nil }
	q := p.Add(10 * time.Second)
	for range 2 { // the tick, and the host's retry of it
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = y.RunOnce(ctxTimeout(t, 10*time.Second), "job", q, fakeRunOpts(0, true), work)
		}()
		b.pump(done, 50*time.Millisecond)
	}
	rec, _ := b.record(t, "job", p)
	if rec.Status == RunStarted || len(w.of(p)) != 1 || len(w.of(q)) != 1 {
		t.Fatalf("after one 503 while settling: p's record %q at epoch %d, p ran %d times, q ran %d times; want p abandoned and "+
			"re-run once, q run once", rec.Status, rec.Epoch, len(w.of(p)), len(w.of(q)))
	}
}

// Two RunOnce calls for different occurrences in one Client (a handler answering two invocations, a cron whose
// previous occurrence still runs). Call 1 (occurrence t1) writes the lease; its answer is slow. Call 2 (occurrence
// t2) must not adopt call 1's claim, whose document names t1: before the fix it did, and ran t2 under a document
// naming t1, so a holder dying then left t2's record started for ever. Each occurrence runs once, under a
// document that names it.
func TestAdversary_RunOnce_ConcurrentCallsInOneClientNameTheirOwnOccurrence(t *testing.T) {
	b := newFakeBed()
	a, ha := b.hclient(t, "a", nil)
	var w workLog
	must[RunResult](t)(a.RunOnce(context.Background(), "job", t0.Add(-time.Minute), fakeRunOpts(0, false), func(context.Context, Run) error { return nil }))
	t1, t2 := t0.Add(-30*time.Second), t0
	applied, answer := make(chan struct{}), make(chan struct{})
	ha.on("replace", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
		it, err := do(ctx)
		close(applied)
		<-answer
		return it, err
	})
	named := map[time.Time]string{}
	var mu sync.Mutex
	work := func(ctx context.Context, r Run) error {
		w.add(r)
		mu.Lock()
		named[r.Occurrence] = b.doc(t, "job").Metadata.Extra[metaOccurrence]
		mu.Unlock()
		return nil
	}
	done1 := make(chan struct{})
	go func() {
		defer close(done1)
		_, _ = a.RunOnce(ctxTimeout(t, 10*time.Second), "job", t1, fakeRunOpts(0, false), work)
	}()
	<-applied
	done2 := make(chan struct{})
	var res2 RunResult
	var err error
	go func() {
		defer close(done2)
		res2, err = a.RunOnce(ctxTimeout(t, 10*time.Second), "job", t2, fakeRunOpts(0, false), work)
	}()
	time.Sleep(50 * time.Millisecond) // call 2 reads the document while call 1's answer is on its way
	close(answer)
	b.pump(done1, 100*time.Millisecond)
	b.pump(done2, 100*time.Millisecond)
	if err != nil || res2.Status != RunExecuted || len(w.of(t1)) != 1 || len(w.of(t2)) != 1 {
		t.Fatalf("call 2: %+v, %v; t1 ran %d, t2 ran %d times", res2, err, len(w.of(t1)), len(w.of(t2)))
	}
	for _, occ := range []time.Time{t1, t2} {
		if got, want := named[occ], occ.UTC().Format(time.RFC3339Nano); got != want {
			t.Errorf("while %s ran, the lease document named occurrence %s", want, got)
		}
	}
}

// A contender records the skip of the very occurrence the lease holder is about to run. b takes the lease for
// occurrence t, finds p abandoned and re-runs it first (RetryAbandoned). a, a contender of t whose Until comes
// while b's re-run of p still holds the lease, writes t's record as "skipped for overlap" — its reason even says
// the holder is "running occurrence t". b, done with p, claims t, gets 409 and skips it. t never runs, though b
// was alive, held the lease, and would have run it after p without any overlap.
func TestAdversary_RunOnce_UntilNeverSkipsTheOccurrenceTheHolderIsAboutToRun(t *testing.T) {
	b := newFakeBed()
	p := t0
	b.crashedClaimer(t, "job", p)
	occ := p.Add(10 * time.Second)
	bb, _ := b.hclient(t, "b", func(o *Options) { o.ManualRenew = false })
	a, _ := b.hclient(t, "a", nil)
	var w workLog
	reRunning, finishP := make(chan struct{}), make(chan struct{})
	doneB := make(chan RunResult, 1)
	go func() {
		res, _ := bb.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, fakeRunOpts(0, true), func(ctx context.Context, r Run) error {
			w.add(r)
			if r.Retry {
				close(reRunning)
				<-finishP
			}
			return nil
		})
		doneB <- res
	}()
	<-reRunning
	o := fakeRunOpts(0, false)
	o.Until = b.fc.Now().Add(2 * time.Second)
	doneA := make(chan struct{})
	var resA RunResult
	go func() {
		defer close(doneA)
		resA, _ = a.RunOnce(ctxTimeout(t, 20*time.Second), "job", occ, o, func(ctx context.Context, r Run) error { w.add(r); return nil })
	}()
	b.pump(doneA, 100*time.Millisecond)
	close(finishP)
	var resB RunResult
	select {
	case resB = <-doneB:
	case <-time.After(10 * time.Second):
		t.Fatal("b did not return")
	}
	if n := len(w.of(occ)); n != 1 {
		rec, _ := b.record(t, "job", occ)
		t.Fatalf("occurrence ran %d times; want once, by the holder after its re-run of p. a: %s %q; b: %s %q; record %s %q",
			n, resA.Status, resA.Reason, resB.Status, resB.Reason, rec.Status, rec.Reason)
	}
}

// A passing error on the write that records how the run ended. The work completes; the write of its record
// is answered 503 once (not applied). RunOnce logs it and releases the lease: the record says "started" for
// ever, although the work completed. Nobody settles it (the lease was released), inspect --runs shows the
// occurrence still running, and its ttl is never refreshed past the claim. One retry within FinishWithin would
// have recorded it.
func TestAdversary_RunOnce_PassingErrorOnTheFinishWriteLeavesTheRecordStarted(t *testing.T) {
	b := newFakeBed()
	a, ha := b.hclient(t, "a", nil)
	occ := t0
	ha.on("create", RunID("job", occ), 1, refuse)
	done := make(chan struct{})
	var res RunResult
	var err error
	go func() {
		defer close(done)
		res, err = a.RunOnce(ctxTimeout(t, 10*time.Second), "job", occ, fakeRunOpts(0, false), func(context.Context, Run) error { return nil })
	}()
	b.pump(done, 50*time.Millisecond)
	rec, _ := b.record(t, "job", occ)
	if err != nil || res.Status != RunExecuted || rec.Status != RunCompleted {
		t.Fatalf("RunOnce: %s, %v; the record says %q at epoch %d; want completed", res.Status, err, rec.Status, rec.Epoch)
	}
}

// Overlap of two live contenders through the grace. a runs occurrence t; Cosmos DB becomes unreachable from a
// alone (its renewals fail), a is otherwise alive. At RenewDeadline the work's context ends, and the work, which
// honours it, needs a few seconds to stop: within its Grace. But LeaseDuration − RenewDeadline (here 1 s) is all
// the time there is before a contender may take over, so b takes the lease and runs t+1 while t's work still
// runs in a. The claim says two occurrences' work never runs at once in two live contenders; it holds only for
// work that stops within LeaseDuration − RenewDeadline, which the default Grace (10 s) and the handler's (half
// its stop budget, 30 s with a 30-minute functionTimeout, against a 5 s margin for its 30 s lease) exceed.
func TestAdversary_RunOnce_WorkStoppingWithinItsGraceOverlapsTheNextHolder(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, fa := b.client(t, "region0", nil) // lease 3 s, deadline 2 s
		other, _ := b.client(t, "region1", nil)
		var running atomic.Int32
		var overlapped atomic.Bool
		enter := func() {
			if running.Add(1) > 1 {
				overlapped.Store(true)
			}
		}
		occ := occurrenceNow().Add(-time.Minute)
		o := runOpts(0)
		o.Grace = 5 * time.Second
		started := make(chan struct{})
		doneA := make(chan RunResult, 1)
		go func() {
			res, _ := a.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ, o, func(ctx context.Context, r Run) error {
				enter()
				defer running.Add(-1)
				fa.inject("replace", faultUnavailable, 10_000) // a's renewals fail from now on
				close(started)
				<-ctx.Done()
				time.Sleep(3 * time.Second) // stopping takes 3 s: within the grace of 5 s
				return ctx.Err()
			})
			doneA <- res
		}()
		<-started
		res, err := other.RunOnce(ctxTimeout(t, 30*time.Second), "job", occ.Add(time.Second), runOpts(0), func(ctx context.Context, r Run) error {
			enter()
			defer running.Add(-1)
			time.Sleep(200 * time.Millisecond)
			return nil
		})
		resA := <-doneA
		if err != nil || res.Status != RunExecuted {
			t.Fatalf("t+1: %+v, %v", res, err)
		}
		if overlapped.Load() {
			t.Fatalf("t+1's work (epoch %d, started %s) ran beside t's (a: %s %q), which stopped within its grace",
				res.Epoch, res.WorkStarted.Format(time.RFC3339Nano), resA.Status, resA.Reason)
		}
	})
}

// The duty to settle is passed on when it must be. A call whose context ends right after its claim was applied
// never starts the work: the occurrence is recorded as failed (interrupted before its work started) and the lease
// released. A run whose record cannot be read by the holder that should judge it stays in the lease document for
// the next holder to judge.
func TestAdversary_RunOnce_DutyToSettleIsPassedOnOnlyWhenNeeded(t *testing.T) {
	t.Run("interrupted after the claim", func(t *testing.T) {
		b := newFakeBed()
		a, ha := b.hclient(t, "a", nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ha.on("create", leasedoc.IDPrefix+"job", 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
			it, err := do(ctx)
			cancel() // the invocation ends right after the lease was taken
			return it, err
		})
		ran := false
		if _, err := a.RunOnce(ctx, "job", t0, fakeRunOpts(0, false), func(context.Context, Run) error { ran = true; return nil }); err == nil {
			t.Fatal("RunOnce after its context ended: nil error")
		}
		if rec, ok := b.record(t, "job", t0); ran || !ok || rec.Status != RunFailed {
			t.Fatalf("ran %v; record %+v (found %v); want no run, recorded failed", ran, rec, ok)
		}
		if d := b.doc(t, "job"); !d.Released {
			t.Fatalf("the lease was left unreleased (%+v)", d)
		}
	})
	t.Run("record unreadable", func(t *testing.T) {
		b := newFakeBed()
		p := t0
		b.crashedClaimer(t, "job", p)
		y, hy := b.hclient(t, "y", nil)
		hy.on("read", RunID("job", p), -1, refuse)
		q := p.Add(10 * time.Second)
		done := make(chan struct{})
		var res RunResult
		var err error
		go func() {
			defer close(done)
			res, err = y.RunOnce(ctxTimeout(t, 10*time.Second), "job", q, fakeRunOpts(0, false), func(context.Context, Run) error { return nil })
		}()
		b.pump(done, 50*time.Millisecond)
		if err != nil || res.Status != RunExecuted || res.Abandoned != nil {
			t.Fatalf("%+v, %v; want q executed, p not judged", res, err)
		}
		if j := must[jobState](t)(decodeJob(b.doc(t, "job"))); len(j.Settle) != 1 || !j.Settle[0].Occurrence.Equal(p) {
			t.Fatalf("the released document's runs to judge: %+v; want p's", j.Settle)
		}
		z, _ := b.hclient(t, "z", nil)
		r := q.Add(10 * time.Second)
		b.at(r.Sub(t0))
		done = make(chan struct{})
		go func() {
			defer close(done)
			res, err = z.RunOnce(ctxTimeout(t, 10*time.Second), "job", r, fakeRunOpts(0, false), func(context.Context, Run) error { return nil })
		}()
		b.pump(done, 50*time.Millisecond)
		if rec, ok := b.record(t, "job", p); err != nil || !ok || rec.Status != RunAbandoned {
			t.Fatalf("z: %v; p's record %+v (found %v); want it judged abandoned by the next holder", err, rec, ok)
		}
	})
}

// A final record that lands after a takeover by the holder of the next occurrence. a runs t; the create of t's
// record is slow, and a's lease runs out meanwhile (a paused process). b takes the lease for t+1 and judges t's
// run abandoned (its record is missing). Then a's create lands: 409, and b's judgement stands (a later holding
// decided it), so a reports the run lost. Nobody runs work without the lease, and t's record is final. (Before
// issue 23 the create was the claim, and t stayed "started" for ever.) t's work did complete here; it is judged
// abandoned because a could not say so before its lease ended: the stated limit of at-most-once accounting.
func TestAdversary_RunOnce_ClaimLandingAfterATakeoverForTheNextOccurrence(t *testing.T) {
	b := newFakeBed()
	a, ha := b.hclient(t, "a", nil)
	bb, hb := b.hclient(t, "b", nil)
	occ, next := t0, t0.Add(10*time.Second)
	var w workLog
	var bad atomic.Value
	work := b.leaseCheckedWork(t, &w, &bad)
	entered, land, landed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ha.on("create", RunID("job", occ), 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
		close(entered)
		<-land
		it, err := do(context.Background())
		close(landed)
		return it, err
	})
	doneA := make(chan struct{})
	go func() {
		defer close(doneA)
		_, _ = a.RunOnce(context.Background(), "job", occ, fakeRunOpts(0, false), work)
	}()
	<-entered
	b.at(12 * time.Second)
	hb.on("create", RunID("job", next), 1, func(ctx context.Context, do func(context.Context) (store.Item, error)) (store.Item, error) {
		close(land)
		<-landed
		return do(ctx)
	})
	res, err := bb.RunOnce(ctxTimeout(t, 10*time.Second), "job", next, fakeRunOpts(0, true), work)
	// a, whose claim landed after its lease ended, takes the lease again once b has released it, to settle its
	// record: let its polls run.
	waitAdvancing(t, b, doneA)
	if err != nil || res.Status != RunExecuted {
		t.Fatalf("b: %+v, %v", res, err)
	}
	if r, ok := bad.Load().(Run); ok {
		t.Fatalf("the work of %s started at epoch %d without the lease", r.Occurrence.Format(time.RFC3339), r.Epoch)
	}
	if rec, ok := b.record(t, "job", occ); !ok || rec.Status == RunStarted {
		t.Fatalf("occurrence %s: record %+v (found %v); want a final status", occ.Format(time.RFC3339), rec, ok)
	}
}

// Missed occurrences after a schedule change. The run history holds records of the old schedule (hourly) and,
// newest, of the new one (every five minutes); every occurrence of each ran. MissedOccurrences, given the new
// schedule (as LeaseStatus and inspect --runs give it: the handler's own, or the newest record's), opens its
// window at the oldest record, an hourly one, and counts every five-minute tick of the hours before the change
// as missed: an alert that every region was down, right after a deployment that changed the schedule.
func TestAdversary_Missed_ScheduleChangeIsNotAnOutage(t *testing.T) {
	base := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	every := func(d time.Duration) func(time.Time) time.Time {
		return func(t time.Time) time.Time { return t.Truncate(d).Add(d) }
	}
	rec := func(at time.Duration, sched string) RunRecord {
		return RunRecord{Occurrence: base.Add(at), Schedule: sched, Status: RunCompleted}
	}
	hourly, fiveMin := "0 0 * * * *", "0 */5 * * * *"
	recs := []RunRecord{ // newest first, as Runs returns them
		rec(3*time.Hour+5*time.Minute, fiveMin), rec(3*time.Hour, fiveMin),
		rec(2*time.Hour, hourly), rec(time.Hour, hourly), rec(0, hourly),
	}
	m := MissedOccurrences(recs, every(5*time.Minute), base.Add(3*time.Hour+7*time.Minute), time.Minute, 10)
	if m.Count != 0 {
		t.Fatalf("%d occurrences counted missed from %s to %s (newest %v), though every occurrence of each schedule ran",
			m.Count, m.From.Format(time.RFC3339), m.To.Format(time.RFC3339), m.Times[:min(3, len(m.Times))])
	}
}

// waitAdvancing waits for a value from done while moving the fake clock on, so that a contender that polls on
// it gets its turns; it fails the test after 10 s of real time.
func waitAdvancing[T any](t *testing.T, b *fakeBed, done <-chan T) T {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case v := <-done:
			return v
		default:
			b.fc.Advance(100 * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatal("RunOnce did not return")
	var zero T
	return zero
}

// leaseCheckedWork is work that logs each run in w and stores in bad any run whose epoch is not the lease
// document's when it starts: work started without the lease.
func (b *fakeBed) leaseCheckedWork(t *testing.T, w *workLog, bad *atomic.Value) RunFunc {
	return func(ctx context.Context, r Run) error {
		w.add(r)
		if d := b.doc(t, "job"); d.Epoch != r.Epoch {
			bad.Store(r)
		}
		return nil
	}
}
