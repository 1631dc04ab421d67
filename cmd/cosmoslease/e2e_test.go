//go:build linux || darwin

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/creack/pty"
	"github.com/hinshun/vt10x"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

var binary string

func TestMain(m *testing.M) { os.Exit(cosmostest.MainWithBinary(m, ".", &binary)) }

// proc is one cosmoslease process whose JSON events are collected as they arrive.
type proc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	mu     sync.Mutex
	events []map[string]any
	done   chan struct{}
	code   int
}

// env is the environment every process of one test shares: the real server, a container of the test's own.
func env(t *testing.T) []string {
	srv := cosmostest.Get(t)
	return append(os.Environ(), "COSMOSLEASE_EMULATOR_ENDPOINT="+srv.Endpoint, "CosmosLeasing__DatabaseName="+srv.Database,
		"CosmosLeasing__ContainerName=e2e-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), "CI=")
}

func start(t *testing.T, environ []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = environ
	p.cmd.Dir = t.TempDir()
	p.cmd.Stderr = &p.stderr
	// A command's process left running (what the cron tests look for) would hold the output pipes open.
	p.cmd.WaitDelay = 5 * time.Second
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.mu.Lock()
				p.events = append(p.events, m)
				p.mu.Unlock()
			}
		}
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = -int(ws.Signal())
		}
		close(p.done)
	}()
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(60 * time.Second):
		t.Fatalf("process did not exit; stderr:\n%s", p.stderr.String())
		return 0
	}
}

func (p *proc) waitEvent(t *testing.T, name string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if e := p.find(name); e != nil {
			return e
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q event; stderr:\n%s", name, p.stderr.String())
	return nil
}

func (p *proc) find(name string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e["event"] == name {
			return e
		}
	}
	return nil
}

func (p *proc) last(name string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		if p.events[i]["event"] == name {
			return p.events[i]
		}
	}
	return nil
}

func eventTime(t *testing.T, e map[string]any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, e["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

var fast = []string{"--duration", "3s", "--renew-interval", "1s", "--work-interval", "200ms", "--json", "--emulator"}

func TestFiveStartedTogetherOneWins(t *testing.T) {
	e := env(t)
	// Create the container first, so the five race for the lease and not for provisioning.
	if code := start(t, e, "inspect", "--emulator").wait(t); code != 0 {
		t.Fatalf("inspect exit %d", code)
	}
	var procs []*proc
	for i := range 5 {
		procs = append(procs, start(t, e, append([]string{"run", "--instance", fmt.Sprintf("i%d", i), "--hold-for", "2s"}, fast...)...))
	}
	codes := map[int]int{}
	for _, p := range procs {
		codes[p.wait(t)]++
	}
	if codes[0] != 1 || codes[3] != 4 {
		var errs []string
		for _, p := range procs {
			errs = append(errs, p.stderr.String())
		}
		t.Fatalf("exit codes %v, want one 0 and four 3\n%s", codes, strings.Join(errs, "\n"))
	}
	for _, p := range procs {
		if p.code == 3 && (p.find("held") == nil || p.find("acquired") != nil || p.find("work") != nil) {
			t.Fatalf("a loser acquired or worked: %v", p.events)
		}
	}
}

func TestKilledHolderIsTakenOverByStandby(t *testing.T) {
	e := env(t)
	holder := start(t, e, append([]string{"run", "--instance", "us-east-1", "--region", "us-east"}, fast...)...)
	holder.waitEvent(t, "work")
	standby := start(t, e, append([]string{"run", "--instance", "eu-west-1", "--region", "eu-west", "--wait", "--hold-for", "1s"}, fast...)...)
	standby.waitEvent(t, "held")
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.wait(t)
	if code := standby.wait(t); code != 0 {
		t.Fatalf("standby exit %d: %s", code, standby.stderr.String())
	}
	takeover := standby.find("takeover")
	acquired := standby.find("acquired")
	if takeover == nil || takeover["from"] != "us-east-1" || takeover["reason"] != "expired" || acquired["epoch"].(float64) != 2 {
		t.Fatalf("standby events: %v", standby.events)
	}
	// The killed holder's last work came before the standby acquired.
	if lw := holder.last("work"); lw != nil && !eventTime(t, lw).Before(eventTime(t, acquired)) {
		t.Fatalf("holder worked at %v, after the standby acquired at %v", lw["time"], acquired["time"])
	}
}

func TestInterruptReleases(t *testing.T) {
	e := env(t)
	p := start(t, e, append([]string{"run", "--instance", "us-east-1"}, fast...)...)
	p.waitEvent(t, "work")
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130; stderr:\n%s", code, p.stderr.String())
	}
	if p.find("released") == nil {
		t.Fatalf("no released event: %v", p.events)
	}
	// Released means the next instance acquires at once.
	q := start(t, e, append([]string{"run", "--instance", "eu-west-1", "--hold-for", "200ms"}, fast...)...)
	if code := q.wait(t); code != 0 || q.find("takeover")["reason"] != "released" {
		t.Fatalf("after release: exit %d, events %v", code, q.events)
	}
}

func TestNoTerminalNoConfigFailsNamingTheWays(t *testing.T) {
	cmd := exec.Command(binary, "run", "--instance", "a")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	cmd.Stdin = strings.NewReader("https://typed.example/\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2; stderr:\n%s", err, stderr.String())
	}
	for _, s := range []string{"cosmoslease configure", "CosmosLeasing__AccountEndpoint", "--endpoint"} {
		if !strings.Contains(stderr.String(), s) {
			t.Fatalf("stderr lacks %q:\n%s", s, stderr.String())
		}
	}
}

