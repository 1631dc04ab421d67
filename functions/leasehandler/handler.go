package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Functions maps each function folder to its route; the host calls /{FunctionName}.
const (
	fnTimer  = "LeaseTimer"
	fnStatus = "LeaseStatus"
)

// handler serves the Functions host. One handler process runs per instance of the app in a region.
type handler struct {
	s      *settings
	setErr error // a settings problem, reported on every invocation
	work   WorkFunc
	log    *slog.Logger // the process's own messages, on stdout
	out    *output      // where invocations write what the host must log (protocol.go)
	now    func() time.Time

	connMu sync.Mutex // guards opening and closing the client
	client *cosmoslease.Client
}

func newHandler(s *settings, setErr error, work WorkFunc, log *slog.Logger) *handler {
	return &handler{s: s, setErr: setErr, work: work, log: log, out: &output{stdout: os.Stdout, stderr: os.Stderr}, now: time.Now}
}

// routes lists the functions this handler serves; a test checks they match the function folders.
func (h *handler) routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{fnTimer: h.timer, fnStatus: h.status}
}

func (h *handler) mux() *http.ServeMux {
	mux := http.NewServeMux()
	for name, fn := range h.routes() {
		mux.HandleFunc("/"+name, fn)
	}
	return mux
}

// tickResult is the timer function's return value.
type tickResult struct {
	Status     string    `json:"status"` // executed, skipped, failed
	Occurrence time.Time `json:"occurrence,omitzero"`
	Region     string    `json:"region,omitempty"`
	Owner      string    `json:"owner,omitempty"`
	Instance   string    `json:"instance,omitempty"`
	Rank       int       `json:"rank"`
	Epoch      int64     `json:"epoch,omitempty"`
	// Holder is the owner of the run record that made this region skip.
	Holder string `json:"holder,omitempty"`
	Reason string `json:"reason,omitempty"`
	// FailoverDelayMs is how late after the occurrence the work started here.
	FailoverDelayMs int64 `json:"failoverDelayMs,omitempty"`
}

func readInvocation(r *http.Request) (invokeRequest, error) {
	var req invokeRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return req, err
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, fmt.Errorf("the invocation is not the host's JSON: %v", err)
	}
	return req, nil
}

// connect opens the client once and returns it; a failure is retried on the next invocation.
func (h *handler) connect(ctx context.Context) (*cosmoslease.Client, error) {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if h.client != nil {
		return h.client, nil
	}
	opts := h.s.opts
	opts.Logger = h.log
	c, err := cosmoslease.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	h.client = c
	return c, nil
}

// runSummary is the one structured line each tick writes: the same figures the metrics carry, for the host to
// ship to Application Insights (query it with parse_json).
type runSummary struct {
	Event           string    `json:"event"`
	Lease           string    `json:"lease"`
	Occurrence      time.Time `json:"occurrence"`
	Region          string    `json:"region"`
	Instance        string    `json:"instance"`
	Rank            int       `json:"rank"`
	Status          string    `json:"status"`
	Epoch           int64     `json:"epoch,omitempty"`
	FailoverDelayMs int64     `json:"failoverDelayMs,omitempty"`
	DurationMs      int64     `json:"durationMs"`
}

// timer is one tick: elect, for this occurrence, the most preferred region that is alive (the library's
// RunOnce), and if it is this one run the work under the lease; answer how it went, within the invocation's
// deadline (timeout.go).
func (h *handler) timer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	iv := h.invocation(fnTimer, r)
	res := tickResult{Status: "failed"}
	fail := func(format string, args ...any) {
		res.Status, res.Reason = "failed", fmt.Sprintf(format, args...)
		iv.fail(format, args...)
		iv.answer(w, nil, res)
	}
	if h.setErr != nil {
		fail("%v", h.setErr)
		return
	}
	req, err := readInvocation(r)
	if err != nil {
		fail("%v", err)
		return
	}
	info, sys, err := parseTimer(req)
	if err != nil {
		fail("%v", err)
		return
	}
	ctx, cancel := h.s.budget.deadline(r.Context(), start)
	defer cancel()
	res.Region, res.Owner, res.Instance = h.s.opts.Region, h.s.opts.OwnerID, h.s.instance
	res.Occurrence = h.occurrence(info, sys)
	occ := res.Occurrence.Format(time.RFC3339)

	client, err := h.connect(ctx)
	if err != nil {
		fail("cannot use the lease container: %v", cause(ctx, err))
		return
	}
	rank, ranks := h.s.rank(client.AccountRegions())
	res.Rank = rank
	o := h.runOptions(ctx, client, res.Occurrence, rank, ranks, info.IsPastDue)
	out, err := client.RunOnce(ctx, h.s.key, res.Occurrence, o, func(ctx context.Context, run cosmoslease.Run) error {
		what := "executing"
		if run.Retry {
			what = "running again (its claimer died mid-work)"
		}
		iv.logf("occurrence %s: %s in %s on instance %s at epoch %d", run.Occurrence.Format(time.RFC3339), what, run.Region, run.Instance, run.Epoch)
		return h.work(ctx, Run{Occurrence: run.Occurrence, Region: run.Region, Instance: run.Instance, Epoch: run.Epoch,
			PastDue: run.PastDue, Retry: run.Retry, Logf: iv.logf})
	})
	if ab := out.Abandoned; ab != nil {
		iv.logf("occurrence %s was abandoned: %s", ab.Occurrence.UTC().Format(time.RFC3339), ab.Reason)
	}
	if rt := out.Retried; rt != nil && !rt.Occurrence.Equal(out.Occurrence) {
		iv.logf("occurrence %s (abandoned) ran again: %s %s", rt.Occurrence.Format(time.RFC3339), rt.Status, rt.Reason)
	}
	res.Epoch, res.FailoverDelayMs = out.Epoch, out.FailoverDelay.Milliseconds()
	iv.logf("%s", h.summary(out, rank, start))
	switch {
	case err == nil && out.Status == cosmoslease.RunSkipped:
		res.Status, res.Reason, res.Holder, res.Epoch = "skipped", out.Reason, out.Record.Owner, out.Record.Epoch
		iv.logf("occurrence %s: skipped, %s", occ, res.Reason)
	case err == nil:
		res.Status = "executed"
		iv.logf("occurrence %s: done", occ)
	case out.WorkStarted.IsZero():
		fail("occurrence %s: %v", occ, cause(ctx, err))
		return
	default:
		fail("occurrence %s: %s: %s", occ, out.Status, out.Reason)
		return
	}
	iv.answer(w, nil, res)
}

