package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Scheduled work in three regions: the Functions custom handler's processes, driven as the Functions host drives
// them (one LeaseTimer invocation per region for each occurrence, with the host's payloads), on the real clock.
// The preferred region runs every occurrence; killed, the next occurrence runs in the next region one failover
// delay late and the ones after it on time; started again, it takes the work back within two occurrences; inspect --runs shows it all.
const (
	timerSchedule = "*/3 * * * * *"
	timerGap      = 3 * time.Second
	timerDelay    = time.Second
	timerSite     = "cosmoslease-func"
	// timerMissedAfter is how long after an occurrence its run record may be missing before it counts as missed:
	// three regions' delays, the lease, and 10 s (the handler's missedAfter). inspect --runs judges occurrences
	// at least that old.
	timerMissedAfter = 3*timerDelay + 6*time.Second + 10*time.Second
)

var timerRegions = []string{"eastus", "westeurope", "southeastasia"}

// timerApp is the Function App deployed in every region, with short timings for the demo.
func (d *demo) timerApp(endpoint, handler string) functionshost.App {
	return functionshost.App{Bin: handler, Dir: d.dir, Site: timerSite, Settings: map[string]string{
		"CosmosLeasing__ConnectionString": emulator.ConnectionString(endpoint), "LeaseTimerSchedule": timerSchedule,
		"CosmosLeasing__DefaultLeaseDuration": "00:00:06", "LeaseTimerFailoverDelay": "00:00:01",
		"LeaseTimerPreferredRegions": strings.Join(timerRegions, ",")}}
}

// startHandler starts a region's handler on a new instance; its own output is kept, not shown: the host's view,
// the invocations' answers, is.
func (d *demo) startHandler(app functionshost.App, region, instance string) (*functionshost.Handler, error) {
	d.fresh(instance)
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			d.mu.Lock()
			d.logs[instance].WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	return app.Start(region, instance, w, w)
}

// fire waits for an occurrence and invokes LeaseTimer for it in every live region at once, as each region's timer
// fires; it shows each answer and returns the one that executed the occurrence, checking that exactly one did and
// that every other region skipped it because that one claimed it.
// With quiet, only the executing region's answer is shown.
func (d *demo) fire(occ time.Time, live []*functionshost.Handler, quiet bool) (functionshost.Reply, error) {
	time.Sleep(time.Until(occ))
	replies := functionshost.Tick(context.Background(), live, functionshost.UnmonitoredTick(functionshost.Fired(occ)))
	at := occ.Format("15:04:05Z")
	var ran []functionshost.Reply
	for _, r := range replies {
		res := r.Result
		switch {
		case r.Err != nil:
			return r, fmt.Errorf("scenario 5: %s (%s) did not answer the occurrence %s: %v", r.Region, r.Instance, at, r.Err)
		case res.Status == "executed":
			d.line(r.Region, fmt.Sprintf("%s executed on %s at epoch %d, %s after the occurrence", at, res.Instance, res.Epoch,
				time.Duration(res.FailoverDelayMs)*time.Millisecond))
			ran = append(ran, r)
		case !quiet:
			d.line(r.Region, fmt.Sprintf("%s %s: %s", at, res.Status, res.Reason))
		}
	}
	if len(ran) != 1 {
		return functionshost.Reply{}, fmt.Errorf("scenario 5: %d regions executed the occurrence %s, want exactly one", len(ran), at)
	}
	for _, r := range replies {
		if r.Result.Status == "skipped" && r.Result.Holder != timerSite+"@"+ran[0].Region {
			return functionshost.Reply{}, fmt.Errorf("scenario 5: %s skipped %s for another reason than %s's claim: %s", r.Region, at, ran[0].Region, r.Result.Reason)
		}
		if r.Result.Status != "executed" && r.Result.Status != "skipped" {
			return functionshost.Reply{}, fmt.Errorf("scenario 5: %s answered %s for %s: %s", r.Region, r.Result.Status, at, r.Result.Reason)
		}
	}
	return ran[0], nil
}

// ran is one occurrence as the host saw it run.
type ran struct {
	occ              time.Time
	region, instance string
}

