//go:build linux || darwin

package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// recordScript is a command job's script: it appends the run it was given (its first argument, the occurrence,
// the region, the epoch and the lease) to $RECORD_FILE, one line per run, and says so.
const recordScript = `#!/bin/sh
echo "$1 $COSMOSLEASE_OCCURRENCE $COSMOSLEASE_REGION $COSMOSLEASE_EPOCH $COSMOSLEASE_LEASE" >> "$RECORD_FILE"
echo "recorded $1 for $COSMOSLEASE_OCCURRENCE"
`

// Two command jobs and one Go job in one app, deployed in three regions (three handler processes, started as
// the host starts them, each job's ticks posted to all three at once): the preferred region runs every
// occurrence of every job; after its SIGKILL the very next occurrence of each job runs in the next region, one
// failover delay late; a new process of the preferred region takes every job back at the next occurrence. Each
// job's occurrences run once (the run records, and the lines the commands wrote), none is missed.
func TestThreeJobsInThreeRegions(t *testing.T) {
	env := handlerEnv(t)
	const gap = 4 * time.Second
	app := t.TempDir()
	if err := os.MkdirAll(filepath.Join(app, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "jobs", "record.sh"), []byte(recordScript), 0o755); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(t.TempDir(), "runs.txt")
	env = merge(env, map[string]string{"LeaseTimerSchedule": "*/4 * * * * *", "RECORD_FILE": record,
		"LeaseJobs__Export__Schedule": "*/4 * * * * *", "LeaseJobs__Export__Command": "jobs/record.sh export",
		"LeaseJobs__Rollup__Schedule": "*/4 * * * * *", "LeaseJobs__Rollup__Command": "jobs/record.sh rollup",
		"LeaseJobs__Rollup__LeaseKey": "nightly-rollup"})
	jobs := map[string]string{fnTimer: "timer-singleton", "Export": "Export", "Rollup": "nightly-rollup"} // job → lease
	ins := []*instance{startHandlerIn(t, app, "eastus", "eastus-pod-1", env), startHandlerIn(t, app, "westeurope", "westeurope-pod-1", env),
		startHandlerIn(t, app, "southeastasia", "southeastasia-pod-1", env)}
	next := time.Now().UTC().Truncate(gap).Add(gap)
	time.Sleep(time.Until(next))
	first := next
	ranIn := map[string]map[time.Time]string{} // job → occurrence → region, as the answers say
	// step posts the next occurrence of every job to the live regions. want names the region that must execute it
	// ("a|b": either); failover says it is the first occurrence after the preferred region stopped, run about one
	// delay late at rank 1.
	step := func(want string, live []*instance, failover bool) {
		t.Helper()
		replies := map[string][]reply{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for fn := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs := tickJob(t, live, fn, next)
				mu.Lock()
				replies[fn] = rs
				mu.Unlock()
			}()
		}
		wg.Wait()
		for fn, rs := range replies {
			ex := executed(t, rs)
			if len(ex) != 1 || !slices.Contains(strings.Split(want, "|"), ex[0].region) {
				t.Fatalf("%s, occurrence %s: executed by %v, want exactly %s: %+v", fn, next.Format(time.RFC3339), ex, want, rs)
			}
			if failover && (ex[0].ret.Rank != 1 || ex[0].ret.FailoverDelayMs < 1000) {
				t.Fatalf("%s in %s: %+v; want rank 1, about one delay late", fn, want, ex[0].ret)
			}
			if !failover && ex[0].ret.FailoverDelayMs >= 1000 {
				t.Fatalf("%s in %s: %+v; want it on time (a region marked absent is not waited for)", fn, ex[0].region, ex[0].ret)
			}
			if fn != fnTimer && (ex[0].ret.ExitCode == nil || *ex[0].ret.ExitCode != 0) {
				t.Fatalf("%s: %+v; want exit status 0", fn, ex[0].ret)
			}
			if ranIn[fn] == nil {
				ranIn[fn] = map[time.Time]string{}
			}
			ranIn[fn][next] = ex[0].region
		}
		next = next.Add(gap)
		time.Sleep(time.Until(next))
	}
	for range 2 {
		step("eastus", ins, false)
	}
	_ = ins[0].cmd.Process.Signal(syscall.SIGKILL) // the preferred region stops for good
	step("westeurope", ins[1:], true)              // one delay late; eastus is marked absent
	step("westeurope", ins[1:], false)             // on time
	// eastus comes back: at its first tick it may race westeurope, which no longer waits for it; from the second
	// on it runs every job's occurrences again.
	ins[0] = startHandlerIn(t, app, "eastus", "eastus-pod-2", env)
	step("eastus|westeurope", ins, false)
	step("eastus", ins, false)

	// Each job's occurrences once, each in the region that answered it ran, none missed.
	for fn, key := range jobs {
		recs := runRecords(t, env["CosmosLeasing__ContainerName"], key)
		seen := map[time.Time]bool{}
		for _, r := range recs {
			if seen[r.Occurrence] || r.Status != cosmoslease.RunCompleted || r.Region != ranIn[fn][r.Occurrence] {
				t.Fatalf("%s: run record %+v (twice: %v); want completed in %s", fn, r, seen[r.Occurrence], ranIn[fn][r.Occurrence])
			}
			seen[r.Occurrence] = true
		}
		for occ := first; occ.Before(next); occ = occ.Add(gap) {
			if !seen[occ] {
				t.Fatalf("%s: occurrence %s has no run record", fn, occ.Format(time.RFC3339))
			}
		}
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	var want []string
	for _, fn := range []string{"Export", "Rollup"} {
		for occ, region := range ranIn[fn] {
			want = append(want, strings.ToLower(fn)+" "+occ.Format(time.RFC3339)+" "+region)
		}
	}
	sort.Strings(want)
	if len(lines) != len(want) {
		t.Fatalf("the commands ran %d times, want %d:\n%s", len(lines), len(want), b)
	}
	for i, l := range lines {
		if f := strings.Fields(l); len(f) != 5 || strings.Join(f[:3], " ") != want[i] {
			t.Fatalf("run %q, want %q (every occurrence once, in the region that answered it ran)", l, want[i])
		}
	}

	// LeaseStatus reports every job: its newest run, back in eastus, and none missed.
	resp := ins[1].post(t, fnStatus, []byte(`{"Data":{"req":{"Url":"http://localhost:7071/api/LeaseStatus","Method":"GET","Query":{},"Headers":{},"Params":{}}},"Metadata":{}}`))
	var res httpOutput
	if err := json.Unmarshal(resp.raw["Outputs"], &struct{ Res *httpOutput }{&res}); err != nil || res.StatusCode != 200 {
		t.Fatalf("LeaseStatus outputs: %s", resp.raw["Outputs"])
	}
	var body struct {
		Jobs []struct {
			Name, Lease, Error string
			MissedCount        int
			LastRun            *cosmoslease.RunRecord
		}
	}
	if err := json.Unmarshal([]byte(res.Body), &body); err != nil || len(body.Jobs) != 3 {
		t.Fatalf("LeaseStatus body: %s", res.Body)
	}
	for _, j := range body.Jobs {
		if j.Lease != jobs[j.Name] || j.Error != "" || j.MissedCount != 0 || j.LastRun == nil || j.LastRun.Region != "eastus" ||
			!j.LastRun.Occurrence.Equal(next.Add(-gap)) {
			t.Fatalf("LeaseStatus of %s: %+v", j.Name, j)
		}
	}
}

