// Package supervise runs a command in a process group of its own, stops the whole group (not only the process
// it started), and makes the group die with the supervising process however that process ends, SIGKILL
// included. `cosmoslease run -- COMMAND`, `cosmoslease cron -- COMMAND` and the Functions handler's command jobs
// run their commands through it, so a script's children never outlive the lease they ran under.
//
// # How the group dies with its supervisor
//
// On Unix, Start does not start the command itself. It starts a copy of the running program as a small reaper
// (the program's own executable, recognised in this package's init before main runs), and the reaper starts the
// command as the leader of a new process group. The reaper holds the read end of a pipe whose write end only the
// supervisor holds: when the supervisor dies, by any signal, the kernel closes the write end and the reaper reads
// end-of-file. It then stops the group as Stop does (SIGTERM to the group, SIGKILL after Grace) and exits. A
// parent-death signal (Linux's Pdeathsig) alone would not do: it reaches only the direct child, not a script's
// children, and it fires when the thread that started the child ends, which in Go is not the process ending.
// The reaper does set it on the command (SIGKILL), so that a reaper killed on its own takes the command with it.
//
// On Linux the reaper is also a child subreaper (PR_SET_CHILD_SUBREAPER): processes of the group whose parent
// exits are re-parented to it, so it reaps them and knows exactly when the group is gone. Elsewhere it polls the
// group until no member is left.
//
// On Windows the command runs in a job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE; only the supervisor holds
// the job's handle, so the job's processes are ended when the supervisor ends. A stop ends the job at once:
// Windows has no SIGTERM for a process without a console of its own.
//
// # What the group is
//
// The group is the command and every process it starts that stays in its process group (on Windows, in its
// job). A process that leaves the group on purpose (setsid, setpgid, a double fork into a new session) leaves
// this supervision too, as it does systemd's without cgroups and `consul lock`'s.
//
// # When the command exits
//
// Wait returns when the command has exited and its group is gone. If the command exits while processes of its
// group still run (a shell script's `sleep 300 &`), they get SIGTERM and, after Grace, SIGKILL; Status.Leftovers
// says so. So whoever waits never releases a lease while something the command started still runs.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultGrace is the grace of a Cmd whose Grace is zero.
const DefaultGrace = 10 * time.Second

// KillBound is how long the group may take to end after SIGKILL before Wait gives up and reports it still
// running. A process that got SIGKILL runs no more of its own code, but one in an uninterruptible system call
// (a hung network file system) finishes that call first.
const KillBound = 2 * time.Second

// Cmd is a command to supervise.
type Cmd struct {
	// Argv is the command and its arguments. Argv[0] is looked up in the PATH of Env unless it contains a path
	// separator; a relative path is relative to Dir.
	Argv []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// Env is the command's whole environment; nil means the supervisor's.
	Env []string
	// Stdout and Stderr receive the command's output; nil discards it (as os/exec does). Standard input is
	// always the null device.
	Stdout, Stderr io.Writer
	// Grace is how long the group has to exit after SIGTERM before it gets SIGKILL: when Stop is called, when the
	// command exits leaving processes of its group running, and when the supervisor dies. Zero means
	// DefaultGrace.
	Grace time.Duration
}

func (c *Cmd) grace() time.Duration {
	if c.Grace > 0 {
		return c.Grace
	}
	return DefaultGrace
}

// Status is how a supervised command ended.
type Status struct {
	// Code is the exit code as a shell reports it: the command's exit status; 128+n when signal n ended it;
	// 127 when it was not found and 126 when it could not be executed (Err then says why).
	Code int
	// Signal is the signal that ended the command, or nil.
	Signal os.Signal
	// Leftovers is true when processes of the command's group were still running after the command exited of
	// its own accord (not stopped), and were stopped (SIGTERM, then SIGKILL after the grace).
	Leftovers bool
	// StillRunning is true when processes of the group were still there KillBound after SIGKILL (a process in
	// uninterruptible sleep), or when the group's end could not be confirmed.
	StillRunning bool
	// Err is set when the command could not be started (a *StartError), or when the supervision itself failed.
	Err error
}

