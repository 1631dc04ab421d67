package leasehandler

import (
	"os"
	"os/exec"
)

// startSupervised starts cmd. On Windows the command's own children are not stopped with it yet (a job object
// would do it).
func startSupervised(cmd *exec.Cmd) (group, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return winProc{cmd.Process}, nil
}

type winProc struct{ p *os.Process }

func (w winProc) terminate() { _ = w.p.Kill() }
func (w winProc) kill()      { _ = w.p.Kill() }

func exitStatus(st *os.ProcessState) int { return st.ExitCode() }
