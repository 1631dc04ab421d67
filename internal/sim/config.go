package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Config is everything one simulation does, expanded from its seed (expand): the population, the lease options,
// the clocks, and the fault plan. Printed with a failure, so a reader knows what the seed meant.
type Config struct {
	Seed     uint64
	Duration time.Duration // virtual time simulated

	Regions []string
	Procs   []ProcConfig
	// Keys are the continuously held lease keys (as `cosmoslease run --wait` holds them); each has a fenced item.
	Keys []string
	// Lease options of every process (a fleet is configured alike).
	LeaseDuration time.Duration
	// ClockMode: "exact" (no offset or drift), "within" (offsets, and drift inside the documented bound) or
	// "beyond" (drift beyond it: only mutual exclusion may break, as docs/reliability.md says).
	ClockMode string

	Latency LatencyConfig
	// Calm: storms are rare (calm spans of 10 to 40 lease durations instead of 3 to 9), so that the checks that
	// judge calm weather (preference, failover, liveness of scheduled work) have occurrences to judge.
	Calm   bool
	Storms []Storm

	// Jobs are scheduled occurrences (RunOnce as cron and the handler drive it).
	Jobs []JobConfig

	// scenario, for a scripted world (scenarios.go): its name, and its own checks beside every run's.
	scenario string
	extra    func(w *world)
}

// cost estimates how much work simulating c is, in requests: each contender of a continuous key reads or writes
// its lease about twelve times per lease duration, and each participant of a job costs about ten requests'
// worth per occurrence (claims, records and larger documents). Only the order of seeds depends on it.
func (c Config) cost() float64 {
	secs := c.Duration.Seconds()
	n := 0.0
	for _, p := range c.Procs {
		n += float64(len(p.Keys)) * 12 / c.LeaseDuration.Seconds() * secs
	}
	for _, j := range c.Jobs {
		n += 10 * float64(len(j.Procs)) * secs / j.Every.Seconds()
	}
	return n
}

// ProcConfig is one contender process (a machine).
type ProcConfig struct {
	Name   string
	Region string
	Offset time.Duration
	Drift  float64
	Keys   []string // continuous lease keys it contends for
	// RenewByHand: it also calls Lease.Renew every so often, beside the automatic renewal.
	RenewByHand bool
	// Patch: its fenced writes are patches (Fence.PatchItem) when the item exists; otherwise read–check–replace.
	Patch bool
	// Careless: it works without checking its lease first and does not notice its loss, as the chaos run's
	// --skip-lease-check does (a stand-in for a process paused between its check and its write at the worst
	// moment): only the fence can stop it. Its beliefs are not checked for mutual exclusion.
	Careless bool
}

// LatencyConfig is the request latency distribution: most requests take about Median (log-normal), a fraction
// Tail take up to TailMax.
type LatencyConfig struct {
	Median  time.Duration
	Tail    float64
	TailMax time.Duration
}

// Storm is a span of virtual time in which faults happen; between storms the only fault is ordinary latency, so
// the liveness checks measure from the end of a storm.
type Storm struct {
	Start, End time.Duration // since the start of the run
	// Per-request probabilities while it lasts.
	LostBefore float64 // the request never reaches Cosmos DB: the caller times out or gets a reset
	LostAnswer float64 // applied, the answer lost: the caller times out or gets a reset
	SlowAnswer float64 // applied, the answer held back past the caller's deadline (it lands after the caller gave up)
	// SlowRequests: the request is held in the network for up to LeaseDuration before it arrives (and is applied,
	// whether or not its caller still waits).
	SlowRequests float64
	LaggedReads  float64 // a read answered by a replica 1–3 writes behind (never behind the read's session token)
	Spells       []Spell
	Cuts         []Cut
	Pauses       []Pause
	Crashes      []Crash
}

// Spell: for a while, requests of some kind are answered with Status. 429 and 503 are refused (not applied;
// 429 with Retry-After); 404 is the read answer of a replica that has not caught up with the read's session
// (substatus 1002: says nothing about the item); 409 and 412 are the answers to the SDK's own retry of a write
// whose first answer was lost: the write was applied.
type Spell struct {
	Start, End time.Duration
	Status     int
	Region     string // "" for every region
	Prob       float64
	// Docs, when set, limits the spell to writes (creates, replaces, patches) of documents whose id starts with it.
	Docs string
}

