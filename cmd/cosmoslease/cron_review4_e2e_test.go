//go:build linux || darwin

package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 23, item 3, as a user tried it: only westeurope runs the schedule, ranked after eastus, which is down; its
// failover delay (5 s) is more than twice the schedule's gap (2 s). Every occurrence runs once, in order, none
// beside another; after the first (5 s late) marks eastus absent and the backlog drains, they run on time. Before
// the fix cron's serial loop jumped to the latest due occurrence, and the occurrences in between ran nowhere.
func TestCronRunsEveryOccurrenceWhenTheDelayExceedsTheGap(t *testing.T) {
	e := env(t)
	if code := start(t, e, "inspect", "--emulator").wait(t); code != 0 {
		t.Fatalf("inspect exit %d", code)
	}
	ran := filepath.Join(t.TempDir(), "ran.log")
	p := start(t, e, "cron", "--emulator", "--json", "--schedule", "*/2 * * * * *", "--region", "westeurope", "--instance", "westeurope-vm",
		"--preferred-regions", "eastus,westeurope", "--failover-delay", "5s", "--lease", "gap", "--",
		"sh", "-c", `echo "$COSMOSLEASE_OCCURRENCE start $(date +%s.%N)" >> "`+ran+`"; sleep 0.5; echo "$COSMOSLEASE_OCCURRENCE end $(date +%s.%N)" >> "`+ran+`"`)
	p.waitEvent(t, "started")
	began := time.Now()
	time.Sleep(24 * time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130; stderr:\n%s", code, p.stderr.String())
	}
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ start, end float64 }
	runs := map[time.Time]*span{}
	var order []time.Time
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		occ, err := time.Parse(time.RFC3339, f[0])
		if err != nil || len(f) != 3 {
			t.Fatalf("command log line %q", line)
		}
		at, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			t.Fatalf("command log line %q: %v", line, err)
		}
		s := runs[occ]
		if s == nil {
			s = &span{}
			runs[occ] = s
		}
		switch f[1] {
		case "start":
			if s.start != 0 {
				t.Fatalf("occurrence %s ran twice", f[0])
			}
			s.start = at
			order = append(order, occ)
		case "end":
			s.end = at
		}
	}
	if !sort.SliceIsSorted(order, func(i, j int) bool { return order[i].Before(order[j]) }) {
		t.Fatalf("occurrences started in the order %v", order)
	}
	// Every occurrence from the first after the start to the last whose turn came well before the stop ran.
	first := began.Truncate(2 * time.Second).Add(2 * time.Second)
	last := began.Add(24*time.Second - 6*time.Second)
	for occ := first; !occ.After(last); occ = occ.Add(2 * time.Second) {
		if runs[occ.UTC()] == nil {
			t.Fatalf("occurrence %s ran nowhere; ran: %v", occ.UTC().Format(time.RFC3339), order)
		}
	}
	for i := 1; i < len(order); i++ {
		if prev, cur := runs[order[i-1]], runs[order[i]]; prev.end != 0 && cur.start < prev.end {
			t.Fatalf("occurrences %s and %s overlapped", order[i-1].Format(time.RFC3339), order[i].Format(time.RFC3339))
		}
	}
	// Once the backlog behind the first (5 s late) has drained, the occurrences no longer wait for eastus: each
	// starts well within the 5 s delay (how soon depends on the machine's load; the bubble test measures it exactly).
	for _, occ := range order[4:] {
		occSecs := float64(occ.UnixNano()) / 1e9
		if late := runs[occ].start - occSecs; late > 4 {
			t.Errorf("occurrence %s started %.1f s late; want less than the failover delay once eastus is marked absent", occ.Format(time.RFC3339), late)
		}
	}
}
