package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

var t0 = time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func acquired(proc string, epoch int64, ms int) ev {
	return ev{Event: "acquired", Epoch: epoch, proc: proc, at: at(ms + 5), acq: at(ms)}
}
func work(proc string, epoch int64, ms int) ev {
	return ev{Event: "work", Epoch: epoch, proc: proc, at: at(ms)}
}

// The checker must find each kind of violation, and none in a clean history.
func TestCheckerFindsViolations(t *testing.T) {
	lease, retry, slack := 3*time.Second, 250*time.Millisecond, time.Second
	clean := []ev{acquired("a#1", 1, 0), work("a#1", 1, 100), work("a#1", 1, 2000), acquired("b#1", 2, 4000), work("b#1", 2, 4100)}
	if v := check(clean, 2, nil, lease, retry, slack); len(v.violations) != 0 || v.acquisitions != 2 {
		t.Fatalf("clean history: %+v", v)
	}
	for _, tc := range []struct {
		name   string
		events []ev
		final  int64
		bursts []window
		want   string
	}{
		{"superseded holder works", []ev{acquired("a#1", 1, 0), acquired("b#1", 2, 4000), work("a#1", 1, 4500)}, 2, nil, "a#1 worked at epoch 1"},
		{"two holders of one epoch", []ev{acquired("a#1", 1, 0), acquired("b#1", 1, 10)}, 1, nil, "epoch 1 acquired twice"},
		{"epochs go back in time", []ev{acquired("a#1", 2, 0), acquired("b#1", 3, -100)}, 3, nil, "not after epoch 2"},
		{"document reset", []ev{acquired("a#1", 1, 0), acquired("b#1", 2, 4000)}, 1, nil, "ends at epoch 1"},
		{"no holder for too long", []ev{acquired("a#1", 1, 0), work("a#1", 1, 100), acquired("b#1", 2, 9000)}, 2, nil, "no holder for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := check(tc.events, tc.final, tc.bursts, lease, retry, slack)
			if len(v.violations) == 0 || !strings.Contains(strings.Join(v.violations, "\n"), tc.want) {
				t.Fatalf("violations %q, want one saying %q", v.violations, tc.want)
			}
		})
	}
	// The same long gap is fine when the network was disturbed for everyone for most of it.
	long := []ev{acquired("a#1", 1, 0), work("a#1", 1, 100), acquired("b#1", 2, 9000)}
	if v := check(long, 2, []window{{from: at(1000), to: at(7000)}}, lease, retry, slack); len(v.violations) != 0 {
		t.Fatalf("a gap covered by a burst counted against liveness: %v", v.violations)
	}
}

// A short chaos run, part of the normal tests: processes, proxy, faults, checker. Zero violations.
func TestShortChaosRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a one-minute chaos run")
	}
	cosmostest.Get(t)
	bin, cleanup, err := cosmostest.Build("../../cmd/cosmoslease")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var out strings.Builder
	rep, err := run(context.Background(), config{bin: bin, keys: 2, perKey: 3, duration: 60 * time.Second, lease: 3 * time.Second,
		renew: time.Second, work: 100 * time.Millisecond, holdMin: 200 * time.Millisecond, holdMax: 6 * time.Second,
		latency: 20 * time.Millisecond, chaosEvery: time.Second, fence: true}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.violations != 0 {
		t.Fatalf("%d violations", rep.violations)
	}
	if rep.acquisitions < 10 || rep.faults["sigkill"] == 0 || rep.faults["documents"] == 0 || rep.faults["staleRead"] == 0 || rep.counterWrites < 100 {
		t.Fatalf("the run did too little to mean anything: %+v", rep)
	}
}