// runOptions are the election's options for one occurrence. A region of rank r contends r × the failover delay
// after the occurrence, and gives the occurrence up (recorded as skipped for overlap) if another occurrence's
// work still holds the lease when it would contend for the next one, or shortly before the invocation's
// deadline.
func (h *handler) runOptions(ctx context.Context, client *cosmoslease.Client, occ time.Time, rank, ranks int, pastDue bool) cosmoslease.RunOptions {
	o := cosmoslease.RunOptions{Rank: rank, Regions: cosmoslease.Order(h.s.preferred, client.AccountRegions()), FailoverDelay: h.s.delay, RetryAbandoned: h.s.retryAbandoned,
		Retention: h.s.retention, Instance: h.s.instance, PastDue: pastDue, Schedule: h.s.sched.Expr(), Next: h.s.sched.Next,
		MissedAfter: h.s.missedAfter(ranks), Grace: h.s.grace(), FinishWithin: h.s.budget.finish}
	o.Until = h.s.sched.Next(occ).Add(time.Duration(rank) * h.s.delay)
	if dl, ok := ctx.Deadline(); ok {
		// Stop waiting for the lease in time to answer the host, unless the invocation is too short for that
		// (then the deadline itself ends the wait, or the work).
		if last := dl.Add(-2 * client.Options().RequestTimeout); last.Before(o.Until) && last.After(h.now()) {
			o.Until = last
		}
	}
	return o
}

// grace is how long the work has to return once its context has ended: the budget's, at most
// cosmoslease.DefaultRunGrace. A region that takes over the lease of one that never released waits for as much
// of it as its lease does not already cover before starting any work, so a long grace would slow every failover
// after a region dies mid-work.
func (s *settings) grace() time.Duration {
	if s.budget.grace > 0 {
		return min(s.budget.grace, cosmoslease.DefaultRunGrace)
	}
	return cosmoslease.DefaultRunGrace
}

// missedAfter is how long after an occurrence its run record may still be missing without it being missed.
func (s *settings) missedAfter(ranks int) time.Duration {
	return cosmoslease.ClaimWindow(ranks, s.delay, s.opts.LeaseDuration)
}

func (h *handler) summary(out cosmoslease.RunResult, rank int, start time.Time) string {
	b, _ := json.Marshal(runSummary{Event: "cosmoslease.run", Lease: h.s.key, Occurrence: out.Occurrence, Region: h.s.opts.Region,
		Instance: h.s.instance, Rank: rank, Status: out.Status, Epoch: out.Epoch, FailoverDelayMs: out.FailoverDelay.Milliseconds(),
		DurationMs: time.Since(start).Milliseconds()})
	return string(b)
}

// cause prefers the reason the invocation's context ended to the bare error of a request it cut short.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return err
}

// occurrence names the schedule occurrence this tick is for, the same in every region. During a scheduled
// run, the host's ScheduleStatus.Next is the occurrence now firing (a missed one when IsPastDue): it is used
// when the schedule contains it and it is not in the future. Otherwise the host gave no status (useMonitor
// false, sub-minute schedules) or the one still to come (a manual run), and the occurrence is the latest one
// at or before UtcNow + 1 s, since the host can fire up to about a second early.
func (h *handler) occurrence(info timerInfo, sys sysMetadata) time.Time {
	now := sys.UtcNow.Time
	if now.IsZero() {
		now = h.now().UTC()
	}
	limit := now.Add(time.Second)
	if st := info.ScheduleStatus; st != nil && !st.Next.IsZero() && !st.Next.After(limit) && h.s.sched.Contains(st.Next.Time) {
		return st.Next.UTC()
	}
	return h.s.sched.Prev(limit)
}

