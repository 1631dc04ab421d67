// Command simmutants shows that the simulator's checkers can fail: it applies known-wrong changes to the code
// under test, one at a time, and runs the simulator's default seed budget against each (go test -overlay: the
// tree is never edited). Each mutant must be caught; the output names the seed and the checks that caught it.
// A mutant whose text no longer matches the code fails loudly, so the list cannot rot unnoticed.
//
//	go run ./tools/simmutants            # every mutant (make sim-mutants)
//	go run ./tools/simmutants -only renew-without-if-match
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// edit replaces Old, which must occur exactly once in File, by New.
type edit struct {
	File, Old, New string
}

type mutant struct {
	Name string
	What string // the wrong change, in words
	// Expect names the checks meant to catch it (any check failing counts as caught; these are listed so a
	// reader sees which checker each mutant proves).
	Expect []string
	Edits  []edit
}

var mutants = []mutant{
	// The lease and the fence.
	{Name: "renew-without-if-match", What: "renewals are sent without If-Match (an unconditional replace)", Expect: []string{"exclusion"},
		Edits: []edit{{File: "pkg/cosmoslease/lease.go",
			Old: `item, err := l.c.st.Replace(rctx, l.c.pk(l.key, l.id), l.id, body, etag)`,
			New: `item, err := l.c.st.Replace(rctx, l.c.pk(l.key, l.id), l.id, body, map[bool]string{true: etag}[release])`}}},
	{Name: "adopt-any-version", What: "after an ambiguous write, the holder adopts whatever version it reads back", Expect: []string{"exclusion", "epochs"},
		Edits: []edit{{File: "pkg/cosmoslease/lease.go",
			Old: `if doc.LeaseID != mine.LeaseID || doc.Epoch != mine.Epoch {`,
			New: `if false {`},
			{File: "pkg/cosmoslease/lease.go",
				Old: `renewed := doc.Renewals == mine.Renewals+1 && !doc.Released`,
				New: `renewed := !doc.Released`}}},
	{Name: "fence-patch-without-condition", What: "the fence's patch is sent without its filter predicate", Expect: []string{"fence"},
		Edits: []edit{{File: "pkg/cosmoslease/fence.go",
			Old: `	out.SetCondition(f.condition())`,
			New: `	// (mutant: no condition)`}}},
	{Name: "fence-replace-without-if-match", What: "the fence's read–check–replace replaces without If-Match", Expect: []string{"fence"},
		Edits: []edit{{File: "pkg/cosmoslease/fence.go",
			Old: `			o.IfMatchEtag = &cur.etag`,
			New: `			// (mutant: no If-Match)`}}},
	{Name: "expiry-from-receive", What: "a holder counts its validity from when the answer arrived, not from when the write was sent", Expect: []string{"exclusion"},
		Edits: []edit{{File: "pkg/cosmoslease/lease.go",
			Old: `l.doc, l.confirmed, l.pending = &next, now, clock.Stamp{}`,
			New: `l.doc, l.confirmed, l.pending = &next, l.c.clock.Stamp(), clock.Stamp{}`},
			{File: "pkg/cosmoslease/client.go",
				Old: `return c.newLease(ctx, key, id, next, sent, prev), obs, nil`,
				New: `return c.newLease(ctx, key, id, next, c.clock.Stamp(), prev), obs, nil`}}},
	{Name: "epoch-not-incremented", What: "a new holder keeps the previous holder's epoch", Expect: []string{"epochs"},
		Edits: []edit{{File: "pkg/cosmoslease/client.go",
			Old: `		epoch = prev.Epoch + 1`,
			New: `		epoch = prev.Epoch`}}},
	{Name: "takeover-after-twice-the-lease", What: "a contender waits twice the promised duration before it takes over", Expect: []string{"liveness"},
		Edits: []edit{{File: "pkg/cosmoslease/client.go",
			Old: `	d := o.doc.Duration
	switch {`,
			New: `	d := 2 * o.doc.Duration
	switch {`}}},
	// The world itself: proves the linearizability checker can fail.
	{Name: "store-ignores-stale-etag", What: "the in-memory container applies a replace whatever its If-Match", Expect: []string{"linearizable"},
		Edits: []edit{{File: "internal/store/memstore/memstore.go",
			Old: `if v := s.docs[id]; etag == "" || v[len(v)-1].etag != etag {`,
			New: `if v := s.docs[id]; etag == "" || len(v) == 0 {`}}},

	// The occurrence election (issue 23's redesign): caught by the scheduled-work checks (internal/sim/jobs.go,
	// accounting.go).
	{Name: "ignore-claim-id", What: "a RunOnce claim answered 409/412 is taken for ours without checking the leaseId the document carries",
		Expect: []string{"at-most-once", "no-overlap", "accounting"},
		Edits: []edit{{File: "pkg/cosmoslease/client.go",
			Old: `		if u, ok := c.ours(key, fresh.doc, spec); ok {`,
			New: `		u, ok := c.ours(key, fresh.doc, spec)
		if !ok && spec.ownerOf() != nil && (kind == store.Conflict || kind == store.Precondition) {
			u, ok = claim{leaseID: next.LeaseID, sent: sent, prev: prev, owner: spec.ownerOf()}, true // (mutant: no leaseId check)
		}
		if ok {`}}},
	{Name: "skip-workstopms-wait", What: "a holder that takes over an unreleased lease starts at once, without waiting workStopMs for the previous work to stop",
		Expect: []string{"no-overlap"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `	if p != nil && !p.Released {`,
			New: `	if false && p != nil && !p.Released {`}}},
	{Name: "waiting-counted-missed", What: "an occurrence that came due while the previous run was going (waiting behind it) is counted missed, not skipped for overlap",
		Expect: []string{"missed-cause"},
		Edits: []edit{{File: "pkg/cosmoslease/job.go",
			Old: `			cause = causeOverlap`,
			New: `			cause = causeMissed // (mutant)`}}},
	{Name: "cron-serial-loop", What: "RunSchedule runs occurrences one after another, and when the next is already due jumps to the latest due one (the old cron loop)",
		Expect: []string{"job-liveness", "failover-once", "accounting"},
		Edits: []edit{{File: "pkg/cosmoslease/schedule.go",
			Old: `		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.RunOnce(ctx, key, occ, call, work)
			if report != nil {
				mu.Lock()
				report(res, err)
				mu.Unlock()
			}
		}()
		next = after`,
			New: `		_ = &mu
		res, err := c.RunOnce(ctx, key, occ, call, work)
		if report != nil {
			report(res, err)
		}
		// (mutant: the old serial loop) the next occurrence, or the latest due one when it is already due.
		next = after
		for now := c.clock.Now(); !sched.Next(next).After(now); {
			next = sched.Next(next)
		}`}}},
	{Name: "claim-without-cursor-check", What: "a claim does not check, on the version it replaces, that the cursor has not reached its occurrence",
		Expect: []string{"at-most-once", "schedule-order"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `	if pj.decided(e.t) {
		return claimPlan{}, errDecided
	}`,
			New: `	// (mutant: no cursor check)`}}},
	{Name: "retry-decides-its-own-occurrence", What: "issue 23 item 1 reverted: a claim that re-runs an abandoned occurrence (RetryAbandoned) names its own occurrence as decided, so when the re-run's lease is lost that occurrence never runs, has no record and is not counted missed (the next claim counts only after it)",
		Expect: []string{"accounting"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `		plan.retryOf = pj.Run.ClaimID`,
			New: `		plan.retryOf = pj.Run.ClaimID
		nj.Cursor = e.t // (mutant: the lease names this occurrence while it re-runs the earlier one)`},
			{File: "pkg/cosmoslease/occurrence.go",
				Old: `	if pj.decided(e.t) {
		return claimPlan{}, errDecided
	}`,
				New: `	if pj.decided(e.t) && !(e.res.Retried != nil && pj.Cursor.Equal(e.t)) { // (mutant)
		return claimPlan{}, errDecided
	}`},
			{File: "pkg/cosmoslease/occurrence.go",
				Old: `	if job.decided(e.t) {
		r, err := e.decidedElsewhere(ctx, job)`,
				New: `	if job.decided(e.t) && !(e.res.Retried != nil && job.Cursor.Equal(e.t)) { // (mutant)
		r, err := e.decidedElsewhere(ctx, job)`}}},
	{Name: "until-ignored-after-a-re-run", What: "issue 23 item 8 reverted: a holder whose re-run of an abandoned occurrence lasted past its Until still claims and starts its own occurrence afterwards",
		Expect: []string{"schedule-order", "no-overlap", "job-liveness"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `	if !o.Until.IsZero() && !at.Before(o.Until) {
		return false, true, e.timeRanOut(obs, free), nil`,
			New: `	if !o.Until.IsZero() && !at.Before(o.Until) && e.res.Retried == nil { // (mutant)
		return false, true, e.timeRanOut(obs, free), nil`}}},
	{Name: "skip-without-record", What: "a claim passes over occurrences without putting their records (skipped, missed) in the document",
		Expect: []string{"accounting", "missed-count"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `	nj.Pending = append(nj.Pending, ranges...)`,
			New: `	_ = ranges // (mutant: no records)`}}},
	{Name: "no-depart", What: "RunSchedule does not mark its region departed when it stops (a graceful stop costs the next region the delay)",
		Expect: []string{"failover-once"},
		Edits: []edit{{File: "pkg/cosmoslease/schedule.go",
			Old: `			if err := c.Depart(dctx, key); err != nil {`,
			New: `			_ = dctx // (mutant: no Depart)
			if err := error(nil); err != nil {`}}},
	{Name: "no-absent-mark", What: "ranks count every region, marked absent or not (failover costs the delay at every occurrence)",
		Expect: []string{"failover-once"},
		Edits: []edit{{File: "pkg/cosmoslease/job.go",
			Old: `		if _, gone := j.Absent[reg]; !gone {`,
			New: `		if true { // (mutant: absent regions count)`}}},
	{Name: "count-missed-after-work", What: "the missed occurrences a claim decides are counted when its run ends, not at the claim",
		Expect: []string{"missed-count"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `		c.m.occurrencesMissed(ctx, c.m.keyed(e.key), int64(plan.nMissed))`,
			New: `		// (mutant: counted after the work)`},
			{File: "pkg/cosmoslease/occurrence.go",
				Old: `	r.Abandoned, r.Retried, r.Missed, r.MissedCount = res.Abandoned, res.Retried, res.Missed, res.MissedCount`,
				New: `	r.Abandoned, r.Retried, r.Missed, r.MissedCount = res.Abandoned, res.Retried, res.Missed, res.MissedCount
	c.m.occurrencesMissed(ctx, c.m.keyed(e.key), int64(res.MissedCount)) // (mutant)`}}},
	{Name: "earlier-waiting-unbounded", What: "a contender defers to an earlier unclaimed occurrence even past its own Until",
		Expect: []string{"job-liveness"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `	if s, until := e.earlierWaiting(job, at); !s.IsZero() && (o.Until.IsZero() || until.Before(o.Until)) {`,
			New: `	if s, until := e.earlierWaiting(job, at); !s.IsZero() { // (mutant)`}}},
	{Name: "release-without-outcome", What: "the release leaves the run \"started\" in the document instead of its outcome",
		Expect: []string{"at-most-once", "accounting"},
		Edits: []edit{{File: "pkg/cosmoslease/occurrence.go",
			Old: `	h.job.Run, h.job.Recorded = rec, err == nil && ours`,
			New: `	h.job.Run, h.job.Recorded = h.job.Run, false // (mutant: the run's outcome not released)`}}},
}