// The host ends a handler with SIGKILL (a timeout, a restart, a scale-in). A command job's process group dies
// with it: the script and the program it started are gone soon after, though nothing could stop them in an
// orderly way (internal/supervise's reaper sees the handler die).
func TestCommandGroupDiesWithTheHandler(t *testing.T) {
	env := handlerEnv(t)
	app := t.TempDir()
	script := "#!/bin/sh\nsleep 60 &\necho $! > child.pid\necho $$ > script.pid\nwait\n"
	if err := os.WriteFile(filepath.Join(app, "hang.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env = merge(env, map[string]string{"LeaseJobs__Hang__Schedule": "*/3 * * * * *", "LeaseJobs__Hang__Command": "./hang.sh"})
	in := startHandlerIn(t, app, "eastus", "eastus-pod-1", env)
	go func() {
		// The invocation never answers: the handler dies under it.
		resp, err := http.Post("http://127.0.0.1:"+strconv.Itoa(in.port)+"/Hang", "application/json",
			bytes.NewReader(unmonitoredTick(fired(time.Now().UTC().Truncate(3*time.Second)))))
		if err == nil {
			resp.Body.Close()
		}
	}()
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) < 2; time.Sleep(20 * time.Millisecond) {
		pids = pids[:0]
		for _, f := range []string{"script.pid", "child.pid"} {
			if b, err := os.ReadFile(filepath.Join(app, f)); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not start: %s%s", in.stdout, in.stderr)
		}
	}
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	_ = in.cmd.Wait()
	for _, pid := range pids {
		if !goneWithin(pid, 15*time.Second) {
			t.Fatalf("process %d of the command's group outlived the handler", pid)
		}
	}
}

// goneWithin waits up to limit for pid to be gone (or a zombie).
func goneWithin(pid int, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			s := string(b)
			if strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z") {
				return true
			}
		}
	}
	return false
}