// status is the HTTP function LeaseStatus: the lease, its newest runs and the occurrences missed among them.
// When it cannot read them the invocation fails (500), and the host answers the caller with 500.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	iv := h.invocation(fnStatus, r)
	fail := func(format string, args ...any) {
		iv.fail(format, args...)
		iv.answer(w, nil, nil)
	}
	if h.setErr != nil {
		fail("%v", h.setErr)
		return
	}
	if _, err := readInvocation(r); err != nil {
		fail("%v", err)
		return
	}
	ctx, cancel := h.s.budget.deadline(r.Context(), time.Now())
	defer cancel()
	client, err := h.connect(ctx)
	if err != nil {
		fail("cannot use the lease container: %v", cause(ctx, err))
		return
	}
	_, ranks := h.s.rank(client.AccountRegions())
	hist, err := client.History(ctx, h.s.key, cosmoslease.DefaultRunLimit, h.s.sched.Next, h.s.missedAfter(ranks))
	if err != nil {
		fail("read lease %q and its runs: %v", h.s.key, cause(ctx, err))
		return
	}
	s := hist.Lease
	missed := hist.Missed
	body := statusBody{Lease: h.s.key, State: s.Status(), Owner: s.Owner, Region: s.Region, Instance: s.Hostname,
		Epoch: s.Epoch, ExpiresInMs: s.ExpiresIn.Milliseconds(), Renewals: s.Renewals, Occurrence: s.Metadata["occurrence"],
		RecentRuns: hist.Runs, Running: hist.Running, MissedCount: missed.Count, Missed: missed.Times, MissedCapped: missed.Capped,
		MissedTotal: hist.MissedTotal, Overdue: hist.Overdue, Absent: hist.Absent}
	if !hist.Cursor.IsZero() {
		body.Cursor = &hist.Cursor
	}
	if body.Missed == nil {
		body.Missed = []time.Time{}
	}
	if body.RecentRuns == nil {
		body.RecentRuns = []cosmoslease.RunRecord{}
	}
	if !missed.From.IsZero() {
		body.MissedWindow = &window{From: missed.From, To: missed.To}
	}
	b, _ := json.Marshal(body)
	iv.answer(w, map[string]any{"res": httpOutput{StatusCode: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b)}}, nil)
}

// statusBody is LeaseStatus's answer: the lease as its document shows it, the newest runs, and the occurrences
// missed among them. On Flex Consumption HTTP functions run on instances of their own, never the timer's, so the
// answer says nothing about the process that serves it. The lease is held only while an occurrence's work runs:
// between runs it is released.
type statusBody struct {
	Lease string `json:"lease"`
	// State is held, expired, released, free or invalid; ExpiresInMs is the longest the holder may still hold it,
	// as far as this reader can tell.
	State string `json:"state"`
	// Owner is the region's app that last held the lease; Instance its process; Occurrence the occurrence it ran.
	Owner       string                  `json:"owner"`
	Region      string                  `json:"region"`
	Instance    string                  `json:"instance"`
	Epoch       int64                   `json:"epoch"`
	ExpiresInMs int64                   `json:"expiresInMs"`
	Renewals    int64                   `json:"renewals"`
	Occurrence  string                  `json:"occurrence,omitempty"`
	RecentRuns  []cosmoslease.RunRecord `json:"recentRuns"`
	// Cursor is the newest occurrence decided; Running the run of it that has not finished, if any (its holder
	// holds the lease, or stopped without releasing it).
	Cursor  *time.Time             `json:"cursor,omitempty"`
	Running *cosmoslease.RunRecord `json:"running,omitempty"`
	// MissedCount is how many occurrences in MissedWindow (from the oldest run shown to the newest occurrence
	// decided) ran in no region; Missed lists the newest of them. This is the figure to alert on. MissedTotal
	// counts every occurrence ever decided missed.
	MissedCount  int         `json:"missedCount"`
	Missed       []time.Time `json:"missed"`
	MissedCapped bool        `json:"missedCapped,omitempty"`
	MissedWindow *window     `json:"missedWindow,omitempty"`
	MissedTotal  int64       `json:"missedTotal"`
	// Overdue are occurrences after the cursor whose claim window has passed with nobody claiming them (every
	// region down right now, or the timer not firing): the next claim records them.
	Overdue []time.Time `json:"overdue,omitempty"`
	// Absent are the regions that let an occurrence pass and have not come back, with when: the regions after them
	// do not wait for them.
	Absent map[string]time.Time `json:"absent,omitempty"`
}

type window struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// release closes the client when the process is asked to stop (SIGINT or SIGTERM: a person running it, or func
// start). No lease is held between ticks; a tick still running releases its own when it ends. The Functions host
// never asks: it kills the handler, and a lease held by work it killed runs out within its duration.
func (h *handler) release() {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if h.client != nil {
		h.client.Close()
		h.client = nil
	}
}
