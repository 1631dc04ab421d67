package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
