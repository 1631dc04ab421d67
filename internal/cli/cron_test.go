package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Each wrong cron line is refused before anything is contacted, in one line that says what to do, exit 2.
func TestCronBadInput(t *testing.T) {
	h := newHarness(t)
	if err := os.WriteFile(filepath.Join(h.dir, "plain.sh"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--schedule", "0 */5 * * * *", "--region", "eastus"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{ok, "needs the command to run after --"},
		{[]string{"--region", "eastus", "--", "true"}, "needs --schedule EXPR"},
		{[]string{"--schedule", "every minute", "--region", "eastus", "--", "true"}, `--schedule "every minute" has 2 fields`},
		{[]string{"--schedule", "00:05:00", "--region", "eastus", "--", "true"}, "TimeSpan schedule"},
		{[]string{"--schedule", "0 */5 * * * *", "--", "true"}, "needs --region REGION"},
		{append(ok[:4:4], "--preferred-regions", "eastus,East US", "--", "true"), `--preferred-regions: "East US" is named twice`},
		{append(ok[:4:4], "--failover-delay", "0s", "--", "true"), "--failover-delay 0s: use a duration from 1s to 1h"},
		{append(ok[:4:4], "--retention", "2h", "--", "true"), "keep run records at least a day"},
		{[]string{"--schedule", "0 0 9 13 * Fri", "--region", "eastus", "--retention", "30d", "--", "true"}, "use at least 854.00:00:00 (854d)"},
		{append(ok[:4:4], "--lease", "a/b", "--", "true"), "--lease:"},
		// Time zones: IANA names only, the same in every region; the retention counts the 25-hour day.
		{append(ok[:4:4], "--time-zone", "Europe/Berln", "--", "true"), `--time-zone "Europe/Berln" is not a time zone this knows: name an IANA time zone, such as Europe/Berlin`},
		{append(ok[:4:4], "--time-zone", "W. Europe Standard Time", "--", "true"), "looks like a Windows time zone name"},
		{append(ok[:4:4], "--time-zone", "Local", "--", "true"), `--time-zone "Local" is not a time zone name`},
		{append(ok[:4:4], "--time-zone", "", "--", "true"), `--time-zone "" is not a time zone name`},
		{[]string{"--schedule", "0 30 2 * * *", "--time-zone", "Europe/Berlin", "--region", "eastus", "--retention", "1d", "--", "true"}, "two of the schedule's longest gaps (1.01:00:00), so no late occurrence can run twice: use at least 2.02:00:00 (3d)"},
		{append(ok[:4:4], "--overlap", "queue", "--", "true"), `--overlap "queue": use skip (an occurrence due while the previous one runs is skipped, and recorded so) or wait`},
		// The command is checked at start, not at the first occurrence.
		{append(ok[:4:4], "--", "./reconcile.sh"), "cosmoslease: cannot run ./reconcile.sh: not found"},
		{append(ok[:4:4], "--", "no-such-command-anywhere"), "cannot run no-such-command-anywhere: not found in PATH"},
		{append(ok[:4:4], "--", "./plain.sh"), "cannot run ./plain.sh: permission denied (it is not executable: chmod +x ./plain.sh)"},
	} {
		h.run(append([]string{"cron"}, tc.args...)...).expect(t, ExitUsage, tc.want)
	}
}

// A region name that is not a region (issue 28: --region eastu ranked last, so the preferred machine never ran the
// work) is refused with the closest region, once the account's regions are known; exit 2.
func TestCronRefusesRegionTypos(t *testing.T) {
	h := newHarness(t).withServer()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--region", "eastu"}, `--region: "eastu" is not an Azure region: did you mean eastus?`},
		{[]string{"--region", "east us!!"}, `--region: "east us!!" is not a region name`},
		{[]string{"--region", "eastus", "--preferred-regions", "eastus,westeurpoe"}, `--preferred-regions: "westeurpoe" is not an Azure region: did you mean westeurope?`},
	} {
		args := append([]string{"cron", "--emulator", "--schedule", "0 */5 * * * *"}, tc.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // were it accepted, cron would run on
		h.runCtx(ctx, append(args, "--", "true")...).expect(t, ExitUsage, tc.want)
		cancel()
	}
}

// cron --time-zone: the started line names the next occurrence in the zone, in UTC, and the run records carry the
// zone, so that inspect --runs reads the schedule back and checks the occurrences for missed ones in it.
func TestCronTimeZone(t *testing.T) {
	h := newHarness(t).withServer()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, done := h.runWatched(ctx, "cron", "--emulator", "--json", "--schedule", "* * * * * *", "--time-zone", "Europe/Berlin",
		"--region", "eastus", "--lease", "tz", "--", "true")
	for !strings.Contains(out.String(), `"event":"occurrence"`) {
		select {
		case r := <-done:
			t.Fatalf("cron ended: %d\n%s\n%s", r.code, r.stdout, r.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	r := <-done
	if !strings.Contains(r.stdout, `"timeZone":"Europe/Berlin"`) {
		t.Errorf("the started event names no time zone:\n%s", r.stdout)
	}
	runs := h.run("inspect", "--emulator", "--runs", "--lease", "tz")
	runs.expect(t, 0)
	// A schedule inspect could not read back would be "not checked (the records name no schedule)".
	if !strings.Contains(runs.stdout, "Missed occurrences: ") || strings.Contains(runs.stdout, "not checked") {
		t.Errorf("inspect --runs does not check the zoned schedule:\n%s", runs.stdout)
	}
}

// --catch-up-window: after every region was down, cron runs the newest missed occurrence once at start, marked
// caught up (the run line, the record, inspect --runs); the earlier ones stay missed. Bad windows: exit 2.
func TestCronCatchesUpTheNewestMissedOccurrence(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 30 s schedule's occurrence to be past its claim window (up to 30 s)")
	}
	h := newHarness(t).withServer()
	for _, tc := range []struct{ flag, want string }{
		{"-1s", `--catch-up-window: "-1s" is negative`},
		{"40d", "--catch-up-window 40d: use a duration from 0 (off) to the retention (30.00:00:00)"},
		{"soon", "--catch-up-window:"},
	} {
		h.run("cron", "--schedule", "0 */5 * * * *", "--region", "eastus", "--catch-up-window", tc.flag, "--", "true").expect(t, ExitUsage, tc.want)
	}
	sched, err := ncrontab.Parse("*/30 * * * * *")
	if err != nil {
		t.Fatal(err)
	}
	// The newest occurrence m must be past its claim window (1 region × 1 s + the 6 s lease + 10 s = 17 s) and the
	// next one not due for a while: now between m + 19 s and m + 26 s.
	now := time.Now().UTC()
	m := sched.Prev(now)
	if d := now.Sub(m); d < 19*time.Second || d >= 26*time.Second {
		m = sched.Next(now)
		time.Sleep(time.Until(m.Add(19 * time.Second)))
	}
	// Every region was down since the occurrence five before m, which ran.
	lib := h.lib("setup")
	cursor := m.Add(-150 * time.Second)
	if res, err := lib.RunOnce(context.Background(), "nightly", cursor, cosmoslease.RunOptions{Next: sched.Next},
		func(context.Context, cosmoslease.Run) error { return nil }); err != nil || res.Status != cosmoslease.RunExecuted {
		t.Fatalf("setting the cursor: %+v, %v", res, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, done := h.runWatched(ctx, "cron", "--emulator", "--json", "--schedule", "*/30 * * * * *", "--region", "eastus", "--lease", "nightly",
		"--failover-delay", "1s", "--duration", "6s", "--catch-up-window", "10m", "--", "true")
	want := fmt.Sprintf(`"occurrence":"%s"`, m.Format(time.RFC3339))
	for !strings.Contains(out.String(), want) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	r := <-done
	var ev map[string]any
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, want) {
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ev["status"] != "executed" || ev["caughtUp"] != true {
		t.Fatalf("cron's event for %s: %v; want executed, caughtUp\nstdout:\n%s\nstderr:\n%s", m, ev, r.stdout, r.stderr)
	}
	recs, err := lib.Runs(context.Background(), "nightly", 10)
	if err != nil {
		t.Fatal(err)
	}
	missed := 0
	for _, rec := range recs {
		switch {
		case rec.Status == cosmoslease.RunMissed:
			missed += rec.Occurrences()
		case rec.Occurrence.Equal(m) && (!rec.CaughtUp || rec.Status != cosmoslease.RunCompleted):
			t.Fatalf("%s's record: %+v", m, rec)
		}
	}
	if missed != 4 {
		t.Fatalf("%d recorded missed, want the 4 between %s and %s: %+v", missed, cursor, m, recs)
	}
	if r := h.run("inspect", "--emulator", "--runs", "--lease", "nightly"); !strings.Contains(r.stdout, "caught up") {
		t.Fatalf("inspect --runs does not show the catch-up:\n%s", r.stdout)
	}
}

// --overlap skip: an occurrence that comes due while the previous one's command runs is skipped at once (its
// event says why), and the claim of a later occurrence records it skipped for overlap; no two commands overlap.
func TestCronOverlapSkip(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 2 s schedule with 3 s commands for several occurrences")
	}
	h := newHarness(t).withServer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, done := h.runWatched(ctx, "cron", "--emulator", "--json", "--schedule", "*/2 * * * * *", "--region", "eastus", "--lease", "busy",
		"--failover-delay", "1s", "--duration", "6s", "--overlap", "skip", "--", "sleep", "3")
	events := func() (executed, skipped []map[string]any) {
		for _, line := range strings.Split(out.String(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) != nil || ev["event"] != "occurrence" {
				continue
			}
			switch ev["status"] {
			case "executed":
				executed = append(executed, ev)
			case "skipped":
				skipped = append(skipped, ev)
			}
		}
		return
	}
	for ctx.Err() == nil {
		if e, s := events(); len(e) >= 3 && len(s) >= 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	r := <-done
	executed, skipped := events()
	if len(executed) < 3 || len(skipped) < 1 {
		t.Fatalf("executed %d, skipped %d; want 3 and 1\nstdout:\n%s\nstderr:\n%s", len(executed), len(skipped), r.stdout, r.stderr)
	}
	for _, ev := range skipped {
		if reason, _ := ev["reason"].(string); !strings.Contains(reason, "overlap policy is skip") {
			t.Fatalf("skipped event %v; want the overlap policy as its reason", ev)
		}
	}
	// The records: every occurrence skipped for overlap, none missed, and no command started before the previous ended.
	recs, err := h.lib("reader").Runs(context.Background(), "busy", 100)
	if err != nil {
		t.Fatal(err)
	}
	var ran []cosmoslease.RunRecord
	overlap := 0
	for _, rec := range recs {
		switch {
		case rec.Status == cosmoslease.RunMissed:
			t.Fatalf("missed: %+v", rec)
		case rec.Status == cosmoslease.RunSkipped && rec.Cause == "overlap":
			overlap += rec.Occurrences()
		case rec.Status == cosmoslease.RunCompleted:
			ran = append(ran, rec)
		}
	}
	if overlap == 0 {
		t.Fatalf("no record of an occurrence skipped for overlap: %+v", recs)
	}
	for i := 1; i < len(ran); i++ { // newest first
		if ran[i-1].StartedAt.Before(ran[i].FinishedAt) {
			t.Fatalf("%s started before %s ended", ran[i-1].Occurrence, ran[i].Occurrence)
		}
	}
}
