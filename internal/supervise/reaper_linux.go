package supervise

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes the processes of the group whose parent exits the reaper's children, so it reaps them
// and sees exactly when the group is gone.
func becomeSubreaper() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }

// commandAttr starts the command as the leader of a new process group, killed if the reaper itself dies.
func commandAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
