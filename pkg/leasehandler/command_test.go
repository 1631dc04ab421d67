//go:build linux || darwin

package leasehandler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// appWithScripts makes a temporary app root holding the scripts (name → body, made executable) and makes it the
// working directory, where the host starts the handler.
func appWithScripts(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}

// invoke posts one tick of the function fn and returns the HTTP status, the return value and the Logs.
func invoke(t *testing.T, ts *httptest.Server, fn string, occ time.Time) (int, tickResult, []string) {
	t.Helper()
	resp, err := http.Post(ts.URL+"/"+fn, "application/json", bytes.NewReader(unmonitoredTick(fired(occ))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Logs        []string
		ReturnValue tickResult
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out.ReturnValue, out.Logs
}

// processRuns reports whether pid is a live process (not a zombie).
func processRuns(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err)
	}
	s := string(b)
	return !strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
}

// pidIn reads the pid a script wrote.
func pidIn(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// gone waits up to 5 s for pid to be gone.
func gone(pid int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !processRuns(pid) {
			return true
		}
	}
	return false
}

// A command job runs its command, from the app's root, with the run's identity in its environment; its output
// is the invocation's Logs, its exit status is in the answer and the run record, and a status other than 0 fails
// the invocation (500, the reason in one line), recorded as failed.
func TestCommandJob(t *testing.T) {
	base := testEnv(t) // before the test leaves the module's directory
	appWithScripts(t, map[string]string{"jobs/export.sh": `echo "export $1 of $COSMOSLEASE_OCCURRENCE in $COSMOSLEASE_REGION at epoch $COSMOSLEASE_EPOCH, lease $COSMOSLEASE_LEASE, instance $COSMOSLEASE_INSTANCE"
echo "from $(pwd)" >&2
exit "$(cat status 2>/dev/null || echo 0)"
`})
	env := merge(base, map[string]string{"LeaseJobs__Export__Schedule": "*/2 * * * * *", "LeaseJobs__Export__Command": "jobs/export.sh 'all items'"})
	ts, h, container := serveJobs(t, env)
	occ := dueNow()
	code, r, logs := invoke(t, ts, "Export", occ)
	want := fmt.Sprintf("export all items of %s in eastus at epoch 1, lease Export, instance eastus-pod-1", occ.Format(time.RFC3339))
	wd, _ := os.Getwd()
	if code != 200 || r.Status != "executed" || r.ExitCode == nil || *r.ExitCode != 0 || len(logs) < 3 || logs[1] != want || logs[2] != "from "+wd {
		t.Fatalf("answer %d %+v, Logs %q; want executed, exit 0, the command's lines", code, r, logs)
	}
	if err := os.WriteFile("status", []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, r, logs = invoke(t, ts, "Export", occ.Add(2*time.Second))
	if code != 500 || r.Status != "failed" || !strings.HasSuffix(r.Reason, "failed: jobs/export.sh ended with exit status 3") || r.ExitCode == nil || *r.ExitCode != 3 || len(logs) != 0 {
		t.Fatalf("answer %d %+v, Logs %q; want 500, failed with exit status 3", code, r, logs)
	}
	recs := runRecords(t, container, h.jobs[0].s.key)
	if len(recs) != 2 || recs[0].Status != cosmoslease.RunFailed || *recs[0].ExitCode != 3 || recs[1].Status != cosmoslease.RunCompleted || *recs[1].ExitCode != 0 {
		t.Fatalf("run records %+v", recs)
	}
}

// hangScript starts a program in the background and waits for it; with trap, it (and so the program) ignores
// SIGTERM.
func hangScript(trap string) string {
	return trap + `sleep 60 &
echo $! > child.pid
echo $$ > script.pid
echo started
wait
`
}

// When the lease is lost while the command runs, its whole process group gets SIGTERM: the script and the
// program it started in the background are gone, and the run is recorded as lost with exit status 143. A group
// that ignores SIGTERM gets SIGKILL after half the run's grace (137). Nothing of the run outlives it, so nothing
// of it runs beside the new holder's work.
func TestCommandGroupStopsWhenTheLeaseIsLost(t *testing.T) {
	for _, tc := range []struct {
		name, trap string
		status     int
	}{{"SIGTERM", "", 143}, {"ignores SIGTERM", "trap '' TERM\n", 137}} {
		t.Run(tc.name, func(t *testing.T) {
			base := testEnv(t)
			srv := cosmostest.Get(t)
			dir := appWithScripts(t, map[string]string{"hang.sh": hangScript(tc.trap)})
			env := merge(base, map[string]string{"LeaseJobs__Hang__Schedule": "*/2 * * * * *", "LeaseJobs__Hang__Command": "./hang.sh"})
			ts, h, container := serveJobs(t, env)
			go func() {
				// Once the command runs, another holder takes the lease: its document replaced, as after an expiry.
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if _, err := os.Stat(filepath.Join(dir, "child.pid")); err == nil {
						break
					}
				}
				body := `{"id":"lease-Hang","leaseKey":"Hang","leaseId":"other","ownerId":"westeurope-1","epoch":9,"leaseDurationMs":6000,"metadata":{}}`
				_, _ = srv.Container(t, container).UpsertItem(context.Background(), azcosmos.NewPartitionKeyString("Hang"), []byte(body), nil)
			}()
			code, r, _ := invoke(t, ts, "Hang", dueNow())
			if code != 500 || !strings.Contains(r.Reason, "lost") || r.ExitCode == nil || *r.ExitCode != tc.status {
				t.Fatalf("answer %d %+v; want 500, lost, exit status %d", code, r, tc.status)
			}
			for _, f := range []string{"script.pid", "child.pid"} {
				if pid := pidIn(t, filepath.Join(dir, f)); !gone(pid) {
					t.Fatalf("%s (%d) still runs after the run ended", f, pid)
				}
			}
			if recs := runRecords(t, container, h.jobs[0].s.key); len(recs) != 1 || recs[0].Status != cosmoslease.RunLost || *recs[0].ExitCode != tc.status {
				t.Fatalf("run records %+v", recs)
			}
		})
	}
}

