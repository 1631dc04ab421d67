//go:build linux || darwin

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// These tests start this project's handler as the host starts it and speak the host's protocol to it.

var binary string

func TestMain(m *testing.M) { os.Exit(cosmostest.MainWithBinary(m, ".", &binary)) }

// The functions of the handler: the job LeaseTimer (its settings those of the single-job handler) and the
// status function.
const (
	fnTimer  = "LeaseTimer"
	fnStatus = "LeaseStatus"
)

// tickResult is a timer function's return value.
type tickResult = functionshost.Result

// httpOutput is the "res" output of LeaseStatus.
type httpOutput struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

// instance is one handler process, started the way the Functions host starts it.
type instance struct {
	region, pod    string
	port           int
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	invocations    atomic.Int64 // the host numbers its invocations; the tests post several at once
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// lines waits until the buffer holds at least n lines (a process's output is copied from its pipe in the
// background, so it can trail the HTTP answer), and returns them.
func (s *syncBuf) lines(t *testing.T, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		text := strings.TrimSpace(s.String())
		if lines := strings.Split(text, "\n"); text != "" && len(lines) >= n || time.Now().After(deadline) {
			if text == "" {
				return nil
			}
			return lines
		}
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// site is the Function App's name in every region of the tests; the region tells the apps' leases apart.
const site = "cosmoslease-func"

// startHandler starts the handler of a region's app as the host starts it on an instance named pod.
func startHandler(t *testing.T, region, pod string, env map[string]string) *instance {
	t.Helper()
	return startHandlerIn(t, t.TempDir(), region, pod, env)
}

// startHandlerIn starts it in the app's root dir, which holds the app's files.
func startHandlerIn(t *testing.T, dir, region, pod string, env map[string]string) *instance {
	t.Helper()
	in := &instance{region: region, pod: pod, port: freePort(t), stdout: &syncBuf{}, stderr: &syncBuf{}}
	in.cmd = exec.Command(binary)
	in.cmd.Dir = dir
	in.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "FUNCTIONS_CUSTOMHANDLER_PORT=" + strconv.Itoa(in.port),
		"REGION_NAME=" + region, "WEBSITE_SITE_NAME=" + site, "WEBSITE_POD_NAME=" + pod}
	for k, v := range env {
		in.cmd.Env = append(in.cmd.Env, k+"="+v)
	}
	in.cmd.Stdout, in.cmd.Stderr = in.stdout, in.stderr
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.cmd.Process.Kill(); _ = in.cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.port))
		if err == nil {
			c.Close()
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler for %s did not listen: %s%s", region, in.stdout.String(), in.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The host's invocations of a timer function, as internal/functionshost builds them for the demo and the tools
// (PascalCase, the timer status's dates as Json.NET writes them; see there).
var (
	monitoredTick   = functionshost.MonitoredTick
	unmonitoredTick = functionshost.UnmonitoredTick
	fired           = functionshost.Fired
)

type reply struct {
	region string
	status int
	raw    map[string]json.RawMessage
	logs   []string
	ret    tickResult
}

func (in *instance) post(t *testing.T, fn string, body []byte) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(in.port)+"/"+fn, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", "inv-"+strconv.FormatInt(in.invocations.Add(1), 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", in.region, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{region: in.region, status: resp.StatusCode}
	if err := json.Unmarshal(b, &r.raw); err != nil {
		t.Fatalf("%s answered %s", in.region, b)
	}
	_ = json.Unmarshal(r.raw["Logs"], &r.logs)
	_ = json.Unmarshal(r.raw["ReturnValue"], &r.ret)
	return r
}

// tick sends one occurrence to every instance at once, as each region's timer fires.
func tick(t *testing.T, ins []*instance, next time.Time) []reply {
	return tickJob(t, ins, fnTimer, next)
}

// tickJob sends one occurrence of job fn to every instance at once.
func tickJob(t *testing.T, ins []*instance, fn string, next time.Time) []reply {
	out := make([]reply, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = in.post(t, fn, unmonitoredTick(fired(next))) }()
	}
	wg.Wait()
	for _, r := range out {
		if len(r.raw) != 3 || r.raw["Outputs"] == nil || r.raw["Logs"] == nil || r.raw["ReturnValue"] == nil {
			t.Fatalf("%s: response %d %v is not {Outputs, Logs, ReturnValue}", r.region, r.status, r.raw)
		}
		if want := map[bool]int{false: 200, true: 500}[r.ret.Status == "failed"]; r.status != want {
			t.Fatalf("%s: answered %d for %+v, want %d", r.region, r.status, r.ret, want)
		}
	}
	return out
}

