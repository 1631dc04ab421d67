package leasehandler

import "syscall"

// setDeathSignal has the kernel kill the command when the handler dies: the host ends a handler with SIGKILL,
// which leaves it no moment to stop its children.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
