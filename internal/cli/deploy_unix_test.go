//go:build !windows

package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Item 2: a region whose az never returns is reported as timed out within --timeout, and az is stopped with the
// child it started; the other regions are deployed and verified as usual; exit 1.
func TestDeployTimesOutARegion(t *testing.T) {
	h := newHarness(t)
	h.dir = userModule(t, "timeout")
	h.prebuilt = true // about az; TestDeployToEveryRegion tests the build
	recordSetup(t, h.dir)
	newLeaseStatusStandIn(t, h)
	log := h.stubAz("ok", "AZ_STUB_HANG_APPS=func-abc123-1")
	done := make(chan result, 1)
	go func() { done <- h.run("deploy", "--timeout", "3s") }()
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute): // a build and three regions; the hung az sleeps for 10 minutes
		t.Fatal("deploy did not return")
	}
	r.expect(t, ExitError, "[2/3] westeurope: func-abc123-1 timed out after 3s (--timeout): the package may be deployed; check the app",
		"[3/3] eastus: func-abc123-0 answers:", "1 of 3 regions did not deploy and answer (westeurope timed out; the reasons are above)")
	if !strings.Contains(r.stdout, "func-abc123-1            timed out: the package may be deployed; check the app") ||
		!strings.Contains(r.stdout, "func-abc123-2            "+answered) || !strings.Contains(r.stdout, "func-abc123-0            "+answered) {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	b, err := os.ReadFile(log + ".hang.func-abc123-1")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for i := 0; processRuns(pid); i++ {
		if i == 100 {
			t.Fatalf("the hung az's child (pid %d) still runs", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.run("deploy", "--timeout", "0s").expect(t, ExitUsage, "--timeout 0s: give a positive duration")
}

// processRuns reports whether pid is a live process (not a zombie).
func processRuns(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err)
	}
	s := string(b)
	return !strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
}
