//go:build unix

package supervise

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain keeps the reapers of a race-detector build from sleeping a second at exit (GORACE's
// atexit_sleep_ms): every reaper is a copy of this test binary.
func TestMain(m *testing.M) {
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

// waitFile waits until path holds a line, and returns it.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written within 10s", path)
		}
	}
}

func pidIn(t *testing.T, path string) int {
	t.Helper()
	pid, err := strconv.Atoi(waitFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// alive says whether pid is a process that has not exited (a zombie has exited: it only waits to be reaped).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) || !procMounted()
	}
	// The state is the field after the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] != 'Z'
}

func procMounted() bool { _, err := os.Stat("/proc/self/stat"); return err == nil }

// waitGone polls until pid has exited, for at most limit.
func waitGone(t *testing.T, pid int, limit time.Duration, what string) {
	t.Helper()
	for deadline := time.Now().Add(limit); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs %s later", what, pid, limit)
		}
	}
}

// execed waits until pid runs the program name: a shell's child forked but not yet executed would take a
// signal meant for the program in the shell's stead (and drop it at the exec).
func execed(t *testing.T, pid int, name string) {
	t.Helper()
	if !procMounted() {
		return
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(b)) == name {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d does not run %s", pid, name)
		}
	}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestExitStatusAndOutput(t *testing.T) {
	var out, errOut bytes.Buffer
	st := Run(context.Background(), Cmd{Argv: sh(`echo out; echo err >&2; exit 3`), Stdout: &out, Stderr: &errOut})
	if st.Code != 3 || st.Signal != nil || st.Err != nil || st.Leftovers || st.String() != "exit status 3" {
		t.Fatalf("status %+v (%s)", st, st)
	}
	if out.String() != "out\n" || errOut.String() != "err\n" {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

func TestKilledBySignalIsCode128PlusN(t *testing.T) {
	st := Run(context.Background(), Cmd{Argv: sh(`kill -TERM $$`)})
	if st.Code != 143 || st.Signal != syscall.SIGTERM || st.String() != "killed by SIGTERM" {
		t.Fatalf("status %+v (%s)", st, st)
	}
}

func TestEnvironmentAndDirectory(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	st := Run(context.Background(), Cmd{Argv: sh(`pwd; env`), Dir: dir, Env: []string{"PATH=/usr/bin:/bin", "FOO=bar"}, Stdout: &out})
	if st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
	lines := strings.Split(out.String(), "\n")
	real, _ := filepath.EvalSymlinks(dir)
	if lines[0] != dir && lines[0] != real {
		t.Fatalf("ran in %q, want %q", lines[0], dir)
	}
	if !strings.Contains(out.String(), "\nFOO=bar\n") || strings.Contains(out.String(), reaperEnv) {
		t.Fatalf("environment:\n%s", out.String())
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("job.sh", "#!/bin/sh\nexit 0\n", 0o755)
	write("plain.sh", "#!/bin/sh\nexit 0\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if path, err := Check([]string{"./job.sh"}, dir, nil); err != nil || path != filepath.Join(dir, "job.sh") {
		t.Fatalf("./job.sh: %q, %v", path, err)
	}
	if path, err := Check([]string{"sh"}, "", []string{"PATH=/nonexistent:/bin:/usr/bin"}); err != nil || !filepath.IsAbs(path) {
		t.Fatalf("sh in PATH: %q, %v", path, err)
	}
	for _, tc := range []struct {
		argv []string
		env  []string
		code int
		msg  string
	}{
		{[]string{"./missing.sh"}, nil, 127, "cannot run ./missing.sh: not found"},
		{[]string{"no-such-command-anywhere"}, nil, 127, "cannot run no-such-command-anywhere: not found in PATH (give its path, such as ./no-such-command-anywhere, or install it)"},
		{[]string{"./plain.sh"}, nil, 126, "cannot run ./plain.sh: permission denied (it is not executable: chmod +x ./plain.sh)"},
		{[]string{"plain.sh"}, []string{"PATH=" + dir}, 126, "cannot run plain.sh: permission denied (it is not executable: chmod +x plain.sh)"},
		{[]string{"./sub"}, nil, 126, "cannot run ./sub: is a directory"},
		{[]string{"job.sh"}, []string{"PATH=."}, 127, "not found in PATH"}, // a relative PATH entry is not searched
		{nil, nil, 127, "no command given"},
	} {
		_, err := Check(tc.argv, dir, tc.env)
		var se *StartError
		if !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Check(%q): %v, want code %d and %q", tc.argv, err, tc.code, tc.msg)
		}
		if st := Run(context.Background(), Cmd{Argv: tc.argv, Dir: dir, Env: tc.env}); st.Code != tc.code || st.Err == nil {
			t.Errorf("Run(%q): %+v, want code %d", tc.argv, st, tc.code)
		}
	}
}

// A file that passes the check but that the kernel refuses to execute (a script without a #! line) is
// reported by Start, from the reaper's exec.
func TestExecFormatErrorAtStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noshebang"), []byte("exit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Start(Cmd{Argv: []string{"./noshebang"}, Dir: dir})
	var se *StartError
	if !errors.As(err, &se) || se.Code != 126 || err.Error() != "cannot run ./noshebang: exec format error (a script needs a first line such as #!/bin/sh)" {
		t.Fatalf("%v", err)
	}
}

// Stop reaches the whole group: a script's background child dies with it, and Wait returns only once it is
// gone.
func TestStopEndsTheWholeGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	p, err := Start(Cmd{Argv: sh(`sleep 300 & echo $! > ` + pidFile + `; wait`), Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	grandchild := pidIn(t, pidFile)
	if pgid, _ := syscall.Getpgid(grandchild); pgid != p.Pid() {
		t.Fatalf("the grandchild is in group %d, want the command's own group %d", pgid, p.Pid())
	}
	p.Stop(nil)
	st := p.Wait()
	if st.Code != 143 || st.Signal != syscall.SIGTERM || st.StillRunning || st.Leftovers {
		t.Fatalf("status %+v", st)
	}
	if alive(grandchild) || alive(p.Pid()) {
		t.Fatal("Wait returned while the group still ran")
	}
}

// A group that ignores SIGTERM gets SIGKILL after the grace.
func TestStopKillsAfterTheGrace(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Cmd{Argv: sh(`trap 'echo term > ` + dir + `/term' TERM; sleep 300 & echo $! > ` + dir + `/pid; while :; do wait; done`),
		Grace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	grandchild := pidIn(t, dir+"/pid")
	// The background sleep ignores nothing: shield it so that only SIGKILL can end it.
	_ = syscall.Kill(grandchild, syscall.SIGSTOP)
	start := time.Now()
	p.Stop(syscall.SIGTERM)
	st := p.Wait()
	if waitFile(t, dir+"/term") != "term" {
		t.Fatal("no SIGTERM first")
	}
	if st.Signal != syscall.SIGKILL || st.Code != 137 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("status %+v after %s", st, time.Since(start))
	}
	if alive(grandchild) {
		t.Fatal("the stopped grandchild survived")
	}
}

// A command that exits leaving a process of its group behind: the leftover is stopped before Wait returns.
func TestLeftoversAreStoppedWhenTheCommandExits(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	p, err := Start(Cmd{Argv: sh(`sleep 300 & echo $! > ` + pidFile + `; exit 0`), Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Wait()
	grandchild := pidIn(t, pidFile)
	if st.Code != 0 || !st.Leftovers || st.StillRunning {
		t.Fatalf("status %+v", st)
	}
	if alive(grandchild) {
		t.Fatal("the leftover still runs after Wait")
	}
}

func TestRunStopsWhenTheContextEnds(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Status)
	go func() { done <- Run(ctx, Cmd{Argv: sh(`sleep 300 & echo $! > ` + pidFile + `; wait`)}) }()
	grandchild := pidIn(t, pidFile)
	cancel()
	st := <-done
	if st.Signal != syscall.SIGTERM || alive(grandchild) {
		t.Fatalf("status %+v, grandchild alive %v", st, alive(grandchild))
	}
}

// The supervisor itself is SIGKILLed: the whole group dies, the grandchild included, first with SIGTERM and,
// for a grandchild that cannot take it, SIGKILL after the grace.
func TestGroupDiesWithTheSupervisor(t *testing.T) {
	for _, stopped := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL after the grace"}[stopped], func(t *testing.T) {
			dir := t.TempDir()
			helper := exec.Command(os.Args[0], "-test.run=^TestHelperSupervisor$")
			helper.Env = append(os.Environ(), "SUPERVISE_TEST_HELPER="+dir)
			var out bytes.Buffer
			helper.Stdout, helper.Stderr = &out, &out
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			defer helper.Process.Kill()
			command, grandchild := pidIn(t, dir+"/command"), pidIn(t, dir+"/grandchild")
			if stopped {
				_ = syscall.Kill(grandchild, syscall.SIGSTOP) // it can no longer act on SIGTERM
			}
			if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = helper.Wait()
			waitGone(t, grandchild, 10*time.Second, "the grandchild")
			waitGone(t, command, 10*time.Second, "the command")
		})
	}
}

