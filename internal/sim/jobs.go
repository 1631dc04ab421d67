package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Scheduled work, driven as `cosmoslease cron` (internal/cli/cron.go: the library's RunSchedule, with the
// options cron builds) and as the Functions host drives the handler (pkg/leasehandler: the host's ticks,
// handler.go's timer and runOptions, timeout.go's budget, restated here because the handler runs on real clocks
// behind the host's HTTP protocol; what it passes to RunOnce is built as handler.go's runOptions builds it: keep
// the two in step).
//
// The checks of order, overlap, preference and liveness use only what the work functions observed (which
// occurrence started where and when, and when it stopped). The accounting checks (accounting.go) compare that with
// what the container holds at the end: the run records, the job's state in its lease document, History, and the
// missed counter of every process.

// schedule is "every Every, at multiples of it since the bubble's start" (virtual midnight, 2000-01-01).
type schedule struct {
	every time.Duration
	zero  time.Time
}

func (s schedule) Next(t time.Time) time.Time {
	n := t.Sub(s.zero) / s.every
	next := s.zero.Add((n + 1) * s.every)
	for !next.After(t) {
		next = next.Add(s.every)
	}
	return next
}

func (s schedule) Prev(t time.Time) time.Time {
	n := t.Sub(s.zero) / s.every
	p := s.zero.Add(n * s.every)
	for p.After(t) {
		p = p.Add(-s.every)
	}
	return p
}

func (s schedule) Contains(t time.Time) bool { return t.Sub(s.zero)%s.every == 0 }

// workRun is one start of an occurrence's work, as the work function saw it.
type workRun struct {
	key        string
	occurrence time.Time
	p          *proc
	inc        int
	epoch      int64
	retry      bool
	from, to   time.Duration // to: when the work function returned (-1 while running)
	ctxEnd     time.Duration // when its context ended (-1: never)
	pauses     int           // the process's pause count when it started
}

// pausedSince reports whether r's process has been paused since r started: docs/reliability.md says a process
// paused past its lease can still act after its successor started (what the epoch fences), so its work is not
// held to the overlap rule.
func (r *workRun) pausedSince() bool {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.p.pauses != r.pauses
}

// startJobs starts, in a new incarnation of p, the drivers of every job p takes part in.
func (w *world) startJobs(ctx context.Context, p *proc, inc int, st *procStore, wg *sync.WaitGroup) {
	for ji, j := range w.cfg.Jobs {
		if !slices.Contains(j.Procs, p.id) {
			continue
		}
		// Each process counts its own metrics, read after the run: the missed counter summed over every process.
		reader := sdkmetric.NewManualReader()
		opts := cosmoslease.Options{OwnerID: p.cfg.Name + "-" + j.Driver, Region: p.cfg.Region, Hostname: p.cfg.Name,
			LeaseDuration: j.LeaseDuration, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))}
		c, err := newClient(st, p, inc, opts)
		if err != nil {
			panic(err)
		}
		w.mu.Lock()
		jr := w.rec.job(j.Key)
		jr.readers = append(jr.readers, &procReader{proc: p.id, inc: inc, reader: reader})
		w.mu.Unlock()
		jd := &jobDriver{w: w, p: p, inc: inc, c: c, j: j, idx: ji,
			sched: schedule{every: j.Every, zero: p.clk.local(w.start).Truncate(24 * time.Hour)}}
		switch j.Driver {
		case "cron":
			wg.Go(func() { jd.cron(ctx) })
		default:
			wg.Go(func() { jd.host(ctx, wg) })
		}
	}
}

type jobDriver struct {
	w     *world
	p     *proc
	inc   int
	c     *cosmoslease.Client
	j     JobConfig
	idx   int
	sched schedule
}

