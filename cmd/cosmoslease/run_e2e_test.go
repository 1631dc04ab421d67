//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// supervisor is one `cosmoslease run -- COMMAND` process: its --json events come on stderr, among the
// command's own stderr lines; the command's stdout is collected apart.
type supervisor struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	lines  []string
	events []map[string]any
	done   chan struct{}
	code   int
}

func startSupervisor(t *testing.T, environ []string, args ...string) *supervisor {
	t.Helper()
	s := &supervisor{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	s.cmd.Env, s.cmd.Dir = environ, t.TempDir()
	s.cmd.Stdout = &s.stdout
	// A command's process left running (the failure these tests look for) holds the output pipes open.
	s.cmd.WaitDelay = 5 * time.Second
	errPipe, w := io.Pipe()
	s.cmd.Stderr = w
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })
	waited := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		w.Close()
		close(waited)
	}()
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			var m map[string]any
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["event"] != nil {
				s.events = append(s.events, m)
			}
			s.mu.Unlock()
		}
		<-waited
		s.code = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	return s
}

func (s *supervisor) event(name string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e["event"] == name {
			return e
		}
	}
	return nil
}

func (s *supervisor) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func (s *supervisor) waitEvent(t *testing.T, name string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if e := s.event(name); e != nil {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q event in 30s; stderr:\n%s", name, s.stderr())
		}
	}
}

func (s *supervisor) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(60 * time.Second):
		t.Fatalf("run did not exit; stderr:\n%s", s.stderr())
		return 0
	}
}

// lifetimeScript is a command that records its own lifetime in log: before it starts anything it checks that no
// process an earlier holder's command recorded is still alive; it records its start, and starts a grandchild
// that records itself once it has set its trap, and its end when it gets SIGTERM (and cannot when it gets
// SIGKILL).
func lifetimeScript(log string) string {
	return `L=` + log + `
for p in $(sed -n 's/^proc \([0-9]*\) .*/\1/p' "$L" 2>/dev/null); do
  if kill -0 "$p" 2>/dev/null; then echo "alive $p at the start of epoch $COSMOSLEASE_EPOCH" >> "$L"; fi
done
echo "start $(date +%s%N) $COSMOSLEASE_EPOCH $COSMOSLEASE_INSTANCE" >> "$L"
echo "proc $$ $COSMOSLEASE_EPOCH" >> "$L"
export L
sh -c 'trap "echo \"end \$(date +%s%N) \$COSMOSLEASE_EPOCH\" >> \"\$L\"; exit 0" TERM
echo "proc $$ $COSMOSLEASE_EPOCH grandchild" >> "$L"
while :; do sleep 0.05; done' &
wait`
}

// lifetime is what lifetimeScript wrote for one epoch.
type lifetime struct {
	start, end int64 // ns since the epoch; end is 0 when the grandchild wrote none
	instance   string
	grandchild int
}

func readLifetimes(t *testing.T, log string) map[int64]*lifetime {
	t.Helper()
	out := map[int64]*lifetime{}
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	at := func(epoch string) *lifetime {
		e, _ := strconv.ParseInt(epoch, 10, 64)
		if out[e] == nil {
			out[e] = &lifetime{}
		}
		return out[e]
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		switch {
		case f[0] == "alive":
			t.Fatalf("a process of an earlier holder's command was alive when the next one started: %q\n%s", line, b)
		case f[0] == "start" && len(f) == 4:
			l := at(f[2])
			l.start, _ = strconv.ParseInt(f[1], 10, 64)
			l.instance = f[3]
		case f[0] == "end" && len(f) == 3:
			at(f[2]).end, _ = strconv.ParseInt(f[1], 10, 64)
		case f[0] == "proc" && len(f) == 4:
			at(f[2]).grandchild, _ = strconv.Atoi(f[1])
		case f[0] == "proc":
		default:
			t.Fatalf("log line %q", line)
		}
	}
	return out
}

// waitLife waits until the command of epoch has recorded its grandchild.
func waitLife(t *testing.T, log string, epoch any) *lifetime {
	t.Helper()
	e := int64(epoch.(float64))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l := readLifetimes(t, log)[e]; l != nil && l.grandchild != 0 {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command of epoch %d did not start its grandchild within 10s", e)
		}
	}
}

