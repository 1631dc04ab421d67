package main

import (
	"os"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// The demo checks its own scenarios (one winner, two exit-3 losers, a takeover after SIGKILL, inspect, a
// paused holder fenced off with the counter intact);
// this runs it as `make demo` does, so the README's first command keeps working.
func TestDemo(t *testing.T) {
	cosmostest.Get(t) // skip loudly (fail under CI) when no server can be started
	bin, cleanup, err := cosmostest.Build("../../cmd/cosmoslease")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var out strings.Builder
	if err := run(&out, bin, false); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"exited gracefully (exit code 3)", "took over", "epoch 2", "released", "Froze us-east-1 with SIGSTOP",
		"Cosmos DB refused us-east-1's write, and it stopped (exit code 4)", "no increment from the paused holder was applied"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("narration lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Fatal("ANSI escapes in output that is not a terminal")
	}
}
