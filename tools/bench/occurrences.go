package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	settings "github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Failover of scheduled work: the Functions custom handler's processes in three regions, driven as the Functions
// host drives them (one LeaseTimer invocation per region and occurrence, with the host's payloads) on the real
// clock, with the app settings' defaults for the lease and the failover delay. The preferred region is killed
// with SIGKILL; the run records say which region ran each occurrence and when its work started.

const occurrencesHeading = "## Failover of scheduled work (Functions handler)"

// slowWork replaces the handler's Work for the mid-work kill: work that lasts 5 s (and stops when its context
// ends), added to the handler's package at build time through go build -overlay, as a user replaces Work; the
// handler's source is not changed and has no knob for it.
const slowWork = `package main

import (
	"context"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

func init() {
	Work = func(ctx context.Context, run leasehandler.Run) error {
		run.Logf("bench work for %s runs in %s (epoch %d) for 5 s", run.Occurrence.Format(time.RFC3339), run.Region, run.Epoch)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
			return nil
		}
	}
}
`

const slowWorkFor = 5 * time.Second

var benchRegions = []string{"eastus", "westeurope", "southeastasia"}

// failover is one death of the preferred region and what followed.
type failover struct {
	midWork bool
	// killed is the occurrence eastus had run (or was running) when it was killed; its record's status after.
	killed       time.Time
	killedStatus string
	// next is the first occurrence after the kill: who ran it, how late its work started (the run record's
	// startedAt less the occurrence), and the handler's own figure (failoverDelayMs).
	next          time.Time
	region        string
	rank          int
	late, replied time.Duration
	// handback is the occurrence after a new process of eastus started: the instance that ran it, how late.
	handbackRegion, handbackInstance string
	handbackLate                     time.Duration
}

// scheduleRun is one schedule's lease and failover delay as observed.
type scheduleRun struct {
	name, expr string
	lease      time.Duration // leaseDurationMs in the lease document after the run
	lates      []time.Duration
	fired      int
	missed     int // occurrences fired with no run record
}

type occurrencesResult struct {
	kills     []failover
	midWork   *failover
	midMissed int // occurrences with no run record among the three of the mid-work kill
	schedules []scheduleRun
	delay     time.Duration
	lease     time.Duration
}

// timerBench runs handler processes against the local server.
type timerBench struct {
	e          env
	dir        string
	bin, slow  string
	site       string
	containers int
}

