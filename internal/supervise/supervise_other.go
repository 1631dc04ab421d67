//go:build !unix && !windows

package supervise

import (
	"errors"
	"os"
	"syscall"
)

const defaultPath = ""

var signalNames = map[syscall.Signal]string{}

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
	return nil
}

func isExecFormat(error) bool { return false }

var errUnsupported = errors.New("supervising a command is not supported on this platform")

// Process is a started command; no platform without Unix process groups or Windows job objects has one.
type Process struct{}

// Start always fails here.
func Start(c Cmd) (*Process, error) { return nil, errUnsupported }

func (p *Process) Pid() int                   { return 0 }
func (p *Process) Done() <-chan struct{}      { return nil }
func (p *Process) Wait() Status               { return Status{Err: errUnsupported} }
func (p *Process) Signal(sig os.Signal) error { return errUnsupported }
func (p *Process) Stop(sig os.Signal)         {}
func (p *Process) Kill()                      {}
