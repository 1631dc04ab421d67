package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Regressions: each finding of the reviews that the simulator can express, as a scripted world (a fixed seed for
// every draw, the faults forced where the finding needs them), run in the short run beside the random seeds. Each
// names the mutant of tools/simmutants that reverts its fix; `make sim-mutants` shows the scenario (or a seed)
// catching it. The scenarios check everything every run checks, and some add a check of their own.

// Scenario is one regression.
type Scenario struct {
	Name string
	// Finding is the review's finding, and the test of pkg/cosmoslease that shows it exactly.
	Finding string
	// Mutants revert its fix (tools/simmutants).
	Mutants []string
	Config  func() Config
}

// scripted is a calm world of exact clocks and short latencies, with no continuous lease: only the job and the
// faults the scenario forces.
func scripted(name string, seed uint64, d time.Duration, regions []string, jobs ...JobConfig) Config {
	c := Config{Seed: seed, Duration: d, Regions: regions, LeaseDuration: 30 * time.Second, ClockMode: "exact",
		Latency: LatencyConfig{Median: 10 * time.Millisecond, Tail: 0.002, TailMax: time.Second}, Calm: true, scenario: name}
	for i, r := range regions {
		c.Procs = append(c.Procs, ProcConfig{Name: fmt.Sprintf("p%d", i), Region: r})
	}
	for _, j := range jobs {
		if len(j.Procs) == 0 {
			for i := range regions {
				j.Procs = append(j.Procs, i)
			}
		}
		for _, id := range j.Procs {
			j.Regions = appendNew(j.Regions, c.Procs[id].Region)
		}
		c.Jobs = append(c.Jobs, j)
	}
	return c
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// cronJob is a cron job of the scenarios: the defaults of `cosmoslease cron` (lease 30 s, --grace 10 s + 5 s).
func cronJob(every, delay, workMin, workMax time.Duration) JobConfig {
	return JobConfig{Key: "job0", Driver: "cron", Every: every, FailoverDelay: delay, LeaseDuration: 30 * time.Second,
		Grace: 15 * time.Second, WorkMin: workMin, WorkMax: workMax}
}

// onTime checks that every occurrence of j in [from, to) started within a poll and 2 s of its time.
func onTime(w *world, j JobConfig, from, to time.Duration, why string) {
	zero := w.start.Truncate(24 * time.Hour)
	late := cosmoslease.DefaultPollInterval + 2*time.Second
	starts := map[int64]*workRun{}
	for _, r := range w.rec.work[j.Key] {
		if _, ok := starts[r.occurrence.UnixNano()]; !ok {
			starts[r.occurrence.UnixNano()] = r
		}
	}
	for t := zero.Add(j.Every); t.Sub(w.start) < to; t = t.Add(j.Every) {
		at := t.Sub(w.start)
		if at < from {
			continue
		}
		w.judged[checkOnTime]++
		r := starts[t.UnixNano()]
		switch {
		case r == nil:
			w.violate(Violation{At: at, Check: checkOnTime, Key: j.Key, Text: fmt.Sprintf("occurrence %s never started; %s", w.occName(t), why)})
		case r.from-at > late:
			w.violate(Violation{At: r.from, Check: checkOnTime, Key: j.Key, Text: fmt.Sprintf("occurrence %s started %s late (by %s in %s); %s",
				w.occName(t), r.from-at, r.p.cfg.Name, r.p.cfg.Region, why)})
		}
	}
}

// checkUntil is a scenario's check: a contender starts its own occurrence's work only if it claimed it by its
// Until.
const checkUntil = "until"

// withinUntil checks that every start of j's work (not a re-run) came no later than its contender's Until as cron
// sets it (the next occurrence + its rank × the delay) plus the longest a holder may wait after its claim before
// the work starts (the previous holder's work stopping: at most Grace) and 5 s of calm requests.
func withinUntil(w *world, j JobConfig) {
	for _, r := range w.rec.work[j.Key] {
		if r.retry {
			continue
		}
		rank := slices.Index(j.Regions, r.p.cfg.Region)
		at := r.occurrence.Add(j.Every + time.Duration(rank)*j.FailoverDelay)
		until := at.Sub(w.start)
		w.judged[checkUntil]++
		if r.from > until+j.Grace+5*time.Second {
			w.violate(Violation{At: r.from, Check: checkUntil, Key: j.Key, Text: fmt.Sprintf("occurrence %s started by %s#%d at %s, %s after its Until (%s): it was claimed after its time ran out",
				w.occName(r.occurrence), r.p.cfg.Name, r.inc, fmtAt(r.from), r.from-until, w.occName(at))})
		}
	}
}

// allRun checks that every occurrence of j due in [from, to) started somewhere.
func allRun(w *world, j JobConfig, from, to time.Duration) {
	zero := w.start.Truncate(24 * time.Hour)
	ran := map[int64]bool{}
	for _, r := range w.rec.work[j.Key] {
		ran[r.occurrence.UnixNano()] = true
	}
	for t := zero.Add(j.Every); t.Sub(w.start) < to; t = t.Add(j.Every) {
		if at := t.Sub(w.start); at >= from {
			w.judged[checkRecovering]++
			if !ran[t.UnixNano()] {
				w.violate(Violation{At: at, Check: checkRecovering, Key: j.Key, Text: fmt.Sprintf("occurrence %s never ran, with westeurope up and nothing else running", w.occName(t))})
			}
		}
	}
}

var two = []string{"eastus", "westeurope"}

// leaseWorld is a scripted world of two processes that hold one continuous key in turn, as `run --wait` does.
func leaseWorld(name string, seed uint64, d time.Duration) Config {
	c := scripted(name, seed, d, two)
	c.Keys = []string{"k0"}
	for i := range c.Procs {
		c.Procs[i].Keys = []string{"k0"}
	}
	return c
}

// Scenarios are the regressions, run by TestScenarios.
var Scenarios = []Scenario{
	{Name: "delay-exceeds-gap",
		Finding: "issue 23 #3 (fourth review): with rank × delay at least the gap, cron's serial loop ran every other occurrence nowhere (TestReview4_RunScheduleRunsEveryOccurrenceWhenTheDelayExceedsTheGap)",
		Mutants: []string{"cron-serial-loop"},
		Config: func() Config {
			c := scripted("delay-exceeds-gap", 101, 15*time.Minute, two, cronJob(5*time.Second, 10*time.Second, 250*time.Millisecond, 2500*time.Millisecond))
			// The preferred region's only machine dies for good: westeurope runs everything, 10 s late at first.
			c.Storms = []Storm{{Start: 2*time.Minute - time.Second, End: 2*time.Minute + time.Second,
				Crashes: []Crash{{Proc: 0, At: 2 * time.Minute, RestartAt: time.Hour}}}}
			c.extra = func(w *world) {
				// Once the dead holder's lease has run out (and its occurrences' time with it), westeurope runs every
				// occurrence, however long its delay: the check the test of the finding makes.
				allRun(w, c.Jobs[0], 2*time.Minute+45*time.Second, c.Duration-time.Minute)
			}
			return c
		}},
	{Name: "starved-behind-an-earlier-occurrence",
		Finding: "fifth review: a contender deferring to an earlier unclaimed occurrence past its own Until starved the schedule after cron restarted behind the cursor (TestReview5_DeferringToAnEarlierOccurrenceNeverStarvesTheSchedule)",
		Mutants: []string{"earlier-waiting-unbounded"},
		Config: func() Config {
			c := scripted("starved-behind-an-earlier-occurrence", 102, 12*time.Minute, two, cronJob(5*time.Second, 10*time.Second, 100*time.Millisecond, 100*time.Millisecond))
			// westeurope is listed but never runs; eastus's cron is stopped at 3m for a minute.
			c.Storms = []Storm{{Start: 3*time.Minute - time.Second, End: 3*time.Minute + time.Second,
				Crashes: []Crash{{Proc: 1, At: 0, RestartAt: time.Hour}, {Proc: 0, At: 3 * time.Minute, RestartAt: 4 * time.Minute, Graceful: true}}}}
			return c
		}},
	{Name: "work-stopping-within-its-grace",
		Finding: "third review (adversary_runonce_test.go): the work of a holder whose renewals failed, stopping within its grace, ran beside the next holder's (TestAdversary_RunOnce_WorkStoppingWithinItsGraceOverlapsTheNextHolder)",
		Mutants: []string{"skip-workstopms-wait"},
		Config: func() Config {
			j := cronJob(20*time.Second, 5*time.Second, 200*time.Second, 200*time.Second)
			j.Grace, j.StopMin = 30*time.Second, 20*time.Second // cron --grace 25s; the command takes 20–24 s to exit
			c := scripted("work-stopping-within-its-grace", 103, 12*time.Minute, two, j)
			// westeurope's machine starts late, so eastus holds the lease when its region is cut off.
			c.Storms = []Storm{{Start: 4*time.Minute + 49*time.Second, End: 6*time.Minute + 30*time.Second,
				Cuts:    []Cut{{Start: 5*time.Minute + 5*time.Second, End: 6*time.Minute + 30*time.Second, Region: "eastus"}},
				Crashes: []Crash{{Proc: 1, At: 0, RestartAt: 4*time.Minute + 50*time.Second}}}}
			return c
		}},
	{Name: "failover-costs-the-delay-once",
		Finding: "issue 23 #10 (fourth review): failover cost the delay at every occurrence, and a graceful stop cost it too (TestReview4_FailoverCostsTheDelayOnceAndAGracefulStopNone)",
		Mutants: []string{"no-depart", "no-absent-mark"},
		Config: func() Config {
			j := cronJob(20*time.Second, 10*time.Second, 500*time.Millisecond, 3*time.Second)
			c := scripted("failover-costs-the-delay-once", 104, 20*time.Minute, two, j)
			// eastus stopped gracefully at 5m03s (back at 8m), killed at 12m03s (for good).
			c.Storms = []Storm{{Start: 5*time.Minute + 2*time.Second, End: 5*time.Minute + 4*time.Second,
				Crashes: []Crash{{Proc: 0, At: 5*time.Minute + 3*time.Second, RestartAt: 8 * time.Minute, Graceful: true}}},
				{Start: 12*time.Minute + 2*time.Second, End: 12*time.Minute + 4*time.Second,
					Crashes: []Crash{{Proc: 0, At: 12*time.Minute + 3*time.Second, RestartAt: time.Hour}}}}
			c.extra = func(w *world) {
				onTime(w, j, 5*time.Minute+4*time.Second, 8*time.Minute, "eastus had departed (a graceful stop), so westeurope runs on time")
				onTime(w, j, 12*time.Minute+25*time.Second, 20*time.Minute-time.Minute, "eastus died at 12m03s: only the first occurrence after it may be late")
			}
			return c
		}},
	{Name: "command-outlasts-its-period",
		Finding: "issue 23 #6 and #11 (fourth review): occurrences that came due while a long run went were counted missed (and one then ran, out of order) (TestReview4_OccurrencesStartInOrderAndNothingCountedMissedRuns)",
		Mutants: []string{"waiting-counted-missed"},
		Config: func() Config {
			c := scripted("command-outlasts-its-period", 105, 10*time.Minute, two, cronJob(10*time.Second, 5*time.Second, 25*time.Second, 25*time.Second))
			c.extra = func(w *world) {
				if st := w.rec.jobs["job0"].state; st.Missed != 0 {
					w.violate(Violation{At: w.cfg.Duration, Check: checkMissed, Key: "job0",
						Text: fmt.Sprintf("%d occurrences counted missed while both regions were up (they waited behind runs: overlap)", st.Missed)})
				}
			}
			return c
		}},
	{Name: "missed-counted-when-the-holder-dies-mid-work",
		Finding: "issue 23 #7 (fourth review): the occurrences missed during an outage were never counted when the next holder died mid-work (TestReview4_MissedAreCountedEvenWhenTheNextHolderDiesMidWork)",
		Mutants: []string{"count-missed-after-work"},
		Config: func() Config {
			j := cronJob(10*time.Second, 5*time.Second, 8*time.Second, 8*time.Second)
			c := scripted("missed-counted-when-the-holder-dies-mid-work", 106, 10*time.Minute, two, j)
			// Both regions cut off for two minutes; whichever claims the first occurrence after (counting the
			// missed) dies in its work (both machines die then).
			c.Storms = []Storm{{Start: 3 * time.Minute, End: 5*time.Minute + 5*time.Second,
				Cuts: []Cut{{Start: 3 * time.Minute, End: 5 * time.Minute, Region: "eastus"}, {Start: 3 * time.Minute, End: 5 * time.Minute, Region: "westeurope"}},
				Crashes: []Crash{{Proc: 0, At: 5*time.Minute + 4*time.Second, RestartAt: 6 * time.Minute},
					{Proc: 1, At: 5*time.Minute + 4*time.Second, RestartAt: 6 * time.Minute}}}}
			c.extra = func(w *world) {
				if st := w.rec.jobs["job0"].state; st.Missed == 0 {
					w.violate(Violation{At: w.cfg.Duration, Check: checkMissed, Key: "job0", Text: "nothing counted missed after two minutes of both regions cut off"})
				}
			}
			return c
		}},
	{Name: "claim-answered-late",
		Finding: "the lease's validity runs from the send of the write that confirmed it, not from its answer: a claim answered late, then a region cut off (second review: Renew returning nil for a lease that ended while its answer was on the way, adversary_test.go; the simulator's first finding, TestSimFinding_ClaimAnsweredAfterItsDeadlineIsNoLease)",
		Mutants: []string{"expiry-from-receive"},
		Config: func() Config {
			c := leaseWorld("claim-answered-late", 101, 40*time.Minute)
			// A 10 s lease; one request in ten answered after up to 4 s; each region cut off in turn for 15 s
			// every 30 s: a claim answered late, then no renewal (the mechanism of seed 5 in phase 1).
			c.LeaseDuration = 10 * time.Second
			c.Latency = LatencyConfig{Median: 20 * time.Millisecond, Tail: 0.1, TailMax: 4 * time.Second}
			for i := range 79 {
				reg, at := two[i%2], time.Duration(60+30*i)*time.Second
				c.Storms = append(c.Storms, Storm{Start: at, End: at + 15*time.Second, Cuts: []Cut{{Start: at, End: at + 15*time.Second, Region: reg}}})
			}
			return c
		}},
	{Name: "re-run-outlasting-until",
		Finding: "issue 23 #8 (fourth review): a holder whose re-run of an abandoned occurrence lasted past its Until still started its own occurrence afterwards (TestReview4_UntilHoldsAfterTheLeaseIsTaken)",
		Mutants: []string{"until-ignored-after-a-re-run"},
		Config: func() Config {
			j := cronJob(20*time.Second, 5*time.Second, 8*time.Second, 8*time.Second)
			j.RetryAbandoned, j.RetryWork = true, time.Minute
			c := scripted("re-run-outlasting-until", 108, 12*time.Minute, two, j)
			// eastus dies in the work of occurrence 0h02m00s (back at 10m): westeurope, claiming 0h02m20s once the
			// lease runs out, first re-runs 0h02m00s for a minute, past 0h02m20s's Until (0h02m45s).
			c.Storms = []Storm{{Start: 2*time.Minute + 3*time.Second, End: 2*time.Minute + 5*time.Second,
				Crashes: []Crash{{Proc: 0, At: 2*time.Minute + 4*time.Second, RestartAt: 10 * time.Minute}}}}
			c.extra = func(w *world) {
				withinUntil(w, j)
				retried := false
				for _, r := range w.rec.work[j.Key] {
					retried = retried || r.retry
				}
				if !retried {
					w.violate(Violation{At: w.cfg.Duration, Check: checkUntil, Key: j.Key, Text: "the scenario's premise failed: no abandoned occurrence was re-run"})
				}
			}
			return c
		}},
	{Name: "every-participant-down",
		Finding: "the simulator's own check (long run of 2026-12-07, seed 1332, 6 h): job-liveness judged occurrences due while every participant of the job was down (each had died or stopped before the calm span and came back after it), and reported them as not started",
		Config: func() Config {
			c := scripted("every-participant-down", 109, 10*time.Minute, two, cronJob(20*time.Second, 5*time.Second, time.Second, 3*time.Second))
			// Both machines die at 2m (back at 6m); from 3m to 6m the weather is calm and nobody can run anything.
			c.Storms = []Storm{{Start: 2*time.Minute - time.Second, End: 2*time.Minute + 2*time.Second,
				Crashes: []Crash{{Proc: 0, At: 2 * time.Minute, RestartAt: 6 * time.Minute}, {Proc: 1, At: 2*time.Minute + time.Second, RestartAt: 6 * time.Minute}}}}
			return c
		}},
	{Name: "completed-run-whose-record-write-failed",
		Finding: "issue 23 #5 (fourth review): a completed run whose final record write failed was later taken for abandoned and run again (TestReview4_ACompletedRunIsNeverTakenForAbandoned)",
		Mutants: []string{"release-without-outcome"},
		Config: func() Config {
			j := cronJob(30*time.Second, 5*time.Second, 3*time.Second, 3*time.Second)
			j.RetryAbandoned = true
			c := scripted("completed-run-whose-record-write-failed", 107, 10*time.Minute, two, j)
			// Every write of a run record refused for 40 s: the run of 5m00s completes, its record cannot be written.
			c.Storms = []Storm{{Start: 5 * time.Minute, End: 5*time.Minute + 40*time.Second,
				Spells: []Spell{{Start: 5 * time.Minute, End: 5*time.Minute + 40*time.Second, Status: 503, Prob: 1, Docs: "run-"}}}}
			return c
		}},
}