func (b *timerBench) app(ctx context.Context, bin, schedule string) (functionshost.App, string, error) {
	b.containers++
	container := fmt.Sprintf("timer-%d-%s", b.containers, strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := emulator.EnsureContainer(ctx, b.e.endpoint, b.e.db, container, "/leaseKey"); err != nil {
		return functionshost.App{}, "", err
	}
	return functionshost.App{Bin: bin, Dir: b.dir, Site: fmt.Sprintf("bench-func-%d", b.containers), Settings: map[string]string{
		"CosmosLeasing__ConnectionString": emulator.ConnectionString(b.e.endpoint), "CosmosLeasing__DatabaseName": b.e.db,
		"CosmosLeasing__ContainerName": container, "LeaseTimerSchedule": schedule,
		"LeaseTimerPreferredRegions": strings.Join(benchRegions, ",")}}, container, nil
}

// regions is the handler processes of one app, by region.
type regions struct {
	app   functionshost.App
	live  map[string]*functionshost.Handler
	count map[string]int
}

func startRegions(app functionshost.App) (*regions, error) {
	rs := &regions{app: app, live: map[string]*functionshost.Handler{}, count: map[string]int{}}
	for _, r := range benchRegions {
		if err := rs.start(r); err != nil {
			rs.stop()
			return nil, err
		}
	}
	return rs, nil
}

// start starts a region's handler on a new instance.
func (rs *regions) start(region string) error {
	rs.count[region]++
	h, err := rs.app.Start(region, fmt.Sprintf("%s-%d", region, rs.count[region]), io.Discard, os.Stderr)
	if err != nil {
		return err
	}
	rs.live[region] = h
	return nil
}

func (rs *regions) kill(region string) {
	if h := rs.live[region]; h != nil {
		h.Kill()
		delete(rs.live, region)
	}
}

func (rs *regions) stop() {
	for r := range rs.live {
		rs.kill(r)
	}
}

func (rs *regions) handlers() []*functionshost.Handler {
	var hs []*functionshost.Handler
	for _, r := range benchRegions {
		if h := rs.live[r]; h != nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// fire invokes LeaseTimer in every live region for occ (body), as each region's timer fires, and returns the
// answer of the region that executed it: exactly one must have, and every other must have skipped it.
func fire(hs []*functionshost.Handler, occ time.Time, body []byte) (functionshost.Reply, error) {
	time.Sleep(time.Until(occ))
	return executedBy(functionshost.Tick(context.Background(), hs, body), occ)
}

func executedBy(replies []functionshost.Reply, occ time.Time) (functionshost.Reply, error) {
	var ran []functionshost.Reply
	for _, r := range replies {
		switch {
		case r.Err != nil:
			return r, fmt.Errorf("occurrence %s: %s (%s) did not answer: %v", occ.Format(time.RFC3339), r.Region, r.Instance, r.Err)
		case r.Result.Status == "executed":
			ran = append(ran, r)
		case r.Result.Status != "skipped":
			return r, fmt.Errorf("occurrence %s: %s answered %s: %s", occ.Format(time.RFC3339), r.Region, r.Result.Status, r.Result.Reason)
		}
	}
	if len(ran) != 1 {
		return functionshost.Reply{}, fmt.Errorf("occurrence %s: %d regions executed it, want exactly one: %+v", occ.Format(time.RFC3339), len(ran), replies)
	}
	return ran[0], nil
}

// records reads every run record of the timer's lease in a container, and the lease's duration in its document.
func (b *timerBench) records(ctx context.Context, container string) (map[time.Time]cosmoslease.RunRecord, time.Duration, error) {
	c, err := cosmoslease.Open(ctx, cosmoslease.Options{ConnectionString: emulator.ConnectionString(b.e.endpoint), Database: b.e.db,
		Container: container, OwnerID: "bench-reader"})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	recs, err := c.Runs(ctx, settings.TimerLeaseKey, 1000)
	if err != nil {
		return nil, 0, err
	}
	out := map[time.Time]cosmoslease.RunRecord{}
	for _, r := range recs {
		if _, dup := out[r.Occurrence.UTC()]; dup {
			return nil, 0, fmt.Errorf("occurrence %s has two run records", r.Occurrence.Format(time.RFC3339))
		}
		out[r.Occurrence.UTC()] = r
	}
	s, err := c.Inspect(ctx, settings.TimerLeaseKey)
	if err != nil {
		return nil, 0, err
	}
	return out, s.Duration, nil
}

// nextOccurrence is the first occurrence of a gap-aligned schedule at least lead from now.
func nextOccurrence(gap, lead time.Duration) time.Time {
	t := time.Now().UTC().Truncate(gap).Add(gap)
	for time.Until(t) < lead {
		t = t.Add(gap)
	}
	return t
}

// kills runs `*/30 * * * * *` in three regions and kills the preferred one n times, each time right after it
// ran an occurrence; a new process of it starts after the next occurrence.
func (b *timerBench) kills(ctx context.Context, n int) ([]failover, scheduleRun, error) {
	// 30 s, not 20: the handler refuses a job whose last region (rank 2, 2 × 10 s late) would still wait when the
	// next occurrence is due.
	const expr, gap = "*/30 * * * * *", 30 * time.Second
	sr := scheduleRun{name: "every 30 s", expr: expr}
	app, container, err := b.app(ctx, b.bin, expr)
	if err != nil {
		return nil, sr, err
	}
	rs, err := startRegions(app)
	if err != nil {
		return nil, sr, err
	}
	defer rs.stop()
	tick := func(occ time.Time) []byte { return functionshost.UnmonitoredTick(functionshost.Fired(occ)) }
	var fired []time.Time
	next := nextOccurrence(gap, 2*time.Second)
	if r, err := fire(rs.handlers(), next, tick(next)); err != nil || r.Region != "eastus" {
		return nil, sr, fmt.Errorf("the first occurrence: %s ran it (%v); want eastus", r.Region, err)
	}
	fired = append(fired, next)
	var out []failover
	for i := range n {
		f := failover{killed: next}
		rs.kill("eastus")
		fmt.Printf("bench: killed eastus after it ran %s (%d of %d)\n", next.Format(time.RFC3339), i+1, n)
		next = next.Add(gap)
		r, err := fire(rs.handlers(), next, tick(next))
		if err != nil {
			return nil, sr, err
		}
		fired = append(fired, next)
		f.next, f.region, f.rank, f.replied = next, r.Region, r.Result.Rank, time.Duration(r.Result.FailoverDelayMs)*time.Millisecond
		if r.Region != "westeurope" {
			return nil, sr, fmt.Errorf("occurrence %s after the kill: %s ran it; want westeurope", next.Format(time.RFC3339), r.Region)
		}
		if err := rs.start("eastus"); err != nil {
			return nil, sr, err
		}
		next = next.Add(gap)
		if r, err = fire(rs.handlers(), next, tick(next)); err != nil {
			return nil, sr, err
		}
		fired = append(fired, next)
		f.handbackRegion, f.handbackInstance = r.Region, r.Instance
		out = append(out, f)
	}
	recs, lease, err := b.records(ctx, container)
	if err != nil {
		return nil, sr, err
	}
	sr.lease, sr.fired = lease, len(fired)
	for _, t := range fired {
		if _, ok := recs[t]; !ok {
			sr.missed++
		}
	}
	for i := range out {
		f := &out[i]
		f.killedStatus = recs[f.killed].Status
		f.late = recs[f.next].StartedAt.Sub(f.next)
		f.handbackLate = recs[f.next.Add(gap)].StartedAt.Sub(f.next.Add(gap))
		sr.lates = append(sr.lates, f.late)
	}
	return out, sr, nil
}

// midWork kills the preferred region while an occurrence's work (5 s) runs.
func (b *timerBench) midWork(ctx context.Context) (*failover, int, error) {
	const expr, gap = "*/30 * * * * *", 30 * time.Second
	app, container, err := b.app(ctx, b.slow, expr)
	if err != nil {
		return nil, 0, err
	}
	rs, err := startRegions(app)
	if err != nil {
		return nil, 0, err
	}
	defer rs.stop()
	tick := func(occ time.Time) []byte { return functionshost.UnmonitoredTick(functionshost.Fired(occ)) }
	first := nextOccurrence(gap, 2*time.Second)
	f := &failover{midWork: true, killed: first}
	time.Sleep(time.Until(first))
	answers := make(chan []functionshost.Reply, 1)
	go func() { answers <- functionshost.Tick(context.Background(), rs.handlers(), tick(first)) }()
	// Kill eastus a second after its run record says the work started.
	c, err := cosmoslease.Open(ctx, cosmoslease.Options{ConnectionString: emulator.ConnectionString(b.e.endpoint), Database: b.e.db,
		Container: container, OwnerID: "bench-reader"})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	for deadline := time.Now().Add(slowWorkFor); ; time.Sleep(50 * time.Millisecond) {
		recs, err := c.Runs(ctx, settings.TimerLeaseKey, 1)
		if err != nil {
			return nil, 0, err
		}
		if len(recs) == 1 && recs[0].Occurrence.Equal(first) && recs[0].Status == cosmoslease.RunStarted && recs[0].Region == "eastus" {
			break
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("mid-work: eastus did not start %s's work within %s", first.Format(time.RFC3339), slowWorkFor)
		}
	}
	time.Sleep(time.Second)
	rs.kill("eastus")
	fmt.Printf("bench: killed eastus a second into %s's work\n", first.Format(time.RFC3339))
	for _, r := range <-answers {
		if r.Region == "eastus" {
			if r.Err == nil {
				return nil, 0, fmt.Errorf("mid-work: eastus answered %+v before it was killed", r.Result)
			}
		} else if r.Err != nil || r.Result.Status != "skipped" {
			return nil, 0, fmt.Errorf("mid-work: %s answered %+v (%v) for the occurrence eastus claimed", r.Region, r.Result, r.Err)
		}
	}
	f.next = first.Add(gap)
	r, err := fire(rs.handlers(), f.next, tick(f.next))
	if err != nil {
		return nil, 0, err
	}
	f.region, f.rank, f.replied = r.Region, r.Result.Rank, time.Duration(r.Result.FailoverDelayMs)*time.Millisecond
	if r.Region != "westeurope" {
		return nil, 0, fmt.Errorf("mid-work: %s ran the occurrence after the kill; want westeurope", r.Region)
	}
	if err := rs.start("eastus"); err != nil {
		return nil, 0, err
	}
	handback := f.next.Add(gap)
	if r, err = fire(rs.handlers(), handback, tick(handback)); err != nil {
		return nil, 0, err
	}
	f.handbackRegion, f.handbackInstance = r.Region, r.Instance
	recs, _, err := b.records(ctx, container)
	if err != nil {
		return nil, 0, err
	}
	missed := 0
	for _, t := range []time.Time{first, f.next, handback} {
		if _, ok := recs[t]; !ok {
			missed++
		}
	}
	f.killedStatus = recs[first].Status
	f.late = recs[f.next].StartedAt.Sub(f.next)
	f.handbackLate = recs[handback].StartedAt.Sub(handback)
	return f, missed, nil
}

// longSchedules runs a real hourly and a real daily schedule whose next occurrence is the next minute, with the
// preferred region dead (started, then killed with SIGKILL before the occurrence), for one occurrence each, at
// once: the host invokes the two surviving regions of each app with a monitored schedule's payload.
func (b *timerBench) longSchedules(ctx context.Context) ([]scheduleRun, error) {
	occ := nextOccurrence(time.Minute, 20*time.Second)
	runs := []struct {
		sr   scheduleRun
		prev time.Time
	}{
		{scheduleRun{name: "hourly", expr: fmt.Sprintf("0 %d * * * *", occ.Minute())}, occ.Add(-time.Hour)},
		{scheduleRun{name: "daily", expr: fmt.Sprintf("0 %d %d * * *", occ.Minute(), occ.Hour())}, occ.AddDate(0, 0, -1)},
	}
	type outcome struct {
		reply functionshost.Reply
		err   error
	}
	done := make([]chan outcome, len(runs))
	containers := make([]string, len(runs))
	for i := range runs {
		app, container, err := b.app(ctx, b.bin, runs[i].sr.expr)
		if err != nil {
			return nil, err
		}
		containers[i] = container
		rs, err := startRegions(app)
		if err != nil {
			return nil, err
		}
		defer rs.stop()
		rs.kill("eastus")
		done[i] = make(chan outcome, 1)
		go func() {
			r, err := fire(rs.handlers(), occ, functionshost.MonitoredTick(runs[i].prev, occ, functionshost.Fired(occ), false))
			done[i] <- outcome{r, err}
		}()
	}
	fmt.Printf("bench: hourly %q and daily %q, eastus dead, occurrence %s\n", runs[0].sr.expr, runs[1].sr.expr, occ.Format(time.RFC3339))
	var out []scheduleRun
	for i := range runs {
		o := <-done[i]
		if o.err != nil {
			return nil, fmt.Errorf("%s: %w", runs[i].sr.name, o.err)
		}
		recs, lease, err := b.records(ctx, containers[i])
		if err != nil {
			return nil, err
		}
		sr := runs[i].sr
		sr.lease, sr.fired = lease, 1
		rec, ok := recs[occ]
		if !ok {
			sr.missed = 1
		} else if rec.Region != "westeurope" || o.reply.Region != "westeurope" {
			return nil, fmt.Errorf("%s: %s ran the occurrence (record: %s); want westeurope", sr.name, o.reply.Region, rec.Region)
		} else {
			sr.lates = append(sr.lates, rec.StartedAt.Sub(occ))
		}
		out = append(out, sr)
	}
	return out, nil
}

// occurrenceFailovers builds the handler (and a variant whose work lasts 5 s) and runs the three measurements.
func occurrenceFailovers(ctx context.Context, e env, kills int) (*occurrencesResult, error) {
	bin, cleanup, err := functionshost.Build("")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	slow, cleanupSlow, err := functionshost.Build(slowWork)
	if err != nil {
		return nil, err
	}
	defer cleanupSlow()
	dir, err := os.MkdirTemp("", "cosmoslease-bench-app")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The app's root, as deployed: host.json beside the handler (its functionTimeout bounds each invocation).
	if b, err := os.ReadFile("host.json"); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "host.json"), b, 0o644); err != nil {
			return nil, err
		}
	}
	b := &timerBench{e: e, dir: dir, bin: bin, slow: slow}
	res := &occurrencesResult{delay: cosmoslease.DefaultFailoverDelay, lease: 30 * time.Second}
	fmt.Println("bench: */30 * * * * *, the preferred region killed right after a run")
	var sr scheduleRun
	if res.kills, sr, err = b.kills(ctx, kills); err != nil {
		return nil, err
	}
	res.schedules = append(res.schedules, sr)
	fmt.Println("bench: */30 * * * * *, the preferred region killed mid-work")
	if res.midWork, res.midMissed, err = b.midWork(ctx); err != nil {
		return nil, err
	}
	fmt.Println("bench: hourly and daily schedules, the preferred region dead")
	long, err := b.longSchedules(ctx)
	if err != nil {
		return nil, err
	}
	res.schedules = append(res.schedules, long...)
	return res, nil
}

