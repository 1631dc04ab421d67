package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The scenario of `run -- COMMAND`: a job of the user's own, with a child process, fails over; the standby's job
// starts only after the first job's whole process group is gone.

// jobScript is the user's job: before it starts, it checks that no process an earlier holder's job recorded is
// still alive; then it starts a child (as a real job's worker would) and records both pids.
func jobScript(pids string) string {
	return `for p in $(cat "` + pids + `" 2>/dev/null); do
  if kill -0 "$p" 2>/dev/null; then echo "job: OVERLAP: pid $p of an earlier holder's job is still alive"; exit 1; fi
done
echo "job: epoch $COSMOSLEASE_EPOCH in $COSMOSLEASE_REGION; checked: no process of an earlier holder's job is alive"
sleep 300 &
echo $$ $! >> "` + pids + `"
echo "job: working as pid $$, with its child pid $!"
wait`
}

func (d *demo) commandFailover() error {
	const holder, standby = "us-east-1", "eu-west-1"
	dir, err := os.MkdirTemp("", "cosmoslease-demo-job")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pids := filepath.Join(dir, "job-pids")
	job := func(name, region string) []string {
		return []string{"run", "--emulator", "--instance", name, "--region", region, "--lease", "reconciler",
			"--duration", "6s", "--renew-interval", "2s", "--grace", "1s", "--", "sh", "-c", jobScript(pids)}
	}
	d.say("Scenario 6 — run your own work: `cosmoslease run -- COMMAND` runs a job of yours (here a script that starts a child\n"+
		"  process) only while the instance holds the lease; %s holds it, %s stands by", holder, standby)
	first, firstCode, err := d.start(holder, job(holder, "us-east")...)
	if err != nil {
		return err
	}
	if err := d.waitFor(holder, "job: working", 30*time.Second); err != nil {
		return err
	}
	d.fresh(standby)
	second, standbyCode, err := d.start(standby, job(standby, "eu-west")...)
	if err != nil {
		return err
	}
	if err := d.waitFor(standby, "standing by", 20*time.Second); err != nil {
		return err
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		return err
	}
	var group []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("scenario 6: the job recorded %q", b)
		}
		group = append(group, pid)
	}
	if len(group) != 2 {
		return fmt.Errorf("scenario 6: the job recorded %q, want its pid and its child's", b)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	killed := time.Now()
	<-firstCode
	d.say("Killed %s with SIGKILL. Its job runs in a process group of its own under a small reaper that notices the death at\n"+
		"  once: the group gets SIGTERM, and SIGKILL after --grace (1 s). The lease cannot be released, so it expires", holder)
	for _, pid := range group {
		for !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			if time.Since(killed) > 10*time.Second {
				return fmt.Errorf("scenario 6: pid %d of %s's job still runs 10 s after the kill", pid, holder)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	gone := time.Since(killed).Round(time.Millisecond)
	d.say("%s's job (pid %d) and its child (pid %d) were gone %s after the kill", holder, group[0], group[1], gone)
	if err := d.waitFor(standby, "job: working", 30*time.Second); err != nil {
		return err
	}
	took := time.Since(killed).Round(100 * time.Millisecond)
	d.mu.Lock()
	out := d.logs[standby].String()
	d.mu.Unlock()
	if strings.Contains(out, "OVERLAP") || !strings.Contains(out, "job: epoch 2 in eu-west; checked: no process of an earlier holder's job is alive") {
		return fmt.Errorf("scenario 6: %s's job did not start cleanly at epoch 2:\n%s", standby, out)
	}
	d.say("%s's job started %s after the kill, at epoch 2, and found no process of the first job alive: the lease\n"+
		"  is held only until --duration − --grace − a clock margin after the last renewal, so the first job's group is\n"+
		"  gone before anyone may take over", standby, took)
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if c := <-standbyCode; c != 130 {
		return fmt.Errorf("scenario 6: %s exited %d after SIGTERM, want 130", standby, c)
	}
	if err := d.waitFor(standby, "lease reconciler released", time.Second); err != nil {
		return err
	}
	d.say("SIGTERM to %s: passed on to its job's group, which had --grace to exit; the lease was released (a standby would\n"+
		"  take over at once) and run exited 130", standby)
	return nil
}