// executed returns the replies that ran the work; any answer but executed or skipped fails the test.
func executed(t *testing.T, rs []reply) []reply {
	t.Helper()
	var out []reply
	for _, r := range rs {
		switch r.ret.Status {
		case "executed":
			out = append(out, r)
		case "skipped":
		default:
			t.Fatalf("%s answered %+v; logs %v", r.region, r.ret, r.logs)
		}
	}
	return out
}

// handlerEnv is the app settings of the tests' Function Apps, on a container of their own: ticks 3 s apart (the
// last of three regions, 2 s late, contends before the next), a lease of 6 s, regions preferred in the order
// eastus, westeurope, southeastasia, 1 s apart. The name of the container is in CosmosLeasing__ContainerName.
func handlerEnv(t *testing.T) map[string]string {
	srv := cosmostest.Get(t)
	container := "handler-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := emulator.EnsureContainer(context.Background(), srv.Endpoint, srv.Database, container, "/leaseKey"); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"CosmosLeasing__ConnectionString": emulator.ConnectionString(srv.Endpoint),
		"CosmosLeasing__DatabaseName": srv.Database, "CosmosLeasing__ContainerName": container, "LeaseTimerSchedule": "*/3 * * * * *",
		"CosmosLeasing__DefaultLeaseDuration": "00:00:06", "LeaseTimerPreferredRegions": "eastus,westeurope,southeastasia",
		"LeaseTimerFailoverDelay": "00:00:01"}
}

// Three regions' processes driven as the host drives them, on the real clock: the preferred region executes
// every occurrence; after SIGKILL the very next occurrence executes in the next region, one failover delay
// late, so no occurrence is missed; a new process of the killed region takes the work back at the next
// occurrence; no occurrence ever executes twice, and LeaseStatus counts none missed.
func TestThreeRegionsPreferenceFailoverAndHandback(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: three handler processes on the real clock")
	}
	env := handlerEnv(t)
	env["LeaseTimerSchedule"] = "*/4 * * * * *"
	const gap = 4 * time.Second
	ins := []*instance{startHandler(t, "eastus", "eastus-pod-1", env), startHandler(t, "westeurope", "westeurope-pod-1", env),
		startHandler(t, "southeastasia", "southeastasia-pod-1", env)}
	next := time.Now().UTC().Truncate(gap).Add(gap)
	time.Sleep(time.Until(next))
	first := next
	step := func(want string, live []*instance) reply {
		t.Helper()
		rs := tick(t, live, next)
		ex := executed(t, rs)
		if len(ex) != 1 || ex[0].region != want {
			t.Fatalf("occurrence %s: executed by %v, want exactly %s: %+v", next.Format(time.RFC3339), ex, want, rs)
		}
		for _, r := range rs {
			if r.region != want && !strings.Contains(r.ret.Reason, "claimed by "+site+"@"+want) {
				t.Fatalf("%s skipped without naming the claimer: %+v", r.region, r.ret)
			}
		}
		next = next.Add(gap)
		time.Sleep(time.Until(next))
		return ex[0]
	}
	for range 3 {
		if r := step("eastus", ins); r.ret.Rank != 0 || r.ret.FailoverDelayMs > 900 {
			t.Fatalf("the preferred region ran late: %+v", r.ret)
		}
	}

	// The preferred region stops for good: the very next occurrence runs in the next region, one delay late.
	_ = ins[0].cmd.Process.Signal(syscall.SIGKILL)
	survivors := ins[1:]
	r := step("westeurope", survivors)
	if d := r.ret.FailoverDelayMs; r.ret.Rank != 1 || d < 1000 || d > 2500 {
		t.Fatalf("failover: %+v; want rank 1 starting about 1 s after the occurrence", r.ret)
	}
	// eastus is now marked absent: westeurope runs the following occurrences on time.
	if r := step("westeurope", survivors); r.ret.FailoverDelayMs > 900 {
		t.Fatalf("the occurrence after the failover ran late: %+v", r.ret)
	}

	// A new process of the preferred region: it takes the work back within two occurrences (at its first tick it
	// may race westeurope, which does not wait for an absent region; it clears its absent mark then).
	ins[0] = startHandler(t, "eastus", "eastus-pod-2", env)
	rs := tick(t, ins, next)
	if ex := executed(t, rs); len(ex) != 1 || ex[0].region != "eastus" && ex[0].region != "westeurope" {
		t.Fatalf("occurrence %s: executed by %v, want eastus or westeurope", next.Format(time.RFC3339), ex)
	}
	next = next.Add(gap)
	time.Sleep(time.Until(next))
	if r := step("eastus", ins); r.ret.Instance != "eastus-pod-2" {
		t.Fatalf("handback: %+v", r.ret)
	}

	// Every occurrence once, none missed.
	recs := runRecords(t, env["CosmosLeasing__ContainerName"], "timer-singleton")
	seen := map[time.Time]string{}
	for _, r := range recs {
		if _, dup := seen[r.Occurrence]; dup {
			t.Fatalf("occurrence %v recorded twice", r.Occurrence)
		}
		seen[r.Occurrence] = r.Region
		if r.Status != cosmoslease.RunCompleted || r.FinishedAt.IsZero() || r.Epoch == 0 {
			t.Fatalf("run record %+v", r)
		}
	}
	for occ := first; occ.Before(next); occ = occ.Add(gap) {
		if seen[occ] == "" {
			t.Fatalf("occurrence %s has no run record: %v", occ.Format(time.RFC3339), seen)
		}
	}
	if len(recs) != 7 {
		t.Fatalf("%d run records, want 7", len(recs))
	}

	// LeaseStatus answers the host's HTTP invocation: the lease (released between runs), the runs, none missed.
	resp := ins[1].post(t, fnStatus, []byte(`{"Data":{"req":{"Url":"http://localhost:7071/api/LeaseStatus","Method":"GET","Query":{},"Headers":{},"Params":{}}},"Metadata":{}}`))
	var res httpOutput
	if err := json.Unmarshal(resp.raw["Outputs"], &struct{ Res *httpOutput }{&res}); err != nil || res.StatusCode != 200 {
		t.Fatalf("LeaseStatus outputs: %s", resp.raw["Outputs"])
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(res.Body), &body); err != nil || body["state"] != "released" || body["owner"] != site+"@eastus" ||
		body["instance"] != "eastus-pod-2" || body["missedCount"] != 0.0 {
		t.Fatalf("LeaseStatus body: %s", res.Body)
	}
}