// secs writes a setting's duration: 30 s.
func secs(d time.Duration) string { return fmt.Sprintf("%g s", d.Seconds()) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// spread is "a" or "a–b" for the smallest and largest of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if seconds(s[0]) == seconds(s[len(s)-1]) {
		return seconds(s[0])
	}
	return seconds(s[0]) + "–" + seconds(s[len(s)-1])
}

func occurrencesSection(r *occurrencesResult) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s\n\nMeasured on %s with `go run ./tools/bench -bin bin/cosmoslease -only failover-occurrences` (part of `make bench`).\n",
		occurrencesHeading, time.Now().UTC().Format("2006-01-02"))
	w("Three regions' processes of the custom handler (`functions/leasehandler`, built from this tree) are driven as the Functions\n" +
		"host drives them: for each occurrence, one LeaseTimer invocation per live region at once, with the host's payloads, on the\n" +
		"real clock, against the local server. App settings: `LeaseTimerPreferredRegions=eastus,westeurope,southeastasia`, and the\n")
	w("defaults for the rest: the lease (`CosmosLeasing__DefaultLeaseDuration`) %s, `LeaseTimerFailoverDelay` %s. The preferred\n"+
		"region, eastus, is killed with SIGKILL, as an outage (or the host) ends it; westeurope is next (rank 1, one delay later).\n"+
		"Each figure comes from the run records: which region ran each occurrence, and when its work started (`startedAt` less\n"+
		"the occurrence).\n\n", secs(r.lease), secs(r.delay))
	old := func(gap string) string { return fmt.Sprintf("%s: 3 occurrences run nowhere", gap) }
	missed := func(n, of int) string { return fmt.Sprintf("%d of %d fired (the old design: 3)", n, of) }
	var lates, handbackLates []time.Duration
	handbacks := 0
	for _, f := range append(append([]failover(nil), r.kills...), *r.midWork) {
		if !f.midWork {
			lates = append(lates, f.late)
		}
		handbackLates = append(handbackLates, f.handbackLate)
		if f.handbackRegion == "eastus" {
			handbacks++
		}
	}
	w("| schedule | failover after a region dies (this design) | the old design (three gaps) | occurrences missed |\n|---|---|---|---|\n")
	s20, m := r.schedules[0], r.midWork
	w("| `%s` (every 30 s), eastus killed right after it ran an occurrence, %d times | the very next occurrence ran in westeurope, %s late | %s | %s |\n",
		s20.expr, len(r.kills), spread(lates), old("60 s"), missed(s20.missed, s20.fired))
	w("| `%s`, eastus killed a second into an occurrence's work (work of %s) | the very next occurrence ran in westeurope, %s late; the occurrence being worked on is recorded %s (at most once; `LeaseTimerRetryAbandoned=true` runs it again) | %s | %s |\n",
		s20.expr, secs(slowWorkFor), seconds(m.late), m.killedStatus, old("60 s"), missed(r.midMissed, 3))
	for _, sr := range r.schedules[1:] {
		gap := map[string]string{"hourly": "3 hours", "daily": "3 days"}[sr.name]
		w("| `%s` (%s), eastus dead at the occurrence | that occurrence ran in westeurope, %s late | %s | %s |\n",
			sr.expr, sr.name, spread(sr.lates), old(gap), missed(sr.missed, sr.fired))
	}
	w("\nNeither the lease nor the delay depends on the schedule: the lease document's `leaseDurationMs` after the runs, and how\n" +
		"late westeurope started (eastus killed right after a run, or dead at the occurrence):\n\n")
	w("| schedule | leaseDurationMs in the lease document | westeurope started after the occurrence |\n|---|---|---|\n")
	for _, sr := range r.schedules {
		w("| `%s` (%s) | %d | %s |\n", sr.expr, sr.name, sr.lease.Milliseconds(), spread(sr.lates))
	}
	w("\nThe handler's own figure (`failoverDelayMs` in its answer) agrees with the records:")
	for _, f := range r.kills {
		w(" %d ms,", f.replied.Milliseconds())
	}
	w(" and\n%d ms after the mid-work kill. There the killed region had taken the lease (for %s) when it claimed the\n"+
		"occurrence before, %s earlier, so westeurope's turn, %s after the next occurrence, came before that lease ran out;\n"+
		"once it had, westeurope waited as long as the dead holder's work could still have been stopping, had it been\n"+
		"alive (its grace, 10 s, less the %s of its lease past its deadline: the lease document's workStopMs), before it\n"+
		"settled the abandoned occurrence and ran its own: after a kill mid-work the next region starts when the later of\n"+
		"its delay and the dead holder's lease ends, plus that wait.\n",
		m.replied.Milliseconds(), secs(r.lease), secs(m.next.Sub(m.killed)), secs(r.delay), secs(r.lease/6))
	w("\nHandback: after each failover a new process of eastus (a new instance) started, and eastus ran the next occurrence in\n"+
		"%d of %d cases, %s after it fired.\n", handbacks, len(r.kills)+1, spread(handbackLates))
	w("\nThe old design's column is what the handler did before occurrence election (issue 17): it held the lease from tick to\n" +
		"tick, for three schedule gaps, so a dead region was replaced only when that lease ran out, about three gaps after its\n" +
		"last tick. Measured then for `*/20 * * * * *` (three handler processes driven as the host drives them): after SIGKILL of\n" +
		"the executing region the next three occurrences (60 s) ran nowhere, then another region took over. For hourly and daily\n" +
		"schedules the same three gaps are 3 hours and 3 days (not measured: the lease was three gaps long by construction). Now\n" +
		"the lease is held only while an occurrence's work runs, and a region of rank r runs an occurrence the preferred region did\n" +
		"not claim r × `LeaseTimerFailoverDelay` after it fires, whatever the schedule.\n\n")
	return b.String()
}
