//go:build !linux

package cosmostest

import "os/exec"

func setParentDeathSignal(cmd *exec.Cmd) {}
