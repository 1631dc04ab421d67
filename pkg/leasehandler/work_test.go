//go:build linux || darwin

package leasehandler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// inProcess serves the handler with a work function of the test's own, against the real server; extra
// overrides app settings.
func inProcess(t testing.TB, work WorkFunc, extra ...map[string]string) (*httptest.Server, *handler, string) {
	t.Helper()
	return serveJobs(t, merge(testEnv(t), mergeAll(extra)), LeaseTimer(work))
}

// testEnv is the app settings of the in-process tests, on a container of their own: LeaseTimer every 2 s, in
// eastus, preferred before westeurope, 1 s apart; a lease of 6 s.
func testEnv(t testing.TB) map[string]string {
	srv := cosmostest.Get(t)
	container := "work-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := emulator.EnsureContainer(context.Background(), srv.Endpoint, srv.Database, container, "/leaseKey"); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"CosmosLeasing__ConnectionString": emulator.ConnectionString(srv.Endpoint), "CosmosLeasing__DatabaseName": srv.Database,
		"CosmosLeasing__ContainerName": container, "LeaseTimerSchedule": "*/2 * * * * *", "REGION_NAME": "eastus", "WEBSITE_SITE_NAME": "cosmoslease-func", "WEBSITE_POD_NAME": "eastus-pod-1",
		"CosmosLeasing__DefaultLeaseDuration": "00:00:06", "LeaseTimerFailoverDelay": "00:00:01", "LeaseTimerPreferredRegions": "eastus,westeurope"}
}

// dueNow is the occurrence of the tests' schedule (every 2 s) due now. When less than half the gap is left before
// the next one, it waits for that one: a tick for the occurrence it returns has at least a second of its
// contender's time (Until: the next occurrence, for the preferred region) ahead, even on a loaded machine.
func dueNow() time.Time {
	const gap = 2 * time.Second
	occ := time.Now().Truncate(gap)
	if next := occ.Add(gap); time.Until(next) < gap/2 {
		time.Sleep(time.Until(next))
		occ = next
	}
	return occ.UTC()
}

func mergeAll(maps []map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		out = merge(out, m)
	}
	return out
}

// serveJobs serves jobs (and the command jobs env configures) on env, as Serve does, over HTTP in this process.
// Every job must be able to run.
func serveJobs(t testing.TB, env map[string]string, jobs ...Job) (*httptest.Server, *handler, string) {
	t.Helper()
	e := environment(env)
	app, err := loadApp(e)
	if err != nil {
		t.Fatal(err)
	}
	specs, problems := listJobs(jobs, e)
	h := newHandler(app, nil, specs, e, slog.New(slog.DiscardHandler))
	if p := append(problems, h.problems()...); len(p) > 0 {
		t.Fatal(p)
	}
	h.out = &output{stdout: io.Discard, stderr: io.Discard}
	ts := httptest.NewServer(h.mux())
	t.Cleanup(ts.Close)
	t.Cleanup(h.release)
	return ts, h, env["CosmosLeasing__ContainerName"]
}

func postTimer(t *testing.T, ts *httptest.Server, next time.Time) tickResult {
	t.Helper()
	return post(t, ts, unmonitoredTick(fired(next)))
}

func post(t *testing.T, ts *httptest.Server, payload []byte) tickResult {
	t.Helper()
	return postWithin(t, ts, payload, 0)
}

// postWithin posts a tick as the host does, which waits at most functionTimeout (0: no limit) for the answer.
func postWithin(t *testing.T, ts *httptest.Server, payload []byte, functionTimeout time.Duration) tickResult {
	t.Helper()
	client := &http.Client{Timeout: functionTimeout}
	resp, err := client.Post(ts.URL+"/"+fnTimer, "application/json", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ ReturnValue tickResult }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || (resp.StatusCode == 500) != (r.ReturnValue.Status == "failed") ||
		(resp.StatusCode != 200 && resp.StatusCode != 500) {
		t.Fatalf("answer %d %+v: %v; want 200, or 500 for a failed tick", resp.StatusCode, r.ReturnValue, err)
	}
	return r.ReturnValue
}