// When the invocation's deadline comes, the command's group is stopped the same way: gone, the run recorded as
// timed out, the answer sent before the host's functionTimeout. (A functionTimeout of 4 s leaves the work half a
// second to return after the deadline, which a loaded machine can miss: the exit status is then not awaited, so
// it is not checked here.)
func TestCommandGroupStopsAtTheDeadline(t *testing.T) {
	base := testEnv(t)
	dir := appWithScripts(t, map[string]string{"hang.sh": hangScript("")})
	env := merge(base, map[string]string{"LeaseJobs__Hang__Schedule": "*/2 * * * * *", "LeaseJobs__Hang__Command": "./hang.sh",
		"AzureFunctionsJobHost__functionTimeout": "00:00:04", "LeaseTimerPreferredRegions": "eastus"})
	ts, h, container := serveJobs(t, env)
	start := time.Now()
	code, r, _ := invoke(t, ts, "Hang", dueNow())
	if took := time.Since(start); code != 500 || !strings.Contains(r.Reason, "reached its deadline") || took > 4*time.Second {
		t.Fatalf("answer %d %+v after %s; want 500 within functionTimeout, saying the deadline came", code, r, took)
	}
	for _, f := range []string{"script.pid", "child.pid"} {
		if pid := pidIn(t, filepath.Join(dir, f)); !gone(pid) {
			t.Fatalf("%s (%d) still runs after the run ended", f, pid)
		}
	}
	if recs := runRecords(t, container, h.jobs[0].s.key); len(recs) != 1 || recs[0].Status != cosmoslease.RunTimedOut {
		t.Fatalf("run records %+v", recs)
	}
}

