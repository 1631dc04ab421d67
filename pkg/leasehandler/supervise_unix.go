//go:build unix

package leasehandler

import (
	"os"
	"os/exec"
	"syscall"
)

// startSupervised starts cmd as the leader of a process group of its own (so that a script's children can be
// signalled with it), which on Linux also dies when the handler does (setDeathSignal).
func startSupervised(cmd *exec.Cmd) (group, error) {
	attr := &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(attr)
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return pgroup(cmd.Process.Pid), nil
}

type pgroup int

func (g pgroup) terminate() { _ = syscall.Kill(-int(g), syscall.SIGTERM) }
func (g pgroup) kill()      { _ = syscall.Kill(-int(g), syscall.SIGKILL) }

// exitStatus is the status a shell would report: the exit code, or 128 + the signal that ended the process.
func exitStatus(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}
