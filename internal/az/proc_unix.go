//go:build !windows

package az

import (
	"os/exec"
	"syscall"
)

// killTree makes cmd the leader of a process group of its own, and its Cancel kill that whole group: az is a
// Python process (behind a shell script on most installs) that may start children, and a child left running
// keeps az's output pipes open, so Wait would not return.
func killTree(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