// A command that exits and leaves a program running in its group: the program is killed with the run.
func TestCommandLeftoversDieWithTheRun(t *testing.T) {
	base := testEnv(t)
	dir := appWithScripts(t, map[string]string{"daemon.sh": "sleep 60 >/dev/null 2>&1 &\necho $! > child.pid\n"})
	env := merge(base, map[string]string{"LeaseJobs__Daemon__Schedule": "*/2 * * * * *", "LeaseJobs__Daemon__Command": "./daemon.sh"})
	ts, _, _ := serveJobs(t, env)
	if code, r, _ := invoke(t, ts, "Daemon", dueNow()); code != 200 || r.Status != "executed" {
		t.Fatalf("answer %d %+v", code, r)
	}
	if pid := pidIn(t, filepath.Join(dir, "child.pid")); !gone(pid) {
		t.Fatalf("the command's background program (%d) outlived its run", pid)
	}
}

// Several jobs in one handler: a job whose settings are wrong fails its own invocations with one line, and the
// others run; LeaseStatus reports every job, the broken one with its reason.
func TestOneBadJobLeavesTheOthersRunning(t *testing.T) {
	base := testEnv(t)
	appWithScripts(t, map[string]string{"ok.sh": "echo ok\n"})
	env := merge(base, map[string]string{"LeaseJobs__Good__Schedule": "*/2 * * * * *", "LeaseJobs__Good__Command": "./ok.sh",
		"LeaseJobs__Broken__Schedule": "*/2 * * * * *", "LeaseJobs__Broken__Command": "./missing.sh"})
	e := environment(env)
	app, err := loadApp(e)
	if err != nil {
		t.Fatal(err)
	}
	specs, _ := listJobs([]Job{LeaseTimer(noWork)}, e)
	h := newHandler(app, nil, specs, e, nil)
	stdout, stderr := &syncBuf{}, &syncBuf{}
	h.out = &output{stdout: stdout, stderr: stderr}
	ts := httptest.NewServer(h.mux())
	t.Cleanup(ts.Close)
	t.Cleanup(h.release)
	if p := h.problems(); len(p) != 1 || !strings.HasPrefix(p[0], "job Broken cannot run, so its invocations fail until this is fixed: LeaseJobs__Broken__Command: cannot run ./missing.sh: not found: it is not in the app's files") {
		t.Fatalf("problems at start: %q", p)
	}
	occ := dueNow()
	code, r, _ := invoke(t, ts, "Broken", occ)
	if code != 500 || !strings.HasPrefix(r.Reason, "LeaseJobs__Broken__Command: cannot run ./missing.sh: not found") {
		t.Fatalf("the broken job: %d %+v", code, r)
	}
	if lines := stderr.lines(t, 1); len(lines) != 1 || lines[0] != "Broken: failed: "+r.Reason {
		t.Fatalf("stderr: %q", lines)
	}
	occs := map[string]time.Time{}
	for _, fn := range []string{"Good", "LeaseTimer"} {
		occs[fn] = dueNow()
		if code, r, _ := invoke(t, ts, fn, occs[fn]); code != 200 || r.Status != "executed" {
			t.Fatalf("%s beside the broken job: %d %+v", fn, code, r)
		}
	}
	body := leaseStatus(t, ts)
	var jobs []jobStatus
	if err := json.Unmarshal(body["jobs"], &jobs); err != nil || len(jobs) != 3 {
		t.Fatalf("LeaseStatus jobs: %s (%v)", body["jobs"], err)
	}
	for _, j := range jobs {
		switch j.Name {
		case "Broken":
			if !strings.Contains(j.Error, "cannot run ./missing.sh: not found") || j.LastRun != nil {
				t.Fatalf("Broken in LeaseStatus: %+v", j)
			}
		case "Good", "LeaseTimer":
			if j.Error != "" || j.LastRun == nil || !j.LastRun.Occurrence.Equal(occs[j.Name]) || j.LastRun.Status != cosmoslease.RunCompleted || j.State != "released" || j.MissedCount != 0 {
				t.Fatalf("%s in LeaseStatus: %+v", j.Name, j)
			}
		default:
			t.Fatalf("LeaseStatus names a job %q", j.Name)
		}
	}
	if string(body["lease"]) != `"timer-singleton"` {
		t.Fatalf("LeaseStatus's top level is not the first job's (LeaseTimer): lease %s", body["lease"])
	}
}
