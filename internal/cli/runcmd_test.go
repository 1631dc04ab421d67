//go:build unix

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// cmdEvents are the --json events among the lines of stderr (where run writes them when it supervises a
// command, beside the command's own stderr).
func cmdEvents(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if m["event"] != "renewed" { // as many as the timing gives
			out = append(out, m)
		}
	}
	return out
}

func TestRunCommandBadInput(t *testing.T) {
	h := newHarness(t)
	h.env["CosmosLeasing__AccountEndpoint"] = "https://example.documents.azure.com:443/"
	if err := os.WriteFile(filepath.Join(h.dir, "plain.sh"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"demo flag with a command", []string{"--hold-for", "1s", "--", "true"}, "--hold-for is for the built-in demo; with a command, run supervises the command"},
		{"wait with a command", []string{"--wait", "--", "true"}, "--wait is for the built-in demo"},
		{"grace without a command", []string{"--grace", "1s"}, "--grace needs a command to run after --"},
		{"restart without a command", []string{"--restart", "always"}, "--restart needs a command to run after --"},
		{"bad restart", []string{"--restart", "sometimes", "--", "true"}, `--restart "sometimes": use no, on-failure or always`},
		{"missing command", []string{"--", "./missing.sh"}, "cosmoslease: cannot run ./missing.sh: not found"},
		{"not executable", []string{"--", "./plain.sh"}, "cannot run ./plain.sh: permission denied (it is not executable: chmod +x ./plain.sh)"},
		{"not in PATH", []string{"--", "no-such-command-anywhere"}, "not found in PATH"},
		{"grace longer than the lease", []string{"--duration", "6s", "--grace", "5s", "--", "true"},
			"--grace 5s does not fit in the lease: the command must be gone before another instance may take the lease over, so this instance holds it only until --duration (6s) − --grace (5s) − a clock margin of 1s = 0s after its last renewal, and that must be at least 1s. Use a shorter --grace or a longer --duration"},
		{"grace leaves no time to renew", []string{"--duration", "10s", "--renew-interval", "6s", "--grace", "3s", "--", "true"},
			"= 6s after its last renewal, which must be longer than --renew-interval (6s). Use a shorter --grace, a longer --duration or a shorter --renew-interval"},
		{"bad grace", []string{"--grace", "0s", "--", "true"}, "--grace must be more than zero"},
		{"metadata without a value", []string{"--metadata", "team", "--", "true"}, `--metadata "team": use KEY=VALUE`},
		{"metadata run writes", []string{"--metadata", "region=x", "--", "true"}, "--metadata region: region is written by run itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.run(append([]string{"run", "--instance", "a"}, tc.args...)...).expect(t, ExitUsage, tc.want)
		})
	}
}

func TestFitGrace(t *testing.T) {
	// The defaults: a 60 s lease, 10 s of grace, 6 s of clock margin: held until 44 s, renewed every 22 s.
	o := cosmoslease.Options{}
	if err := fitGrace(&o, 10*time.Second); err != nil || o.RenewDeadline != 44*time.Second || o.RenewInterval != 22*time.Second {
		t.Fatalf("%v %+v", err, o)
	}
	// A renewal interval that was set is kept.
	o = cosmoslease.Options{LeaseDuration: 6 * time.Second, RenewInterval: 2 * time.Second}
	if err := fitGrace(&o, time.Second); err != nil || o.RenewDeadline != 4*time.Second || o.RenewInterval != 2*time.Second {
		t.Fatalf("%v %+v", err, o)
	}
	// The library accepts what it sets: Open checks the options before anything else.
	srv := cosmostest.Get(t)
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(srv.Endpoint),
		Database: srv.Database, Container: "fit-grace", OwnerID: "a", LeaseDuration: o.LeaseDuration, RenewInterval: o.RenewInterval, RenewDeadline: o.RenewDeadline})
	if errors.Is(err, cosmoslease.ErrInvalid) {
		t.Fatal(err)
	}
	if err == nil {
		c.Close()
	}
}