// Work longer than the renewal interval keeps the lease: it is renewed while the work runs.
func TestLongWorkIsCoveredByRenewals(t *testing.T) {
	var sawRenewals int64
	var h *handler
	var ts *httptest.Server
	ts, h, _ = inProcess(t, func(ctx context.Context, run Run) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(h.client.Options().RenewInterval*2 + h.client.Options().RenewInterval/2):
		}
		s, err := h.client.Inspect(ctx, h.jobs[0].s.key)
		if err != nil {
			return err
		}
		sawRenewals = s.Renewals
		return ctx.Err()
	})
	r := postTimer(t, ts, dueNow())
	if r.Status != "executed" {
		t.Fatalf("tick: %+v", r)
	}
	if sawRenewals < 2 {
		t.Fatalf("%d renewals during work of 2.5 renewal intervals, want at least 2", sawRenewals)
	}
}

// When the lease is lost while the work runs, the work's context ends and the run is recorded as lost.
func TestWorkStopsWhenTheLeaseIsLost(t *testing.T) {
	started := make(chan struct{})
	var workErr error
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error {
		close(started)
		<-ctx.Done()
		workErr = context.Cause(ctx)
		return ctx.Err()
	})
	go func() {
		<-started
		srv := cosmostest.Get(t)
		c, _ := azcosmos.NewClientFromConnectionString(srv.ConnectionString, nil)
		cc, _ := c.NewContainer(srv.Database, container)
		body := `{"id":"lease-timer-singleton","leaseKey":"timer-singleton","leaseId":"other","ownerId":"westeurope-1","epoch":9,"leaseDurationMs":6000,"metadata":{}}`
		_, _ = cc.UpsertItem(context.Background(), azcosmos.NewPartitionKeyString("timer-singleton"), []byte(body), nil)
	}()
	occ := dueNow()
	r := postTimer(t, ts, occ)
	if r.Status != "failed" || workErr == nil || !errors.Is(workErr, cosmoslease.ErrLeaseLost) {
		t.Fatalf("tick %+v, work ended with %v", r, workErr)
	}
	if recs := runRecords(t, container, h.jobs[0].s.key); len(recs) != 1 || recs[0].Status != cosmoslease.RunLost {
		t.Fatalf("run records %+v; want one, lost", recs)
	}
}

