package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func counted(proc string, epoch, value int64, ms int) ev {
	e := work(proc, epoch, ms)
	e.Counter = &value
	return e
}

// The counter checker finds each kind of violation in synthetic histories, and none in a clean one (where a
// superseded holder's write that came before any later epoch's write is fine).
func TestCounterCheckerFindsViolations(t *testing.T) {
	clean := []ev{counted("a#1", 1, 1, 0), counted("a#1", 1, 2, 100), counted("a#1", 1, 3, 5000), counted("b#1", 2, 4, 4000),
		{Event: "fenced", Epoch: 1, FencedBy: 2, proc: "a#1"}}
	if v := checkCounter(clean, counterState{Exists: true, Value: 4, Fence: 2}); len(v.violations) != 0 || v.writes != 4 || v.fenced != 1 {
		t.Fatalf("clean history: %+v", v)
	}
	for _, tc := range []struct {
		name   string
		events []ev
		final  counterState
		want   string
	}{
		{"superseded write accepted", []ev{counted("a#1", 1, 1, 0), counted("b#1", 2, 2, 4000), counted("a#1", 1, 3, 4500)},
			counterState{Exists: true, Value: 3, Fence: 2}, "a#1 at epoch 1 after value 2 by b#1 at epoch 2"},
		{"lost update", []ev{counted("a#1", 1, 1, 0), counted("b#1", 2, 1, 4000)}, counterState{Exists: true, Value: 1, Fence: 2}, "written twice"},
		{"counter went back", []ev{counted("a#1", 1, 1, 0), counted("a#1", 1, 2, 100)}, counterState{Exists: true, Value: 1, Fence: 1}, "ends at 1"},
		{"stored epoch went back", []ev{counted("a#1", 1, 1, 0), counted("b#1", 2, 2, 4000)}, counterState{Exists: true, Value: 2, Fence: 1}, "stored epoch ends at 1"},
		{"counter deleted", []ev{counted("a#1", 1, 1, 0)}, counterState{}, "gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := checkCounter(tc.events, tc.final)
			if !strings.Contains(strings.Join(v.violations, "\n"), tc.want) {
				t.Fatalf("violations %q, want one saying %q", v.violations, tc.want)
			}
		})
	}
}

// The checker catches what the fence prevents, in a history made by real processes: a holder that works
// without checking its lease (the hidden --skip-lease-check) is frozen with SIGSTOP past its lease, a standby
// takes over and increments the counter, and the frozen holder is resumed. With the counter written without
// the fence (--unfenced-counter), its next increment is accepted and the checker reports it; through the fence,
// Cosmos DB refuses it, the holder says so and exits 4, and the checker finds nothing.
func TestPausedHolderAgainstTheCounterChecker(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a chaos run with paused holders")
	}
	srv := cosmostest.Get(t)
	bin, cleanup, err := cosmostest.Build("../../cmd/cosmoslease")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	for _, unfenced := range []bool{true, false} {
		t.Run(fmt.Sprintf("unfenced=%v", unfenced), func(t *testing.T) {
			events, final, code := pausedHolder(t, srv, bin, unfenced)
			cv := checkCounter(events, final)
			v := check(events, 2, nil, 3*time.Second, 250*time.Millisecond, 2*time.Second)
			all := append(v.violations, cv.violations...)
			t.Logf("paused holder exited %d; %d counter writes; violations: %q", code, cv.writes, all)
			if unfenced {
				if !strings.Contains(strings.Join(cv.violations, "\n"), "a superseded holder's write was accepted") {
					t.Fatalf("the checker missed the paused holder's unfenced write: %q", all)
				}
				return
			}
			if len(all) != 0 {
				t.Fatalf("violations through the fence: %q", all)
			}
			last := events[len(events)-1]
			if code != 4 || cv.fenced != 1 || last.proc != "a" || last.Event != "fenced" || last.FencedBy != 2 {
				t.Fatalf("the paused holder exited %d with last event %+v; want exit 4 after being fenced off by epoch 2", code, last)
			}
		})
	}
}

// pausedHolder plays the scenario and returns every event (the paused holder's tagged as skipping its check), the
// counter as it ends, and the paused holder's exit code.
func pausedHolder(t *testing.T, srv *cosmostest.Server, bin string, unfenced bool) ([]ev, counterState, int) {
	t.Helper()
	ctx := context.Background()
	container := fmt.Sprintf("paused-%d", time.Now().UnixNano())
	if err := emulator.EnsureContainer(ctx, srv.Endpoint, srv.Database, container, "/leaseKey"); err != nil {
		t.Fatal(err)
	}
	const key = "paused"
	env := append(os.Environ(), "CosmosLeasing__DatabaseName="+srv.Database, "CosmosLeasing__ContainerName="+container, "COSMOSLEASE_LOG_LEVEL=error")
	opts := cosmoslease.Options{Database: srv.Database, Container: container, OwnerID: "checker", Endpoint: srv.Endpoint}
	if srv.ConnectionString != "" {
		env = append(env, "CosmosLeasing__ConnectionString="+srv.ConnectionString)
		opts.ConnectionString = srv.ConnectionString
	} else {
		env = append(env, "CosmosLeasing__AccountEndpoint="+srv.Endpoint)
	}
	args := []string{"run", "--wait", "--json", "--lease", key, "--duration", "3s", "--renew-interval", "1s", "--work-interval", "100ms",
		"--fence-counter", counterID(key)}
	if unfenced {
		args = append(args, "--unfenced-counter")
	}
	var mu sync.Mutex
	var events []ev
	start := func(name string, extra ...string) (*exec.Cmd, <-chan int) {
		cmd := exec.Command(bin, append(append(append([]string{}, args...), "--instance", name), extra...)...)
		cmd.Env, cmd.Stderr = env, io.Discard
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		code := make(chan int, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if e, ok := parseEvent(name, sc.Bytes()); ok {
					e.skipped = name == "a"
					mu.Lock()
					events = append(events, e)
					mu.Unlock()
				}
			}
			_ = cmd.Wait()
			code <- cmd.ProcessState.ExitCode()
		}()
		return cmd, code
	}
	works := func(name string, epoch int64) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range events {
			if e.proc == name && e.Event == "work" && e.Epoch == epoch {
				n++
			}
		}
		return n
	}
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a, aCode := start("a", "--skip-lease-check", "--hold-for", "60s")
	waitUntil("a works", func() bool { return works("a", 1) >= 3 })
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	_, bCode := start("b", "--hold-for", "1s")
	select {
	case c := <-bCode:
		if c != 0 || works("b", 2) == 0 {
			t.Fatalf("the standby exited %d after %d work items at epoch 2", c, works("b", 2))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the standby did not take over, work and release within 30 s")
	}
	before := works("a", 1)
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	code := -1
	if unfenced {
		// Nothing stops it: let it write once more, then interrupt it.
		waitUntil("a works after resuming", func() bool { return works("a", 1) > before })
		_ = a.Process.Signal(syscall.SIGINT)
	}
	select {
	case code = <-aCode:
	case <-time.After(20 * time.Second):
		t.Fatal("the resumed holder did not stop within 20 s")
	}

	client, err := cosmoslease.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	final, err := readCounter(ctx, client, key)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return events, final, code
}
