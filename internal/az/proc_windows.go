//go:build windows

package az

import (
	"os/exec"
	"strconv"
)

// killTree makes cmd's Cancel end az and every process it started: az.cmd runs python.exe, which may start
// more, and killing az.cmd alone would leave them holding its output pipes.
func killTree(cmd *exec.Cmd) {
	cmd.Cancel = func() error {
		if err := exec.Command("taskkill", "/T", "/F", "/PID", strconv.Itoa(cmd.Process.Pid)).Run(); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
}