func (d *demo) timerFailover(endpoint, handler string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := emulator.EnsureContainer(ctx, endpoint, cosmoslease.DefaultDatabase, cosmoslease.DefaultContainer, cosmoslease.DefaultPartitionKeyPath); err != nil {
		return err
	}
	app := d.timerApp(endpoint, handler)
	for _, region := range timerRegions {
		d.fresh(region)
	}
	d.say("Scenario 5 — scheduled work in three regions: the Functions handler's timer (LeaseTimer, %q, every 3 s) fires in\n"+
		"  eastus, westeurope and southeastasia; this demo plays the Functions host, invoking each region's handler process\n"+
		"  for every occurrence with the host's payloads. Preferred order eastus, westeurope, southeastasia, 1 s apart\n"+
		"  (LeaseTimerFailoverDelay); the lease lasts 6 s and is held only while an occurrence's work runs", timerSchedule)
	live := map[string]*functionshost.Handler{}
	defer func() {
		for _, h := range live {
			h.Kill()
		}
	}()
	for _, region := range timerRegions {
		h, err := d.startHandler(app, region, region+"-1")
		if err != nil {
			return err
		}
		live[region] = h
	}
	handlers := func() []*functionshost.Handler {
		var hs []*functionshost.Handler
		for _, region := range timerRegions {
			if h := live[region]; h != nil {
				hs = append(hs, h)
			}
		}
		return hs
	}
	var history []ran
	next := time.Now().UTC().Truncate(timerGap).Add(timerGap)
	if time.Until(next) < time.Second {
		next = next.Add(timerGap)
	}
	quiet := false
	step := func(want string) (functionshost.Reply, error) {
		r, err := d.fire(next, handlers(), quiet)
		if err != nil {
			return r, err
		}
		if r.Region != want && !strings.Contains(want, r.Region+" or ") && !strings.HasSuffix(want, " or "+r.Region) {
			return r, fmt.Errorf("scenario 5: %s executed %s, want %s", r.Region, next.Format("15:04:05Z"), want)
		}
		history = append(history, ran{next, r.Region, r.Instance})
		next = next.Add(timerGap)
		return r, nil
	}
	for range 2 {
		if _, err := step("eastus"); err != nil {
			return err
		}
	}
	d.say("eastus executed each occurrence within milliseconds; westeurope and southeastasia watched the run record (one point read a\n" +
		"  second) and skipped as soon as eastus had claimed it")

	live["eastus"].Kill()
	delete(live, "eastus")
	d.say("Killed eastus's handler with SIGKILL (the region goes dark: no more timers there). No lease is held between\n" +
		"  occurrences, so there is nothing to wait out")
	r, err := step("westeurope")
	if err != nil {
		return err
	}
	late := time.Duration(r.Result.FailoverDelayMs) * time.Millisecond
	if r.Result.Rank != 1 || late < timerDelay {
		return fmt.Errorf("scenario 5: westeurope ran %s at rank %d, %s late; want rank 1 after its failover delay (1 s)", history[len(history)-1].occ.Format("15:04:05Z"), r.Result.Rank, late)
	}
	failed := history[len(history)-1].occ
	r, err = step("westeurope")
	if err != nil {
		return err
	}
	d.say("The very next occurrence (%s) ran in westeurope, %s after it fired: one failover delay late, no occurrence\n"+
		"  missed. Its claim marked eastus absent in the lease document, so westeurope ran the one after it (%s) on time,\n"+
		"  %s after it fired, and keeps the work while eastus is down", failed.Format("15:04:05Z"), late,
		history[len(history)-1].occ.Format("15:04:05Z"), time.Duration(r.Result.FailoverDelayMs)*time.Millisecond)

	h, err := d.startHandler(app, "eastus", "eastus-2")
	if err != nil {
		return err
	}
	live["eastus"] = h
	d.say("eastus is back: a new process on a new instance, eastus-2. At its first tick it finds itself marked absent,\n" +
		"  so westeurope, which no longer waits for it, may claim first; eastus clears its mark then")
	r, err = step("eastus or westeurope")
	if err != nil {
		return err
	}
	if r.Region != "eastus" {
		if r, err = step("eastus"); err != nil {
			return err
		}
	}
	if r.Instance != "eastus-2" {
		return fmt.Errorf("scenario 5: the handback ran on %s, want eastus-2", r.Instance)
	}
	handback := history[len(history)-1].occ
	d.say("eastus-2 executed occurrence %s: the work came back to the preferred region within two occurrences.\n"+
		"  The host keeps firing until %s have passed since then, the time after which inspect counts an\n"+
		"  occurrence with no run record as missed (3 regions × 1 s, the 6 s lease, and 10 s); westeurope and southeastasia\n"+
		"  skip each occurrence as before, and only eastus's answers are shown", handback.Format("15:04:05Z"), timerMissedAfter)
	quiet = true
	for !next.After(handback.Add(timerMissedAfter)) {
		if _, err := step("eastus"); err != nil {
			return err
		}
	}
	time.Sleep(time.Until(handback.Add(timerMissedAfter + 500*time.Millisecond)))

	d.say("cosmoslease inspect --runs: which region ran each occurrence, and the occurrences no region ran")
	d.fresh("inspect")
	_, code, err := d.start("inspect", "inspect", "--emulator", "--runs", "--limit", "50")
	if err != nil {
		return err
	}
	if c := <-code; c != 0 {
		return fmt.Errorf("inspect --runs exited %d", c)
	}
	d.mu.Lock()
	table := d.logs["inspect"].String()
	d.mu.Unlock()
	if err := checkRuns(table, history, handback); err != nil {
		return fmt.Errorf("scenario 5: inspect --runs: %w", err)
	}
	d.say("Each of the %d occurrences ran once: eastus until it was killed, westeurope from the very next occurrence, eastus\n"+
		"  again from its return; none missed", len(history))
	return nil
}

