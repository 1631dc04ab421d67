// Command demo runs the reference sample's scenarios on this machine, with no Azure account, and three it cannot
// show (a paused holder refused by Cosmos DB through the fence; scheduled work in three regions through the
// Functions custom handler, with failover and handback at the next occurrence; a job of the user's own under
// `run -- COMMAND` failing over only once the first job's process group is gone): it starts the local Cosmos-protocol
// server, runs real cosmoslease processes against it, narrates what happens, checks that it happened, and stops
// the server. `make demo` builds the CLI and runs it; the demo builds the handler.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
)

func main() {
	bin := flag.String("bin", "bin/cosmoslease", "the cosmoslease binary")
	flag.Parse()
	bold := term.IsTerminal(int(os.Stdout.Fd())) && os.Getenv("NO_COLOR") == ""
	handler, cleanup, err := functionshost.Build("")
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
	err = run(os.Stdout, *bin, handler, bold)
	cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// Timings short enough for a demo: a killed holder is replaced within about 6 s.
var timings = []string{"--duration", "6s", "--renew-interval", "2s", "--work-interval", "1s"}

type demo struct {
	out  io.Writer
	bold bool
	mu   sync.Mutex
	bin  string
	env  []string
	dir  string
	logs map[string]*strings.Builder
}

func (d *demo) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	text := "▶ " + fmt.Sprintf(format, args...)
	if d.bold {
		text = "\x1b[1m" + text + "\x1b[0m"
	}
	fmt.Fprintf(d.out, "\n%s\n\n", text)
}

func (d *demo) line(name, text string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%-13s│ %s\n", name, text)
	d.logs[name].WriteString(text + "\n")
}

// start runs cosmoslease with its output prefixed by name.
func (d *demo) start(name string, args ...string) (*exec.Cmd, <-chan int, error) {
	cmd := exec.Command(d.bin, args...)
	cmd.Env, cmd.Dir = d.env, d.dir
	d.mu.Lock()
	if d.logs[name] == nil {
		d.logs[name] = &strings.Builder{}
	}
	d.mu.Unlock()
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	lines := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			d.line(name, sc.Text())
		}
		close(lines)
	}()
	code := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		w.Close()
		<-lines
		c := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			c = 128 + int(ws.Signal())
		}
		code <- c
	}()
	return cmd, code, nil
}

func (d *demo) waitFor(name, text string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		seen := strings.Contains(d.logs[name].String(), text)
		d.mu.Unlock()
		if seen {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not print %q within %s", name, text, limit)
}

// run runs the scenarios with the CLI bin and the Functions custom handler handler (built from
// functions/leasehandler).
func run(out io.Writer, bin, handler string, bold bool) error {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("%s not found: run 'make demo', which builds it", bin)
	}
	endpoint, server, err := cosmostest.StartProcess()
	if err != nil {
		return err
	}
	defer cosmostest.Stop(server)
	dir, err := os.MkdirTemp("", "cosmoslease-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d := &demo{out: out, bold: bold, bin: abs, dir: dir, logs: map[string]*strings.Builder{},
		env: append(os.Environ(), "COSMOSLEASE_EMULATOR_ENDPOINT="+endpoint, "NO_COLOR=1")}
	fmt.Fprintf(out, "Local Cosmos-protocol server listening at %s (the same wire protocol the Azure SDK speaks to Azure).\n", endpoint)
	fmt.Fprintf(out, "Leases last 6 s and renew every 2 s here, so failover is quick to watch; the defaults are 60 s and 40 s.\n")

	d.say("Scenario 1 — simultaneous startup: us-east-1, eu-west-1 and ap-south-1 start at the same moment")
	regions := map[string]string{"us-east-1": "us-east", "eu-west-1": "eu-west", "ap-south-1": "ap-south"}
	type proc struct {
		cmd  *exec.Cmd
		code <-chan int
	}
	procs := map[string]proc{}
	for _, name := range []string{"us-east-1", "eu-west-1", "ap-south-1"} {
		cmd, code, err := d.start(name, append([]string{"run", "--emulator", "--instance", name, "--region", regions[name]}, timings...)...)
		if err != nil {
			return err
		}
		procs[name] = proc{cmd, code}
	}
	var winner string
	var losers []string
	deadline := time.After(30 * time.Second)
	for len(losers) < 2 {
		select {
		case <-deadline:
			return errors.New("scenario 1: two instances should have exited as losers within 30 s")
		case <-time.After(50 * time.Millisecond):
		}
		for name, p := range procs {
			select {
			case c := <-p.code:
				if c != 3 {
					return fmt.Errorf("scenario 1: %s exited %d, want 3 (held by another)", name, c)
				}
				losers = append(losers, name)
				delete(procs, name)
			default:
			}
		}
	}
	for name := range procs {
		winner = name
	}
	d.say("%s won; %s and %s saw the ETag conflict, named the holder and exited gracefully (exit code 3)", winner, losers[0], losers[1])

	d.say("Scenario 2 — takeover on failure: %s stands by with --wait, then %s is killed with SIGKILL", losers[0], winner)
	_, standbyCode, err := d.start(losers[0]+"*", append([]string{"run", "--emulator", "--instance", losers[0], "--region", regions[losers[0]], "--wait", "--hold-for", "4s"}, timings...)...)
	if err != nil {
		return err
	}
	if err := d.waitFor(losers[0]+"*", "Standing by", 20*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	killed := time.Now()
	_ = procs[winner].cmd.Process.Signal(syscall.SIGKILL)
	<-procs[winner].code
	d.say("Killed %s: it cannot release, so its lease must expire; the standby waits out the 6 s it was promised", winner)
	if err := d.waitFor(losers[0]+"*", "LOCK ACQUIRED", 30*time.Second); err != nil {
		return err
	}
	failover := time.Since(killed).Round(100 * time.Millisecond)
	if c := <-standbyCode; c != 0 {
		return fmt.Errorf("scenario 2: the standby exited %d, want 0", c)
	}
	d.say("%s took over %s after the kill (epoch 2: anything fenced on the epoch now rejects %s), worked, released, exited 0", losers[0], failover, winner)

	d.say("Scenario 3 — document inspection: cosmoslease inspect")
	_, code, err := d.start("inspect", "inspect", "--emulator")
	if err != nil {
		return err
	}
	if c := <-code; c != 0 {
		return fmt.Errorf("inspect exited %d", c)
	}
	d.mu.Lock()
	table := d.logs["inspect"].String()
	d.mu.Unlock()
	if !strings.Contains(table, "released") || !strings.Contains(table, losers[0]) {
		return fmt.Errorf("inspect should show the lease released by %s", losers[0])
	}
	d.say("The document was kept on release (state released, epoch 2): the next holder continues the fencing count.")

	if err := d.fencedWrites(endpoint); err != nil {
		return err
	}
	if err := d.timerFailover(endpoint, handler); err != nil {
		return err
	}
	if err := d.commandFailover(); err != nil {
		return err
	}
	if err := d.timerControls(endpoint, handler); err != nil {
		return err
	}
	d.say("Done; stopping the local server.")
	return nil
}
