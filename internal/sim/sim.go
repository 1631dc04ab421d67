package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/libhook"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Result is what one simulation did and found.
type Result struct {
	Config     Config
	Violations []Violation
	// History renders the run around a violation (history.go).
	w *world
	// Stats.
	Requests      int
	ByOutcome     map[string]int
	Holdings      int
	UnknownLinear int
	Judged        map[string]int // what the job checks judged
	Faults        map[string]int // the faults that happened, by kind
	Wall          time.Duration  // real time the run took
}

// Failed reports the violations that are not allowed by the run's conditions nor known findings that are off.
func (r Result) Failed(known Known) []Violation {
	var out []Violation
	for _, v := range r.Violations {
		if v.Allowed == "" && !known.Skips(r.Config.Seed, v.Check) {
			out = append(out, v)
		}
	}
	return out
}

// ContenderHours is the process time simulated.
func (r Result) ContenderHours() float64 {
	return float64(len(r.Config.Procs)) * r.Config.Duration.Hours()
}

// Run simulates cfg in a synctest bubble and checks what happened.
func Run(t *testing.T, cfg Config) Result {
	started := time.Now()
	var w *world
	synctest.Test(t, func(t *testing.T) {
		w = newWorld(cfg)
		w.run()
	})
	w.checkLiveness(cfg.Duration)
	w.checkJobs()
	if cfg.extra != nil {
		cfg.extra(w)
	}
	w.checkLinearizable(10 * time.Second)
	sort.SliceStable(w.viol, func(i, j int) bool { return w.viol[i].At < w.viol[j].At })
	r := Result{Config: cfg, Violations: w.viol, w: w, Requests: len(w.ops), ByOutcome: w.calls, UnknownLinear: w.unknownLinear,
		Wall: time.Since(started), Judged: w.judged, Faults: w.faults}
	for _, hs := range w.rec.holdings {
		r.Holdings += len(hs)
	}
	return r
}

func newWorld(cfg Config) *world {
	w := &world{cfg: cfg, start: time.Now(), endpoint: fmt.Sprintf("https://sim-%d.documents.azure.com:443/", cfg.Seed),
		calls: map[string]int{}, judged: map[string]int{}, faults: map[string]int{}, draws: map[drawKey]uint32{}, wake: make(chan struct{}, 1), memo: newDecodeMemo()}
	w.mem = memstore.New(trueClock{})
	w.rec.init()
	for i, pc := range cfg.Procs {
		p := &proc{w: w, id: i, cfg: pc, clk: newProcClock(w.start, pc.Offset, pc.Drift)}
		w.procs = append(w.procs, p)
	}
	return w
}

// run is the bubble's root: it starts every process, plays the fault plan's process events (pauses, crashes,
// restarts), and at the end kills every process and waits until all their goroutines have returned.
func (w *world) run() {
	var wg sync.WaitGroup
	for _, p := range w.procs {
		p.mu.Lock()
		p.inc = 0
		p.dead = true // not started yet
		p.mu.Unlock()
	}
	type ev struct {
		at   time.Duration
		p    *proc
		what string
		end  time.Duration
	}
	var evs []ev
	late := map[int]bool{} // a crash at 0: the process starts at its restart (scenarios)
	for _, s := range w.cfg.Storms {
		for _, c := range s.Crashes {
			late[c.Proc] = late[c.Proc] || c.At == 0
		}
	}
	for _, p := range w.procs {
		if !late[p.id] {
			evs = append(evs, ev{at: between(w.rng(p, 0, "start"), 0, w.cfg.LeaseDuration), p: p, what: "start"})
		}
	}
	for _, s := range w.cfg.Storms {
		for _, pa := range s.Pauses {
			evs = append(evs, ev{at: pa.Start, p: w.procs[pa.Proc], what: "pause"}, ev{at: pa.End, p: w.procs[pa.Proc], what: "resume"})
		}
		for _, c := range s.Crashes {
			if c.Graceful {
				// Stopped: its context ends at once; killed when its stop window ends (before its restart).
				kill := min(c.At+stopWindow, c.RestartAt-time.Millisecond)
				evs = append(evs, ev{at: c.At, p: w.procs[c.Proc], what: "stop"}, ev{at: max(kill, c.At), p: w.procs[c.Proc], what: "crash"})
			} else {
				evs = append(evs, ev{at: c.At, p: w.procs[c.Proc], what: "crash"})
			}
			evs = append(evs, ev{at: c.RestartAt, p: w.procs[c.Proc], what: "start"})
		}
	}
	evs = append(evs, ev{at: w.cfg.Duration, what: "end"})
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	for len(evs) > 0 {
		e := evs[0]
		if d := e.at - w.since(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-w.wake:
				// A process to restart later (a handler the host killed): into the plan.
				t.Stop()
				w.mu.Lock()
				for _, r := range w.restarts {
					evs = append(evs, ev{at: r.at, p: r.p, what: "start"})
				}
				w.restarts = nil
				w.mu.Unlock()
				sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
				continue
			}
		}
		evs = evs[1:]
		switch e.what {
		case "start":
			w.startProc(e.p, &wg)
		case "pause":
			w.fault("process paused past its lease")
			e.p.pause()
			w.logf(e.p, e.p.inc, "", "paused (SIGSTOP)")
		case "resume":
			e.p.unpause()
			w.logf(e.p, e.p.inc, "", "resumed (SIGCONT)")
		case "crash":
			if e.p.alive(e.p.inc) {
				w.fault("process killed (memory lost)")
			}
			w.crash(e.p)
		case "stop":
			w.fault("process stopped gracefully")
			w.stop(e.p)
		case "end":
			for _, p := range w.procs {
				w.crash(p)
			}
			evs = nil
		}
	}
	wg.Wait()
	// The library's own goroutines (lease keepers, an abandoned release) end within a few lease durations once
	// their process is dead; time must keep running until they have (it stops when this goroutine returns).
	time.Sleep(4*w.cfg.LeaseDuration + time.Minute)
	// Work that ignores its context runs on in its dead process until its own length is up (at most three gaps of
	// its schedule): the bubble must not end before it has returned.
	for range 60 {
		if !w.workRunning() {
			break
		}
		time.Sleep(time.Minute)
	}
	// What the container holds at the end, read inside the bubble (jobs.go).
	w.readJobs()
}