// cron is `cosmoslease cron` (internal/cli/cron.go): the library's RunSchedule with the options cron builds.
func (d *jobDriver) cron(ctx context.Context) {
	j, p := d.j, d.p
	order := cosmoslease.Order(j.Regions, nil)
	_, ranks := cosmoslease.Rank(p.cfg.Region, order, nil)
	o := cosmoslease.RunOptions{Regions: order, FailoverDelay: j.FailoverDelay, RetryAbandoned: j.RetryAbandoned,
		Retention: cosmoslease.DefaultRunRetention, Instance: p.cfg.Name, Schedule: fmt.Sprintf("every %s", j.Every),
		MissedAfter: cosmoslease.ClaimWindow(ranks, j.FailoverDelay, j.LeaseDuration), Grace: j.Grace,
		CatchUpWindow: j.CatchUpWindow, Overlap: j.Overlap}
	err := d.c.RunSchedule(ctx, j.Key, d.sched, o, d.work, func(res cosmoslease.RunResult, err error) {
		if p.alive(d.inc) {
			d.w.logf(p, d.inc, j.Key, "cron: occurrence %s: %s %s %s", d.w.occName(res.Occurrence), res.Status, res.Reason, errText(err))
		}
	})
	if p.alive(d.inc) {
		d.w.logf(p, d.inc, j.Key, "cron: RunSchedule returned: %s", errText(err))
	}
}

// host plays the Functions host for one instance: a tick at each occurrence (sometimes late, sometimes twice),
// one invocation at a time (a tick due while one runs fires, past due, when it ends), each within the handler's
// budget; an invocation still running at functionTimeout is killed with the whole process.
func (d *jobDriver) host(ctx context.Context, wg *sync.WaitGroup) {
	j, p := d.j, d.p
	next := d.sched.Next(p.clk.Now())
	for {
		if !p.clk.sleepUntil(ctx.Done(), next) || p.gate(d.inc) != nil {
			return
		}
		occ, pastDue := next, false
		// The host's own faults come with the storms: a tick late (a cold start, a busy host), or twice (an
		// admin's run, an instance overlapping a recycle).
		r := d.w.rng(p, d.inc, "tick "+j.Key)
		stormy := d.w.stormy(d.w.since(), d.w.since())
		if stormy && r.IntN(4) == 0 {
			late := between(r, 0, j.Every)
			d.w.fault("tick late")
			d.w.logf(p, d.inc, j.Key, "host: the tick for %s comes %s late", d.w.occName(occ), late)
			if !sleep(ctx, p, late) {
				return
			}
			pastDue = !d.sched.Next(occ).After(p.clk.Now())
		}
		if stormy && r.IntN(4) == 0 {
			d.w.fault("tick twice")
			d.w.logf(p, d.inc, j.Key, "host: the tick for %s comes twice", d.w.occName(occ))
			wg.Go(func() { d.invoke(ctx, occ, pastDue) })
		}
		d.invoke(ctx, occ, pastDue)
		if ctx.Err() != nil {
			return
		}
		next = d.sched.Next(occ)
		if now := p.clk.Now(); !next.After(now) {
			// The host fires once for what it missed, past due; the handler then names the latest due
			// occurrence (handler.go's occurrence, from ScheduleStatus.Next or the schedule).
			next = d.sched.Prev(now)
			if !sleep(ctx, p, 0) {
				return
			}
			d.invoke(ctx, next, true)
			if ctx.Err() != nil {
				return
			}
			next = d.sched.Next(next)
		}
	}
}