// console runs the binary on a pseudo-terminal with a terminal emulator behind it, as a person would.
func console(t *testing.T, dir string, args ...string) (*expect.Console, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return consoleEnv(t, dir, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TERM=xterm"}, args...)
}

func consoleEnv(t *testing.T, dir string, env []string, args ...string) (*expect.Console, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var screen bytes.Buffer
	// The emulator answers the program's terminal queries (survey asks for the cursor position) through a
	// second pseudo-terminal whose master feeds the console's input.
	ptm, pts, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	term := vt10x.New(vt10x.WithWriter(pts))
	c, err := expect.NewConsole(expect.WithStdin(ptm), expect.WithStdout(term, &screen), expect.WithCloser(ptm, pts),
		expect.WithDefaultTimeout(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Tty(), c.Tty(), c.Tty()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return c, cmd, &screen
}

// step is one exchange with a prompt: wait for expect on the screen, then type send (nothing when empty).
type step struct{ expect, send string }

// play runs the exchanges in order and fails with the screen when one does not come.
// cursorQuery is the last of survey's questions for the cursor position as it draws a prompt again (it asks twice:
// before and after showing the cursor) and reads each answer from its input. The emulator answers one only once
// the console has read it: a step that types into a prompt drawn again expects the last one first, or the typed
// text could be read as an answer.
const cursorQuery = "\x1b[?25h\x1b[6n"

func play(t *testing.T, c *expect.Console, screen *bytes.Buffer, steps []step) {
	t.Helper()
	for _, s := range steps {
		if _, err := c.ExpectString(s.expect); err != nil {
			t.Fatalf("waiting for %q: %v\nscreen:\n%s", s.expect, err, screen.String())
		}
		if s.expect == cursorQuery {
			// The emulator's answer reaches the program through the console's own copy: let it go first.
			time.Sleep(200 * time.Millisecond)
		}
		if s.send != "" {
			if _, err := c.Send(s.send); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestConfigurePromptsInATerminal(t *testing.T) {
	dir := t.TempDir()
	c, cmd, screen := console(t, dir, "configure")
	steps := []step{
		{"Authentication mode", "\r"}, // first option: DefaultAzureCredential
		{"account endpoint", "myaccount\r"},
		{"Sorry, your reply was invalid", ""}, // asked again, not ended
		{cursorQuery, "https://myaccount.documents.azure.com:443/\r"},
		{"Database name", "\r"}, // keep the default
		{"Container name", "TeamLeases\r"},
		{"Wrote", ""},
		{"Check the connection now", "n\r"},
		{"No", ""}, // the answer, shown; the terminal keeps being read until the command is done with it
	}
	play(t, c, screen, steps)
	waitExit(t, cmd, 0)
	b, err := os.ReadFile(filepath.Join(dir, "appsettings.Local.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"AccountEndpoint": "https://myaccount.documents.azure.com:443/"`, `"DatabaseName": "DistributedLeasing"`, `"ContainerName": "TeamLeases"`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("file lacks %s:\n%s", want, b)
		}
	}
}

func TestRunOffersToConfigureInATerminal(t *testing.T) {
	dir := t.TempDir()
	c, cmd, screen := console(t, dir, "run", "--instance", "a")
	if _, err := c.ExpectString("Authentication mode"); err != nil {
		t.Fatalf("run did not offer the prompts: %v\n%s", err, screen.String())
	}
	// Ctrl-C. Typed before the prompt has switched the terminal to raw mode, the terminal turns it into SIGINT,
	// which the waiting prompt does not see; so it is typed again until the command has ended.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.After(15 * time.Second)
	for stop := false; !stop; {
		if _, err := c.Send("\x03"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
			stop = true
		case <-deadline:
			t.Fatal("process did not exit")
		case <-time.After(300 * time.Millisecond):
		}
	}
	if got := cmd.ProcessState.ExitCode(); got != 130 {
		t.Fatalf("exit %d, want 130", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "appsettings.Local.json")); !os.IsNotExist(err) {
		t.Fatal("an interrupted configuration left a file")
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("process did not exit")
	}
	if got := cmd.ProcessState.ExitCode(); got != want {
		t.Fatalf("exit %d, want %d", got, want)
	}
}

func TestSetupPromptsInATerminal(t *testing.T) {
	dir := t.TempDir()
	stubDir, err := filepath.Abs("../../testdata/az")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "az.log")
	c, cmd, screen := consoleEnv(t, dir, []string{"PATH=" + stubDir + ":" + os.Getenv("PATH"), "HOME=" + dir, "TERM=xterm", "AZ_STUB_LOG=" + logPath}, "setup")
	steps := []step{
		{"Subscription", "\x1b[B\r"}, // the second: Contoso Prod
		{"Environment name", "Demo_1\r"},
		{"Sorry, your reply was invalid: use 1 to 20 lowercase letters", "demo\r"}, // asked again, not ended
		{"Resource group to create", "\r"},                                         // default rg-demo
		{"Deploy a Function App", "\r"},
		{"Primary region", "eastus\r"},                // a list of the regions that offer Flex Consumption, filtered as one types
		{"Failover regions", "eastus2 westeurope \r"}, // each typed to filter, chosen with space
		{"Grant dev@contoso.com", "\r"},
		{"Create these resources?", "\r"},
		{"Next steps", ""},
	}
	play(t, c, screen, steps)
	waitExit(t, cmd, 0)
	log, _ := os.ReadFile(logPath)
	for _, want := range []string{"--subscription 22222222-2222-2222-2222-222222222222", "group create --name rg-demo --location eastus",
		`regions=\[\"eastus2\"\,\"westeurope\"\]`, "deployment group validate"} {
		if !strings.Contains(string(log), want) {
			t.Fatalf("az log lacks %s:\n%s", want, log)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "appsettings.Local.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("settings file: %v", err)
	}
}
