//go:build linux || darwin

package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// cron as real processes: three machines in three regions run the same line. Every occurrence's command runs
// exactly once among them, in the preferred region; killing that one costs no occurrence (the next region runs
// the very next one, a failover delay late); SIGINT ends cron with 130.
func TestCronRunsEachOccurrenceOnceAcrossThreeMachines(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: three cron processes on the real clock")
	}
	e := env(t)
	if code := start(t, e, "inspect", "--emulator").wait(t); code != 0 {
		t.Fatalf("inspect exit %d", code)
	}
	ran := filepath.Join(t.TempDir(), "ran.log")
	const gap = 3 * time.Second
	cron := func(region string) *proc {
		return start(t, e, "cron", "--emulator", "--json", "--schedule", "*/3 * * * * *", "--region", region, "--instance", region+"-vm",
			"--preferred-regions", "eastus,westeurope,southeastasia", "--failover-delay", "1s", "--duration", "6s", "--",
			"sh", "-c", `echo "$COSMOSLEASE_OCCURRENCE $COSMOSLEASE_REGION $COSMOSLEASE_EPOCH $COSMOSLEASE_INSTANCE" >> "`+ran+`"`)
	}
	east, west, asia := cron("eastus"), cron("westeurope"), cron("southeastasia")
	for _, p := range []*proc{east, west, asia} {
		p.waitEvent(t, "started")
	}
	// Let eastus run three occurrences, then kill it half a gap after the third.
	occurrences := func(p *proc) []map[string]any {
		p.mu.Lock()
		defer p.mu.Unlock()
		var out []map[string]any
		for _, ev := range p.events {
			if ev["event"] == "occurrence" {
				out = append(out, ev)
			}
		}
		return out
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(40 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; eastus %v\nwesteurope %v\nstderr %s", what, occurrences(east), occurrences(west), west.stderr.String())
			}
		}
	}
	executedBy := func(p *proc) int {
		n := 0
		for _, ev := range occurrences(p) {
			if ev["status"] == "executed" {
				n++
			}
		}
		return n
	}
	waitFor("three runs in eastus", func() bool { return executedBy(east) >= 3 })
	time.Sleep(time.Until(time.Now().Truncate(gap).Add(gap / 2)))
	if err := east.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	waitFor("three runs in westeurope", func() bool { return executedBy(west) >= 3 })
	for _, p := range []*proc{west, asia} {
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 130 {
			t.Fatalf("exit %d after SIGINT, want 130; stderr:\n%s", code, p.stderr.String())
		}
	}

	// The commands' own log: each occurrence once, none missing from the first to the last, each in the
	// preferred region alive.
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	byOcc := map[time.Time]string{}
	var first, last time.Time
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		occ, err := time.Parse(time.RFC3339, f[0])
		if err != nil || len(f) != 4 {
			t.Fatalf("command log line %q", line)
		}
		if prev, dup := byOcc[occ]; dup {
			t.Fatalf("occurrence %s ran twice: in %s and %s", f[0], prev, f[1])
		}
		byOcc[occ] = f[1]
		if first.IsZero() || occ.Before(first) {
			first = occ
		}
		if occ.After(last) {
			last = occ
		}
	}
	for occ := first; !occ.After(last); occ = occ.Add(gap) {
		want := "eastus"
		if occ.After(killedAt) {
			want = "westeurope"
		}
		if byOcc[occ] != want {
			t.Fatalf("occurrence %s ran in %q, want %s (killed at %s): %v", occ.Format(time.RFC3339), byOcc[occ], want, killedAt.Format(time.RFC3339Nano), byOcc)
		}
	}
	// The first occurrence after the kill ran in westeurope about one failover delay late.
	for _, ev := range occurrences(west) {
		if ev["status"] == "executed" {
			if d := ev["failoverDelayMs"].(float64); d < 1000 || d > 2500 || ev["exitCode"] != 0.0 {
				t.Fatalf("westeurope's first run: %v; want about 1 s late, exit 0", ev)
			}
			break
		}
	}
	// The others saw each occurrence claimed.
	for _, ev := range occurrences(asia) {
		if ev["status"] != "skipped" || !strings.HasPrefix(ev["claimedBy"].(string), "eastus-vm") && !strings.HasPrefix(ev["claimedBy"].(string), "westeurope-vm") {
			t.Fatalf("southeastasia: %v", ev)
		}
	}
}