// The holder runs the command with the lease in its environment, releases when it exits, and exits with its
// status; --restart on-failure starts it again while the lease is held.
func TestRunCommandAgainstTheServer(t *testing.T) {
	h := newHarness(t).withServer()
	timings := []string{"--emulator", "--json", "--duration", "4s", "--grace", "500ms"}
	r := h.run(append([]string{"run", "--instance", "us-east-1", "--region", "us-east", "--metadata", "team=payments"}, append(timings, "--", "sh", "-c",
		`echo "$COSMOSLEASE_EPOCH $COSMOSLEASE_LEASE $COSMOSLEASE_INSTANCE $COSMOSLEASE_REGION $COSMOSLEASE_METADATA_TEAM $COSMOSLEASE_METADATA_INSTANCEID"; echo to-stderr >&2; exit 3`)...)...)
	r.expect(t, 3, "cosmoslease: sh: exit status 3")
	if r.stdout != "1 critical-section-lock us-east-1 us-east payments us-east-1\n" {
		t.Fatalf("the command's stdout: %q", r.stdout)
	}
	evs := cmdEvents(t, r.stderr)
	if got := names(evs); got != "started acquired command-started command-exited released" {
		t.Fatalf("events: %s\n%s", got, r.stderr)
	}
	if ex := evs[3]; ex["exitCode"] != 3.0 || ex["epoch"] != 1.0 || evs[2]["pid"] == nil || !strings.Contains(r.stderr, "\nto-stderr\n") {
		t.Fatalf("events %v\nstderr:\n%s", evs, r.stderr)
	}

	counter := filepath.Join(h.dir, "attempts")
	r = h.run(append([]string{"run", "--instance", "eu-west-1", "--restart", "on-failure"}, append(timings, "--", "sh", "-c",
		`n=$(cat `+counter+` 2>/dev/null || echo 0); n=$((n+1)); echo $n > `+counter+`; [ $n -ge 3 ]`)...)...)
	r.expect(t, ExitOK)
	evs = cmdEvents(t, r.stderr)
	if got := names(evs); got != "started takeover acquired command-started command-exited restarting command-started command-exited restarting command-started command-exited released" {
		t.Fatalf("events: %s\n%s", got, r.stderr)
	}
	if evs[5]["delayMs"] != 1000.0 || evs[8]["delayMs"] != 2000.0 || evs[9]["epoch"] != 2.0 {
		t.Fatalf("restart backoff or epoch: %v", evs)
	}
	if s, err := h.lib("watcher").Inspect(context.Background(), DefaultLease); err != nil || s.Status() != "released" || s.Epoch != 2 {
		t.Fatalf("after the command: %+v %v", s, err)
	}
}

// pidOf waits for a file holding a process id.
func pidOf(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// The lease is lost while the command runs: the whole group is stopped and gone before run returns, exit 4.
func TestRunCommandStopsWhenTheLeaseIsLost(t *testing.T) {
	h := newHarness(t).withServer()
	watcher := h.lib("watcher")
	pidFile := filepath.Join(h.dir, "grandchild")
	done := make(chan result, 1)
	go func() {
		done <- h.run("run", "--emulator", "--json", "--instance", "us-east-1", "--duration", "4s", "--grace", "300ms", "--", "sh", "-c",
			`trap 'exit 143' TERM; (trap '' TERM; exec sleep 300) & echo $! > `+pidFile+`; wait`)
	}()
	grandchild := pidOf(t, pidFile)
	waitFor(t, h.heldBy(watcher, "us-east-1"))
	body := `{"id":"lease-critical-section-lock","leaseKey":"critical-section-lock","leaseId":"other","ownerId":"intruder","epoch":5,"leaseDurationMs":3000,"metadata":{}}`
	if _, err := h.srv.Container(t, h.ctr).UpsertItem(context.Background(), azcosmos.NewPartitionKeyString("critical-section-lock"), []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !gone(grandchild) {
		t.Fatalf("the command's grandchild (pid %d, ignoring SIGTERM) still runs after run returned", grandchild)
	}
	r.expect(t, ExitLost, "cosmoslease: stopped sh: lease lost", "taken over by intruder")
	evs := cmdEvents(t, r.stderr)
	if got := names(evs); got != "started acquired command-started lost command-exited" {
		t.Fatalf("events: %s\n%s", got, r.stderr)
	}
	if ex := evs[4]; ex["exitCode"] != 143.0 || ex["reason"] != "lease lost" {
		t.Fatalf("command-exited: %v", ex)
	}
}

// Interrupted: the signal is passed on to the command, the lease released, exit 130.
func TestRunCommandInterrupted(t *testing.T) {
	h := newHarness(t).withServer()
	watcher := h.lib("watcher")
	got := filepath.Join(h.dir, "got")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- h.runCtx(ctx, "run", "--emulator", "--json", "--instance", "us-east-1", "--duration", "8s", "--grace", "2s", "--", "sh", "-c",
			`trap 'echo INT > `+got+`; exit 7' INT; echo $$ > `+got+`.pid; while :; do sleep 0.1; done`)
	}()
	pidOf(t, got+".pid")
	cancel(Signalled{Signal: syscall.SIGINT})
	r := <-done
	r.expect(t, ExitInterrupted, "cosmoslease: interrupted")
	if b, _ := os.ReadFile(got); string(b) != "INT\n" {
		t.Fatalf("the command did not get SIGINT: %q", b)
	}
	evs := cmdEvents(t, r.stderr)
	if got := names(evs); got != "started acquired command-started command-exited released" || evs[3]["exitCode"] != 7.0 || evs[3]["reason"] != "interrupted" {
		t.Fatalf("events: %v", evs)
	}
	if s, err := watcher.Inspect(context.Background(), DefaultLease); err != nil || s.Status() != "released" {
		t.Fatalf("after the interrupt: %+v %v", s, err)
	}
}
