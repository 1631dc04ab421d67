package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The controls' bad input: one line, exit 2, before or after reaching Cosmos DB.
func TestControlBadInput(t *testing.T) {
	h := newHarness(t).withServer()
	h.run("inspect", "--emulator").expect(t, ExitOK) // creates the container
	h.run("pause", "--emulator").expect(t, ExitUsage, "pause needs --lease KEY")
	h.run("resume", "--emulator", "--lease", "a/b").expect(t, ExitUsage, "--lease:")
	h.run("trigger", "--emulator", "--lease", "job", "extra").expect(t, ExitUsage, "trigger takes no arguments")
	h.run("trigger", "--emulator", "--lease", "job", "--timeout", "5s").expect(t, ExitUsage, "--timeout applies to --wait only")
	h.run("pause", "--emulator", "--lease", "nosuchjob").expect(t, ExitUsage, `there is no lease "nosuchjob"`)
	h.run("resume", "--emulator", "--lease", "nosuchjob").expect(t, ExitUsage, `there is no lease "nosuchjob"`)
	h.run("trigger", "--emulator", "--lease", "nosuchjob").expect(t, ExitUsage, `there is no lease "nosuchjob"`)
}

// cronEvents reads the JSON events cron printed so far.
func cronEvents(stdout string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(stdout, "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// pause, resume, trigger and pause --stop against a cron in this process, on the local server.
func TestControlsWithCron(t *testing.T) {
	h := newHarness(t).withServer()
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: h.dir, Getenv: func(k string) string { return h.env[k] }}
	script := `echo "$COSMOSLEASE_OCCURRENCE manual=$COSMOSLEASE_MANUAL by=$COSMOSLEASE_TRIGGERED_BY" >> ran.txt; test ! -e slow || sleep 60; test ! -e fail`
	cronDone := make(chan int, 1)
	go func() {
		cronDone <- app.Run(ctx, []string{"cosmoslease", "cron", "--emulator", "--json", "--schedule", "*/2 * * * * *", "--region", "eastus",
			"--instance", "vm-1", "--lease", "job", "--preferred-regions", "eastus", "--failover-delay", "1s", "--duration", "6s", "--grace", "1s",
			"--trigger-poll", "200ms", "--", "sh", "-c", script})
	}()
	// waitEvent waits for a cron event after the first n that satisfies ok.
	waitEvent := func(n int, what string, ok func(map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			evs := cronEvents(out.String())
			for i := n; i < len(evs); i++ {
				if ok(evs[i]) {
					return evs[i]
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no cron event %s; stdout:\n%s\nstderr:\n%s", what, out.String(), errb.String())
		return nil
	}
	status := func(s string) func(map[string]any) bool {
		return func(ev map[string]any) bool {
			return ev["event"] == "occurrence" && ev["status"] == s && ev["manual"] == nil
		}
	}
	waitEvent(0, "executed", status("executed"))

	// Pause: the next occurrences are skipped (paused), with the reason; a second pause is refused.
	r := h.run("pause", "--emulator", "--lease", "job", "--reason", "maintenance", "--by", "alice")
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "Lease job is paused (by alice") {
		t.Fatalf("pause said:\n%s", r.stdout)
	}
	h.run("pause", "--emulator", "--lease", "job").expect(t, ExitUsage, "already paused", "alice", "resume it first")
	n := len(cronEvents(out.String()))
	waitEvent(n, "skipped for the pause", func(ev map[string]any) bool {
		return ev["status"] == "skipped" && ev["cause"] == "paused" && strings.Contains(ev["reason"].(string), "maintenance")
	})
	// Trigger --wait while paused: one manual run, completed, exit 0.
	r = h.run("trigger", "--emulator", "--lease", "job", "--wait", "--timeout", "40s", "--by", "bob")
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "manual run of lease job: completed in eastus") {
		t.Fatalf("trigger --wait said:\n%s\n%s", r.stdout, r.stderr)
	}
	ran, _ := os.ReadFile(filepath.Join(h.dir, "ran.txt"))
	if strings.Count(string(ran), "manual=1 by=bob") != 1 {
		t.Fatalf("the command's runs:\n%s", ran)
	}
	// inspect shows the pause and the manual run distinctly.
	r = h.run("inspect", "--emulator", "--runs", "--lease", "job")
	if !strings.Contains(r.stdout, "job: PAUSED by alice") || !strings.Contains(r.stdout, "completed (manual)") || !strings.Contains(r.stdout, "skipped (paused)") {
		t.Fatalf("inspect --runs:\n%s", r.stdout)
	}
	r = h.run("inspect", "--emulator", "--lease", "job", "--json")
	if !strings.Contains(r.stdout, `"control":{"paused":{"by":"alice"`) {
		t.Fatalf("inspect --json:\n%s", r.stdout)
	}
	// A failing manual run: exit 5, with its status.
	if err := os.WriteFile(filepath.Join(h.dir, "fail"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.run("trigger", "--emulator", "--lease", "job", "--wait", "--timeout", "40s")
	if r.code != ExitRunFailed || !strings.Contains(r.stdout, "manual run of lease job: failed") {
		t.Fatalf("a failing manual run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	os.Remove(filepath.Join(h.dir, "fail"))

	// Resume: runs again; a second resume is refused.
	h.run("resume", "--emulator", "--lease", "job").expect(t, ExitOK)
	h.run("resume", "--emulator", "--lease", "job").expect(t, ExitUsage, "is not paused")
	n = len(cronEvents(out.String()))
	waitEvent(n, "executed after resume", status("executed"))

	// pause --stop: the run in progress (sleeping 60 s) is stopped and recorded lost.
	if err := os.WriteFile(filepath.Join(h.dir, "slow"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := h.run("inspect", "--emulator", "--lease", "job", "--json")
		if strings.Contains(st.stdout, `"state":"held"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slow run started:\n%s", st.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	n = len(cronEvents(out.String()))
	r = h.run("pause", "--emulator", "--lease", "job", "--stop")
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "was told to stop") {
		t.Fatalf("pause --stop said:\n%s", r.stdout)
	}
	waitEvent(n, "lost (stopped)", func(ev map[string]any) bool {
		reason, _ := ev["reason"].(string)
		return ev["status"] == "lost" && strings.Contains(reason, "pause --stop")
	})
	cancel()
	<-cronDone
	// No contender: trigger --wait gives up at its timeout, exit 124, saying nobody claimed it.
	r = h.run("trigger", "--emulator", "--lease", "job", "--wait", "--timeout", "1s")
	if r.code != ExitWaitTimeout || !strings.Contains(r.stderr, "no contender has claimed it yet") {
		t.Fatalf("trigger --wait without a contender: exit %d\n%s", r.code, r.stderr)
	}
	h.run("trigger", "--emulator", "--lease", "job").expect(t, ExitUsage, "already waiting to be claimed")
	h.run("trigger", "--emulator", "--lease", "job", "--cancel", "--wait").expect(t, ExitUsage, "--cancel and --wait do not go together")
	if r := h.run("trigger", "--emulator", "--lease", "job", "--cancel"); r.code != ExitOK || !strings.Contains(r.stdout, "Withdrew the manual run of lease job") {
		t.Fatalf("trigger --cancel: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	h.run("trigger", "--emulator", "--lease", "job", "--cancel").expect(t, ExitUsage, "no manual run is waiting to be claimed")
}
