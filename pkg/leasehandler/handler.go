package leasehandler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// job is one job as the handler serves it.
type job struct {
	name string
	s    *settings // nil when err is set
	// err is the reason the job cannot run: each of its invocations fails with it, the other jobs run on.
	err  error
	work WorkFunc
}

// handler serves the Functions host. One handler process runs per instance of the app in a region.
type handler struct {
	app    *appSettings
	appErr error // a problem with the settings every job shares: every invocation fails with it
	jobs   []*job
	log    *slog.Logger // the process's own messages, on stdout
	out    *output      // where invocations write what the host must log (protocol.go)
	now    func() time.Time

	connMu sync.Mutex // guards opening and closing the client
	client *cosmoslease.Client
}

// newHandler resolves each job's settings. A problem with the app's settings (appErr) fails every invocation;
// a problem with one job's fails that job's. specs come from listJobs.
func newHandler(app *appSettings, appErr error, specs []jobSpec, e environment, log *slog.Logger) *handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{app: app, appErr: appErr, log: log, out: &output{stdout: os.Stdout, stderr: os.Stderr}, now: time.Now}
	for _, spec := range specs {
		j := &job{name: spec.Name, work: spec.Work, err: spec.err}
		if j.err == nil && app != nil {
			j.s, j.err = app.job(spec.Job, e, spec.env)
		}
		if j.err == nil && spec.commandSetting != "" {
			s := j.s
			j.work, j.err = commandWork(spec.commandSetting, spec.command, appDir(), func() time.Duration {
				if s == nil {
					return cosmoslease.DefaultRunGrace
				}
				return s.grace()
			})
			if j.err != nil {
				j.s = nil
			}
		}
		h.jobs = append(h.jobs, j)
	}
	// Two jobs on one lease would take each other's occurrences for their own.
	byDoc := map[string]*job{}
	for _, j := range h.jobs {
		if j.s == nil {
			continue
		}
		id, _ := leasedoc.ID(j.s.key)
		if other := byDoc[id]; other != nil {
			err := fmt.Errorf("jobs %s and %s share the lease key %q, so each would take the other's occurrences for its own: give each its own (LeaseJobs__%s__LeaseKey)",
				other.name, j.name, j.s.key, j.name)
			other.s, other.err, j.s, j.err = nil, err, nil, err
			continue
		}
		byDoc[id] = j
	}
	return h
}

// routes lists the functions this handler serves: one per job, and LeaseStatus.
func (h *handler) routes() map[string]http.HandlerFunc {
	r := map[string]http.HandlerFunc{statusFunction: h.status, triggerFunction: h.triggers}
	for _, j := range h.jobs {
		r[j.name] = h.timer(j)
	}
	return r
}

func (h *handler) mux() *http.ServeMux {
	mux := http.NewServeMux()
	for name, fn := range h.routes() {
		mux.HandleFunc("/"+name, fn)
	}
	return mux
}

// tickResult is a timer function's return value.
type tickResult struct {
	Status     string    `json:"status"` // executed, skipped, failed; idle for a minute tick that is no occurrence
	Occurrence time.Time `json:"occurrence,omitzero"`
	Region     string    `json:"region,omitempty"`
	Owner      string    `json:"owner,omitempty"`
	Instance   string    `json:"instance,omitempty"`
	Rank       int       `json:"rank"`
	Epoch      int64     `json:"epoch,omitempty"`
	// ExitCode is the exit status of a command job's command.
	ExitCode *int `json:"exitCode,omitempty"`
	// Holder is the owner of the run record that made this region skip.
	Holder string `json:"holder,omitempty"`
	Reason string `json:"reason,omitempty"`
	// FailoverDelayMs is how late after the occurrence the work started here.
	FailoverDelayMs int64 `json:"failoverDelayMs,omitempty"`
	// CaughtUp: the run was the newest missed occurrence, caught up after an outage (CatchUpWindow).
	CaughtUp bool `json:"caughtUp,omitempty"`
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
	opts := h.app.opts
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
	Job             string    `json:"job"`
	Lease           string    `json:"lease"`
	Occurrence      time.Time `json:"occurrence"`
	Region          string    `json:"region"`
	Instance        string    `json:"instance"`
	Rank            int       `json:"rank"`
	Status          string    `json:"status"`
	Epoch           int64     `json:"epoch,omitempty"`
	ExitCode        *int      `json:"exitCode,omitempty"`
	FailoverDelayMs int64     `json:"failoverDelayMs,omitempty"`
	DurationMs      int64     `json:"durationMs"`
}

