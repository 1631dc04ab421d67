// Package cosmostest gives tests a real Cosmos-protocol endpoint.
//
// By default it starts the pinned @vercel/cosmosdb-server (testdata/cosmosdb-server, installed by
// `make test-deps`) over http on a free loopback port, once per test binary, and stops it from Main.
// To run the same tests against another endpoint (the official emulator, a real account), set
//
//	COSMOSLEASE_TEST_CONNECTION_STRING=AccountEndpoint=…;AccountKey=…   (key auth), or
//	COSMOSLEASE_TEST_ENDPOINT=https://…                                 (DefaultAzureCredential)
//
// and no server is started. Each test gets its own container in a database made for this run, which is
// deleted at the end.
//
// When the server cannot be started the tests say so loudly; with CI=true that is a failure, never a skip.
package cosmostest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/emulator"
)

// Server is an endpoint the tests may use.
type Server struct {
	// ConnectionString is set for key auth; Endpoint always.
	ConnectionString string
	Endpoint         string
	// Local is true when this package started the server.
	Local bool
	// Database is this run's database.
	Database string

	client *azcosmos.Client
	cmd    *exec.Cmd
}

var (
	once    sync.Once
	shared  *Server
	failure error
)

// Main runs the tests and then stops the server or deletes this run's database. Use it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	return code
}

// MainWithExamples is Main for a package whose runnable examples use the server (through Shared). Examples cannot
// skip themselves: when no server can be had they are skipped here (-test.skip=^Example), as loudly as tests are,
// and with CI=true the run fails.
func MainWithExamples(m *testing.M) int {
	flag.Parse()
	if _, err := Shared(); err != nil {
		msg := "NO COSMOS-PROTOCOL SERVER, Cosmos tests and examples not run: " + err.Error()
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, msg)
			return 1
		}
		fmt.Fprintln(os.Stderr, msg)
		_ = flag.Set("test.skip", "^Example")
	}
	return Main(m)
}

// Shared returns the shared server, starting it on first use, or why there is none.
func Shared() (*Server, error) {
	once.Do(func() { shared, failure = start() })
	return shared, failure
}

// Get returns the shared server, starting it on first use. It skips the test (fails it when CI=true) if no
// server can be had.
func Get(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, failure = start() })
	if failure != nil {
		msg := "NO COSMOS-PROTOCOL SERVER, Cosmos tests not run: " + failure.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return shared
}

func start() (*Server, error) {
	if cs := os.Getenv("COSMOSLEASE_TEST_CONNECTION_STRING"); cs != "" {
		return external(cs, "")
	}
	if ep := os.Getenv("COSMOSLEASE_TEST_ENDPOINT"); ep != "" {
		return external("", ep)
	}
	return startLocal()
}

func external(cs, endpoint string) (*Server, error) {
	s := &Server{ConnectionString: cs, Endpoint: endpoint, Database: "cosmoslease-test-" + randomSuffix()}
	var err error
	if cs != "" {
		s.client, err = azcosmos.NewClientFromConnectionString(cs, nil)
		s.Endpoint = s.client.Endpoint()
	} else {
		var cred *azidentity.DefaultAzureCredential
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err == nil {
			s.client, err = azcosmos.NewClient(endpoint, cred, nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("external endpoint: %w", err)
	}
	return s, s.createDatabase()
}

// ServerDir is where the pinned server is installed.
func ServerDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "cosmosdb-server"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the module root (go.mod)")
		}
		dir = parent
	}
}

var readyLine = regexp.MustCompile(`connections at (\S+):(\d+)`)

// lifelines keeps each server's stdin pipe referenced (a collected pipe would be closed, ending the server).
var lifelines sync.Map

// stopped marks servers stopped on purpose.
var stopped sync.Map

func stopping(cmd *exec.Cmd) bool { _, ok := stopped.Load(cmd); return ok }

// Stop ends a server started by StartProcess.
func Stop(cmd *exec.Cmd) {
	stopped.Store(cmd, true)
	_ = cmd.Process.Kill()
}

// StartProcess starts the pinned server on a free loopback port and waits until it answers.
func StartProcess() (endpoint string, cmd *exec.Cmd, err error) {
	return StartProcessOn(0)
}

// StartProcessOn starts the pinned server on the loopback port (0: a free one) and waits until it answers. The
// server lives until Stop, or until this process ends, however it ends.
func StartProcessOn(port int) (endpoint string, cmd *exec.Cmd, err error) {
	dir, err := ServerDir()
	if err != nil {
		return "", nil, err
	}
	launcher := filepath.Join(dir, "launch.js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@vercel", "cosmosdb-server", "lib", "cli.js")); err != nil {
		return "", nil, fmt.Errorf("the test server is not installed (%s missing): run 'make test-deps'", filepath.Join("testdata", "cosmosdb-server", "node_modules"))
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", nil, errors.New("node is not on PATH: install Node.js 20 or newer")
	}
	cmd = exec.Command(node, launcher, "--no-ssl", "--host", "127.0.0.1", "--port", strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	// The launcher exits when this pipe closes: when the process that started it ends, however it ends.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	lifelines.Store(cmd, stdin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start test server: %w", err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- "http://127.0.0.1:" + m[2] + "/"
			}
		}
		close(found)
	}()
	select {
	case ep, ok := <-found:
		if !ok {
			_ = cmd.Wait()
			return "", nil, errors.New("the test server exited before it was ready")
		}
		go func() {
			// Say so when the server dies under a run: tests would otherwise see only refused connections.
			state, _ := cmd.Process.Wait()
			if state != nil && !stopping(cmd) {
				fmt.Fprintf(os.Stderr, "cosmostest: the test server at %s exited unexpectedly: %v\n", ep, state)
			}
		}()
		if err := waitReady(ep); err != nil {
			_ = cmd.Process.Kill()
			return "", nil, err
		}
		return ep, cmd, nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return "", nil, errors.New("the test server did not report a port within 30 s")
	}
}

