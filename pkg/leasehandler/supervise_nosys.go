//go:build !unix && !windows

package leasehandler

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
)

// startSupervised refuses: this system runs no commands (the package builds here only so that ./pkg/... does).
func startSupervised(*exec.Cmd) (group, error) {
	return nil, fmt.Errorf("command jobs cannot run on %s", runtime.GOOS)
}

func exitStatus(st *os.ProcessState) int { return st.ExitCode() }
