//go:build unix && !linux

package leasehandler

import "syscall"

// setDeathSignal does nothing here: only Linux has a parent-death signal. A command outlives a handler killed
// with SIGKILL on these systems, which the Functions host does not run on.
func setDeathSignal(*syscall.SysProcAttr) {}