func waitReady(endpoint string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(endpoint)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the test server at %s did not answer", endpoint)
}

func startLocal() (*Server, error) {
	ep, cmd, err := StartProcess()
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: ep, Local: true, cmd: cmd, Database: "cosmoslease-test",
		ConnectionString: emulator.ConnectionString(ep)}
	s.client, err = azcosmos.NewClientFromConnectionString(s.ConnectionString, nil)
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := s.createDatabase(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) createDatabase() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: s.Database}, nil)
	if err != nil && !isStatus(err, 409) {
		return fmt.Errorf("create database %s: %w", s.Database, err)
	}
	return nil
}

func (s *Server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		Stop(s.cmd)
		return
	}
	if s.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if db, err := s.client.NewDatabase(s.Database); err == nil {
			_, _ = db.Delete(ctx, nil)
		}
	}
}

// NewContainer creates a container for one test, partitioned on pkPath, and returns its name.
func (s *Server) NewContainer(t testing.TB, pkPath string) string {
	t.Helper()
	name := "leases-" + randomSuffix()
	if err := s.CreateContainer(name, pkPath); err != nil {
		t.Fatal(err)
	}
	return name
}

// NewContainerWith creates a container for one test with the given properties (its ID is chosen here) and
// returns its name.
func (s *Server) NewContainerWith(t testing.TB, props azcosmos.ContainerProperties) string {
	t.Helper()
	props.ID = "leases-" + randomSuffix()
	if err := s.createContainer(props); err != nil {
		t.Fatal(err)
	}
	return props.ID
}

// CreateContainer creates a container in this run's database.
func (s *Server) CreateContainer(name, pkPath string) error {
	return s.createContainer(azcosmos.ContainerProperties{ID: name,
		PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{pkPath}}})
}

func (s *Server) createContainer(props azcosmos.ContainerProperties) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := s.client.NewDatabase(s.Database)
	if err != nil {
		return err
	}
	_, err = db.CreateContainer(ctx, props, nil)
	if err != nil && !isStatus(err, 409) {
		return fmt.Errorf("create container %s: %w", props.ID, err)
	}
	return nil
}

// Container returns an SDK client for a container, for tests that edit documents by hand.
func (s *Server) Container(t testing.TB, name string) *azcosmos.ContainerClient {
	t.Helper()
	c, err := s.client.NewContainer(s.Database, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Counter is an HTTP transport that counts the requests that reach the server, by kind.
type Counter struct {
	Next policy.Transporter
	mu   sync.Mutex
	n    map[string]int
}

// NewCounter counts requests and passes them to next (a plain http.Client when nil).
func NewCounter(next policy.Transporter) *Counter {
	if next == nil {
		next = &http.Client{}
	}
	return &Counter{Next: next, n: map[string]int{}}
}

// Kind names a request: "read" (a point read), "query", "create", "replace", "delete", "account", or "other".
func Kind(r *http.Request) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && p == "":
		return "account"
	case strings.HasSuffix(p, "/docs") && r.Method == http.MethodPost:
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/query+json") {
			return "query"
		}
		return "create"
	case strings.Contains(p, "/docs/") && r.Method == http.MethodPut:
		return "replace"
	case strings.Contains(p, "/docs/") && r.Method == http.MethodDelete:
		return "delete"
	case strings.Contains(p, "/docs/") && r.Method == http.MethodGet:
		return "read"
	}
	return "other"
}

func (c *Counter) Do(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[Kind(r)]++
	c.mu.Unlock()
	return c.Next.Do(r)
}

// Documents returns how many document requests (read, query, create, replace, delete) were made.
func (c *Counter) Documents() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n["read"] + c.n["query"] + c.n["create"] + c.n["replace"] + c.n["delete"]
}

// Count returns the number of requests of one kind.
func (c *Counter) Count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

// Reset zeroes the counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

// Build compiles the main package in dir into a temporary folder and returns the binary's path and a cleanup.
func Build(dir string) (path string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "cosmoslease-bin")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(tmp, filepath.Base(mustAbs(dir)))
	if out, err := exec.Command("go", "build", "-o", path, dir).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("go build %s: %v\n%s", dir, err, out)
	}
	return path, func() { os.RemoveAll(tmp) }, nil
}

// MainWithBinary is Main for tests of a command: it builds the main package in dir first and stores its path
// in *bin.
func MainWithBinary(m *testing.M, dir string, bin *string) int {
	path, cleanup, err := Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*bin = path
	return Main(m)
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
