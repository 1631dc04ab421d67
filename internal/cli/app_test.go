package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/faultproxy"
	"github.com/cosmoslease/cosmoslease/internal/funcpkg"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func TestMain(m *testing.M) {
	// Commands run under a reaper that is a copy of this test binary; under the race detector each would sleep a
	// second at exit (GORACE's atexit_sleep_ms).
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(cosmostest.Main(m))
}

// syncBuffer is a bytes.Buffer safe for the renewal goroutine and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t    *testing.T
	dir  string
	env  map[string]string
	srv  *cosmostest.Server
	ctr  string
	fake *fakePrompter
	tty  bool
	az   az.Runner
	// waited records the pauses the command asked for (tests do not wait).
	waited []time.Duration
	// leaseStatusURL replaces https://HOST when deploy calls an app's LeaseStatus.
	leaseStatusURL func(host string) string
	// prebuilt makes package and deploy use the handler built once for the whole test binary (prebuiltBuild)
	// instead of building the working directory's: for the tests of what deploy does with az and with command
	// jobs, not of what it compiles.
	prebuilt bool
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, dir: t.TempDir(), env: map[string]string{}}
}

// withServer points every command at the real server through --emulator, in a container of its own.
func (h *harness) withServer() *harness {
	h.srv = cosmostest.Get(h.t)
	h.ctr = "cli-" + strings.ReplaceAll(strings.ToLower(h.t.Name()), "/", "-")
	h.env["COSMOSLEASE_EMULATOR_ENDPOINT"] = h.srv.Endpoint
	h.env["CosmosLeasing__DatabaseName"] = h.srv.Database
	h.env["CosmosLeasing__ContainerName"] = h.ctr
	return h
}

type result struct {
	code           int
	stdout, stderr string
}

func (h *harness) runCtx(ctx context.Context, args ...string) result {
	var out, errb syncBuffer
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: h.dir,
		Getenv: func(k string) string { return h.env[k] }, Interactive: h.tty,
		wait: func(_ context.Context, d time.Duration) error { h.waited = append(h.waited, d); return nil }}
	if h.fake != nil {
		app.Prompter = h.fake
	}
	if h.az != nil {
		app.Az = h.az
	}
	app.leaseStatusURL = h.leaseStatusURL
	if h.prebuilt {
		app.buildHandler = prebuiltBuild
	}
	code := app.Run(ctx, append([]string{"cosmoslease"}, args...))
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (h *harness) run(args ...string) result { return h.runCtx(context.Background(), args...) }

var prebuilt struct {
	once      sync.Once
	exe, zip  []byte
	functions []string
	err       error
}

// prebuiltHandler is this repository's handler built for linux/amd64 as deploy builds it, once per test binary
// (linking the handler and compressing it take seconds, more under -race, and most deploy tests are about az):
// the executable, and the deployable zip of the handler alone (no command jobs, no app files) with its
// functions.
func prebuiltHandler() (exe, zip []byte, functions []string, err error) {
	prebuilt.once.Do(func() {
		out, err := os.MkdirTemp("", "cosmoslease-prebuilt")
		if err != nil {
			prebuilt.err = err
			return
		}
		defer os.RemoveAll(out)
		zipPath, functions, err := funcpkg.Build(context.Background(), funcpkg.Spec{Root: "../.."}, out, funcpkg.Linux)
		if err != nil {
			prebuilt.err = err
			return
		}
		prebuilt.functions = functions
		if prebuilt.zip, prebuilt.err = os.ReadFile(zipPath); prebuilt.err == nil {
			prebuilt.exe, prebuilt.err = os.ReadFile(filepath.Join(out, funcpkg.Linux.Name(), funcpkg.Linux.Exe()))
		}
	})
	return prebuilt.exe, prebuilt.zip, prebuilt.functions, prebuilt.err
}

// prebuiltBuild is the harness's build for package and deploy (App.buildHandler) with the handler compiled once
// (prebuiltHandler). The handler alone is its zip; with command jobs or app files, funcpkg.Package packages
// the spec around the prebuilt executable, which writes the jobs' function folders as a fresh build would.
// Only this repository's handler is prebuilt: a test of another --handler builds it for real.
func prebuiltBuild(ctx context.Context, spec funcpkg.Spec, out string, t funcpkg.Target) (string, []string, error) {
	if (spec.Handler != "" && spec.Handler != funcpkg.DefaultHandler) || t != funcpkg.Linux {
		return "", nil, fmt.Errorf("the prebuilt handler is %s for %s, not %s for %s: build this one (harness.prebuilt false)", funcpkg.DefaultHandler, funcpkg.Linux.Name(), spec.Handler, t.Name())
	}
	exe, zip, functions, err := prebuiltHandler()
	if err != nil {
		return "", nil, err
	}
	if len(spec.Settings) > 0 || len(spec.Include) > 0 {
		return funcpkg.Package(ctx, spec, out, t, exe)
	}
	path := filepath.Join(out, t.Name()+".zip")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", nil, err
	}
	return path, functions, os.WriteFile(path, zip, 0o644)
}

