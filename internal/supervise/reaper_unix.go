//go:build unix

package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A program that imports this package becomes the reaper when Start runs it with reaperEnv set: before main,
// and before the program has done anything of its own.
func init() {
	if os.Getenv(reaperEnv) == "" {
		return
	}
	os.Exit(reap(os.Args))
}

// reap is the reaper: it starts the command as the leader of a new process group, passes the supervisor's
// signals to the group, stops the group when the supervisor dies or when the command exits leaving processes of
// its group behind, and reports how the command ended once the group is gone.
//
// Its arguments are the grace in nanoseconds, the command's path, and the command's argv. fd 3 is the control
// pipe (lines "sig N"; end-of-file when the supervisor has died); fd 4 takes the report: "pid N" once the command
// runs, or "fail ERRNO" when it cannot be started, and at the end "exit WAITSTATUS LEFTOVERS STILLRUNNING".
//
// It runs in init, where the main goroutine is locked to the main thread: the command's parent-death signal is
// tied to the thread that forks it, and the main thread lasts as long as the process.
func reap(args []string) int {
	if len(args) < 4 {
		fmt.Fprintln(os.Stderr, "cosmoslease-supervise: this is a reaper started by the supervise package, not a command to run by hand")
		return 2
	}
	graceNs, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil || graceNs <= 0 {
		fmt.Fprintf(os.Stderr, "cosmoslease-supervise: bad grace %q\n", args[1])
		return 2
	}
	grace := time.Duration(graceNs)
	path, argv := args[2], args[3:]
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	ctl, report := os.NewFile(3, "control"), os.NewFile(4, "report")
	// Signals for the reaper itself (a unit manager's SIGTERM to every process it started) are not its to act on:
	// the supervisor decides. Handled, not ignored, so the command starts with the default dispositions.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	becomeSubreaper()

	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, reaperEnv+"=") {
			env = append(env, kv)
		}
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}, Sys: commandAttr()})
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.EINVAL
		}
		fmt.Fprintf(report, "fail %d\n", int(errno))
		return 0
	}
	fmt.Fprintf(report, "pid %d\n", pid)

	signals := make(chan syscall.Signal)
	orphaned := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(ctl)
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "sig ")); err == nil {
				signals <- syscall.Signal(n)
			}
		}
		close(orphaned) // end-of-file: the supervisor has died (or has finished with us)
	}()
	exited := make(chan syscall.WaitStatus, 1)
	gone := make(chan struct{})
	go func() {
		reapGroup(pid, exited)
		close(gone)
	}()

	var (
		mainStatus       = -1
		leftovers, stuck bool
		killAt, giveUpAt <-chan time.Time
		group            = -pid
		// termed: the group has had its SIGTERM (from the supervisor, or from us). A second one could end a
		// process in the middle of its own clean-up (a trap that runs a command of its own).
		termed    bool
		stopGroup = func() {
			if !termed {
				termed = true
				_ = syscall.Kill(group, syscall.SIGTERM)
			}
			if killAt == nil && giveUpAt == nil {
				killAt = time.After(grace)
			}
		}
	)
loop:
	for {
		select {
		case sig := <-signals:
			termed = termed || sig == syscall.SIGTERM
			_ = syscall.Kill(group, sig)
			if sig == syscall.SIGKILL && giveUpAt == nil {
				killAt, giveUpAt = nil, time.After(KillBound)
			}
		case <-orphaned:
			orphaned = nil
			stopGroup()
		case ws := <-exited:
			mainStatus = int(ws)
			// Anything of the group still alive (beyond the zombies just reaped) outlived the command.
			reapZombies(pid)
			if syscall.Kill(group, 0) == nil {
				// When the group is being stopped already, what remains is still on its way out.
				leftovers = !termed
				stopGroup()
			}
		case <-killAt:
			killAt = nil
			_ = syscall.Kill(group, syscall.SIGKILL)
			giveUpAt = time.After(KillBound)
		case <-giveUpAt:
			stuck = true
			break loop
		case <-gone:
			break loop
		}
	}
	if mainStatus < 0 {
		select {
		case ws := <-exited:
			mainStatus = int(ws)
		default:
			stuck = true
		}
	}
	fmt.Fprintf(report, "exit %d %s %s\n", mainStatus, bit(leftovers), bit(stuck))
	return 0
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// reapGroup reaps the members of the process group pgid that are this process's children, sends the status of
// the leader (the command) to exited, and returns when the group is gone. With the subreaper set, every member
// whose parent exits becomes our child, so the group is gone when no child of ours is left in it; members that
// are not our children (no subreaper, or a parent that left the group) are polled for.
func reapGroup(pgid int, exited chan<- syscall.WaitStatus) {
	leader := false
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
		case err != nil:
			if !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
				time.Sleep(10 * time.Millisecond) // members that are not our children: poll for them
				continue
			}
			if !leader {
				// The command left its own process group (setpgid, setsid): wait for it alone.
				for {
					pid, err := syscall.Wait4(pgid, &ws, 0, nil)
					if errors.Is(err, syscall.EINTR) {
						continue
					}
					if err == nil && pid == pgid {
						exited <- ws
					}
					break
				}
			}
			return
		case pid == pgid:
			leader = true
			exited <- ws
		}
	}
}

// reapZombies reaps the members of the group that have already exited.
func reapZombies(pgid int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}