// timer is one tick of job j: elect, for this occurrence, the most preferred region that is alive (the library's
// RunOnce), and if it is this one run the work under the lease; answer how it went, within the invocation's
// deadline (timeout.go).
func (h *handler) timer(j *job) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		iv := h.invocation(j.name, r)
		res := tickResult{Status: "failed"}
		fail := func(format string, args ...any) {
			res.Status, res.Reason = "failed", fmt.Sprintf(format, args...)
			iv.fail(format, args...)
			iv.answer(w, nil, res)
		}
		switch {
		case h.appErr != nil:
			fail("%v", h.appErr)
			return
		case j.err != nil:
			fail("%v", j.err)
			return
		}
		s := j.s
		req, err := readInvocation(r)
		if err != nil {
			fail("%v", err)
			return
		}
		info, sys, err := parseTimer(req, j.name)
		if err != nil {
			fail("%v", err)
			return
		}
		ctx, cancel := s.budget.deadline(r.Context(), start)
		defer cancel()
		res.Region, res.Owner, res.Instance = s.opts.Region, s.opts.OwnerID, s.instance
		if s.ticked {
			// A job with a time zone is fired every minute: a minute that is not an occurrence is answered at once,
			// unless it is the host's past-due tick and the job catches up (the newest occurrence due).
			tick, ok := tickOccurrence(s.sched, info, sys, h.now)
			switch {
			case info.IsPastDue && s.catchUp > 0:
				res.Occurrence = latestDue(s.sched, sys, h.now)
			case !ok:
				res.Status, res.Occurrence = "idle", tick
				iv.answer(w, nil, res)
				return
			default:
				res.Occurrence = tick
			}
		} else {
			res.Occurrence = occurrenceOf(s.sched, info, sys, h.now)
			if info.IsPastDue && s.catchUp > 0 {
				// The host replays the first occurrence it missed (its ScheduleStatus.Next); catch-up is for the newest.
				res.Occurrence = latestDue(s.sched, sys, h.now)
			}
		}
		occ := res.Occurrence.Format(time.RFC3339)

		client, err := h.connect(ctx)
		if err != nil {
			fail("cannot use the lease container: %v", cause(ctx, err))
			return
		}
		rank, ranks := s.rank(client.AccountRegions())
		res.Rank = rank
		if err := s.checkGap(ranks); err != nil {
			fail("%v", err)
			return
		}
		o := h.runOptions(ctx, client, s, res.Occurrence, rank, ranks, info.IsPastDue)
		out, err := client.RunOnce(ctx, s.key, res.Occurrence, o, func(ctx context.Context, run cosmoslease.Run) error {
			what := "executing"
			if run.Retry {
				what = "running again (its claimer died mid-work)"
			}
			iv.logf("occurrence %s: %s in %s on instance %s at epoch %d", run.Occurrence.Format(time.RFC3339), what, run.Region, run.Instance, run.Epoch)
			return j.work(ctx, Run{Job: j.name, Key: run.Key, Occurrence: run.Occurrence, Region: run.Region, Instance: run.Instance, Epoch: run.Epoch,
				PastDue: run.PastDue, CaughtUp: run.CaughtUp, Retry: run.Retry, Manual: run.Manual, TriggeredBy: run.TriggeredBy, Logf: iv.logf, run: run})
		})
		if ab := out.Abandoned; ab != nil {
			iv.logf("occurrence %s was abandoned: %s", ab.Occurrence.UTC().Format(time.RFC3339), ab.Reason)
		}
		if rt := out.Retried; rt != nil && !rt.Occurrence.Equal(out.Occurrence) {
			iv.logf("occurrence %s (abandoned) ran again: %s %s", rt.Occurrence.Format(time.RFC3339), rt.Status, rt.Reason)
		}
		res.Epoch, res.FailoverDelayMs = out.Epoch, out.FailoverDelay.Milliseconds()
		res.CaughtUp = out.Record.CaughtUp && !out.WorkStarted.IsZero()
		if !out.WorkStarted.IsZero() {
			res.ExitCode = out.Record.ExitCode
		}
		iv.logf("%s", h.summary(j, out, rank, start))
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
}