// workRunning reports whether some work function has not returned yet.
func (w *world) workRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, runs := range w.rec.work {
		for _, r := range runs {
			if r.to < 0 {
				return true
			}
		}
	}
	return false
}

// stopWindow is how long a stopped process has to end on its own before it is killed: the work's grace (15 s for
// cron), recording and releasing (FinishWithin, 20 s by default), and departing (FinishWithin).
const stopWindow = 60 * time.Second

// stop ends p's context, as SIGTERM or the host's shutdown does: the process is still alive, and finishes what it
// does (cron's RunSchedule waits for its calls, then departs).
func (w *world) stop(p *proc) {
	p.mu.Lock()
	if p.dead || p.ctx == nil || p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	inc := p.inc
	p.cancel()
	p.mu.Unlock()
	w.mu.Lock()
	w.rec.stops[[2]int{p.id, inc}] = w.since()
	w.mu.Unlock()
	w.logf(p, inc, "", "stopped (SIGTERM): it finishes what it does, and is killed after %s", stopWindow)
}

func (p *proc) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume == nil && !p.dead {
		p.resume = make(chan struct{})
		p.pauses++
	}
}

func (p *proc) unpause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
}

// crash kills p's incarnation: it stops at its next request or check, and nothing it knew survives.
func (w *world) crash(p *proc) {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	p.dead = true
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
	inc := p.inc
	p.cancel()
	p.mu.Unlock()
	w.died(p, inc)
	w.logf(p, inc, "", "crashed (SIGKILL): its memory is lost")
}

// startProc starts a new incarnation of p: a new Client (nothing remembered), its programs.
func (w *world) startProc(p *proc, wg *sync.WaitGroup) {
	p.mu.Lock()
	if !p.dead {
		p.mu.Unlock()
		return
	}
	p.inc++
	p.dead = false
	p.ctx, p.cancel = context.WithCancel(context.Background())
	inc, ctx := p.inc, p.ctx
	p.mu.Unlock()
	w.mu.Lock()
	w.rec.starts = append(w.rec.starts, procEvent{p: p.id, at: w.since()})
	w.mu.Unlock()
	w.logf(p, inc, "", "started (incarnation %d)", inc)
	st := &procStore{w: w, p: p, inc: inc}
	opts := cosmoslease.Options{OwnerID: p.cfg.Name, Region: p.cfg.Region, Hostname: p.cfg.Name, LeaseDuration: w.cfg.LeaseDuration,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if len(p.cfg.Keys) > 0 {
		c, err := newClient(st, p, inc, opts)
		if err != nil {
			panic(err)
		}
		cont, err := st.container()
		if err != nil {
			panic(err)
		}
		for _, key := range p.cfg.Keys {
			wg.Go(func() { w.holdLoop(ctx, p, inc, c, cont, key) })
		}
	}
	w.startJobs(ctx, p, inc, st, wg)
}

func newClient(st *procStore, p *proc, inc int, opts cosmoslease.Options) (*cosmoslease.Client, error) {
	jitter := func() float64 { return st.w.rng(p, inc, "jitter").Float64() }
	c, err := libhook.NewClient(libhook.Parts{Store: st, Clock: p.clk, Rand: jitter, Decode: st.w.memo.decode}, opts)
	if err != nil {
		return nil, err
	}
	return c.(*cosmoslease.Client), nil
}

// jobSummary says what the job checks judged.
func (r Result) jobSummary() string {
	if len(r.Config.Jobs) == 0 {
		return ""
	}
	j := r.Judged
	return fmt.Sprintf("; jobs: %d occurrences accounted, %d started, %d missed (counter %d; %d judged for cause), %d caught up, %d starts judged for overlap skip; calm occurrences judged: %d liveness, %d preferred, %d failover-once",
		j["occurrences"], j["starts"], j["missed"], j["counted"], j[checkCause], j["caught up"], j[checkSkip], j[checkRecovering], j[checkPreferred], j[checkOnTime])
}