// runRecords reads up to 1000 of the newest run records of a lease in a container of the test server.
func runRecords(t testing.TB, container, key string) []cosmoslease.RunRecord {
	t.Helper()
	srv := cosmostest.Get(t)
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(srv.Endpoint),
		Database: srv.Database, Container: container, OwnerID: "test-reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs, err := c.Runs(context.Background(), key, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Regression: LeaseStatus answers while a tick's work runs (it used to wait for the tick's lock).
func TestStatusAnswersDuringWork(t *testing.T) {
	started, finish := make(chan struct{}), make(chan struct{})
	ts, _, _ := inProcess(t, func(ctx context.Context, run Run) error {
		close(started)
		select {
		case <-finish:
		case <-ctx.Done():
		}
		return ctx.Err()
	})
	done := make(chan tickResult, 1)
	go func() { done <- postTimer(t, ts, dueNow()) }()
	<-started
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post(ts.URL+"/"+statusFunction, "application/json", strings.NewReader(`{"Data":{"req":{"Method":"GET"}},"Metadata":{}}`))
	close(finish)
	if err != nil {
		t.Fatalf("LeaseStatus during work: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ Outputs struct{ Res httpOutput } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Outputs.Res.StatusCode != 200 || !strings.Contains(out.Outputs.Res.Body, `"state":"held"`) {
		t.Fatalf("LeaseStatus during work: %v %+v", err, out)
	}
	if r := <-done; r.Status != "executed" {
		t.Fatalf("tick: %+v", r)
	}
}

// A monitored schedule's missed occurrence, replayed by the host after a restart (IsPastDue, Next the missed
// occurrence), is skipped when it already ran. One that never ran executes, late, while its time lasts (until the
// occurrence after it); past that it is skipped as late, and the next claim records it missed. One older than the
// run-record retention is skipped, saying why, since its record could have expired and it could run twice.
func TestPastDueReplay(t *testing.T) {
	var ran atomic.Int32
	ts, _, _ := inProcess(t, func(ctx context.Context, run Run) error { ran.Add(1); return nil }, map[string]string{"LeaseTimerSchedule": "*/20 * * * * *"})
	m := time.Now().UTC().Truncate(20 * time.Second)
	if time.Until(m.Add(20*time.Second)) < 5*time.Second {
		time.Sleep(time.Until(m.Add(20 * time.Second)))
		m = m.Add(20 * time.Second)
	}
	// m was missed: the host replays it a moment late, and it runs, as past due.
	if r := post(t, ts, monitoredTick(m.Add(-20*time.Second), m, time.Now().UTC(), true)); r.Status != "executed" || !r.Occurrence.Equal(m) {
		t.Fatalf("replay of %s: %+v", m, r)
	}
	// The host was killed before it recorded the run of m; on restart it replays m again.
	r := post(t, ts, monitoredTick(m.Add(-20*time.Second), m, time.Now().UTC(), true))
	if r.Status != "skipped" || !r.Occurrence.Equal(m) || !strings.Contains(r.Reason, "claimed by cosmoslease-func@eastus") {
		t.Fatalf("replay of %s: %+v", m, r)
	}
	// m − 40 s was missed long ago (its time ended when m − 20 s came): skipped as late, not run.
	old := m.Add(-40 * time.Second)
	r = post(t, ts, monitoredTick(old.Add(-20*time.Second), old, time.Now().UTC(), true))
	if r.Status != "skipped" || !r.Occurrence.Equal(old) || ran.Load() != 1 {
		t.Fatalf("replay of %s: %+v, work ran %d times", old, r, ran.Load())
	}
	// An occurrence 31 days old (the retention is 30): skipped, with the reason, without running.
	old = m.Add(-31 * 24 * time.Hour)
	r = post(t, ts, monitoredTick(old.Add(-time.Minute), old, time.Now().UTC(), true))
	if r.Status != "skipped" || !r.Occurrence.Equal(old) || !strings.Contains(r.Reason, "older than the run-record retention") || ran.Load() != 1 {
		t.Fatalf("replay of a 31-day-old occurrence: %+v, work ran %d times", r, ran.Load())
	}
}

// With LeaseTimerCatchUpWindow, the host's past-due tick after an outage of every region (IsPastDue, Next the
// first occurrence it missed) runs the newest missed occurrence once, marked caught up; the earlier ones are
// recorded missed by the same claim; a second past-due tick, from another region or after another restart, skips.
func TestPastDueTickCatchesUpTheNewestMissedOccurrence(t *testing.T) {
	var mu sync.Mutex
	var runs []Run
	ts, _, container := inProcess(t, func(ctx context.Context, run Run) error {
		mu.Lock()
		runs = append(runs, run)
		mu.Unlock()
		return nil
	}, map[string]string{"LeaseTimerSchedule": "*/30 * * * * *", "LeaseTimerCatchUpWindow": "00:10:00"})
	// The claim window is 2 regions × 1 s + the 6 s lease + 10 s = 18 s: m must be past it, and the next
	// occurrence not yet due.
	now := time.Now().UTC()
	m := now.Truncate(30 * time.Second)
	if d := now.Sub(m); d < 20*time.Second || d >= 26*time.Second {
		m = now.Truncate(30 * time.Second).Add(30 * time.Second)
		time.Sleep(time.Until(m.Add(20 * time.Second)))
	}
	// The occurrence five before m ran; then every region was down.
	srv := cosmostest.Get(t)
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(srv.Endpoint),
		Database: srv.Database, Container: container, OwnerID: "before-the-outage"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cursor := m.Add(-150 * time.Second)
	every30s := func(x time.Time) time.Time { return x.Truncate(30 * time.Second).Add(30 * time.Second) }
	if r, err := c.RunOnce(context.Background(), config.TimerLeaseKey, cursor, cosmoslease.RunOptions{Next: every30s}, func(context.Context, cosmoslease.Run) error { return nil }); err != nil || r.Status != cosmoslease.RunExecuted {
		t.Fatalf("before the outage: %+v, %v", r, err)
	}
	first := cursor.Add(30 * time.Second)
	r := post(t, ts, monitoredTick(cursor, first, time.Now().UTC(), true))
	if r.Status != "executed" || !r.Occurrence.Equal(m) || !r.CaughtUp {
		t.Fatalf("past-due tick: %+v; want %s executed, caught up", r, m)
	}
	mu.Lock()
	if len(runs) != 1 || !runs[0].CaughtUp || !runs[0].PastDue {
		t.Fatalf("runs %+v", runs)
	}
	mu.Unlock()
	if r := post(t, ts, monitoredTick(cursor, first, time.Now().UTC(), true)); r.Status != "skipped" || !r.Occurrence.Equal(m) {
		t.Fatalf("second past-due tick: %+v", r)
	}
	missed := 0
	for _, rec := range runRecords(t, container, config.TimerLeaseKey) {
		switch {
		case rec.Status == cosmoslease.RunMissed:
			missed += rec.Occurrences()
		case rec.Occurrence.Equal(m) && !rec.CaughtUp:
			t.Fatalf("%s's record %+v", m, rec)
		}
	}
	if missed != 4 || len(runs) != 1 {
		t.Fatalf("%d missed, %d runs; want 4 and 1", missed, len(runs))
	}
	var jobs []jobStatus
	if err := json.Unmarshal(leaseStatus(t, ts)["jobs"], &jobs); err != nil || len(jobs) != 1 || jobs[0].LastRun == nil || !jobs[0].LastRun.CaughtUp ||
		jobs[0].MissedTotal != 4 {
		t.Fatalf("LeaseStatus jobs: %v %+v; want the last run caught up, 4 missed", err, jobs)
	}
}

// LeaseTimerOverlap=skip: a tick for an occurrence that came due while the previous one's work runs answers
// skipped at once (the host's next ticks are not held back), and the next occurrence's claim records it skipped
// for overlap.
func TestOverlapSkipAnswersAtOnce(t *testing.T) {
	started, finish := make(chan struct{}, 1), make(chan struct{})
	var ran atomic.Int32
	ts, _, container := inProcess(t, func(ctx context.Context, run Run) error {
		if ran.Add(1) == 1 {
			started <- struct{}{}
			<-finish
		}
		return nil
	}, map[string]string{"LeaseTimerOverlap": "skip"})
	occ := time.Now().UTC().Truncate(2 * time.Second).Add(2 * time.Second)
	time.Sleep(time.Until(occ))
	done := make(chan tickResult, 1)
	go func() { done <- postTimer(t, ts, occ) }()
	<-started
	time.Sleep(time.Until(occ.Add(2 * time.Second)))
	r := postTimer(t, ts, occ.Add(2*time.Second))
	close(finish)
	if r.Status != "skipped" || !strings.Contains(r.Reason, "overlap policy is skip") {
		t.Fatalf("the tick during the run: %+v; want skipped for overlap", r)
	}
	if r := <-done; r.Status != "executed" {
		t.Fatalf("the first tick: %+v", r)
	}
	next := time.Now().UTC().Truncate(2 * time.Second).Add(2 * time.Second)
	time.Sleep(time.Until(next))
	if r := postTimer(t, ts, next); r.Status != "executed" {
		t.Fatalf("the next tick: %+v", r)
	}
	found := false
	for _, rec := range runRecords(t, container, config.TimerLeaseKey) {
		if rec.Covers(occ.Add(2*time.Second)) && rec.Status == cosmoslease.RunSkipped && rec.Cause == "overlap" {
			found = true
		}
	}
	if !found || ran.Load() != 2 {
		t.Fatalf("record of the overlapped occurrence found: %v; work ran %d times, want 2", found, ran.Load())
	}
}

// The invocation's own deadline, below functionTimeout: the work's context ends, the run is recorded as timed
// out, the host gets its answer in time, and the lease is released, so the next occurrence runs at once.
// (The handler used to wait for the work however long it took, until the host killed it.)
func TestDeadlineBelowFunctionTimeout(t *testing.T) {
	const timeout = 4 * time.Second
	var calls atomic.Int32
	causes := make(chan error, 1)
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error {
		if calls.Add(1) > 1 {
			return nil
		}
		<-ctx.Done() // a long job that stops when told
		causes <- context.Cause(ctx)
		return ctx.Err()
	}, map[string]string{"AzureFunctionsJobHost__functionTimeout": "00:00:04", "LeaseTimerPreferredRegions": "eastus"})
	occ := dueNow()
	start := time.Now()
	r := postWithin(t, ts, unmonitoredTick(fired(occ)), timeout)
	if took := time.Since(start); r.Status != "failed" || !strings.Contains(r.Reason, "reached its deadline") || !strings.Contains(r.Reason, "functionTimeout of 00:00:04") {
		t.Fatalf("tick answered after %s: %+v", took, r)
	}
	if c := <-causes; !errors.Is(c, errDeadline) {
		t.Fatalf("the work's context ended with %v, want the deadline", c)
	}
	if recs := runRecords(t, container, h.jobs[0].s.key); len(recs) != 1 || recs[0].Status != cosmoslease.RunTimedOut || recs[0].FinishedAt.IsZero() {
		t.Fatalf("run records %+v; want one, timed out", recs)
	}
	s, err := h.client.Inspect(context.Background(), h.jobs[0].s.key)
	if err != nil || !s.Released {
		t.Fatalf("after the timeout the lease is %+v (%v); want it released", s, err)
	}
	// The occurrence due now: occ + 2 s's contender's time (until occ + 4 s) may have run out during the first.
	if r2 := postWithin(t, ts, unmonitoredTick(fired(dueNow())), timeout); r2.Status != "executed" || r2.Epoch != r.Epoch+1 {
		t.Fatalf("next tick: %+v; want executed at epoch %d", r2, r.Epoch+1)
	}
}

// Work that ignores the end of its context cannot hold the answer back: the tick answers in time and says
// the work may still run; no other occurrence starts beside it; once it returns, ticks run work again.
func TestWorkIgnoringItsDeadline(t *testing.T) {
	const timeout = 4 * time.Second
	var calls atomic.Int32
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error {
		if calls.Add(1) == 1 {
			time.Sleep(5 * time.Second) // ignores ctx
		}
		return nil
	}, map[string]string{"AzureFunctionsJobHost__functionTimeout": "00:00:04", "LeaseTimerPreferredRegions": "eastus"})
	occ := dueNow()
	start := time.Now()
	if r := postWithin(t, ts, unmonitoredTick(fired(occ)), timeout); r.Status != "failed" || !strings.Contains(r.Reason, "may still be running") {
		t.Fatalf("tick: %+v", r)
	}
	if recs := runRecords(t, container, h.jobs[0].s.key); len(recs) != 1 || recs[0].Status != cosmoslease.RunTimedOut {
		t.Fatalf("run records %+v; want one, timed out", recs)
	}
	if r := postWithin(t, ts, unmonitoredTick(fired(occ.Add(4*time.Second))), timeout); r.Status != "failed" || !strings.Contains(r.Reason, "still runs") {
		t.Fatalf("tick while the work still runs: %+v", r)
	}
	// The lease stays held while the work runs, so no other region starts an occurrence beside it.
	if s, err := h.client.Inspect(context.Background(), h.jobs[0].s.key); err != nil || !s.Held {
		t.Fatalf("while the work still runs the lease is %+v (%v); want it held", s, err)
	}
	time.Sleep(time.Until(start.Add(6 * time.Second)))
	if r := postWithin(t, ts, unmonitoredTick(fired(occ.Add(6*time.Second))), timeout); r.Status != "executed" {
		t.Fatalf("tick after the work returned: %+v", r)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("the work ran %d times, want 2 (none beside the straggler)", n)
	}
}