func main() {
	only := flag.String("only", "", "run only the mutant of this name")
	args := flag.String("args", "", "extra arguments for the simulator (after -args), e.g. \"-seeds 8\"")
	keep := flag.Bool("keep", false, "keep the overlays (their directory is printed), to run a mutant by hand")
	run := flag.String("run", "TestSim$|TestScenarios", "the tests to run against each mutant (go test -run)")
	flag.Parse()
	root, err := os.Getwd()
	if err != nil {
		fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fatal(fmt.Errorf("run it from the repository's root (go run ./tools/simmutants)"))
	}
	tmp, err := os.MkdirTemp("", "simmutants")
	if err != nil {
		fatal(err)
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "overlays kept in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	failed := 0
	var rows []string
	for _, m := range mutants {
		if *only != "" && m.Name != *only {
			continue
		}
		overlay, err := write(root, tmp, m)
		if err != nil {
			fatal(err)
		}
		start := time.Now()
		fmt.Fprintf(os.Stderr, "mutant %s: %s …\n", m.Name, m.What)
		cmdArgs := []string{"test", "-overlay", overlay, "-count=1", "-run", *run, "./internal/sim", "-args", "-stop"}
		if *args != "" {
			cmdArgs = append(cmdArgs, strings.Fields(*args)...)
		}
		out, _ := exec.Command("go", cmdArgs...).CombinedOutput()
		seed, checks := caught(out)
		took := time.Since(start).Round(time.Second)
		if bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")) {
			failed++
			rows = append(rows, fmt.Sprintf("%-32s %-8s %s", m.Name, "BROKEN", "the mutant does not build: fix its edit"))
			fmt.Fprintf(os.Stderr, "%s\n", tail(out, 30))
			continue
		}
		if seed == "" {
			failed++
			rows = append(rows, fmt.Sprintf("%-32s %-8s %s (%s; expected: %s)", m.Name, "MISSED", m.What, took, strings.Join(m.Expect, ", ")))
			fmt.Fprintf(os.Stderr, "%s\n", tail(out, 30))
			continue
		}
		rows = append(rows, fmt.Sprintf("%-32s %-8s %s, by %s (%s): %s", m.Name, "caught", seed, strings.Join(checks, ", "), took, m.What))
	}
	fmt.Println("mutant                           result")
	for _, r := range rows {
		fmt.Println(r)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d mutant(s) not caught by the default seed budget\n", failed)
		os.Exit(1)
	}
}