// The test issue 25 names: two `run -- COMMAND` processes whose command starts a grandchild. The holder is
// SIGKILLed; its command's whole group (the grandchild too) is gone before the standby's command starts, at a
// higher epoch, and the lifetimes of the two commands do not overlap.
func TestRunCommandFailsOverOnlyAfterTheGroupIsGone(t *testing.T) {
	e := env(t)
	log := filepath.Join(t.TempDir(), "lifetimes.log")
	args := func(instance string) []string {
		return []string{"run", "--emulator", "--json", "--instance", instance, "--region", instance, "--duration", "4s", "--grace", "1s",
			"--", "sh", "-c", lifetimeScript(log)}
	}
	holder := startSupervisor(t, e, args("us-east-1")...)
	epoch := holder.waitEvent(t, "command-started")["epoch"]
	standby := startSupervisor(t, e, args("eu-west-1")...)
	standby.waitEvent(t, "held")
	if standby.event("command-started") != nil {
		t.Fatal("the standby started its command while the lease was held")
	}
	if first := waitLife(t, log, epoch); first.instance != "us-east-1" {
		t.Fatalf("the holder's command: %+v", first)
	}
	first := waitLife(t, log, epoch)

	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first.grandchild, "the killed holder's grandchild")
	started := standby.waitEvent(t, "command-started")
	if started["epoch"].(float64) <= epoch.(float64) {
		t.Fatalf("the standby's command started at %v, want an epoch above %v", started, epoch)
	}
	if tk := standby.event("takeover"); tk == nil || tk["reason"] != "expired" || tk["from"] != "us-east-1" {
		t.Fatalf("takeover: %v", tk)
	}
	waitLife(t, log, started["epoch"])
	if err := standby.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := standby.wait(t); code != 130 {
		t.Fatalf("the standby exited %d after SIGTERM, want 130; stderr:\n%s", code, standby.stderr())
	}

	lives := readLifetimes(t, log)
	a, b := lives[int64(epoch.(float64))], lives[int64(started["epoch"].(float64))]
	if b == nil || b.instance != "eu-west-1" || a.end == 0 || b.end == 0 {
		t.Fatalf("lifetimes: %+v %+v\n(the grandchildren write their end on SIGTERM: the reaper's, when the holder died; run's, when it was stopped)", a, b)
	}
	if !(a.start < a.end && a.end < b.start && b.start < b.end) {
		t.Fatalf("the commands' lifetimes overlap: epoch 1 [%d, %d], epoch 2 [%d, %d]", a.start, a.end, b.start, b.end)
	}
}

// SIGINT to the holder: passed on to the command, whose group is gone before run releases the lease and exits
// 130; the standby takes over at once (from a release, not an expiry: the lease here lasts 30 s).
func TestRunCommandInterruptedHandsOverAtOnce(t *testing.T) {
	e := env(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "lifetimes.log")
	args := func(instance string) []string {
		return []string{"run", "--emulator", "--json", "--instance", instance, "--duration", "30s", "--grace", "1s",
			"--", "sh", "-c", `trap 'echo "int $COSMOSLEASE_EPOCH" >> ` + dir + `/int; exit 130' INT; ` + lifetimeScript(log)}
	}
	holder := startSupervisor(t, e, args("us-east-1")...)
	epoch := holder.waitEvent(t, "command-started")["epoch"]
	first := waitLife(t, log, epoch)
	standby := startSupervisor(t, e, args("eu-west-1")...)
	standby.waitEvent(t, "held")
	if err := holder.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := holder.wait(t); code != 130 {
		t.Fatalf("the holder exited %d after SIGINT, want 130; stderr:\n%s", code, holder.stderr())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "int")); string(b) != fmt.Sprintf("int %v\n", epoch) {
		t.Fatalf("the command did not get the SIGINT: %q", b)
	}
	if ex := holder.event("command-exited"); ex == nil || ex["exitCode"] != 130.0 || ex["reason"] != "interrupted" || holder.event("released") == nil {
		t.Fatalf("holder events: %v", holder.events)
	}
	// The grandchild ignores SIGINT (a background job of a script does): it got SIGKILL after the grace, before
	// the release.
	if alive(first.grandchild) {
		t.Fatalf("the holder's grandchild (pid %d) still runs after run exited", first.grandchild)
	}
	standby.waitEvent(t, "command-started")
	if tk := standby.event("takeover"); tk == nil || tk["reason"] != "released" {
		t.Fatalf("takeover: %v", tk)
	}
	readLifetimes(t, log) // fails on an overlap
}
