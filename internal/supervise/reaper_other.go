//go:build unix && !linux

package supervise

import "syscall"

// becomeSubreaper does nothing here: without a subreaper, orphans of the group go to init, which reaps them,
// and the reaper polls the group until no member is left.
func becomeSubreaper() {}

// commandAttr starts the command as the leader of a new process group.
func commandAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