func (r result) expect(t *testing.T, code int, stderrHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Fatalf("stderr does not say %q:\n%s", s, r.stderr)
		}
	}
	if code == ExitUsage && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("a usage error should be one line, got:\n%s", r.stderr)
	}
}

func events(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		for _, k := range []string{"event", "time", "instance", "lease", "epoch", "leaseId", "owner"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("event without %q: %s", k, line)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Fatalf("time %q is not RFC 3339: %v", m["time"], err)
		}
		out = append(out, m)
	}
	return out
}

func names(evs []map[string]any) string {
	var n []string
	for _, e := range evs {
		n = append(n, e["event"].(string))
	}
	return strings.Join(n, " ")
}

// fast are lease timings that make takeovers take a few seconds.
var fast = []string{"--duration", "3s", "--renew-interval", "1s", "--work-interval", "200ms"}

func TestBadInputIsOneLineAndExit2(t *testing.T) {
	h := newHarness(t)
	h.env["CosmosLeasing__AccountEndpoint"] = "https://example.documents.azure.com:443/"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no instance", []string{"run"}, "run needs --instance ID"},
		{"unknown flag", []string{"run", "--instance", "a", "--frobnicate"}, "flag provided but not defined: -frobnicate. Try: cosmoslease run --help"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate". Try: cosmoslease --help`},
		{"unknown global flag", []string{"-bogus"}, "flag provided but not defined: -bogus. Try: cosmoslease --help"},
		{"unparsable duration", []string{"run", "--instance", "a", "--duration", "soon"}, `--duration: "soon" is not a duration: write it as 00:01:00 or 60s`},
		{"negative duration", []string{"run", "--instance", "a", "--duration", "-5s"}, `--duration: "-5s" is negative`},
		{"bad timespan", []string{"run", "--instance", "a", "--renew-interval", "00:99:00"}, "minutes and seconds below 60"},
		{"renew interval not below duration", []string{"run", "--instance", "a", "--duration", "10s", "--renew-interval", "10s"},
			"--renew-interval 10s must be shorter than --duration 10s; use --duration 12.5s or more"},
		{"duration too short", []string{"run", "--instance", "a", "--duration", "1s"}, "--duration 1s is too short: a holder that cannot renew must give up at least 1s"},
		{"duration too short for the interval", []string{"run", "--instance", "a", "--duration", "3s", "--renew-interval", "2s"},
			"--duration 3s is too short for --renew-interval 2s: a holder that cannot renew gives up halfway between them (2.5s), which must come at least 1s before the lease ends"},
		{"cron duration too short", []string{"cron", "--region", "eastus", "--schedule", "0 * * * * *", "--duration", "2s", "--", "true"}, "--duration 2s is too short"},
		{"forbidden lease key", []string{"run", "--instance", "a", "--lease", "jobs/nightly"}, `--lease: invalid lease key: "jobs/nightly" contains '/'`},
		{"endpoint not a URL", []string{"run", "--instance", "a", "--endpoint", "myaccount"}, `"myaccount" is not a URL`},
		{"bad log level", []string{"run", "--instance", "a", "--log-level", "loud"}, `--log-level "loud"`},
		{"inspect argument", []string{"inspect", "job"}, "to show one lease use --lease KEY"},
		{"emulator endpoint not a URL", []string{"inspect", "--emulator", "--endpoint", "notaurl"}, `--emulator endpoint: the account endpoint "notaurl" is not a URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.run(tc.args...).expect(t, ExitUsage, tc.want)
		})
	}
}

func TestConfigProblems(t *testing.T) {
	t.Run("malformed JSON names file, line and column", func(t *testing.T) {
		h := newHarness(t)
		os.WriteFile(filepath.Join(h.dir, "appsettings.json"), []byte("{\n  \"CosmosLeasing\": {\n    \"DatabaseName\": \"x\",,\n  }\n}\n"), 0o644)
		h.run("run", "--instance", "a").expect(t, ExitUsage, "appsettings.json:3:25: not valid JSON")
	})
	t.Run("template placeholder", func(t *testing.T) {
		h := newHarness(t)
		os.WriteFile(filepath.Join(h.dir, "appsettings.json"), []byte(`{"CosmosLeasing":{"AccountEndpoint":"https://[YOUR_COSMOS_ACCOUNT].documents.azure.com:443/"}}`), 0o644)
		h.run("run", "--instance", "a").expect(t, ExitUsage, "still the template placeholder [YOUR_COSMOS_ACCOUNT]", "cosmoslease configure")
	})
	t.Run("nothing configured, no terminal", func(t *testing.T) {
		h := newHarness(t)
		h.tty = true // a terminal, but --no-input
		h.fake = &fakePrompter{}
		h.run("run", "--instance", "a", "--no-input").expect(t, ExitUsage, "CosmosLeasing__AccountEndpoint", "CosmosLeasing__ConnectionString", "--endpoint", "cosmoslease configure")
		h.env["CI"] = "true"
		h.run("run", "--instance", "a").expect(t, ExitUsage, "no Cosmos DB account configured")
		if len(h.fake.asked) != 0 {
			t.Fatalf("prompted although prompting was off: %v", h.fake.asked)
		}
	})
	t.Run("bad TimeSpan in the file", func(t *testing.T) {
		h := newHarness(t)
		os.WriteFile(filepath.Join(h.dir, "appsettings.json"), []byte(`{"CosmosLeasing":{"AccountEndpoint":"https://a.documents.azure.com:443/","DefaultLeaseDuration":"a minute"}}`), 0o644)
		h.run("run", "--instance", "a").expect(t, ExitUsage, "DefaultLeaseDuration in appsettings.json")
	})
	t.Run("bad connection string never echoes the key", func(t *testing.T) {
		h := newHarness(t)
		h.env["CosmosLeasing__ConnectionString"] = "AccountEndpoint=https://a.documents.azure.com:443/;AccountKey=s3cr3t!!;"
		r := h.run("run", "--instance", "a")
		r.expect(t, ExitUsage, "not valid base64")
		if strings.Contains(r.stderr+r.stdout, "s3cr3t") {
			t.Fatal("the key was printed")
		}
	})
}

func TestRunAgainstTheServer(t *testing.T) {
	h := newHarness(t).withServer()
	r := h.run(append([]string{"run", "--emulator", "--instance", "us-east-1", "--region", "us-east", "--hold-for", "1500ms", "--json"}, fast...)...)
	r.expect(t, ExitOK)
	evs := events(t, r.stdout)
	got := names(evs)
	if !strings.HasPrefix(got, "started acquired ") || !strings.HasSuffix(got, " released") || !strings.Contains(got, " work ") {
		t.Fatalf("events: %s", got)
	}
	if evs[1]["epoch"].(float64) != 1 || evs[1]["owner"] != "us-east-1" || evs[1]["region"] != "us-east" {
		t.Fatalf("acquired event: %v", evs[1])
	}
	if !strings.Contains(got, "renewed") {
		t.Fatalf("no renewal in 1.5 s with a 1 s interval: %s", got)
	}

	// The lease is released: the next instance acquires it at epoch 2, and says from whom it took over.
	r = h.run(append([]string{"run", "--emulator", "--instance", "eu-west-1", "--hold-for", "300ms", "--json"}, fast...)...)
	r.expect(t, ExitOK)
	evs = events(t, r.stdout)
	if evs[1]["event"] != "takeover" || evs[1]["from"] != "us-east-1" || evs[1]["reason"] != "released" || evs[2]["epoch"].(float64) != 2 {
		t.Fatalf("events after release: %v", evs)
	}

	// inspect shows it, as a table and as JSON.
	r = h.run("inspect", "--emulator")
	r.expect(t, ExitOK)
	for _, s := range []string{"LEASE", "critical-section-lock", "eu-west-1", "released"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("inspect table lacks %q:\n%s", s, r.stdout)
		}
	}
	r = h.run("inspect", "--emulator", "--json", "--owner", "eu-west-1")
	r.expect(t, ExitOK)
	var list []leaseJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Epoch != 2 || list[0].State != "released" {
		t.Fatalf("inspect --json: %v %s", err, r.stdout)
	}
	r = h.run("inspect", "--emulator", "--json", "--owner", "nobody")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("inspect --owner nobody: %s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "AccountKey") {
		t.Fatal("inspect printed a key")
	}
}

// lib opens a library client on the harness's container, to play another instance while one App runs
// (urfave/cli keeps package-level state, so one process runs one App at a time).
func (h *harness) lib(owner string) *cosmoslease.Client {
	h.t.Helper()
	if err := emulator.EnsureContainer(context.Background(), h.srv.Endpoint, h.srv.Database, h.ctr, "/leaseKey"); err != nil {
		h.t.Fatal(err)
	}
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(h.srv.Endpoint),
		Database: h.srv.Database, Container: h.ctr, OwnerID: owner, Region: "region-" + owner,
		LeaseDuration: 3 * time.Second, RenewInterval: time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(c.Close)
	return c
}

func (h *harness) heldBy(c *cosmoslease.Client, owner string) func() bool {
	return func() bool {
		s, err := c.Inspect(context.Background(), DefaultLease)
		return err == nil && s.Status() == "held" && s.Owner == owner
	}
}

// holding starts `run` as us-east-1 in the background, waits until it holds the lease, and returns a watcher
// (a library client on the same container) and the run's result to come.
func (h *harness) holding(ctx context.Context) (*cosmoslease.Client, <-chan result) {
	h.t.Helper()
	watcher := h.lib("watcher")
	done := make(chan result, 1)
	go func() {
		done <- h.runCtx(ctx, append([]string{"run", "--emulator", "--instance", "us-east-1", "--json"}, fast...)...)
	}()
	waitFor(h.t, h.heldBy(watcher, "us-east-1"))
	return watcher, done
}

func TestRunHeldAndStandby(t *testing.T) {
	h := newHarness(t).withServer()
	other := h.lib("us-east-1")
	lease, err := other.TryAcquire(context.Background(), DefaultLease)
	if err != nil {
		t.Fatal(err)
	}

	// Held without --wait: the sample's box, exit 3, the holder named.
	r := h.run(append([]string{"run", "--emulator", "--instance", "eu-west-1", "--region", "eu-west"}, fast...)...)
	r.expect(t, ExitHeld)
	for _, s := range []string{"LOCK ACQUISITION FAILED", "Current holder: us-east-1 (region-us-east-1 region), epoch 1",
		"It holds lease \"critical-section-lock\" for at most", "Exiting gracefully..."} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("held report lacks %q:\n%s", s, r.stdout)
		}
	}
	if r.stderr != "" { // the box said it: not again on stderr (issue 28: the demo's losers said it twice)
		t.Fatalf("stderr repeats the report:\n%s", r.stderr)
	}
	r = h.run(append([]string{"run", "--emulator", "--instance", "eu-west-1", "--region", "eu-west", "--json"}, fast...)...)
	r.expect(t, ExitHeld, "held by us-east-1") // with --json, stdout is data: stderr says it
	if strings.Contains(r.stdout, "\x1b[") {
		t.Fatal("ANSI colour written to a stdout that is not a terminal")
	}

	// A standby takes over when the holder releases.
	go func() {
		time.Sleep(700 * time.Millisecond)
		_ = lease.Release(context.Background())
	}()
	sr := h.run(append([]string{"run", "--emulator", "--instance", "ap-south-1", "--wait", "--hold-for", "500ms", "--json"}, fast...)...)
	sr.expect(t, ExitOK)
	evs := events(t, sr.stdout)
	if !strings.HasPrefix(names(evs), "started held takeover acquired") || evs[2]["from"] != "us-east-1" || evs[2]["reason"] != "released" || evs[3]["epoch"].(float64) != 2 {
		t.Fatalf("standby events: %s / %v", names(evs), evs)
	}
}

func TestRunInterruptedReleases(t *testing.T) {
	h := newHarness(t).withServer()
	ctx, cancel := context.WithCancel(context.Background())
	watcher, done := h.holding(ctx)
	cancel()
	r := <-done
	r.expect(t, ExitInterrupted, "interrupted")
	if evs := events(t, r.stdout); evs[len(evs)-1]["event"] != "released" {
		t.Fatalf("interrupted holder did not release: %s", names(evs))
	}
	if s, err := watcher.Inspect(context.Background(), DefaultLease); err != nil || s.Status() != "released" {
		t.Fatalf("after interrupt: %+v %v", s, err)
	}
}

func TestRunStopsWhenTheLeaseIsLost(t *testing.T) {
	h := newHarness(t).withServer()
	_, done := h.holding(context.Background())
	// Someone else writes the lease document; the next renewal finds out.
	body := `{"id":"lease-critical-section-lock","leaseKey":"critical-section-lock","leaseId":"other","ownerId":"intruder","epoch":5,"leaseDurationMs":3000,"metadata":{}}`
	if _, err := h.srv.Container(t, h.ctr).UpsertItem(context.Background(), azcosmos.NewPartitionKeyString("critical-section-lock"), []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	r.expect(t, ExitLost, "stopped work", "taken over by intruder")
	evs := events(t, r.stdout)
	if last := evs[len(evs)-1]; last["event"] != "lost" {
		t.Fatalf("events end with %v, want lost: %s", last, names(evs))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fakePrompter answers from a script and records the questions. Like the survey prompter, it refuses an answer
// that fails the question's check (recording it in refused) and takes the next one.
type fakePrompter struct {
	answers []string
	asked   []string
	refused []string
	// options are the choices each Select and MultiSelect offered, by question; defaults each Select's default.
	options  map[string][]string
	defaults map[string]string
}

func (f *fakePrompter) next(q string) (string, error) {
	f.asked = append(f.asked, q)
	if len(f.answers) == 0 {
		return "", errors.New("unexpected question: " + q)
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a, nil
}

func (f *fakePrompter) checked(m, def string, check func(string) error) (string, error) {
	for {
		a, err := f.next(m)
		if err != nil {
			return "", err
		}
		if a == "" || a == "<default>" {
			a = def
		}
		if check != nil {
			if err := check(a); err != nil {
				f.refused = append(f.refused, a)
				continue
			}
		}
		return a, nil
	}
}

func (f *fakePrompter) Input(m, _, def string, check func(string) error) (string, error) {
	return f.checked(m, def, check)
}
func (f *fakePrompter) Secret(m, _ string, check func(string) error) (string, error) {
	return f.checked(m, "", check)
}
func (f *fakePrompter) offered(m string, options []string) {
	if f.options == nil {
		f.options = map[string][]string{}
	}
	f.options[m] = options
}

// Select, like survey's, can only answer one of the options; "<default>" answers the default.
func (f *fakePrompter) Select(m, _ string, options []string, def string) (string, error) {
	f.offered(m, options)
	if f.defaults == nil {
		f.defaults = map[string]string{}
	}
	f.defaults[m] = def
	a, err := f.next(m)
	if a == "<default>" {
		a = def
	}
	if err == nil && !slices.Contains(options, a) {
		return "", fmt.Errorf("%q is not among the options of %q", a, m)
	}
	return a, err
}
func (f *fakePrompter) MultiSelect(m, _ string, options, _ []string) ([]string, error) {
	f.offered(m, options)
	a, err := f.next(m)
	if err != nil || a == "" {
		return nil, err
	}
	chosen := strings.Split(a, ",")
	for _, c := range chosen {
		if !slices.Contains(options, c) {
			return nil, fmt.Errorf("%q is not among the options of %q", c, m)
		}
	}
	return chosen, nil
}
func (f *fakePrompter) Confirm(m string, _ bool) (bool, error) {
	a, err := f.next(m)
	return a == "yes", err
}

func TestConfigure(t *testing.T) {
	t.Run("non-interactive from flags", func(t *testing.T) {
		h := newHarness(t)
		h.run("configure", "--endpoint", "https://acct.documents.azure.com:443/", "--database", "D").expect(t, ExitOK, "Wrote", "mode 0600")
		path := filepath.Join(h.dir, "appsettings.Local.json")
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("stat: %v %v", err, fi)
		}
		var got map[string]map[string]string
		b, _ := os.ReadFile(path)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"AccountEndpoint": "https://acct.documents.azure.com:443/", "DatabaseName": "D", "ContainerName": "Leases"}
		for k, v := range want {
			if got["CosmosLeasing"][k] != v {
				t.Fatalf("%s = %q in %s", k, got["CosmosLeasing"][k], b)
			}
		}
	})
	t.Run("non-interactive without the endpoint names the flag and variable, writes nothing", func(t *testing.T) {
		h := newHarness(t)
		h.run("configure").expect(t, ExitUsage, "--endpoint URL", "CosmosLeasing__AccountEndpoint")
		if _, err := os.Stat(filepath.Join(h.dir, "appsettings.Local.json")); !os.IsNotExist(err) {
			t.Fatal("a file was written")
		}
	})
	t.Run("key mode keeps other sections and never prints the key", func(t *testing.T) {
		h := newHarness(t)
		path := filepath.Join(h.dir, "appsettings.Local.json")
		os.WriteFile(path, []byte(`{"Logging":{"LogLevel":{"Default":"Information"}},"CosmosLeasing":{"DatabaseName":"Old"}}`), 0o644)
		h.env["CosmosLeasing__ConnectionString"] = "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=c2VjcmV0;"
		r := h.run("configure", "--auth", "key")
		r.expect(t, ExitOK)
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), `"Logging"`) || !strings.Contains(string(b), "AccountKey=c2VjcmV0") || !strings.Contains(string(b), `"DatabaseName": "Old"`) {
			t.Fatalf("file:\n%s", b)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
		if strings.Contains(r.stdout+r.stderr, "c2VjcmV0") {
			t.Fatal("the key was printed")
		}
	})
	t.Run("interactive", func(t *testing.T) {
		h := newHarness(t)
		h.tty = true
		h.fake = &fakePrompter{answers: []string{"DefaultAzureCredential (recommended)", "https://acct.documents.azure.com:443/", "<default>", "MyLeases", "no"}}
		h.run("configure").expect(t, ExitOK)
		b, _ := os.ReadFile(filepath.Join(h.dir, "appsettings.Local.json"))
		if !strings.Contains(string(b), `"ContainerName": "MyLeases"`) || !strings.Contains(string(b), `"DatabaseName": "DistributedLeasing"`) {
			t.Fatalf("file:\n%s", b)
		}
		if len(h.fake.asked) != 5 || !strings.HasPrefix(h.fake.asked[4], "Check the connection now") {
			t.Fatalf("questions: %v", h.fake.asked)
		}
	})
	t.Run("interactive bad endpoint is asked again", func(t *testing.T) {
		h := newHarness(t)
		h.tty = true
		h.fake = &fakePrompter{answers: []string{"DefaultAzureCredential (recommended)", "not a url", "https://acct.documents.azure.com:443/", "<default>", "<default>", "no"}}
		h.run("configure").expect(t, ExitOK)
		if strings.Join(h.fake.refused, ",") != "not a url" {
			t.Fatalf("refused answers: %v", h.fake.refused)
		}
		b, _ := os.ReadFile(filepath.Join(h.dir, "appsettings.Local.json"))
		if !strings.Contains(string(b), `"AccountEndpoint": "https://acct.documents.azure.com:443/"`) {
			t.Fatalf("file:\n%s", b)
		}
	})
}

func TestInspectRuns(t *testing.T) {
	h := newHarness(t).withServer()
	h.run("inspect", "--emulator").expect(t, ExitOK) // creates the container
	clients := map[string]*cosmoslease.Client{}
	client := func(region string) *cosmoslease.Client {
		if c := clients[region]; c != nil {
			return c
		}
		c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(h.srv.Endpoint),
			Database: h.srv.Database, Container: h.ctr, OwnerID: "app@" + region, Region: region})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		clients[region] = c
		return c
	}
	// Records as the handler writes them: a schedule of one run a minute.
	occ := time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)
	run := func(key string, occ time.Time, region string) cosmoslease.RunResult {
		res, err := client(region).RunOnce(context.Background(), key, occ, cosmoslease.RunOptions{Instance: region + "-1",
			Schedule: "0 */1 * * * *", MissedAfter: 20 * time.Second}, func(context.Context, cosmoslease.Run) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for i, region := range []string{"eastus", "westeurope"} {
		run("timer-singleton", occ.Add(time.Duration(i)*time.Minute), region)
	}
	run("nightly", occ, "southeastasia")
	if res := run("timer-singleton", occ, "southeastasia"); res.Status != cosmoslease.RunSkipped || res.Record.Region != "eastus" {
		t.Fatalf("second claim of an occurrence = %+v", res)
	}
	// Every lease that has runs, each under its key, the lease with the newest run first, newest first within.
	r := h.run("inspect", "--emulator", "--runs")
	r.expect(t, ExitOK)
	o1 := occ.Add(time.Minute).Format("2006-01-02 15:04:05Z")
	timer, nightly := strings.Index(r.stdout, "Runs of lease timer-singleton"), strings.Index(r.stdout, "Runs of lease nightly")
	if !strings.Contains(r.stdout, o1+"  westeurope") || !strings.Contains(r.stdout, "eastus") ||
		strings.Index(r.stdout, "westeurope") > strings.Index(r.stdout, "eastus") || timer < 0 || nightly < timer ||
		strings.Index(r.stdout, "southeastasia") < nightly {
		t.Fatalf("inspect --runs (every lease, newest first):\n%s", r.stdout)
	}
	if r := h.run("inspect", "--emulator", "--runs", "--lease", "nightly"); !strings.Contains(r.stdout, "Runs of lease nightly") ||
		!strings.Contains(r.stdout, "southeastasia") || strings.Contains(r.stdout, "westeurope") {
		t.Fatalf("inspect --runs --lease nightly:\n%s", r.stdout)
	}
	r = h.run("inspect", "--emulator", "--runs", "--json", "--owner", "eastus-1")
	var recs []cosmoslease.RunRecord
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) != 1 || recs[0].Status != cosmoslease.RunCompleted || recs[0].Epoch != 1 {
		t.Fatalf("inspect --runs --json: %v %s", err, r.stdout)
	}
	// --limit N: the N newest. Occurrences 2 to 13 ran; from 14 minutes on none did, until now: those are missed.
	for i := 2; i < 14; i++ {
		run("timer-singleton", occ.Add(time.Duration(i)*time.Minute), "eastus")
	}
	for limit, want := range map[string]int{"": cosmoslease.DefaultRunLimit, "3": 3, "1000": 14} {
		args := []string{"inspect", "--emulator", "--runs", "--json", "--owner", "eastus-1"}
		if limit != "" {
			args = append(args, "--limit", limit)
		}
		r := h.run(args...)
		recs = nil
		if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) != want-map[string]int{"": 0, "3": 0, "1000": 1}[limit] ||
			!recs[0].Occurrence.Equal(occ.Add(13*time.Minute)) {
			t.Fatalf("inspect --runs --limit %q: %v, %d records (want %d, newest +13 min): %s", limit, err, len(recs), want, r.stdout)
		}
	}
	r = h.run("inspect", "--emulator", "--runs", "--json", "--limit", "1000", "--lease", "timer-singleton")
	recs = nil
	_ = json.Unmarshal([]byte(r.stdout), &recs)
	var missed []time.Time
	for _, rec := range recs {
		if rec.Status == "missed" {
			missed = append(missed, rec.Occurrence)
		}
	}
	// From +14 min to now (+30 min and some seconds) less the 20 s the records allow for failover: 17
	// occurrences, or 16 while the newest is within its 20 s; listed newest first with the runs.
	if n := len(missed); n < 16 || n > 17 || !missed[n-1].Equal(occ.Add(14*time.Minute)) || !recs[0].Occurrence.Equal(missed[0]) {
		t.Fatalf("missed occurrences %v in %s", missed, r.stdout)
	}
	r = h.run("inspect", "--emulator", "--runs", "--lease", "timer-singleton")
	if !strings.Contains(r.stdout, "missed") || !strings.Contains(r.stdout, "occurrence(s) of \"0 */1 * * * *\"") {
		t.Fatalf("inspect --runs does not show the missed occurrences:\n%s", r.stdout)
	}
	h.run("inspect", "--emulator", "--runs", "--limit", "0").expect(t, ExitUsage, "--limit 0")
	h.run("inspect", "--emulator", "--runs", "--limit", "1001").expect(t, ExitUsage, "from 1 to 1000")
	h.run("inspect", "--emulator", "--limit", "5").expect(t, ExitUsage, "--limit applies to --runs only")
}

func TestRunWhenTheContainerIsDeleted(t *testing.T) {
	h := newHarness(t).withServer()
	_, done := h.holding(context.Background())
	if _, err := h.srv.Container(t, h.ctr).Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	r.expect(t, ExitLost, "stopped work", "was deleted")
	if evs := events(t, r.stdout); evs[len(evs)-1]["event"] != "lost" {
		t.Fatalf("events: %s", names(evs))
	}
}

func TestInspectWatchRedrawsUntilInterrupted(t *testing.T) {
	h := newHarness(t).withServer()
	h.run("inspect", "--emulator").expect(t, ExitOK) // creates the container
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	r := h.runCtx(ctx, "inspect", "--emulator", "--watch", "--lease", DefaultLease)
	r.expect(t, ExitInterrupted, "interrupted")
	if n := strings.Count(r.stdout, "(every 2s; Ctrl-C to stop)"); n < 2 {
		t.Fatalf("%d redraws in 2.5 s, want 2:\n%s", n, r.stdout)
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Fatal("screen-clearing escapes written to a stdout that is not a terminal")
	}
}

// inspect --watch is cheap (issue 27, item 8): with --lease it makes point reads, and lists the container only
// once (for the warnings and the names); without, it lists every 10 s, not every 2 s. Counted at the HTTP
// transport, through a proxy.
func TestInspectWatchCost(t *testing.T) {
	h := newHarness(t).withServer()
	h.run("inspect", "--emulator").expect(t, ExitOK) // creates the container
	p, err := faultproxy.New(h.srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base, err := p.Listen("inspect")
	if err != nil {
		t.Fatal(err)
	}
	h.env["COSMOSLEASE_EMULATOR_ENDPOINT"] = base
	watch := func(d time.Duration, args ...string) map[string]int64 {
		before := p.Counts()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		h.runCtx(ctx, append([]string{"inspect", "--emulator", "--watch"}, args...)...).expect(t, ExitInterrupted, "interrupted")
		after := p.Counts()
		return map[string]int64{"queries": after["queries"] - before["queries"], "documents": after["documents"] - before["documents"]}
	}
	// 5 s with --lease: 3 drawings, each one point read (a 404 also checks the container), one list in all.
	n := watch(5*time.Second, "--lease", DefaultLease)
	if n["queries"] != 1 || n["documents"]-n["queries"] < 3 {
		t.Errorf("inspect --watch --lease for 5 s: %v; want 1 query and a point read per drawing", n)
	}
	// 5 s without: one list (the next is due at 10 s).
	if n := watch(5 * time.Second); n["queries"] != 1 {
		t.Errorf("inspect --watch for 5 s: %d queries, want 1 (the list is read every 10 s)", n["queries"])
	}
}

func TestCredentialFailuresAreOneLine(t *testing.T) {
	raw := errors.New("check: unknown: failed to retrieve account properties: DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n\tEnvironmentCredential: missing environment variable AZURE_TENANT_ID")
	got := explainOpenError(raw).Error()
	if strings.Contains(got, "\n") || !strings.Contains(got, "az login") || !strings.Contains(got, "CosmosLeasing__ConnectionString") {
		t.Fatalf("message: %q", got)
	}
}

// inspect --runs shows, per run, how late it started, how long it took, its exit code and the first line of its
// error; PAST DUE means one thing: the work started after the occurrence's own claim window. inspect names a
// lease that was never acquired as such.
func TestInspectRunsColumns(t *testing.T) {
	h := newHarness(t).withServer()
	h.run("inspect", "--emulator").expect(t, ExitOK) // creates the container
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(h.srv.Endpoint),
		Database: h.srv.Database, Container: h.ctr, OwnerID: "app@eastus", Region: "eastus"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UTC().Truncate(time.Second)
	run := func(occ time.Time, work func(context.Context, cosmoslease.Run) error) {
		t.Helper()
		res, err := c.RunOnce(context.Background(), "job", occ, cosmoslease.RunOptions{Instance: "eastus-1",
			Schedule: "*/1 * * * * *", MissedAfter: 20 * time.Second}, work)
		if res.Record.ID == "" {
			t.Fatalf("no run recorded: %v", err)
		}
	}
	late := now.Add(-5 * time.Minute) // started 5 minutes after its occurrence: after its 20 s claim window
	run(late, func(ctx context.Context, r cosmoslease.Run) error { time.Sleep(300 * time.Millisecond); return nil })
	run(now, func(ctx context.Context, r cosmoslease.Run) error {
		r.SetExitCode(3)
		return errors.New("cannot reach the bank: timeout\n  at step 2\n  at step 1")
	})
	r := h.run("inspect", "--emulator", "--runs", "--lease", "job")
	r.expect(t, ExitOK)
	lines := strings.Split(r.stdout, "\n")
	row := func(occ time.Time) []string {
		for _, l := range lines {
			if strings.HasPrefix(l, occ.Format("2006-01-02 15:04:05Z")) {
				return strings.Fields(l)
			}
		}
		t.Fatalf("no row for %s:\n%s", occ, r.stdout)
		return nil
	}
	if !strings.HasPrefix(r.stdout, "Runs of lease job") || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "STATUS LATE TOOK EXIT PAST DUE ERROR OR REASON") {
		t.Fatalf("header:\n%s", r.stdout)
	}
	// OCCURRENCE(2) REGION INSTANCE EPOCH STATUS LATE TOOK EXIT PAST-DUE ERROR…
	if f := row(late); f[5] != "completed" || !strings.HasPrefix(f[6], "5m") || f[8] != "-" || f[9] != "yes" {
		t.Errorf("late run: %q", f)
	}
	if f := row(late); !strings.HasSuffix(f[7], "ms") && !strings.HasSuffix(f[7], "s") {
		t.Errorf("late run took %q", f[7])
	}
	if f := row(now); f[5] != "failed" || f[8] != "3" || f[9] != "no" || strings.Join(f[10:], " ") != "cannot reach the bank: timeout" {
		t.Errorf("failed run: %q", f)
	}
	// Every listed occurrence is before the window's end, or the output says why it is not judged yet.
	if !strings.Contains(r.stdout, "within their claim window (20s)") {
		t.Errorf("the newest occurrence is outside the missed window, unexplained:\n%s", r.stdout)
	}
	// The JSON carries the record and what the table worked out.
	r = h.run("inspect", "--emulator", "--runs", "--lease", "job", "--json")
	var rows []struct {
		Status           string
		ExitCode         *int
		LateMs           *int64
		DurationMs       *int64
		AfterClaimWindow *bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatal(err)
	}
	var sawLate bool
	for _, x := range rows {
		if x.Status == "completed" {
			sawLate = x.AfterClaimWindow != nil && *x.AfterClaimWindow && x.LateMs != nil && *x.LateMs >= 5*60*1000 && x.DurationMs != nil && *x.DurationMs >= 300
		}
	}
	if !sawLate {
		t.Errorf("JSON rows: %s", r.stdout)
	}

	// A lease that was never acquired is named as such, apart from free and released ones.
	h.run("inspect", "--emulator", "--lease", "nosuch").expect(t, ExitOK)
	if r := h.run("inspect", "--emulator", "--lease", "nosuch"); !strings.Contains(r.stdout, "Lease nosuch: no such lease (never acquired). The leases in this container: job.") {
		t.Errorf("inspect --lease nosuch:\n%s", r.stdout)
	}
	if r := h.run("inspect", "--emulator", "--lease", "nosuch", "--json"); !strings.Contains(r.stdout, `"state":"none"`) {
		t.Errorf("inspect --lease nosuch --json:\n%s", r.stdout)
	}
	if r := h.run("inspect", "--emulator", "--lease", "job"); !strings.Contains(r.stdout, "released") || strings.Contains(r.stdout, "no such lease") {
		t.Errorf("inspect --lease job:\n%s", r.stdout)
	}
	if r := h.run("inspect", "--emulator", "--runs", "--lease", "nosuch"); !strings.Contains(r.stdout, "no such lease (never acquired), and no runs") {
		t.Errorf("inspect --runs --lease nosuch:\n%s", r.stdout)
	}
}

// An endpoint nobody answers at is one line naming it and the cause, without the library's and the SDK's
// prefixes; on a terminal a line says what the silence is after 2 s.
func TestUnreachableEndpointIsOneLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String() + "/"
	l.Close() // nothing listens there now: connection refused
	for _, tc := range []struct {
		name string
		args []string
		hint string
	}{
		{"key auth", []string{"inspect", "--connection-string", "AccountEndpoint=" + endpoint + ";AccountKey=" + emulator.Key + ";"}, "check the endpoint"},
		{"emulator", []string{"inspect", "--emulator", "--endpoint", endpoint}, "is the emulator running?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.name == "emulator" {
				t.Skip("-short: the SDK retries an unreachable endpoint for about 10 s; the key auth case shows the message")
			}
			h := newHarness(t)
			h.tty = true
			r := h.run(tc.args...)
			r.expect(t, ExitError, "connecting to "+endpoint+"…\n", "cosmoslease: cannot reach the Cosmos DB account at "+endpoint+": connection refused; "+tc.hint)
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 1 || strings.Contains(r.stderr, "check: ") || strings.Contains(r.stderr, "failed to retrieve account properties") {
				t.Fatalf("want the connecting line and one line of error, got:\n%s", r.stderr)
			}
		})
	}
	t.Run("no such host", func(t *testing.T) {
		err := unreachable("https://nosuch.invalid/", &net.DNSError{Err: "no such host", Name: "nosuch.invalid", IsNotFound: true}, "hint")
		if err == nil || err.Error() != "cannot reach the Cosmos DB account at https://nosuch.invalid/: no such host nosuch.invalid; hint" {
			t.Fatalf("%v", err)
		}
	})
}
