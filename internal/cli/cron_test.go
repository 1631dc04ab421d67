package cli

import (
	"context"
	"os"
	"path/filepath"
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
