package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// The demo checks its own scenarios (one winner, two exit-3 losers, a takeover after SIGKILL, inspect, a
// paused holder fenced off with the counter intact, three regions' Functions handlers: the preferred region runs
// each occurrence, after its SIGKILL the very next occurrence runs in the next region one failover delay late, a
// new process of it takes the work back, and inspect --runs shows every occurrence run once, none missed; a pause
// that every region obeys, a manual run while paused that runs once in eastus, a resume; a
// job under `run -- COMMAND` whose standby starts only once the killed holder's job and its child are gone);
// this runs it as `make demo` does, so the README's first command keeps working.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the whole demo (make demo runs it)")
	}
	cosmostest.Get(t) // skip loudly (fail under CI) when no server can be started
	bin, cleanup, err := cosmostest.Build("../../cmd/cosmoslease")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	handler, cleanupHandler, err := functionshost.Build("")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanupHandler()
	var out strings.Builder
	if err := run(&out, bin, handler, false); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"exited gracefully (exit code 3)", "took over", "epoch 2", "released", "Froze us-east-1 with SIGSTOP",
		"Cosmos DB refused us-east-1's write, and it stopped (exit code 4)", "no increment from the paused holder was applied",
		"The very next occurrence", "ran in westeurope", "eastus-2 executed occurrence", "No occurrence of \"*/3 * * * * *\" missed",
		"ran once: eastus until it was killed, westeurope from the very next occurrence, eastus\n  again from its return; none missed",
		"Scenario 7 — operating", "skipped: paused by operator", "manual run executed at epoch", "manual run of lease timer-singleton: completed in eastus",
		"The manual run ran once, in eastus", "completed (manual)", "Resumed: the next occurrence ran in eastus again",
		"us-east-1's job (pid", "at epoch 2, and found no process of the first job alive", "and run exited 130"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("narration lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Fatal("ANSI escapes in output that is not a terminal")
	}
}

// checkRuns is what makes the demo fail when inspect --runs does not show every occurrence once, in the region
// that ran it, with none missed; here on tables as inspect prints them.
func TestCheckRuns(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, "2026-12-06T04:25:"+s+"Z"); return v }
	history := []ran{{at("21"), "eastus", "eastus-1"}, {at("24"), "westeurope", "westeurope-1"}, {at("27"), "eastus", "eastus-2"}}
	table := `Runs of lease timer-singleton, newest first (the 50 newest records; --limit N for more):
OCCURRENCE            REGION      INSTANCE      EPOCH  STATUS     LATE   TOOK  EXIT  PAST DUE  ERROR OR REASON
2026-12-06 04:25:27Z  eastus      eastus-2      3      completed  12ms   2ms   -     no        -
2026-12-06 04:25:24Z  westeurope  westeurope-1  2      completed  1.0s   2ms   -     no        -
2026-12-06 04:25:21Z  eastus      eastus-1      1      completed  10ms   1ms   -     no        -
No occurrence of "*/3 * * * * *" missed from 2026-12-06 04:25:21Z to 2026-12-06 04:25:27Z.
`
	if err := checkRuns(table, history, at("27")); err != nil {
		t.Fatalf("a table showing it all: %v", err)
	}
	for name, bad := range map[string]string{
		"another region": strings.Replace(table, "westeurope  westeurope-1", "eastus      eastus-1    ", 1),
		"a missed row": strings.Replace(table, "2026-12-06 04:25:24Z  westeurope  westeurope-1  2      completed",
			"2026-12-06 04:25:24Z  -           -             -      missed   ", 1),
		"a record missing":        strings.Replace(table, "2026-12-06 04:25:24Z  westeurope  westeurope-1  2      completed  1.0s   2ms   -     no        -\n", "", 1),
		"one run twice":           strings.Replace(table, "2026-12-06 04:25:21Z", "2026-12-06 04:25:27Z", 1),
		"abandoned":               strings.Replace(table, "2      completed", "2      abandoned", 1),
		"no window":               strings.Replace(table, "No occurrence", "Missed: 1 occurrence(s)", 1),
		"short window":            strings.Replace(table, "to 2026-12-06 04:25:27Z", "to 2026-12-06 04:25:24Z", 1),
		"short window, explained": strings.Replace(table, "to 2026-12-06 04:25:27Z.", "to 2026-12-06 04:25:24Z; the 1 newer listed occurrence(s) are within their claim window (19s)", 1),
	} {
		if err := checkRuns(bad, history, at("27")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