// Cut: the region cannot reach Cosmos DB: requests get no answer (a connection timeout), in flight or not.
// For Degrade before it, the region's network is failing: answers take up to SlowTo.
type Cut struct {
	Start, End time.Duration
	Region     string
	Degrade    time.Duration
	SlowTo     time.Duration
}

// Pause: the process is stopped (SIGSTOP) and resumed; its clocks run on meanwhile.
type Pause struct {
	Proc       int
	Start, End time.Duration
}

// Crash: the process dies (its memory lost; requests already sent may still be applied) and starts again.
// Graceful: it is stopped (SIGTERM, the host's shutdown) instead: its context ends, it finishes what it does (cron
// records its run, releases the lease and departs), and it is killed stopWindow later if it has not ended.
type Crash struct {
	Proc          int
	At, RestartAt time.Duration
	Graceful      bool
}

// JobConfig is one scheduled job (lease key) and the processes that run it.
type JobConfig struct {
	Key string
	// Every is the schedule's period (occurrences at multiples of it since the start of the bubble's day).
	Every time.Duration
	// Driver is "cron" (cosmoslease cron's loop) or "handler" (the Functions host's ticks and deadline).
	Driver        string
	FailoverDelay time.Duration
	LeaseDuration time.Duration
	Grace         time.Duration
	// Work is how long the work takes, uniformly in [WorkMin, WorkMax]. When its context ends it stops within
	// [StopMin, Grace × 0.8] (StopMin 0 unless a scenario sets it).
	WorkMin, WorkMax time.Duration
	StopMin          time.Duration
	RetryAbandoned   bool
	// RetryWork, when set (scenarios), is how long a re-run of an abandoned occurrence takes instead.
	RetryWork time.Duration
	// FunctionTimeout is the host's functionTimeout (handler only).
	FunctionTimeout time.Duration
	// Procs run it: Procs[0] is in the preferred region. Regions is the preference order (the regions of Procs in
	// order of first appearance: cron's --preferred-regions, the handler's preferred regions); a process's rank is
	// its region's place in it, so processes of one region contend at the same time.
	Procs   []int
	Regions []string
	// CatchUpWindow and Overlap are the job's catch-up window (0: off) and overlap policy ("" is wait): cron's
	// --catch-up-window and --overlap, the handler's LeaseJobs__NAME__CatchUpWindow and __Overlap.
	CatchUpWindow time.Duration
	Overlap       string
}

