//go:build unix

package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaperEnv marks the environment of a reaper; this package's init then runs the reaper instead of the program.
const reaperEnv = "COSMOSLEASE_SUPERVISE_REAPER"

const defaultPath = "/usr/local/bin:/usr/bin:/bin"

func envKeyEqual(a, b string) bool { return a == b }

func candidates(path string) []string { return []string{path} }

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errIsDir
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Errorf("%w: %w", errNotExecutable, err)
	}
	return nil
}

func isExecFormat(err error) bool { return errors.Is(err, syscall.ENOEXEC) }

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2", syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
}

// Process is a started command.
type Process struct {
	c      Cmd
	pid    int
	reaper *exec.Cmd

	mu       sync.Mutex
	ctl      *os.File // the write end of the reaper's control pipe; closing it stops the group
	escalate *time.Timer
	status   Status
	done     chan struct{}
}

// Start starts c in a process group of its own, under a reaper (see the package comment). It returns a
// *StartError when the command cannot be started.
func Start(c Cmd) (*Process, error) {
	path, err := Check(c.Argv, c.Dir, c.Env)
	if err != nil {
		return nil, err
	}
	self, err := selfExecutable()
	if err != nil {
		return nil, fmt.Errorf("cannot supervise %s: the running program's executable is unknown: %w", c.Argv[0], err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	r := exec.Command(self)
	r.Args = append([]string{"cosmoslease-supervise", strconv.FormatInt(int64(c.grace()), 10), path}, c.Argv...)
	r.Env = append(slices.Clip(env), reaperEnv+"=1")
	r.Dir = c.Dir
	r.Stdout, r.Stderr = c.Stdout, c.Stderr
	r.ExtraFiles = []*os.File{ctlR, stW} // fds 3 and 4 in the reaper
	// The reaper is in a group of its own too: a terminal's Ctrl-C reaches the supervisor alone, which decides.
	r.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output pipes (when Stdout is not a file) close when the group is gone; a process that left the group
	// could hold them open for ever.
	r.WaitDelay = time.Second
	err = r.Start()
	ctlR.Close()
	stW.Close()
	if err != nil {
		ctlW.Close()
		stR.Close()
		return nil, fmt.Errorf("cannot supervise %s: %w", c.Argv[0], err)
	}
	p := &Process{c: c, reaper: r, ctl: ctlW, done: make(chan struct{})}
	lines := bufio.NewReader(stR)
	first, err := lines.ReadString('\n')
	verb, arg, _ := strings.Cut(strings.TrimSpace(first), " ")
	switch n, convErr := strconv.Atoi(arg); {
	case err == nil && convErr == nil && verb == "pid":
		p.pid = n
	case err == nil && convErr == nil && verb == "fail":
		stR.Close()
		ctlW.Close()
		_ = r.Wait()
		return nil, startError(c.Argv[0], syscall.Errno(n))
	default:
		stR.Close()
		ctlW.Close()
		werr := r.Wait()
		return nil, fmt.Errorf("cannot supervise %s: the reaper ended before it started the command (%v)", c.Argv[0], errors.Join(err, werr))
	}
	go p.watch(lines, stR)
	return p, nil
}

// selfExecutable is the running program's executable. On Linux /proc/self/exe names it even after the file was
// replaced or deleted (a deployment while it runs).
func selfExecutable() (string, error) {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe", nil
	}
	return os.Executable()
}

// Pid is the command's process id, which is also its process group's id.
func (p *Process) Pid() int { return p.pid }

// Done is closed when the command has exited and its group is gone.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits until the command has exited and its group is gone, and says how the command ended.
func (p *Process) Wait() Status {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Signal sends sig to every process of the group.
func (p *Process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("cannot send %v", sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sendLocked(s)
}

func (p *Process) sendLocked(s syscall.Signal) error {
	if p.ctl == nil {
		return os.ErrProcessDone
	}
	_, err := fmt.Fprintf(p.ctl, "sig %d\n", int(s))
	return err
}

// Stop sends sig (SIGTERM when nil) to every process of the group, and SIGKILL when the group has not ended
// Grace later. It returns at once; Wait waits. Later calls send their signal but do not move the SIGKILL.
func (p *Process) Stop(sig os.Signal) {
	if sig == nil {
		sig = syscall.SIGTERM
	}
	_ = p.Signal(sig)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.escalate == nil && p.ctl != nil {
		p.escalate = time.AfterFunc(p.c.grace(), func() { _ = p.Signal(syscall.SIGKILL) })
	}
}

// Kill sends SIGKILL to every process of the group.
func (p *Process) Kill() { _ = p.Signal(syscall.SIGKILL) }

// watch reads the reaper's report, and waits for the reaper.
func (p *Process) watch(lines *bufio.Reader, r io.Closer) {
	var st Status
	reported := false
	for {
		line, err := lines.ReadString('\n')
		if f := strings.Fields(line); len(f) == 4 && f[0] == "exit" {
			raw, _ := strconv.Atoi(f[1])
			st = exitStatus(raw)
			st.Leftovers, st.StillRunning = f[2] == "1", f[3] == "1"
			reported = true
		}
		if err != nil {
			break
		}
	}
	r.Close()
	werr := p.reaper.Wait()
	if !reported {
		// The reaper was killed on its own. The command had SIGKILL as its parent-death signal (Linux); make sure
		// of its group.
		st = Status{Code: -1, Err: fmt.Errorf("the supervisor's reaper (pid %d) ended without reporting (%v); the command's group was killed", p.reaper.Process.Pid, werr)}
		st.StillRunning = !killGroup(p.pid)
	}
	p.mu.Lock()
	if p.escalate != nil {
		p.escalate.Stop()
	}
	p.ctl.Close()
	p.ctl = nil
	p.status = st
	p.mu.Unlock()
	close(p.done)
}

// exitStatus decodes the wait status the reaper reported; -1 means the command was never seen to exit.
func exitStatus(raw int) Status {
	if raw < 0 {
		return Status{Code: -1}
	}
	ws := syscall.WaitStatus(raw)
	if ws.Signaled() {
		return Status{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return Status{Code: ws.ExitStatus()}
}

// killGroup sends SIGKILL to the group pgid and polls until it is gone, for at most KillBound. It says whether
// the group is gone.
func killGroup(pgid int) bool {
	if pgid <= 0 {
		return true
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	for deadline := time.Now().Add(KillBound); ; time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
