package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// syncBuffer is written by run's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var endpointLine = regexp.MustCompile(`server at (http://127\.0\.0\.1:\d+/)`)

// startServer runs `make server`'s program until the test ends, and returns its endpoint and what it printed.
func startServer(t *testing.T, bin string) (string, *syncBuffer) {
	t.Helper()
	cosmostest.Get(t) // skip loudly (fail under CI) when no server can be started
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, out, 0, bin, false) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("devserver: %v", err)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := endpointLine.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "--lease cron") {
			return m[1], out
		}
		select {
		case err := <-done:
			t.Fatalf("devserver ended before it was ready: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("devserver printed no endpoint within a minute:\n%s", out.String())
	return "", nil
}

// The server it starts answers a missing document 404, as Azure does (the plain cosmosdb-server answers 500,
// which makes cron hang), and already has the lease database and container.
func TestMissingDocumentIs404(t *testing.T) {
	endpoint, _ := startServer(t, "bin/cosmoslease")
	key, _ := azcosmos.NewKeyCredential(emulator.Key)
	client, err := azcosmos.NewClientWithKey(endpoint, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	container, err := client.NewContainer(cosmoslease.DefaultDatabase, cosmoslease.DefaultContainer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := container.Read(context.Background(), nil); err != nil {
		t.Fatalf("the lease container is not there: %v", err)
	}
	_, err = container.ReadItem(context.Background(), azcosmos.NewPartitionKeyString("nosuch"), "nosuch", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Fatalf("a point read of a missing document: %v, want 404", err)
	}
}

// fields splits a printed command line as a shell would, for the quoting the lines use (single quotes).
func fields(line string) []string {
	var out []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, any = !quoted, true
		case r == ' ' && !quoted:
			if any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// The lines it prints work as printed: run holds the lease, inspect shows it, cron runs its command each
// occurrence and inspect --runs lists those runs.
func TestPrintedLinesWork(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the printed command lines run as processes")
	}
	bin, cleanup, err := cosmostest.Build("../../cmd/cosmoslease")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	endpoint, out := startServer(t, bin)
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, bin+" ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 5 {
		t.Fatalf("want 5 command lines, got %d:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "--emulator --endpoint "+endpoint) {
			t.Errorf("line does not name the endpoint %s: %s", endpoint, l)
		}
	}
	exe := func(line string, extra ...string) *exec.Cmd {
		args := append(fields(line), extra...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "NO_COLOR=1")
		return cmd
	}
	// The first run line, bounded: it takes the lease, works, releases, exits 0.
	if b, err := exe(lines[0], "--hold-for", "2s").CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", lines[0], err, b)
	}
	// The inspect line without --watch (which runs until Ctrl-C).
	b, err := exe(strings.TrimSuffix(lines[2], " --watch")).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "critical-section-lock") || !strings.Contains(string(b), "us-east-1") {
		t.Fatalf("%s: %v\n%s", lines[2], err, b)
	}
	// The cron line, with the schedule made every second, until it has run its command twice; then SIGINT.
	cronLine := strings.Replace(lines[3], "'*/10 * * * * *'", "'* * * * * *'", 1)
	cron := exe(cronLine)
	var cronOut syncBuffer
	cron.Stdout, cron.Stderr = &cronOut, &cronOut
	if err := cron.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(cronOut.String(), "executed") < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	_ = cron.Process.Signal(syscall.SIGINT)
	_ = cron.Wait()
	if n := strings.Count(cronOut.String(), " in eastus"); n < 2 {
		t.Fatalf("cron's command printed its occurrence %d times, want 2 or more:\n%s", n, cronOut.String())
	}
	b, err = exe(lines[4]).CombinedOutput()
	if err != nil || strings.Count(string(b), "completed") < 2 {
		t.Fatalf("%s: %v\n%s", lines[4], err, b)
	}
}

// A port in use is refused with one line naming the way out, before any server starts.
func TestPortInUse(t *testing.T) {
	endpoint, _ := startServer(t, "bin/cosmoslease")
	u, _ := url.Parse(endpoint)
	p, _ := strconv.Atoi(u.Port())
	err := run(context.Background(), &bytes.Buffer{}, p, "bin/cosmoslease", false)
	if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), "make server PORT=") {
		t.Fatalf("err = %v, want a port in use naming make server PORT=", err)
	}
}
