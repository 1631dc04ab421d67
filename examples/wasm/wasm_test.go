package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// buildJS compiles a main package for GOOS=js GOARCH=wasm and returns the module's path.
func buildJS(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js GOARCH=wasm go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// wasmExecNode is the helper Go ships to run a js/wasm module under Node.js (lib/wasm since Go 1.24, misc/wasm
// before).
func wasmExecNode(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	for _, dir := range []string{"lib", "misc"} {
		p := filepath.Join(strings.TrimSpace(string(root)), dir, "wasm", "wasm_exec_node.js")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("wasm_exec_node.js is not in $(go env GOROOT)/lib/wasm or misc/wasm")
	return ""
}

// plainNode runs a js/wasm module with `node`, so process.argv0 is "node" and net/http's own fetch transport is
// off: what every Node.js user gets.
func plainNode(t *testing.T, module string, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not on PATH: install Node.js 20 or newer")
	}
	return exec.Command("node", append([]string{wasmExecNode(t), module}, args...)...)
}

// The premise: under plain node, net/http's default transport cannot reach a server that is listening.
func TestNetHTTPCannotDialUnderPlainNode(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a js/wasm build run under node")
	}
	srv := cosmostest.Get(t)
	out, err := plainNode(t, buildJS(t, "./testdata/nethttp"), srv.Endpoint).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "dial tcp") {
		t.Fatalf("net/http under plain node: %v\n%s\nIf it now reaches the server, Go's js/wasm net/http uses fetch under Node.js and internal/jsfetch may be retired.", err, out)
	}
}

// The example, built for js/wasm and run under plain node against the local server: it acquires the lease at
// the next epoch, renews it by hand and automatically, and releases it; a Go contender sees it hold the lease at
// that epoch meanwhile, and takes it over at the next one afterwards.
func TestContenderUnderPlainNode(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a js/wasm build run under node")
	}
	srv := cosmostest.Get(t)
	if srv.ConnectionString == "" {
		t.Skip("the example reads a connection string (key auth)")
	}
	ctr := srv.NewContainer(t, cosmoslease.DefaultPartitionKeyPath)
	module := buildJS(t, ".")
	ctx := context.Background()
	goc, err := cosmoslease.Open(ctx, cosmoslease.Options{ConnectionString: srv.ConnectionString, Database: srv.Database,
		Container: ctr, OwnerID: "go-1", LeaseDuration: 3 * time.Second, RenewInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer goc.Close()
	first, err := goc.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}

	cmd := plainNode(t, module, "-owner", "wasm-1", "-lease", "job", "-hold", "2500ms", "-duration", "3s",
		"-database", srv.Database, "-container", ctr)
	cmd.Env = append(os.Environ(), "COSMOS_CONNECTION_STRING="+srv.ConnectionString)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	type event struct {
		Event    string `json:"event"`
		Owner    string `json:"owner"`
		Epoch    int64  `json:"epoch"`
		Renewals int64  `json:"renewals"`
		Released bool   `json:"released"`
	}
	events := make(chan event, 8)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	next := func(want string) event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok || e.Event != want {
				t.Fatalf("wasm contender: got %+v (open %t), want %q\nstderr:\n%s", e, ok, want, stderr.String())
			}
			return e
		case <-time.After(60 * time.Second):
			t.Fatalf("wasm contender: no %q event within 60 s\nstderr:\n%s", want, stderr.String())
		}
		return event{}
	}

	if e := next("acquired"); e.Owner != "wasm-1" || e.Epoch != 2 {
		t.Fatalf("acquired %+v, want wasm-1 at epoch 2", e)
	}
	var held *cosmoslease.HeldError
	if _, err := goc.TryAcquire(ctx, "job"); !errors.As(err, &held) || held.Holder.Owner != "wasm-1" || held.Holder.Epoch != 2 {
		t.Fatalf("the Go contender while the wasm one holds: %v", err)
	}
	if e := next("renewed"); e.Renewals != 1 {
		t.Fatalf("renewed %+v", e)
	}
	released := next("released")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wasm contender: %v\nstderr:\n%s", err, stderr.String())
	}
	if !released.Released || released.Renewals < 2 {
		t.Fatalf("released %+v: want the release after the manual renewal and at least one automatic one", released)
	}

	l, err := goc.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	if p := l.Previous(); l.Epoch() != 3 || p == nil || p.Owner != "wasm-1" || p.Epoch != 2 || !p.Released || p.Renewals != released.Renewals {
		t.Fatalf("the Go contender took over at epoch %d from %+v", l.Epoch(), p)
	}
}
