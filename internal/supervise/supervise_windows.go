//go:build windows

package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

const defaultPath = ""

func envKeyEqual(a, b string) bool { return strings.EqualFold(a, b) }

// candidates are the files a name may be on Windows: itself when it has an extension in PATHEXT, else the name
// with each of them.
func candidates(path string) []string {
	exts := strings.Split(strings.ToLower(os.Getenv("PATHEXT")), ";")
	if os.Getenv("PATHEXT") == "" {
		exts = []string{".com", ".exe", ".bat", ".cmd"}
	}
	ext := strings.ToLower(filepath.Ext(path))
	for _, e := range exts {
		if e != "" && e == ext {
			return []string{path}
		}
	}
	var out []string
	for _, e := range exts {
		if e != "" {
			out = append(out, path+e)
		}
	}
	return out
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errIsDir
	}
	return nil
}

func isExecFormat(err error) bool { return errors.Is(err, windows.ERROR_BAD_EXE_FORMAT) }

var signalNames = map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL"}

// jobAccounting is JOBOBJECT_BASIC_ACCOUNTING_INFORMATION.
type jobAccounting struct {
	TotalUserTime, TotalKernelTime                     int64
	ThisPeriodTotalUserTime, ThisPeriodTotalKernelTime int64
	TotalPageFaultCount, TotalProcesses                uint32
	ActiveProcesses, TotalTerminatedProcesses          uint32
}

// Process is a started command.
type Process struct {
	c   Cmd
	cmd *exec.Cmd
	job windows.Handle

	mu         sync.Mutex
	terminated bool
	status     Status
	done       chan struct{}
}

// Start starts c in a job object of its own that ends with the supervisor (see the package comment). It
// returns a *StartError when the command cannot be started.
func Start(c Cmd) (*Process, error) {
	path, err := Check(c.Argv, c.Dir, c.Env)
	if err != nil {
		return nil, err
	}
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot supervise %s: CreateJobObject: %w", c.Argv[0], err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{}
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("cannot supervise %s: SetInformationJobObject: %w", c.Argv[0], err)
	}
	cmd := exec.Command(path)
	cmd.Args, cmd.Dir, cmd.Env = c.Argv, c.Dir, c.Env
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	// Suspended until it is in the job, so that nothing it starts can escape the job.
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_SUSPENDED | windows.CREATE_NEW_PROCESS_GROUP}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		windows.CloseHandle(job)
		return nil, startError(c.Argv[0], err)
	}
	if err := assignAndResume(job, uint32(cmd.Process.Pid)); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		windows.CloseHandle(job)
		return nil, fmt.Errorf("cannot supervise %s: %w", c.Argv[0], err)
	}
	p := &Process{c: c, cmd: cmd, job: job, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

func assignAndResume(job windows.Handle, pid uint32) error {
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, pid)
	if err != nil {
		return fmt.Errorf("OpenProcess: %w", err)
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		return fmt.Errorf("AssignProcessToJobObject: %w", err)
	}
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return fmt.Errorf("CreateToolhelp32Snapshot: %w", err)
	}
	defer windows.CloseHandle(snap)
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	resumed := 0
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != pid {
			continue
		}
		th, err := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if err != nil {
			return fmt.Errorf("OpenThread: %w", err)
		}
		_, err = windows.ResumeThread(th)
		windows.CloseHandle(th)
		if err != nil {
			return fmt.Errorf("ResumeThread: %w", err)
		}
		resumed++
	}
	if resumed == 0 {
		return errors.New("the suspended process has no thread to resume")
	}
	return nil
}

// Pid is the command's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the command has exited and its job is empty.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits until the command has exited and its job is empty, and says how the command ended.
func (p *Process) Wait() Status {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Signal ends the job at once for os.Kill and os.Interrupt alike: Windows has no SIGTERM for a process without
// a console of its own.
func (p *Process) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.terminateLocked()
}

func (p *Process) terminateLocked() error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	p.terminated = true
	return windows.TerminateJobObject(p.job, 1)
}

// Stop ends the job at once (see Signal).
func (p *Process) Stop(sig os.Signal) { _ = p.Signal(sig) }

// Kill ends the job at once.
func (p *Process) Kill() { _ = p.Signal(os.Kill) }

func (p *Process) active() uint32 {
	var a jobAccounting
	if err := windows.QueryInformationJobObject(p.job, windows.JobObjectBasicAccountingInformation,
		uintptr(unsafe.Pointer(&a)), uint32(unsafe.Sizeof(a)), nil); err != nil {
		return 0
	}
	return a.ActiveProcesses
}

// waitEmpty polls until the job has no process, for at most limit.
func (p *Process) waitEmpty(limit time.Duration) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		if p.active() == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (p *Process) watch() {
	err := p.cmd.Wait()
	st := Status{Code: p.cmd.ProcessState.ExitCode()}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		st.Err = err
	}
	if p.active() > 0 {
		st.Leftovers = true
		if !p.waitEmpty(p.c.grace()) {
			p.mu.Lock()
			_ = windows.TerminateJobObject(p.job, 1)
			p.mu.Unlock()
		}
	}
	st.StillRunning = !p.waitEmpty(KillBound)
	p.mu.Lock()
	if p.terminated {
		st.Signal = os.Kill
	}
	p.status = st
	windows.CloseHandle(p.job)
	close(p.done)
	p.mu.Unlock()
}