// invoke is one invocation of the timer function: handler.go's timer and runOptions, with timeout.go's budget.
func (d *jobDriver) invoke(ctx context.Context, occ time.Time, pastDue bool) {
	j, p, c := d.j, d.p, d.c
	start := p.clk.Now()
	if pastDue && j.CatchUpWindow > 0 {
		// handler.go: with a catch-up window, a past-due tick is for the newest occurrence due.
		occ = d.sched.Prev(start.Add(time.Second))
	}
	// timeout.go's newBudget.
	margin := min(max(j.FunctionTimeout/10, time.Second), time.Minute)
	budgetWork, budgetGrace, budgetFinish := j.FunctionTimeout-margin, margin/2, margin/4
	ictx, cancel := context.WithTimeout(ctx, p.clk.trueDuration(budgetWork))
	defer cancel()
	deadline := start.Add(budgetWork) // the invocation's deadline on this machine's clock
	// The host kills the process if the invocation outlives functionTimeout.
	done := make(chan struct{})
	defer close(done)
	inc := d.inc
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
		case <-p.clk.After(j.FunctionTimeout):
			d.w.fault("handler killed by the host at functionTimeout")
			d.w.logf(p, inc, j.Key, "host: the invocation for %s outlived functionTimeout (%s): the handler is killed", d.w.occName(occ), j.FunctionTimeout)
			d.w.crash(p)
			d.w.restartLater(p, time.Second)
		}
	}()
	// handler.go: rank, ranks := h.s.rank(client.AccountRegions()); runOptions.
	preferred := j.Regions
	rank, ranks := cosmoslease.Rank(p.cfg.Region, preferred, c.AccountRegions())
	grace := cosmoslease.DefaultRunGrace
	if budgetGrace > 0 {
		grace = min(budgetGrace, cosmoslease.DefaultRunGrace)
	}
	o := cosmoslease.RunOptions{Rank: rank, Regions: cosmoslease.Order(preferred, c.AccountRegions()), FailoverDelay: j.FailoverDelay,
		RetryAbandoned: j.RetryAbandoned, Retention: cosmoslease.DefaultRunRetention, Instance: p.cfg.Name, PastDue: pastDue,
		Schedule: fmt.Sprintf("every %s", j.Every), Next: d.sched.Next,
		MissedAfter: cosmoslease.ClaimWindow(ranks, j.FailoverDelay, c.Options().LeaseDuration), Grace: grace, FinishWithin: budgetFinish,
		CatchUpWindow: j.CatchUpWindow, Overlap: j.Overlap}
	o.Until = d.sched.Next(occ).Add(time.Duration(rank) * j.FailoverDelay)
	if last := deadline.Add(-2 * c.Options().RequestTimeout); last.Before(o.Until) && last.After(p.clk.Now()) {
		o.Until = last
	}
	from := d.w.since()
	res, err := c.RunOnce(ictx, j.Key, occ, o, d.work)
	d.w.mu.Lock()
	d.w.rec.invocations[j.Key] = append(d.w.rec.invocations[j.Key], invocation{p: p.id, from: from, to: d.w.since()})
	d.w.mu.Unlock()
	if p.alive(inc) {
		d.w.logf(p, inc, j.Key, "handler: occurrence %s: %s %s %s", d.w.occName(occ), res.Status, res.Reason, errText(err))
	}
}

// work is the job: it runs for a while, and when its context ends it stops within a moment (as a well-behaved
// command does after SIGTERM).
func (d *jobDriver) work(ctx context.Context, run cosmoslease.Run) error {
	w, p := d.w, d.p
	r := w.rng(p, d.inc, "job "+d.j.Key)
	p.mu.Lock()
	pauses := p.pauses
	p.mu.Unlock()
	wr := &workRun{key: d.j.Key, occurrence: run.Occurrence, p: p, inc: d.inc, epoch: run.Epoch, retry: run.Retry, from: w.since(), to: -1,
		pauses: pauses, ctxEnd: -1}
	w.workStarted(wr)
	length := between(r, d.j.WorkMin, d.j.WorkMax)
	stop := between(r, d.j.StopMin, d.j.Grace*8/10)
	if run.Retry && d.j.RetryWork > 0 {
		length = d.j.RetryWork
	}
	if d.j.Driver == "handler" && r.IntN(10) == 0 {
		stop = length // work that ignores its context: the handler leaves it running, and the host may kill it
	}
	end := p.clk.After(length)
	select {
	case <-end:
	case <-ctx.Done():
		w.mu.Lock()
		wr.ctxEnd = w.since()
		w.mu.Unlock()
		select {
		case <-end:
		case <-p.clk.After(stop):
		}
	}
	_ = p.gate(d.inc) // a paused process's work does not return until it resumes
	w.workEnded(wr)
	return nil
}