// runOptions are the election's options for one occurrence of a job. A region of rank r (regions the lease
// document marks absent not counted) contends r × the failover delay after the occurrence, and gives the
// occurrence up (the claim of a later one records it) if it has not claimed it by the time it would contend for
// the next one, or shortly before the invocation's deadline.
func (h *handler) runOptions(ctx context.Context, client *cosmoslease.Client, s *settings, occ time.Time, rank, ranks int, pastDue bool) cosmoslease.RunOptions {
	o := cosmoslease.RunOptions{Rank: rank, Regions: cosmoslease.Order(s.preferred, client.AccountRegions()), FailoverDelay: s.delay, RetryAbandoned: s.retryAbandoned,
		Retention: s.retention, Instance: s.instance, PastDue: pastDue, Schedule: s.sched.String(), Next: s.sched.Next, CatchUpWindow: s.catchUp, Overlap: s.overlap,
		MissedAfter: s.missedAfter(ranks), Grace: s.grace(), FinishWithin: s.budget.finish}
	o.Until = s.sched.Next(occ).Add(time.Duration(rank) * s.delay)
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

func (h *handler) summary(j *job, out cosmoslease.RunResult, rank int, start time.Time) string {
	sum := runSummary{Event: "cosmoslease.run", Job: j.name, Lease: j.s.key, Occurrence: out.Occurrence, Region: j.s.opts.Region,
		Instance: j.s.instance, Rank: rank, Status: out.Status, Epoch: out.Epoch, FailoverDelayMs: out.FailoverDelay.Milliseconds(),
		DurationMs: time.Since(start).Milliseconds()}
	if !out.WorkStarted.IsZero() {
		sum.ExitCode = out.Record.ExitCode
	}
	b, _ := json.Marshal(sum)
	return string(b)
}

// cause prefers the reason the invocation's context ended to the bare error of a request it cut short.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return err
}

// occurrenceOf names the schedule occurrence a tick is for, the same in every region. During a scheduled run,
// the host's ScheduleStatus.Next is the occurrence now firing (a missed one when IsPastDue): it is used when the
// schedule contains it and it is not in the future. Otherwise the host gave no status (useMonitor false,
// sub-minute schedules) or the one still to come (a manual run), and the occurrence is the latest one at or
// before UtcNow + 1 s, since the host can fire up to about a second early.
func occurrenceOf(sched *ncrontab.Schedule, info timerInfo, sys sysMetadata, now func() time.Time) time.Time {
	t := sys.UtcNow.Time
	if t.IsZero() {
		t = now().UTC()
	}
	limit := t.Add(time.Second)
	if st := info.ScheduleStatus; st != nil && !st.Next.IsZero() && !st.Next.After(limit) && sched.Contains(st.Next.Time) {
		return st.Next.UTC()
	}
	return sched.Prev(limit)
}

// latestDue is the newest occurrence at or before the host's UtcNow (+ 1 s, as occurrenceOf).
func latestDue(sched *ncrontab.Schedule, sys sysMetadata, now func() time.Time) time.Time {
	t := sys.UtcNow.Time
	if t.IsZero() {
		t = now().UTC()
	}
	return sched.Prev(t.Add(time.Second))
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

// appDir is the app's root, where its files are: the handler's working directory (the host starts it there).
func appDir() string {
	if wd, err := os.Getwd(); err == nil {
		return wd
	}
	return "."
}

// problems lists, one line each, why jobs cannot run; Serve prints them at start.
func (h *handler) problems() []string {
	if h.appErr != nil {
		return []string{fmt.Sprintf("the settings are not usable, so every invocation fails until they are fixed: %v", h.appErr)}
	}
	var out []string
	for _, j := range h.jobs {
		if j.err != nil {
			out = append(out, fmt.Sprintf("job %s cannot run, so its invocations fail until this is fixed: %v", j.name, j.err))
		}
	}
	return out
}

// jobNames lists the jobs, for the start line.
func (h *handler) jobNames() string {
	names := make([]string, len(h.jobs))
	for i, j := range h.jobs {
		names[i] = j.name
	}
	return strings.Join(names, ", ")
}