// write makes the mutant's files and the overlay that puts them in place.
func write(root, tmp string, m mutant) (string, error) {
	files := map[string][]byte{}
	for _, e := range m.Edits {
		path := filepath.Join(root, e.File)
		src, ok := files[path]
		if !ok {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			src = b
		}
		if n := bytes.Count(src, []byte(e.Old)); n != 1 {
			return "", fmt.Errorf("mutant %s: %q occurs %d times in %s (want once): update the mutant to the code", m.Name, e.Old, n, e.File)
		}
		files[path] = bytes.Replace(src, []byte(e.Old), []byte(e.New), 1)
	}
	replace := map[string]string{}
	for path, src := range files {
		dst := filepath.Join(tmp, m.Name+"-"+filepath.Base(path))
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			return "", err
		}
		replace[path] = dst
	}
	b, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		return "", err
	}
	overlay := filepath.Join(tmp, m.Name+".json")
	return overlay, os.WriteFile(overlay, b, 0o644)
}

var (
	failingSeeds   = regexp.MustCompile(`failing seeds: (\d+)`)
	seedFailed     = regexp.MustCompile(`seed (\d+) failed \d+ check`)
	scenarioFailed = regexp.MustCompile(`(scenario [a-z-]+) failed \d+ check`)
	violation      = regexp.MustCompile(`\[(epochs|exclusion|linearizable|fence|liveness|[a-z-]+)\] `)
)

// caught reads the simulator's output: the first failing seed and the checks that failed in it.
func caught(out []byte) (string, []string) {
	seed, header := "", ""
	if m := seedFailed.FindSubmatch(out); m != nil {
		seed, header = "seed "+string(m[1]), "seed "+string(m[1])+" failed"
	} else if m := failingSeeds.FindSubmatch(out); m != nil {
		seed, header = "seed "+string(m[1]), "seed "+string(m[1])+" failed"
	} else if m := scenarioFailed.FindSubmatch(out); m != nil {
		seed, header = string(m[1]), string(m[1])+" failed"
	}
	if seed == "" {
		return "", nil
	}
	// The checks listed under the first failure's header, before its replay line.
	i := bytes.Index(out, []byte(header))
	if i < 0 {
		return seed, nil
	}
	j := bytes.Index(out[i:], []byte("replay:"))
	block := out[i:]
	if j > 0 {
		block = out[i : i+j]
	}
	set := map[string]bool{}
	for _, m := range violation.FindAllSubmatch(block, -1) {
		set[string(m[1])] = true
	}
	var checks []string
	for c := range set {
		checks = append(checks, c)
	}
	sort.Strings(checks)
	return seed, checks
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "simmutants:", err)
	os.Exit(2)
}
