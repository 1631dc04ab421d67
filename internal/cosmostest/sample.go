package cosmostest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// SampleProcess is a contender that follows the reference sample's protocol through the official JavaScript
// SDK: testdata/cosmos-sample/sample.js (its comment gives the protocol and the flags), installed by
// `make test-deps`. Its events are collected from its stdout.
type SampleProcess struct {
	Instance string

	cmd  *exec.Cmd
	mu   sync.Mutex
	evs  []SampleEvent
	news chan struct{} // receives after each event
	done chan struct{} // closed when the process has exited
	code int
	errb lockedBuffer
	// stdin is never written: the sample exits when it closes, so it cannot outlive the test binary.
	stdin io.WriteCloser
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SampleEvent is one line of the sample's output.
type SampleEvent struct {
	Event      string    `json:"event"`
	Time       time.Time `json:"time"`
	Instance   string    `json:"instance"`
	LeaseID    string    `json:"leaseId"`
	Owner      string    `json:"owner"`
	AcquiredAt time.Time `json:"acquiredAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
	Reason     string    `json:"reason"`
}

// StartSample starts the sample contender as instance, against a container of this server partitioned on
// /leaseKey, with sample.js's flags in args. It is killed when the test ends. It needs key auth: the test is
// skipped against an endpoint reached with DefaultAzureCredential.
func (s *Server) StartSample(t testing.TB, container, instance string, args ...string) *SampleProcess {
	t.Helper()
	if s.ConnectionString == "" {
		t.Skip("the reference sample's contender needs a connection string (key auth)")
	}
	dir, err := ServerDir()
	if err == nil {
		dir = filepath.Join(filepath.Dir(dir), "cosmos-sample")
		if _, serr := os.Stat(filepath.Join(dir, "node_modules", "@azure", "cosmos", "package.json")); serr != nil {
			err = errors.New("the official JavaScript SDK is not installed (testdata/cosmos-sample/node_modules missing): run 'make test-deps'")
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	p := &SampleProcess{Instance: instance, news: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command("node", append([]string{filepath.Join(dir, "sample.js"), "--instance", instance}, args...)...)
	p.cmd.Env = append(os.Environ(), "COSMOS_CONNECTION_STRING="+s.ConnectionString, "COSMOS_DATABASE="+s.Database,
		"COSMOS_CONTAINER="+container)
	p.cmd.Stderr = &p.errb
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start the sample contender: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("sample %s stderr:\n%s", instance, p.stderr())
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev SampleEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				continue
			}
			p.mu.Lock()
			p.evs = append(p.evs, ev)
			p.mu.Unlock()
			select {
			case p.news <- struct{}{}:
			default:
			}
		}
		_ = p.cmd.Wait()
		p.mu.Lock()
		p.code = p.cmd.ProcessState.ExitCode()
		p.mu.Unlock()
		close(p.done)
	}()
	return p
}

func (p *SampleProcess) stderr() string { return p.errb.String() }

// Events returns the events so far.
func (p *SampleProcess) Events() []SampleEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]SampleEvent(nil), p.evs...)
}

// Wait returns the first event named event, waiting up to limit for it.
func (p *SampleProcess) Wait(t testing.TB, event string, limit time.Duration) SampleEvent {
	t.Helper()
	deadline := time.After(limit)
	for {
		for _, ev := range p.Events() {
			if ev.Event == event {
				return ev
			}
		}
		select {
		case <-p.news:
		case <-p.done:
			for _, ev := range p.Events() {
				if ev.Event == event {
					return ev
				}
			}
			t.Fatalf("sample %s exited (code %d) without a %q event\nstderr:\n%s", p.Instance, p.ExitCode(), event, p.stderr())
		case <-deadline:
			t.Fatalf("no %q event from sample %s within %s", event, p.Instance, limit)
		}
	}
}

// Exited waits up to limit for the process to exit by itself and returns its exit code.
func (p *SampleProcess) Exited(t testing.TB, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.ExitCode()
	case <-time.After(limit):
		t.Fatalf("sample %s still running after %s", p.Instance, limit)
		return -1
	}
}

// ExitCode is the exit code, -1 while it runs.
func (p *SampleProcess) ExitCode() int {
	select {
	case <-p.done:
	default:
		return -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}

// Kill ends the process at once (SIGKILL), as a crash would, and waits until it has exited.
func (p *SampleProcess) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// String names the process for messages.
func (p *SampleProcess) String() string { return fmt.Sprintf("sample %s", p.Instance) }