// TestHelperSupervisor is the supervisor that TestGroupDiesWithTheSupervisor kills; it does nothing in a normal
// test run.
func TestHelperSupervisor(t *testing.T) {
	dir := os.Getenv("SUPERVISE_TEST_HELPER")
	if dir == "" {
		t.Skip("run by TestGroupDiesWithTheSupervisor")
	}
	p, err := Start(Cmd{Argv: sh(`echo $$ > ` + dir + `/command.tmp; mv ` + dir + `/command.tmp ` + dir + `/command; ` +
		`sleep 300 & echo $! > ` + dir + `/grandchild.tmp; mv ` + dir + `/grandchild.tmp ` + dir + `/grandchild; wait`),
		Grace: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	t.Fatal("the command ended while its supervisor lived")
}

// The reaper killed on its own (not the supervisor): the command dies with it (its parent-death signal on
// Linux), and the supervisor kills the rest of the group.
func TestReaperKilledAlone(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	p, err := Start(Cmd{Argv: sh(`sleep 300 & echo $! > ` + pidFile + `; wait`)})
	if err != nil {
		t.Fatal(err)
	}
	grandchild := pidIn(t, pidFile)
	_ = p.reaper.Process.Signal(syscall.SIGKILL)
	st := p.Wait()
	if st.Err == nil || !strings.Contains(st.Err.Error(), "ended without reporting") || st.StillRunning {
		t.Fatalf("status %+v", st)
	}
	waitGone(t, grandchild, 10*time.Second, "the grandchild")
}

// The group gets one SIGTERM, however many reasons there are to send it (a stop, then the command exiting
// before its child): a second one would cut short a child's own clean-up.
func TestOneSIGTERMPerStop(t *testing.T) {
	dir := t.TempDir()
	// The command exits 0.1 s after its SIGTERM, leaving its child in the middle of a clean-up that takes 0.3 s.
	p, err := Start(Cmd{Argv: sh(`trap 'sleep 0.1; exit 0' TERM; ` +
		`(trap 'echo trap >> ` + dir + `/cleanup; sleep 0.3 && echo done >> ` + dir + `/cleanup; exit 0' TERM; sleep 300 & echo $! > ` + dir + `/pid; wait) & ` +
		`wait`), Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	execed(t, pidIn(t, dir+"/pid"), "sleep")
	p.Stop(nil)
	if st := p.Wait(); st.Leftovers || st.Code != 0 {
		t.Fatalf("status %+v", st)
	}
	if got := waitFile(t, dir+"/cleanup"); got != "trap\ndone" {
		t.Fatalf("the child's clean-up was cut short: %q", got)
	}
}