// A tick that fails is a failed invocation for the host: answered 500 (the host records a failure and drops
// Logs), its reason one error line on stderr, its other lines on stdout. A tick that succeeds keeps its lines
// in Logs and writes nothing. No line goes two ways.
func TestFailedTickIsAFailedInvocation(t *testing.T) {
	var calls atomic.Int32
	ts, h, _ := inProcess(t, func(ctx context.Context, run Run) error {
		run.Logf("pushed %d items downstream", 3)
		if calls.Add(1) == 1 {
			return errors.New("the downstream refused epoch 1")
		}
		return nil
	})
	stdout, stderr := &syncBuf{}, &syncBuf{}
	h.out = &output{stdout: stdout, stderr: stderr}
	invoke := func(occ time.Time) (int, tickResult, []string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/"+fnTimer, bytes.NewReader(unmonitoredTick(fired(occ))))
		req.Header.Set("X-Azure-Functions-InvocationId", "7b3e")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Logs        []string
			ReturnValue tickResult
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out.ReturnValue, out.Logs
	}
	occ := dueNow()
	code, ret, logs := invoke(occ)
	if code != 500 || ret.Status != "failed" || len(logs) != 0 {
		t.Fatalf("failed tick: %d %+v, Logs %v; want 500 and no Logs", code, ret, logs)
	}
	o := occ.Format(time.RFC3339)
	wantOut := "LeaseTimer (invocation 7b3e): occurrence " + o + ": executing in eastus on instance eastus-pod-1 at epoch 1\n" +
		"LeaseTimer (invocation 7b3e): pushed 3 items downstream\n" +
		`LeaseTimer (invocation 7b3e): {"event":"cosmoslease.run","job":"LeaseTimer","lease":"timer-singleton","occurrence":"` + o + `","region":"eastus","instance":"eastus-pod-1","rank":0,"status":"failed","epoch":1,"failoverDelayMs":D,"durationMs":D}` + "\n"
	wantErr := "LeaseTimer (invocation 7b3e): failed: occurrence " + o + ": failed: the downstream refused epoch 1\n"
	numbers := regexp.MustCompile(`(Ms":)\d+`)
	if got := numbers.ReplaceAllString(stdout.String(), "${1}D"); got != wantOut || stderr.String() != wantErr {
		t.Fatalf("stdout:\n%s\nstderr:\n%s\nwant:\n%s\n%s", stdout, stderr, wantOut, wantErr)
	}
	code, ret, logs = invoke(occ.Add(2 * time.Second))
	if code != 200 || ret.Status != "executed" || len(logs) != 4 || logs[1] != "pushed 3 items downstream" ||
		!strings.HasPrefix(logs[2], `{"event":"cosmoslease.run"`) || !strings.Contains(logs[2], `"status":"executed"`) {
		t.Fatalf("successful tick: %d %+v, Logs %v", code, ret, logs)
	}
	if got := numbers.ReplaceAllString(stdout.String(), "${1}D"); got != wantOut || stderr.String() != wantErr {
		t.Fatalf("a successful tick wrote to stdout or stderr:\n%s%s", stdout, stderr)
	}
}