// The host kills the handler (SIGKILL, never SIGTERM) on timeouts and restarts, and starts a new process on
// a new instance. Between occurrences no lease is held, so the new process of the preferred region simply
// executes the next occurrence, at the next epoch.
func TestRecycledRegionExecutesTheNextOccurrence(t *testing.T) {
	env := handlerEnv(t)
	ins := []*instance{startHandler(t, "eastus", "eastus-pod-1", env), startHandler(t, "westeurope", "westeurope-pod-1", env),
		startHandler(t, "southeastasia", "southeastasia-pod-1", env)}
	next := time.Now().UTC().Truncate(3 * time.Second).Add(3 * time.Second)
	time.Sleep(time.Until(next))
	var active reply
	for range 2 {
		if ex := executed(t, tick(t, ins, next)); len(ex) != 1 {
			t.Fatalf("%d regions executed one occurrence", len(ex))
		} else {
			active = ex[0]
		}
		next = next.Add(3 * time.Second)
		time.Sleep(time.Until(next))
	}
	// Recycle the active region: kill its process, start another on a new instance.
	ins[0] = func() *instance {
		_ = ins[0].cmd.Process.Signal(syscall.SIGKILL)
		return startHandler(t, "eastus", "eastus-pod-2", env)
	}()
	time.Sleep(time.Until(next))
	ex := executed(t, tick(t, ins, next))
	if len(ex) != 1 || ex[0].region != "eastus" || ex[0].ret.Instance != "eastus-pod-2" || ex[0].ret.Epoch != active.ret.Epoch+1 {
		t.Fatalf("after the recycle %+v executed; want eastus's new instance at epoch %d", ex, active.ret.Epoch+1)
	}
}

