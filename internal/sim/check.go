package sim

import (
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"sort"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// The checkers. Each states a guarantee the way docs/reliability.md and the package comment state it, and is
// judged on what the processes and the container did, never on what the code under test says about itself.

// Violation is one broken guarantee.
type Violation struct {
	At    time.Duration
	Check string // the checker's name
	Key   string // the lease key or document it concerns
	Text  string
	// Allowed is set when the documentation says the run's conditions may break this guarantee (clocks beyond
	// the documented bound): it is reported, not failed.
	Allowed string
}

func (v Violation) String() string {
	s := fmt.Sprintf("%s [%s] %s: %s", fmtAt(v.At), v.Check, v.Key, v.Text)
	if v.Allowed != "" {
		s += " (allowed: " + v.Allowed + ")"
	}
	return s
}

// Names of the checks (also the names of known findings, see known.go).
const (
	checkEpochs    = "epochs"    // per key, each holding's epoch is above every earlier holding's
	checkExclusion = "exclusion" // no two live processes believe they hold one key at one instant
	checkLinear    = "linearizable"
	checkFence     = "fence"    // a fenced item never accepts an epoch below one it accepted
	checkLiveness  = "liveness" // a continuous lease is held again soon after the last fault heals
)

// holding is one Lease a process held.
type holding struct {
	key   string
	p     *proc
	inc   int
	lease *cosmoslease.Lease
	epoch int64
	from  time.Duration
	to    time.Duration // when its context ended; -1 while open
}

// recorder is what the checkers collect during the run; guarded by the world's lock.
type recorder struct {
	fenceMax map[string]int64
	fenceBy  map[string]string
	holdings map[string][]*holding
	deaths   map[[2]int]time.Duration // (process, incarnation) → when it died
	stops    map[[2]int]time.Duration // (process, incarnation) → when it was stopped gracefully
	starts   []procEvent              // every start of a process
	// writes are the versions the container applied, per document, in order (linear.go).
	writes map[string][]applied
	// work is every start of scheduled work, per job key (jobs.go).
	work map[string][]*workRun
	// jobWrites are the writes of jobs' lease documents, in the order applied, with the missed count each wrote.
	jobWrites []jobWrite
	// invocations are the handler's invocations, per job key.
	invocations map[string][]invocation
	// overlaps are starts made while another occurrence's work ran (judged after the run: jobs.go).
	overlaps [][2]*workRun
	// jobs is what the accounting checks need of each job (jobs.go).
	jobs map[string]*jobRecord
}

type procEvent struct {
	p  int
	at time.Duration
}

type applied struct {
	at    time.Duration
	state docState
}

func (r *recorder) init() {
	r.fenceMax, r.fenceBy = map[string]int64{}, map[string]string{}
	r.holdings, r.deaths, r.stops = map[string][]*holding{}, map[[2]int]time.Duration{}, map[[2]int]time.Duration{}
	r.jobs = map[string]*jobRecord{}
	r.invocations = map[string][]invocation{}
	r.writes = map[string][]applied{}
	r.work = map[string][]*workRun{}
}

func (w *world) violate(v Violation) {
	if (v.Check == checkExclusion || v.Check == checkOverlap) && w.cfg.ClockMode == "beyond" {
		v.Allowed = "clock drift beyond the documented bound breaks mutual exclusion (docs/reliability.md, Assumptions)"
	}
	w.mu.Lock()
	w.viol = append(w.viol, v)
	w.mu.Unlock()
}

// applied sees every write the container applied, in the order it applied them (under the world's lock). The
// fence check: a fenced item's stored epoch never goes down.
func (r *recorder) applied(w *world, o op) {
	st := docState{exists: true, etag: o.etag, fence: o.fence}
	if o.kind == opPatch && o.fence < 0 {
		if ws := r.writes[o.doc]; len(ws) > 0 {
			st.fence = ws[len(ws)-1].state.fence
		}
	}
	r.writes[o.doc] = append(r.writes[o.doc], applied{at: w.since(), state: st})
	if o.job != nil {
		r.jobWrites = append(r.jobWrites, jobWrite{doc: o.doc, seq: o.seq, at: w.since(), proc: int(o.proc), inc: int(o.inc), info: *o.job})
	}
	if !isItem(o.doc) || o.fence < 0 {
		return
	}
	who := fmt.Sprintf("%s#%d", w.procs[o.proc].cfg.Name, o.inc)
	if max, ok := r.fenceMax[o.doc]; ok && o.fence < max {
		w.viol = append(w.viol, Violation{At: w.since(), Check: checkFence, Key: o.doc,
			Text: fmt.Sprintf("%s's %s at epoch %d was applied after %s had written epoch %d", who, opNames[o.kind], o.fence, r.fenceBy[o.doc], max)})
		return
	}
	r.fenceMax[o.doc], r.fenceBy[o.doc] = o.fence, who
}

// acquired registers a new holding and checks its epoch and that nobody else holds the key now.
func (w *world) acquired(h *holding) {
	w.mu.Lock()
	prev := w.rec.holdings[h.key]
	var last *holding
	if len(prev) > 0 {
		last = prev[len(prev)-1]
	}
	w.rec.holdings[h.key] = append(prev, h)
	w.mu.Unlock()
	if last != nil && h.epoch <= last.epoch {
		w.violate(Violation{At: h.from, Check: checkEpochs, Key: h.key, Text: fmt.Sprintf("%s#%d acquired epoch %d after %s#%d had acquired epoch %d (at %s)",
			h.p.cfg.Name, h.inc, h.epoch, last.p.cfg.Name, last.inc, last.epoch, fmtAt(last.from))})
	}
	if err := h.lease.Err(); err != nil {
		// Acquire stands by until it holds the lease: a Lease lost before it was handed out is no holding.
		w.violate(Violation{At: h.from, Check: checkEpochs, Key: h.key, Text: fmt.Sprintf("%s#%d got from Acquire a Lease at epoch %d that was already lost: %v",
			h.p.cfg.Name, h.inc, h.epoch, err)})
		return
	}
	w.believes(h, "acquired")
}

// believes checks, at an instant when h's process believes it holds the lease (it just acquired it, renewed it,
// or checked Lease.Err before a unit of work), that no other live process believes so too: it asks every other
// open holding of the key, in a live incarnation, for Lease.Err now.
func (w *world) believes(h *holding, why string) {
	w.mu.Lock()
	var others []*holding
	for _, o := range w.rec.holdings[h.key] {
		if o != h && o.to < 0 {
			others = append(others, o)
		}
	}
	w.mu.Unlock()
	for _, o := range others {
		if !o.p.alive(o.inc) {
			continue
		}
		if o.lease.Err() == nil {
			w.violate(Violation{At: w.since(), Check: checkExclusion, Key: h.key,
				Text: fmt.Sprintf("%s#%d (epoch %d, %s) and %s#%d (epoch %d, held since %s) both hold the lease",
					h.p.cfg.Name, h.inc, h.epoch, why, o.p.cfg.Name, o.inc, o.epoch, fmtAt(o.from))})
		}
	}
}

// ended closes a holding when its lease's context ends.
func (w *world) ended(h *holding) {
	w.mu.Lock()
	if h.to < 0 {
		h.to = w.since()
	}
	w.mu.Unlock()
}

// died records the death of an incarnation: its holdings count no more.
func (w *world) died(p *proc, inc int) {
	w.mu.Lock()
	w.rec.deaths[[2]int{p.id, inc}] = w.since()
	var rs []*procReader
	for _, jr := range w.rec.jobs {
		for _, r := range jr.readers {
			if r.proc == p.id && r.inc == inc && !r.dead {
				r.dead = true
				rs = append(rs, r)
			}
		}
	}
	w.mu.Unlock()
	// A killed process exports nothing more: its counters are what they were when it died (its goroutines may
	// still run a moment in the simulation; whatever they count then is not counted).
	for _, r := range rs {
		r.missed, r.err = sumCounter([]*sdkmetric.ManualReader{r.reader}, "cosmoslease.occurrence.missed")
	}
}

// livenessBound is how long after the last fault heals (or after a holder lets go in calm weather) a continuous
// lease must be held again: LeaseDuration, plus one second for _ts's resolution, plus one retry of a standby
// (its poll, RetryPeriod + 10 %, or a Retry-After of up to 2 s, and a request that may hang for RequestTimeout),
// plus 2 s for calm-weather latencies; all of it stretched by the slowest clock's rate.
func (w *world) livenessBound() time.Duration {
	l := w.cfg.LeaseDuration
	rp := l / 12
	rt := min(10*time.Second, renewDeadline(l)/2)
	b := l + time.Second + max(rp*11/10, 2*time.Second) + rt + 2*time.Second
	slowest := 0.0
	for _, p := range w.cfg.Procs {
		slowest = min(slowest, p.Drift)
	}
	return time.Duration(float64(b) / (1 + slowest))
}

// checkLiveness finds, per continuous key, the spans in which no live process held the lease, and reports those
// that lasted past the bound after the weather cleared.
func (w *world) checkLiveness(end time.Duration) {
	bound := w.livenessBound()
	for _, key := range w.cfg.Keys {
		type span struct{ from, to time.Duration }
		var spans []span
		for _, h := range w.rec.holdings[key] {
			to := h.to
			if to < 0 {
				to = end
			}
			if d, ok := w.rec.deaths[[2]int{h.p.id, h.inc}]; ok && d < to {
				to = d
			}
			if to > h.from {
				spans = append(spans, span{h.from, to})
			}
		}
		sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
		covered := time.Duration(0) // held up to here
		check := func(gapFrom, gapTo time.Duration) {
			start := gapFrom
			for _, s := range w.cfg.Storms {
				if s.Start < gapTo && s.End > start {
					start = s.End
				}
				// A machine that comes back after a long outage is a fault healing too (its keys' other
				// contenders may all have been down).
				for _, c := range s.Crashes {
					if c.RestartAt < gapTo && c.RestartAt > start {
						start = c.RestartAt
					}
				}
			}
			if gapTo > start && gapTo-start > bound {
				w.violate(Violation{At: gapTo, Check: checkLiveness, Key: key,
					Text: fmt.Sprintf("nobody held the lease from %s to %s: %s after the weather cleared (at %s), more than the bound of %s",
						fmtAt(gapFrom), fmtAt(gapTo), gapTo-start, fmtAt(start), bound)})
			}
		}
		first := true
		for _, s := range spans {
			if s.from > covered {
				if first {
					// The first holder: measured from the start, like a gap.
					check(0, s.from)
				} else {
					check(covered, s.from)
				}
			}
			first = false
			covered = max(covered, s.to)
		}
		if covered < end {
			check(covered, end)
		}
	}
}

func fmtAt(d time.Duration) string {
	h := d / time.Hour
	m := (d % time.Hour) / time.Minute
	s := float64(d%time.Minute) / float64(time.Second)
	return fmt.Sprintf("%dh%02dm%06.3fs", h, m, s)
}