// checkRuns checks inspect --runs's table: one row for each occurrence fired, completed by the region that
// executed it, no row missed, and the missed-occurrence window covering the failover and the handback.
func checkRuns(table string, history []ran, through time.Time) error {
	const layout = "2006-01-02 15:04:05Z"
	rows := map[string][]string{}
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 {
			if _, err := time.Parse(layout, f[0]+" "+f[1]); err == nil {
				if f[5] == "missed" {
					return fmt.Errorf("occurrence %s %s is listed as missed", f[0], f[1])
				}
				if rows[f[0]+" "+f[1]] != nil {
					return fmt.Errorf("occurrence %s %s has two run records", f[0], f[1])
				}
				rows[f[0]+" "+f[1]] = f
			}
		}
	}
	for _, h := range history {
		f := rows[h.occ.Format(layout)]
		if f == nil || f[2] != h.region || f[3] != h.instance || f[5] != cosmoslease.RunCompleted {
			return fmt.Errorf("occurrence %s: row %q, want completed by %s on %s", h.occ.Format(layout), f, h.region, h.instance)
		}
	}
	if len(rows) != len(history) {
		return fmt.Errorf("%d run records, want %d", len(rows), len(history))
	}
	i := strings.Index(table, fmt.Sprintf("No occurrence of %q missed from ", timerSchedule))
	if i < 0 {
		return fmt.Errorf("no line saying that no occurrence was missed")
	}
	var from, to string
	rest := table[i+len(fmt.Sprintf("No occurrence of %q missed from ", timerSchedule)):]
	if j := strings.Index(rest, " to "); j > 0 {
		from = rest[:j]
		if k := strings.IndexAny(rest[j:], ";\n"); k > 0 {
			to = strings.TrimSuffix(rest[j+len(" to "):j+k], ".")
		}
	}
	f, err1 := time.Parse(layout, from)
	t, err2 := time.Parse(layout, to)
	if err1 != nil || err2 != nil || f.After(history[0].occ) || t.Before(through) {
		return fmt.Errorf("the window judged for missed occurrences is %q to %q; want it from %s through %s", from, to,
			history[0].occ.Format(layout), through.Format(layout))
	}
	return nil
}