// The host logs Logs of a 2xx answer, and every stdout (information) and stderr (error) line: each line must
// go one way only. Successful and skipped ticks keep their lines in Logs; a failed tick is answered 500 and its
// reason is one line on stderr.
func TestEveryLineLoggedOnce(t *testing.T) {
	env := handlerEnv(t)
	in := startHandler(t, "eastus", "eastus-pod-1", env)
	next := time.Now().UTC().Truncate(3 * time.Second)
	var kept []string
	for _, want := range []string{"executed", "skipped"} { // the second is the same occurrence again
		r := in.post(t, fnTimer, unmonitoredTick(fired(next)))
		if r.status != 200 || r.ret.Status != want || len(r.logs) == 0 {
			t.Fatalf("answer %d %+v, Logs %v; want 200, %s, with Logs", r.status, r.ret, r.logs, want)
		}
		kept = append(kept, r.logs...)
	}
	// A document that is not a lease where the lease should be: the tick cannot run.
	body := `{"id":"lease-timer-singleton","leaseKey":"timer-singleton","note":"edited by hand"}`
	srv := cosmostest.Get(t)
	if _, err := srv.Container(t, env["CosmosLeasing__ContainerName"]).UpsertItem(context.Background(), azcosmos.NewPartitionKeyString("timer-singleton"), []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	r := in.post(t, fnTimer, unmonitoredTick(fired(next.Add(3*time.Second))))
	if r.status != 500 || r.ret.Status != "failed" || len(r.logs) != 0 {
		t.Fatalf("answer %d %+v, Logs %v; want 500 and no Logs", r.status, r.ret, r.logs)
	}
	errLines := in.stderr.lines(t, 1)
	time.Sleep(100 * time.Millisecond) // stdout is copied by a goroutine of its own
	stdout, stderr := in.stdout.String(), in.stderr.String()
	if len(errLines) != 1 || errLines[0] != "LeaseTimer (invocation inv-3): failed: "+r.ret.Reason {
		t.Fatalf("stderr:\n%s\nwant one line with the reason %q", stderr, r.ret.Reason)
	}
	if strings.Contains(stdout, r.ret.Reason) {
		t.Fatalf("the reason is on stdout too:\n%s", stdout)
	}
	for _, l := range kept {
		if strings.Contains(stdout, l) || strings.Contains(stderr, l) {
			t.Fatalf("%q is in Logs and on stdout or stderr:\n%s%s", l, stdout, stderr)
		}
	}
}

func TestBadSettingsFailTheInvocationAndWriteNothing(t *testing.T) {
	srv := cosmostest.Get(t)
	container := "handler-bad-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := emulator.EnsureContainer(context.Background(), srv.Endpoint, srv.Database, container, "/leaseKey"); err != nil {
		t.Fatal(err)
	}
	good := map[string]string{"CosmosLeasing__ConnectionString": emulator.ConnectionString(srv.Endpoint),
		"CosmosLeasing__DatabaseName": srv.Database, "CosmosLeasing__ContainerName": container, "LeaseTimerSchedule": "0 */1 * * * *"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"missing endpoint", map[string]string{"CosmosLeasing__DatabaseName": srv.Database, "LeaseTimerSchedule": "0 */1 * * * *"}, "no Cosmos DB account configured"},
		{"missing schedule", map[string]string{"CosmosLeasing__ConnectionString": emulator.ConnectionString(srv.Endpoint)}, "LeaseTimerSchedule is not set"},
		{"bad duration", merge(good, map[string]string{"CosmosLeasing__DefaultLeaseDuration": "a while"}), "CosmosLeasing__DefaultLeaseDuration"},
		{"lease too short", merge(good, map[string]string{"CosmosLeasing__DefaultLeaseDuration": "00:00:03"}), "from 00:00:06 to 00:10:00"},
		{"retention shorter than a day", merge(good, map[string]string{"LeaseTimerRunRetention": "01:00:00"}), "LeaseTimerRunRetention (01:00:00) is too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := startHandler(t, "eastus", "eastus-pod-1", tc.env)
			next := time.Now().UTC().Truncate(time.Minute)
			r := in.post(t, fnTimer, monitoredTick(time.Time{}, next, fired(next), false))
			if r.status != 500 || r.ret.Status != "failed" || !strings.Contains(r.ret.Reason, tc.want) {
				t.Fatalf("answer %d %+v, want 500 (a failed invocation) saying %q", r.status, r.ret, tc.want)
			}
			// The reason is an error line on stderr: once at start, once for the invocation.
			lines := in.stderr.lines(t, 2)
			if len(lines) != 2 || !strings.Contains(lines[0], tc.want) || !strings.HasPrefix(lines[1], "LeaseTimer (invocation inv-1): failed: ") ||
				!strings.Contains(lines[1], tc.want) {
				t.Fatalf("stderr:\n%s\nwant the reason at start and for the invocation", in.stderr.String())
			}
		})
	}
	cs, err := cosmosstore.Open(cosmosstore.Config{ConnectionString: emulator.ConnectionString(srv.Endpoint), Database: srv.Database, Container: container})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if items, _, err := cs.List(context.Background(), ""); err != nil || len(items) != 0 {
		t.Fatalf("bad settings wrote %d documents (%v)", len(items), err)
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// runRecords reads up to 1000 of the newest run records of a lease in a container of the test server.
func runRecords(t testing.TB, container, key string) []cosmoslease.RunRecord {
	t.Helper()
	srv := cosmostest.Get(t)
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(srv.Endpoint),
		Database: srv.Database, Container: container, OwnerID: "test-reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs, err := c.Runs(context.Background(), key, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