// A command's exit status goes into the run record; a command still running when the lease is lost gets
// SIGTERM, and its run is recorded lost.
func TestCronRecordsExitStatusAndStopsTheCommandWhenTheLeaseIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: cron processes on the real clock")
	}
	e := env(t)
	if code := start(t, e, "inspect", "--emulator").wait(t); code != 0 {
		t.Fatalf("inspect exit %d", code)
	}
	marker := filepath.Join(t.TempDir(), "term")
	// The second run leaves a grandchild that ignores SIGTERM: only SIGKILL to the group, after the grace, ends it.
	script := `if [ -e "` + marker + `.first" ]; then trap 'echo term > "` + marker + `"; exit 143' TERM; ` +
		`(trap '' TERM; exec sleep 30) & echo $! > "` + marker + `.grandchild"; wait; else touch "` + marker + `.first"; exit 3; fi`
	p := start(t, e, "cron", "--emulator", "--json", "--schedule", "*/2 * * * * *", "--region", "eastus", "--instance", "vm-1",
		"--lease", "exit-status", "--preferred-regions", "eastus", "--duration", "6s", "--grace", "2s", "--", "sh", "-c", script)
	p.waitEvent(t, "occurrence")
	first := p.find("occurrence")
	if first["status"] != "failed" || first["exitCode"] != 3.0 || !strings.Contains(first["reason"].(string), "exit status 3") {
		t.Fatalf("first occurrence: %v", first)
	}
	// The second occurrence's command runs on; another holder takes the lease over meanwhile.
	time.Sleep(2500 * time.Millisecond)
	srv := cosmostest.Get(t)
	cc := srv.Container(t, "e2e-"+strings.ToLower(t.Name()))
	body := `{"id":"lease-exit-status","leaseKey":"exit-status","leaseId":"other","ownerId":"intruder","epoch":99,"leaseDurationMs":60000,"metadata":{}}`
	if _, err := cc.UpsertItem(context.Background(), azcosmos.NewPartitionKeyString("exit-status"), []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, _ := os.ReadFile(marker); strings.TrimSpace(string(b)) == "term" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command got no SIGTERM after the lease was lost; events %v\n%s", p.events, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lost map[string]any
	for deadline := time.Now().Add(10 * time.Second); lost == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ev := p.last("occurrence"); ev != nil && ev["status"] == "lost" {
			lost = ev
		}
	}
	if lost == nil || lost["exitCode"] != 143.0 {
		t.Fatalf("events after the lease was lost: %v", p.events)
	}
	// The run was recorded only once the command's whole group was gone.
	if grandchild := pidFile(t, marker+".grandchild"); alive(grandchild) {
		t.Fatalf("the command's grandchild (pid %d) still runs after its run was recorded lost", grandchild)
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	p.wait(t)
	// The records: the exit status of each, and inspect --runs lists them.
	cmd := exec.Command(binary, "inspect", "--emulator", "--runs", "--lease", "exit-status", "--json")
	cmd.Env, cmd.Dir = e, t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var recs []struct {
		Status   string
		ExitCode *int
	}
	if err := json.Unmarshal(out, &recs); err != nil || len(recs) < 2 {
		t.Fatalf("inspect --runs: %v %s", err, out)
	}
	statuses := map[string]int{}
	for _, rec := range recs {
		if rec.ExitCode != nil {
			statuses[rec.Status] = *rec.ExitCode
		}
	}
	if statuses["failed"] != 3 || statuses["lost"] != 143 {
		t.Fatalf("records: %s", out)
	}
}

// cron SIGKILLed while its command runs: the command's whole group dies with it, the script's own child too.
func TestCronKilledTakesTheCommandsGroupWithIt(t *testing.T) {
	e := env(t)
	if code := start(t, e, "inspect", "--emulator").wait(t); code != 0 {
		t.Fatalf("inspect exit %d", code)
	}
	dir := t.TempDir()
	script := `echo $$ > ` + dir + `/c.tmp && mv ` + dir + `/c.tmp ` + dir + `/command; sleep 300 & echo $! > ` + dir + `/g.tmp && mv ` + dir + `/g.tmp ` + dir + `/grandchild; wait`
	p := start(t, e, "cron", "--emulator", "--json", "--schedule", "* * * * * *", "--region", "eastus", "--instance", "vm-1",
		"--lease", "killed", "--preferred-regions", "eastus", "--duration", "6s", "--grace", "1s", "--", "sh", "-c", script)
	command, grandchild := pidFile(t, dir+"/command"), pidFile(t, dir+"/grandchild")
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, grandchild, "the command's grandchild")
	waitGone(t, command, "the command")
	p.wait(t)
}

// pidFile waits (at most 30 s) for a file holding a process id, and reads it.
func pidFile(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written within 30s", path)
		}
	}
}

// alive says whether a process pid exists. The supervisor reaps what it kills, so a dead one is not left a
// zombie.
func alive(pid int) bool { return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// waitGone polls until pid is gone, for at most 10 s.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs 10s later", what, pid)
		}
	}
}