func (s Status) String() string {
	switch {
	case s.Err != nil:
		return s.Err.Error()
	case s.Signal != nil:
		return fmt.Sprintf("killed by %s", SignalName(s.Signal))
	}
	return fmt.Sprintf("exit status %d", s.Code)
}

// StartError says why a command cannot be started. Code is what a shell would exit with: 127 when the command
// is not found, 126 when it is found but cannot be executed.
type StartError struct {
	Name   string // Argv[0] as given
	Code   int
	Reason string // "not found", "permission denied", …
	Hint   string // how to fix it, or empty
	Err    error  // the underlying error, if any
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("cannot run %s: %s", e.Name, e.Reason)
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

func (e *StartError) Unwrap() error { return e.Err }

// Check says whether argv can be executed from dir with the environment env (nil: the supervisor's), and
// returns the path it resolves to. It is what Start checks first; a caller that starts the command only later
// (after winning a lease, at an occurrence a day away) calls it up front, so a misspelt command is reported at
// once. A *StartError says what is wrong.
func Check(argv []string, dir string, env []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", &StartError{Name: `""`, Code: 127, Reason: "no command given"}
	}
	name := argv[0]
	if strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		path := name
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
		var first error
		for _, path := range candidates(path) {
			err := checkExecutable(path)
			if err == nil {
				return filepath.Abs(path)
			}
			if first == nil || errors.Is(first, os.ErrNotExist) && !errors.Is(err, os.ErrNotExist) {
				first = err
			}
		}
		return "", startError(name, first)
	}
	pathEnv, ok := lookupEnv(env, "PATH")
	if !ok {
		pathEnv = defaultPath
	}
	var denied error
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			// A relative PATH entry would resolve differently in every working directory; a shell accepts it, the
			// Go runtime refuses it (exec.ErrDot), and so do we.
			continue
		}
		for _, path := range candidates(filepath.Join(d, name)) {
			err := checkExecutable(path)
			if err == nil {
				return path, nil
			}
			if !errors.Is(err, os.ErrNotExist) && denied == nil {
				denied = err
			}
		}
	}
	if denied != nil {
		return "", startError(name, denied)
	}
	return "", &StartError{Name: name, Code: 127, Reason: "not found in PATH", Hint: "give its path, such as ./" + name + ", or install it", Err: os.ErrNotExist}
}

func lookupEnv(env []string, key string) (string, bool) {
	if env == nil {
		return os.LookupEnv(key)
	}
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && envKeyEqual(k, key) {
			return v, true
		}
	}
	return "", false
}

// startError turns the reason a file cannot be executed into a StartError.
func startError(name string, err error) *StartError {
	e := &StartError{Name: name, Code: 126, Err: err}
	switch {
	case errors.Is(err, os.ErrNotExist):
		e.Code, e.Reason = 127, "not found"
	case errors.Is(err, errIsDir):
		e.Reason = "is a directory"
	case errors.Is(err, errNotExecutable):
		e.Reason, e.Hint = "permission denied", "it is not executable: chmod +x "+name
	case errors.Is(err, os.ErrPermission):
		e.Reason = "permission denied"
	case isExecFormat(err):
		e.Reason, e.Hint = "exec format error", "a script needs a first line such as #!/bin/sh"
	default:
		e.Reason = err.Error()
	}
	return e
}

var (
	errIsDir         = errors.New("is a directory")
	errNotExecutable = errors.New("not executable")
)

// Run starts c and waits until it has exited and its group is gone. When ctx ends first, the group gets SIGTERM
// and, after the grace, SIGKILL (Stop). A command that cannot be started gives a Status whose Err is a
// *StartError and whose Code is 126 or 127.
func Run(ctx context.Context, c Cmd) Status {
	p, err := Start(c)
	if err != nil {
		return failed(err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(nil)
	}
	return p.Wait()
}

// failed is the Status of a command that did not start.
func failed(err error) Status {
	var se *StartError
	if errors.As(err, &se) {
		return Status{Code: se.Code, Err: err}
	}
	return Status{Code: 126, Err: err}
}

// SignalName is a signal's conventional name, such as SIGTERM.
func SignalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if n, ok := signalNames[sig]; ok {
			return n
		}
	}
	return s.String()
}