func (c Config) String() string {
	var b strings.Builder
	weather := "stormy"
	if c.Calm {
		weather = "calm"
	}
	fmt.Fprintf(&b, "seed %d: %s virtual, %d processes in %d regions %v, clocks %s, lease %s, latency median %s (%.1f%% up to %s), %s\n",
		c.Seed, c.Duration, len(c.Procs), len(c.Regions), c.Regions, c.ClockMode, c.LeaseDuration, c.Latency.Median,
		100*c.Latency.Tail, c.Latency.TailMax, weather)
	for _, p := range c.Procs {
		fmt.Fprintf(&b, "  %s in %s: offset %s, drift %+.4f, keys %v, renew by hand %v, patch %v, careless %v\n", p.Name, p.Region, p.Offset,
			p.Drift, p.Keys, p.RenewByHand, p.Patch, p.Careless)
	}
	for _, j := range c.Jobs {
		fmt.Fprintf(&b, "  job %s: every %s by %s, delay %s, lease %s, grace %s, work %s–%s, retry abandoned %v, timeout %s, processes %v, regions %v, catch-up %s, overlap %s\n",
			j.Key, j.Every, j.Driver, j.FailoverDelay, j.LeaseDuration, j.Grace, j.WorkMin, j.WorkMax, j.RetryAbandoned,
			j.FunctionTimeout, j.Procs, j.Regions, j.CatchUpWindow, orDefault(j.Overlap, "wait"))
	}
	for i, s := range c.Storms {
		fmt.Fprintf(&b, "  storm %d: %s–%s lostBefore %.3f lostAnswer %.3f slowAnswer %.3f slowRequests %.3f laggedReads %.2f", i, s.Start, s.End,
			s.LostBefore, s.LostAnswer, s.SlowAnswer, s.SlowRequests, s.LaggedReads)
		for _, sp := range s.Spells {
			fmt.Fprintf(&b, "; %d spell %s–%s %s p=%.2f", sp.Status, sp.Start, sp.End, orAll(sp.Region), sp.Prob)
		}
		for _, cu := range s.Cuts {
			fmt.Fprintf(&b, "; cut %s %s–%s (answers up to %s for %s before)", cu.Region, cu.Start, cu.End, cu.SlowTo, cu.Degrade)
		}
		for _, p := range s.Pauses {
			fmt.Fprintf(&b, "; pause p%d %s–%s", p.Proc, p.Start, p.End)
		}
		for _, cr := range s.Crashes {
			what := "crash"
			if cr.Graceful {
				what = "stop"
			}
			fmt.Fprintf(&b, "; %s p%d at %s, restart %s", what, cr.Proc, cr.At, cr.RestartAt)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func orAll(r string) string {
	if r == "" {
		return "all regions"
	}
	return r
}

var regionNames = []string{"eastus", "westeurope", "southeastasia", "brazilsouth"}

// expand draws a configuration from seed. Everything random about a run is here or drawn later from the same
// seed (request faults and latencies, the actors' choices), never from the host.
func expand(seed uint64, duration time.Duration) Config {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	c := Config{Seed: seed, Duration: duration}
	c.Regions = regionNames[:2+r.IntN(3)]
	// Mostly the default lease; sometimes the short ones that make every margin tight.
	c.LeaseDuration = []time.Duration{10 * time.Second, 30 * time.Second, 30 * time.Second, 60 * time.Second, 60 * time.Second,
		60 * time.Second, 60 * time.Second, 60 * time.Second}[r.IntN(8)]
	switch x := r.IntN(8); {
	case x < 3:
		c.ClockMode = "exact"
	case x < 7:
		c.ClockMode = "within"
	default:
		c.ClockMode = "beyond"
	}
	nkeys := 2 + r.IntN(3)
	for i := range nkeys {
		c.Keys = append(c.Keys, fmt.Sprintf("k%d", i))
	}
	nprocs := 3 + r.IntN(5)
	for i := range nprocs {
		p := ProcConfig{Name: fmt.Sprintf("p%d", i), Region: c.Regions[i%len(c.Regions)], RenewByHand: r.IntN(3) == 0, Patch: r.IntN(2) == 0,
			Careless: r.IntN(4) == 0}
		// Every key has at least two contenders; each process contends for a random subset.
		for k, key := range c.Keys {
			if k%nprocs == i || (k+1)%nprocs == i || r.IntN(2) == 0 {
				p.Keys = append(p.Keys, key)
			}
		}
		// Offsets: NTP keeps most machines within a fraction of a second; one in five is minutes off (offsets
		// never matter to the lease; to scheduled work they matter as docs/reliability.md says).
		offset := time.Duration(r.NormFloat64() * float64(200*time.Millisecond))
		if r.IntN(5) == 0 {
			offset = time.Duration(r.NormFloat64() * float64(10*time.Minute))
		}
		switch c.ClockMode {
		case "within":
			p.Offset = offset
			p.Drift = (2*r.Float64() - 1) * maxDrift(c.LeaseDuration) / 2
		case "beyond":
			p.Offset = offset
			p.Drift = (2*r.Float64() - 1) * maxDrift(c.LeaseDuration) * 4
		}
		c.Procs = append(c.Procs, p)
	}
	c.Latency = LatencyConfig{Median: time.Duration(1+r.IntN(40)) * time.Millisecond, Tail: 0.002 + 0.02*r.Float64(),
		TailMax: time.Duration(1+r.IntN(8)) * time.Second}
	for i := range 1 + r.IntN(2) {
		c.Jobs = append(c.Jobs, job(r, c, i))
	}
	c.Calm = r.IntN(3) == 0
	c.Storms = storms(r, c)
	// The catch-up window and the overlap policy (issue 26) come from a stream of their own, so that every other
	// draw of a seed is what it was before they existed.
	r2 := rand.New(rand.NewPCG(seed, 0xca7c40))
	for i := range c.Jobs {
		c.Jobs[i].CatchUpWindow = []time.Duration{0, 0, 10 * time.Minute, time.Hour}[r2.IntN(4)]
		c.Jobs[i].Overlap = []string{"", "skip"}[r2.IntN(2)]
	}
	return c
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// job draws a scheduled job: its driver, schedule (shorter and longer than rank × delay), lease, work and
// participants (in different regions where there are enough, ranked in a random preference order).
func job(r *rand.Rand, c Config, i int) JobConfig {
	j := JobConfig{Key: fmt.Sprintf("job%d", i), Driver: []string{"cron", "handler"}[r.IntN(2)],
		Every:          []time.Duration{10 * time.Second, 20 * time.Second, time.Minute, 5 * time.Minute}[r.IntN(4)],
		FailoverDelay:  []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second}[r.IntN(4)],
		LeaseDuration:  30 * time.Second,
		RetryAbandoned: r.IntN(2) == 0}
	if r.IntN(3) == 0 {
		j.LeaseDuration = []time.Duration{10 * time.Second, 60 * time.Second}[r.IntN(2)]
	}
	// Work mostly within the gap, sometimes longer than it.
	j.WorkMin, j.WorkMax = j.Every/20, j.Every/2
	if r.IntN(4) == 0 {
		// Longer than the gap: sometimes longer than two (occurrences passed over for overlap).
		j.WorkMax = []time.Duration{2 * j.Every, 3 * j.Every}[r.IntN(2)]
	}
	switch j.Driver {
	case "cron":
		j.Grace = 10*time.Second + 5*time.Second // cron passes --grace (10 s) + 5 s
	default:
		j.FunctionTimeout = []time.Duration{time.Minute, 5 * time.Minute}[r.IntN(2)]
		j.Grace = min(min(max(j.FunctionTimeout/10, time.Second), time.Minute)/2, 10*time.Second)
	}
	n := 2 + r.IntN(min(3, len(c.Procs)-1))
	for _, id := range r.Perm(len(c.Procs))[:n] {
		j.Procs = append(j.Procs, id)
	}
	for _, id := range j.Procs {
		if reg := c.Procs[id].Region; !slices.Contains(j.Regions, reg) {
			j.Regions = append(j.Regions, reg)
		}
	}
	if j.Driver == "handler" {
		// The handler's settings as it accepts them: (regions − 1) × delay below the schedule's gap (the host cannot
		// fire the next tick while an invocation waits: docs/scheduled-work.md), and regions × delay below half
		// of the invocation's working time (settings.go).
		margin := min(max(j.FunctionTimeout/10, time.Second), time.Minute)
		for j.FailoverDelay > time.Second && (time.Duration(len(j.Regions)-1)*j.FailoverDelay >= j.Every ||
			time.Duration(len(j.Regions))*j.FailoverDelay >= (j.FunctionTimeout-margin)/2) {
			j.FailoverDelay -= time.Second
		}
	}
	return j
}

// renewDeadline is the default RenewDeadline for a lease (options.go): halfway between the renewal interval
// (two thirds of the lease, or 40 s) and the lease.
func renewDeadline(lease time.Duration) time.Duration {
	ri := 40 * time.Second
	if ri >= lease {
		ri = lease * 2 / 3
	}
	return ri + (lease-ri)/2
}

// maxDrift is the documented bound on clock rate error for the default options: RenewDeadline·(1+ρ)/(1−ρ) ≤
// LeaseDuration (σ is 0 here: one server clock stamps Date and _ts).
func maxDrift(lease time.Duration) float64 {
	rd := float64(renewDeadline(lease))
	l := float64(lease)
	return (l - rd) / (l + rd)
}

// storms lays out the run: calm, storm, calm, … Calm spans are long enough for the liveness checks.
func storms(r *rand.Rand, c Config) []Storm {
	var out []Storm
	l := c.LeaseDuration
	at := 2*l + time.Duration(r.Int64N(int64(4*l)))
	for at < c.Duration-6*l {
		length := 2*l + time.Duration(r.Int64N(int64(8*l)))
		s := Storm{Start: at, End: min(at+length, c.Duration-4*l)}
		if s.End <= s.Start {
			break
		}
		span := func() (time.Duration, time.Duration) {
			a := s.Start + time.Duration(r.Int64N(int64(s.End-s.Start)))
			b := a + time.Duration(r.Int64N(int64(s.End-a)+1))
			return a, b
		}
		if r.IntN(2) == 0 {
			s.LostBefore = 0.05 * r.Float64()
		}
		if r.IntN(2) == 0 {
			s.LostAnswer = 0.05 * r.Float64()
		}
		if r.IntN(3) == 0 {
			s.SlowAnswer = 0.03 * r.Float64()
		}
		if r.IntN(3) == 0 {
			s.SlowRequests = 0.03 * r.Float64()
		}
		if r.IntN(2) == 0 {
			s.LaggedReads = 0.5 * r.Float64()
		}
		for range r.IntN(3) {
			a, b := span()
			sp := Spell{Start: a, End: b, Status: []int{404, 409, 412, 429, 503}[r.IntN(5)], Prob: 0.2 + 0.8*r.Float64()}
			if r.IntN(2) == 0 {
				sp.Region = c.Regions[r.IntN(len(c.Regions))]
			}
			s.Spells = append(s.Spells, sp)
		}
		if r.IntN(2) == 0 {
			a, b := span()
			cut := Cut{Start: a, End: b, Region: c.Regions[r.IntN(len(c.Regions))]}
			if r.IntN(4) != 0 {
				// The network degrades before it fails: slow answers (still within the callers' patience, which
				// is up to RequestTimeout) for a while before the cut.
				cut.Degrade = min(a-s.Start, time.Duration(r.Int64N(int64(l))))
				// Up to one and a half RequestTimeouts: the claims' answers then land after the claimer gave
				// up, a renewal made right after another (Renew by hand, up to half of RenewDeadline) still gets
				// its answer.
				rt := min(10*time.Second, renewDeadline(l)/2)
				cut.SlowTo = rt/2 + time.Duration(r.Int64N(int64(rt)))
			}
			s.Cuts = append(s.Cuts, cut)
		}
		if r.IntN(2) == 0 {
			p := r.IntN(len(c.Procs))
			a := s.Start + time.Duration(r.Int64N(int64(s.End-s.Start)))
			// Longer than the lease, as a stopped VM or a long GC pause would be.
			d := l + time.Duration(r.Int64N(int64(2*l)))
			s.Pauses = append(s.Pauses, Pause{Proc: p, Start: a, End: min(a+d, s.End)})
		}
		for range r.IntN(3) {
			p := r.IntN(len(c.Procs))
			a, b := span()
			switch r.IntN(6) {
			case 0, 1:
				// The storm's last fault: a crash just before it ends, restarted at its end.
				a, b = s.End-time.Duration(r.Int64N(int64(l/4)+1)), s.End
			case 2:
				// A long outage: the machine stays down well after the storm (its region's other machines
				// carry on).
				b = min(s.End+time.Duration(r.Int64N(int64(30*time.Minute))), c.Duration-time.Minute)
			}
			s.Crashes = append(s.Crashes, Crash{Proc: p, At: a, RestartAt: b, Graceful: r.IntN(3) == 0})
		}
		out = append(out, s)
		if c.Calm {
			// Long enough for the scheduled work's checks too: two occurrences and a failover, twice.
			calm := 10 * l
			for _, j := range c.Jobs {
				calm = max(calm, 2*(2*j.Every+j.LeaseDuration+2*horizon(j)))
			}
			at = s.End + calm + time.Duration(r.Int64N(int64(3*calm)))
		} else {
			// At least long enough for one calm occurrence of each job to be judged.
			calm := 3 * l
			for _, j := range c.Jobs {
				calm = max(calm, 2*j.Every+j.LeaseDuration+2*horizon(j))
			}
			at = s.End + calm + time.Duration(r.Int64N(int64(2*calm)))
		}
	}
	return out
}