// restartLater starts p again after d (the host restarts a killed handler), unless the run has ended.
func (w *world) restartLater(p *proc, d time.Duration) {
	w.mu.Lock()
	w.restarts = append(w.restarts, restartReq{p: p, at: w.since() + d})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

type restartReq struct {
	p  *proc
	at time.Duration
}

func (w *world) occName(t time.Time) string {
	return fmtAt(t.Sub(w.start.Truncate(24 * time.Hour)))
}

// workStarted records a start, and checks at once that nothing else of the key runs in a live process.
func (w *world) workStarted(r *workRun) {
	if r.p.gate(r.inc) != nil {
		return
	}
	w.mu.Lock()
	runs := w.rec.work[r.key]
	w.rec.work[r.key] = append(runs, r)
	var overlap []*workRun
	for _, o := range runs {
		if o.to < 0 {
			overlap = append(overlap, o)
		}
	}
	w.mu.Unlock()
	what := "work"
	if r.retry {
		what = "work (re-run of an abandoned occurrence)"
	}
	w.logf(r.p, r.inc, r.key, "%s of occurrence %s starts at epoch %d", what, w.occName(r.occurrence), r.epoch)
	for _, o := range overlap {
		if o.p.alive(o.inc) && !o.pausedSince() {
			// Judged after the run: work that ignored its context past its grace is allowed to run on.
			w.mu.Lock()
			w.rec.overlaps = append(w.rec.overlaps, [2]*workRun{o, r})
			w.mu.Unlock()
		}
	}
}

// checkOverlaps judges the starts made while another occurrence's work still ran in a live, unpaused process:
// allowed only when that work ignored its context past its grace (docs/reliability.md: such work runs on without
// the lease, and its writes are what the epoch fences).
func (w *world) checkOverlaps() {
	for _, pair := range w.rec.overlaps {
		o, r := pair[0], pair[1]
		j := w.job(r.key)
		if o.ctxEnd >= 0 && o.ctxEnd <= r.from && (o.to < 0 || o.to-o.ctxEnd > j.Grace) {
			w.judged["overlap allowed (work ignoring its context)"]++
			continue
		}
		w.violate(Violation{At: r.from, Check: checkOverlap, Key: r.key,
			Text: fmt.Sprintf("%s#%d started occurrence %s (epoch %d) while %s#%d still ran occurrence %s (epoch %d, since %s)",
				r.p.cfg.Name, r.inc, w.occName(r.occurrence), r.epoch, o.p.cfg.Name, o.inc, w.occName(o.occurrence), o.epoch, fmtAt(o.from))})
	}
}

func (w *world) job(key string) JobConfig {
	for _, j := range w.cfg.Jobs {
		if j.Key == key {
			return j
		}
	}
	return JobConfig{}
}

func (w *world) workEnded(r *workRun) {
	w.mu.Lock()
	r.to = w.since()
	w.mu.Unlock()
	w.logf(r.p, r.inc, r.key, "work of occurrence %s returned", w.occName(r.occurrence))
}

// Checks of scheduled work.
const (
	checkOnce       = "at-most-once"   // each occurrence's work starts at most once (RetryAbandoned: twice, never in parallel)
	checkOverlap    = "no-overlap"     // no two occurrences' work at once in live processes
	checkOrder      = "schedule-order" // occurrences start in schedule order
	checkSkip       = "overlap-skip"   // with the overlap policy skip, an occurrence due while another ran does not run
	checkPreferred  = "preferred"      // the preferred region, alive and reachable, executes every occurrence
	checkRecovering = "job-liveness"   // after the weather clears, the next occurrence runs within rank × delay + LeaseDuration
	checkOnTime     = "failover-once"  // a standby that took over runs the next occurrences on time
)

// checkJobs judges the starts of every job's work after the run.
func (w *world) checkJobs() {
	w.checkOverlaps()
	for _, j := range w.cfg.Jobs {
		runs := w.rec.work[j.Key]
		sort.SliceStable(runs, func(a, b int) bool { return runs[a].from < runs[b].from })
		byOcc := map[int64][]*workRun{}
		var latest *workRun // the start of the latest occurrence so far
		for _, r := range runs {
			prev := byOcc[r.occurrence.UnixNano()]
			byOcc[r.occurrence.UnixNano()] = append(prev, r)
			switch {
			case len(prev) >= 2, len(prev) == 1 && !(r.retry && j.RetryAbandoned):
				w.violate(Violation{At: r.from, Check: checkOnce, Key: j.Key,
					Text: fmt.Sprintf("occurrence %s started again by %s#%d at epoch %d (retry %v); it had started by %s#%d at epoch %d at %s",
						w.occName(r.occurrence), r.p.cfg.Name, r.inc, r.epoch, r.retry, prev[0].p.cfg.Name, prev[0].inc, prev[0].epoch, fmtAt(prev[0].from))})
			}
			if len(prev) == 1 && r.retry {
				w.checkRetry(j, prev[0], r)
			}
			if latest != nil && r.occurrence.Before(latest.occurrence) && w.clockSensitiveOK(j) {
				w.violate(Violation{At: r.from, Check: checkOrder, Key: j.Key,
					Text: fmt.Sprintf("occurrence %s started (by %s#%d, retry %v) after occurrence %s had started (by %s#%d at %s)",
						w.occName(r.occurrence), r.p.cfg.Name, r.inc, r.retry, w.occName(latest.occurrence), latest.p.cfg.Name, latest.inc, fmtAt(latest.from))})
			}
			if latest == nil || r.occurrence.After(latest.occurrence) {
				latest = r
			}
		}
		w.checkAccounting(j, byOcc)
		w.checkOverlapSkip(j, runs)
		w.checkRecordHistory(j)
		if !w.clockSensitiveOK(j) {
			continue
		}
		w.checkPreference(j, runs, byOcc)
	}
}

// checkOverlapSkip: with the overlap policy skip, no occurrence runs that came due while an earlier occurrence's
// work was going in a live process that held the lease (its context had not ended), with clocks that agree.
func (w *world) checkOverlapSkip(j JobConfig, runs []*workRun) {
	if j.Overlap != cosmoslease.OverlapSkip || !w.clockSensitiveOK(j) {
		return
	}
	m := w.clockSpread(j) + 2*time.Second
	for _, r := range runs {
		if r.retry {
			continue
		}
		at := r.occurrence.Sub(w.start)
		w.judged[checkSkip]++
		for _, o := range runs {
			d, dead := w.rec.deaths[[2]int{o.p.id, o.inc}]
			if o.occurrence.Before(r.occurrence) && o.from < at-m && (o.to < 0 || o.to > at+m) && (o.ctxEnd < 0 || o.ctxEnd > at+m) &&
				(!dead || d > at+m) && !o.pausedSince() {
				w.violate(Violation{At: r.from, Check: checkSkip, Key: j.Key,
					Text: fmt.Sprintf("overlap policy skip: occurrence %s ran (%s#%d at %s) although it came due while %s#%d ran occurrence %s (from %s to %s)",
						w.occName(r.occurrence), r.p.cfg.Name, r.inc, fmtAt(r.from), o.p.cfg.Name, o.inc, w.occName(o.occurrence), fmtAt(o.from), fmtAt(o.to))})
				break
			}
		}
	}
}

// checkRetry: a run is judged by what its holder said (docs/reliability.md): the re-run of an occurrence
// (RetryAbandoned) is allowed only for a run judged abandoned, never for one whose holder released the lease with
// the run's outcome, nor for one whose final record (completed, failed, lost, timed-out) was written before.
func (w *world) checkRetry(j JobConfig, first, again *workRun) {
	recID := cosmoslease.RunID(j.Key, first.occurrence)
	for _, jw := range w.rec.jobWrites {
		if jw.at > again.from {
			break
		}
		i := jw.info
		switch {
		case jw.doc == "lease-"+j.Key && jw.proc == first.p.id && jw.inc == first.inc && i.released && i.epoch == first.epoch &&
			i.runOcc.Equal(first.occurrence) && first.to >= 0 && jw.at >= first.to:
			// The release after the work returned carries the run's outcome: the run is not to be judged again.
			w.violate(Violation{At: again.from, Check: checkOnce, Key: j.Key,
				Text: fmt.Sprintf("occurrence %s run again (by %s#%d) although its first run's holder %s#%d released the lease at %s, after the work returned (the document says %s)",
					w.occName(first.occurrence), again.p.cfg.Name, again.inc, first.p.cfg.Name, first.inc, fmtAt(jw.at), i.runStatus)})
			return
		case jw.doc == recID && i.record && i.epoch == first.epoch && finalStatus(i.runStatus):
			w.violate(Violation{At: again.from, Check: checkOnce, Key: j.Key,
				Text: fmt.Sprintf("occurrence %s run again (by %s#%d) although the final record of its first run (epoch %d, %s) was written at %s",
					w.occName(first.occurrence), again.p.cfg.Name, again.inc, first.epoch, i.runStatus, fmtAt(jw.at))})
			return
		}
	}
}

// finalStatus: a run record's status that says how the run ended (as its holder recorded it).
func finalStatus(s string) bool {
	switch s {
	case cosmoslease.RunCompleted, cosmoslease.RunFailed, cosmoslease.RunLost, cosmoslease.RunTimedOut:
		return true
	}
	return false
}

// checkRecordHistory: a run's final record, once written, is never overwritten as abandoned (a record a run wrote
// stands: docs/reliability.md, "A run is judged by what its holder said").
func (w *world) checkRecordHistory(j JobConfig) {
	final := map[string]jobWrite{}
	for _, jw := range w.rec.jobWrites {
		if !jw.info.record || !strings.HasPrefix(jw.doc, cosmoslease.RunPrefix+j.Key+"-") {
			continue
		}
		key := fmt.Sprintf("%s/%d", jw.doc, jw.info.epoch)
		if f, ok := final[key]; ok && jw.info.runStatus == cosmoslease.RunAbandoned {
			w.violate(Violation{At: jw.at, Check: checkAccounted, Key: j.Key,
				Text: fmt.Sprintf("record %s of the run at epoch %d, final (%s) since %s, was overwritten as abandoned by %s#%d", jw.doc, jw.info.epoch,
					f.info.runStatus, fmtAt(f.at), w.procs[jw.proc].cfg.Name, jw.inc)})
		}
		if finalStatus(jw.info.runStatus) {
			final[key] = jw
		}
	}
}

// clockSensitiveOK: the order, preference and recovery checks assume the participants' clocks are within a
// quarter of the failover delay of the true time (so within half of it of each other); docs/reliability.md says a
// clock ahead by more than the delay can make a standby run what the preferred region would have run.
func (w *world) clockSensitiveOK(j JobConfig) bool {
	return w.cfg.ClockMode != "beyond" && w.clockSpread(j) <= j.FailoverDelay/4
}

// clockSpread bounds how far a participant's clock is from the true time.
func (w *world) clockSpread(j JobConfig) time.Duration {
	var worst time.Duration
	for _, id := range j.Procs {
		pc := w.cfg.Procs[id]
		worst = max(worst, abs(pc.Offset)+time.Duration(math.Abs(pc.Drift)*float64(driftPeriod)))
	}
	return worst
}

// horizon is how long after its time an occurrence must have started in calm weather, nothing of the job
// running: the last rank's delay, a crashed holder's lease running out, a poll and 2 s of requests.
func horizon(j JobConfig) time.Duration {
	return time.Duration(len(j.Regions)-1)*j.FailoverDelay + j.LeaseDuration + cosmoslease.DefaultPollInterval + 2*time.Second
}

// checkPreference judges each occurrence due in quiet weather (no storm, and no participant dying, stopping or
// starting, for long enough before it) with no other occurrence's work running from its time until its horizon:
//   - job-liveness: it starts within horizon;
//   - preferred: while a process of the preferred region has been up for two occurrences and more, one of them
//     runs it (the preferred region takes the work back within two occurrences of its return);
//   - failover-once: while every process of the regions ahead of the best region alive has been down for two
//     occurrences and more, it starts on time (within a poll and 2 s): the failover cost its delay once.
func (w *world) checkPreference(j JobConfig, runs []*workRun, byOcc map[int64][]*workRun) {
	zero := w.start.Truncate(24 * time.Hour)
	hz := horizon(j)
	onTime := cosmoslease.DefaultPollInterval + 2*time.Second + 2*w.clockSpread(j)
	back := 2*j.Every + j.LeaseDuration + hz // how long before an occurrence the world must have been quiet
	var standbyRan time.Time                 // the last quiet occurrence a standby ran while the preferred region was up
	for t := zero.Add(j.Every); t.Sub(w.start) < w.cfg.Duration-hz-j.WorkMax; t = t.Add(j.Every) {
		at := t.Sub(w.start)
		if at < w.cfg.LeaseDuration+2*j.LeaseDuration+back {
			continue // the processes are still starting
		}
		if !w.quiet(j, at-j.LeaseDuration-hz, at+hz) || w.busy(runs, t, at-onTime, at+hz) {
			continue
		}
		// Quiet weather is no use with nobody to run the occurrence: every participant may have died or stopped before
		// it and come back after (the claim of a later occurrence records it, which the accounting judges).
		up := false
		for _, id := range j.Procs {
			up = up || !w.procDown(w.procs[id], at-j.LeaseDuration-hz, at+hz)
		}
		if !up {
			continue
		}
		w.judged[checkRecovering]++
		started := byOcc[t.UnixNano()]
		if len(started) == 0 {
			w.violate(Violation{At: at + hz, Check: checkRecovering, Key: j.Key,
				Text: fmt.Sprintf("occurrence %s, due in calm weather with nothing else of the job running, did not start within %s", w.occName(t), hz)})
			continue
		}
		if !w.quiet(j, at-back, at+hz) {
			continue
		}
		first := started[0]
		best := -1 // the rank of the best region with a process up throughout
		for r, reg := range j.Regions {
			for _, id := range j.Procs {
				if w.cfg.Procs[id].Region == reg && !w.procDown(w.procs[id], at-back, at+hz) {
					best = r
					break
				}
			}
			if best >= 0 {
				break
			}
		}
		switch best {
		case 0:
			w.judged[checkPreferred]++
		case -1:
		default:
			w.judged[checkOnTime]++
		}
		switch {
		case best == 0 && first.p.cfg.Region != j.Regions[0] && w.hostBusy(j, j.Regions[0], at):
			// The Functions host fires one invocation at a time: the preferred region's tick for this occurrence
			// waited for its previous invocation (docs/scheduled-work.md).
		case best == 0 && first.p.cfg.Region != j.Regions[0] && w.slowRequests(j, j.Regions[0], at-cosmoslease.DefaultPollInterval, at+j.FailoverDelay):
			// docs/scheduled-work.md: the delay must exceed the time the preferred region takes to claim after its
			// timer fires, or a standby may run the occurrence first. A calm-weather latency tail did that here.
		case best == 0 && first.p.cfg.Region != j.Regions[0]:
			// The preferred region takes the work back within two occurrences (docs/reliability.md): a standby may
			// win the race for the occurrence after one the preferred region let pass (it is marked absent then),
			// never two in a row, nor one right after the preferred region ran the previous occurrence.
			prev := t.Add(-j.Every)
			ranPrev := byOcc[prev.UnixNano()]
			if !(len(ranPrev) > 0 && ranPrev[0].p.cfg.Region == j.Regions[0]) && !standbyRan.Equal(prev) {
				standbyRan = t
				break
			}
			w.violate(Violation{At: first.from, Check: checkPreferred, Key: j.Key,
				Text: fmt.Sprintf("occurrence %s was run by %s in %s (rank %d), not in the preferred region %s, up and reachable (and the previous occurrence %s)", w.occName(t),
					first.p.cfg.Name, first.p.cfg.Region, slices.Index(j.Regions, first.p.cfg.Region), j.Regions[0],
					map[bool]string{true: "ran there", false: "was run by a standby too"}[len(ranPrev) > 0 && ranPrev[0].p.cfg.Region == j.Regions[0]])})
		case best > 0 && first.from-at > onTime:
			w.violate(Violation{At: first.from, Check: checkOnTime, Key: j.Key,
				Text: fmt.Sprintf("occurrence %s started %s late (by %s in %s), although every region ahead of %s had been down for two occurrences and more",
					w.occName(t), first.from-at, first.p.cfg.Name, first.p.cfg.Region, j.Regions[best])})
		}
	}
}

func abs(d time.Duration) time.Duration { return max(d, -d) }

// invocation is one invocation of the handler's timer function (host driver).
type invocation struct {
	p        int
	from, to time.Duration
}

// hostBusy reports whether a handler process of j in region was in an invocation at at (so the host could not
// fire its tick for the occurrence then).
func (w *world) hostBusy(j JobConfig, region string, at time.Duration) bool {
	for _, iv := range w.rec.invocations[j.Key] {
		if w.cfg.Procs[iv.p].Region == region && iv.from < at && iv.to > at {
			return true
		}
	}
	return false
}

// slowRequests reports whether a request of a participant of j in region, about j's lease document and sent in
// [from, to], took more than a quarter of the failover delay to answer.
func (w *world) slowRequests(j JobConfig, region string, from, to time.Duration) bool {
	for _, o := range w.ops {
		if o.doc == "lease-"+j.Key && o.call >= from && o.call <= to && w.cfg.Procs[o.proc].Region == region && o.ret-o.call > j.FailoverDelay/4 {
			return true
		}
	}
	return false
}

// stormy reports whether any storm overlaps [from, to].
func (w *world) stormy(from, to time.Duration) bool {
	for _, s := range w.cfg.Storms {
		if s.Start <= to && s.End >= from {
			return true
		}
	}
	return false
}

// quiet reports whether [from, to] had no storm, and no participant of j died, was stopped or started in it.
func (w *world) quiet(j JobConfig, from, to time.Duration) bool {
	if w.stormy(from, to) {
		return false
	}
	for k, at := range w.rec.deaths {
		if slices.Contains(j.Procs, k[0]) && at >= from && at <= to {
			return false
		}
	}
	for k, at := range w.rec.stops {
		if slices.Contains(j.Procs, k[0]) && at >= from && at <= to {
			return false
		}
	}
	for _, s := range w.rec.starts {
		if slices.Contains(j.Procs, s.p) && s.at >= from && s.at <= to {
			return false
		}
	}
	return true
}

// busy reports whether work of an occurrence before t ran at some time in [from, to]: then t may rightly have been
// skipped for overlap (or run late), as documented. (A later occurrence's work is no excuse: t had to start
// first.)
func (w *world) busy(runs []*workRun, t time.Time, from, to time.Duration) bool {
	for _, r := range runs {
		if r.occurrence.Before(t) && r.from <= to && (r.to < 0 || r.to >= from) {
			return true
		}
	}
	return false
}

// procDown reports whether p was dead (or stopping) at some time in [from, to], or not yet started.
func (w *world) procDown(p *proc, from, to time.Duration) bool {
	for _, s := range w.cfg.Storms {
		for _, c := range s.Crashes {
			if c.Proc == p.id && c.At <= to && c.RestartAt >= from {
				return true
			}
		}
	}
	for k, at := range w.rec.deaths {
		if k[0] == p.id && at >= from-time.Minute && at <= to {
			return true
		}
	}
	for k, at := range w.rec.stops {
		if k[0] == p.id && at >= from-time.Minute && at <= to {
			return true
		}
	}
	return from < w.cfg.LeaseDuration*2
}
