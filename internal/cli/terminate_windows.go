//go:build windows

package cli

import "os"

// terminate asks a process to stop. Windows has no SIGTERM for a process without a console of its own, so it
// ends at once.
func terminate(p *os.Process) error { return p.Kill() }
