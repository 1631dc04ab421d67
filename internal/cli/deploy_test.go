package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/config"
)

// userModule copies this repository's module into a temporary directory, as a user's copy would be, and adds
// to the handler a file of "their work" holding marker, so a test can tell that deploy built this copy.
func userModule(t *testing.T, marker string) string {
	t.Helper()
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		switch {
		case d.IsDir() && (rel == "testdata" || rel == "docs" || rel == "dist" || rel == "bin" || rel == ".git"):
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular() || rel == ".git" || strings.HasSuffix(rel, "_test.go") || rel == config.LocalFile:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	work := fmt.Sprintf("package main\n\nimport \"os\"\n\nfunc init() { os.Setenv(\"COSMOSLEASE_TEST_WORK\", %q) }\n", marker)
	if err := os.WriteFile(filepath.Join(dst, "functions", "leasehandler", "mywork.go"), []byte(work), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// recordSetup writes what setup records after deploying environment demo to rg-demo.
func recordSetup(t *testing.T, dir string) {
	t.Helper()
	if err := config.WriteSection(filepath.Join(dir, config.LocalFile), setupSection, []config.Pair{{Key: "Mode", Value: "azure"},
		{Key: "Subscription", Value: sub1}, {Key: "ResourceGroup", Value: "rg-demo"}, {Key: "EnvironmentName", Value: "demo"}}); err != nil {
		t.Fatal(err)
	}
}

var apps3 = []struct{ name, region string }{{"func-abc123-0", "eastus"}, {"func-abc123-1", "westeurope"}, {"func-abc123-2", "southeastasia"}}

// checkDeployedZip opens the zip the stub az received for app and checks it is the Flex Consumption package of
// the user's module: the host's layout, a linux/amd64 executable, and the user's work in it.
func checkDeployedZip(t *testing.T, logPath, app, marker string) {
	t.Helper()
	zr, err := zip.OpenReader(logPath + ".zip." + app)
	if err != nil {
		t.Fatalf("no zip was deployed to %s: %v", app, err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name != "leasehandler" {
			continue
		}
		if f.Mode().Perm()&0o111 == 0 {
			t.Fatalf("%s: the handler is not executable in the zip (%v)", app, f.Mode())
		}
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil || ef.Machine != elf.EM_X86_64 {
			t.Fatalf("%s: the handler is not a linux/amd64 executable: %v", app, err)
		}
		if !bytes.Contains(b, []byte(marker)) {
			t.Fatalf("%s: the handler was not built from the module in the working directory (no %s in it)", app, marker)
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "LeaseStatus/function.json,LeaseTimer/function.json,LeaseTrigger/function.json,host.json,leasehandler" {
		t.Fatalf("%s got a zip holding %v", app, names)
	}
}

// stubFunctionKey is the key the stub az gives for LeaseStatus; no output may ever contain it.
const stubFunctionKey = "stubFunctionKey0000000000000000000000000000000000000AzFuQ=="

// leaseStatusStandIn stands in for the apps' LeaseStatus over HTTP. The harness sends https://HOST to
// srv.URL/HOST, so the first path segment names the app. Like the host, it answers 401 without the function's
// key; an app in fail answers 500 (what the host answers when the handler cannot read the lease) that many times
// first, or always for a negative count. Its answer is the handler's statusBody (functions/leasehandler), with a
// field deploy does not know.
type leaseStatusStandIn struct {
	mu    sync.Mutex
	srv   *httptest.Server
	fail  map[string]int
	calls map[string]int
	keys  []string
}

func newLeaseStatusStandIn(t *testing.T, h *harness) *leaseStatusStandIn {
	s := &leaseStatusStandIn{fail: map[string]int{}, calls: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		host, path, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		app := strings.TrimSuffix(host, ".azurewebsites.net")
		s.calls[app]++
		s.keys = append(s.keys, r.Header.Get("x-functions-key"))
		switch {
		case r.Method != http.MethodGet || path != "api/LeaseStatus":
			http.NotFound(w, r)
		case r.Header.Get("x-functions-key") != stubFunctionKey:
			w.WriteHeader(http.StatusUnauthorized)
		case s.fail[app] != 0:
			s.fail[app]--
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"lease":"timer-singleton","state":"held","owner":"func-abc123-0","region":"eastus","instance":"a1b2c3d4e5f6",`+
				`"epoch":3,"expiresInMs":41250,"renewals":17,"recentRuns":[`+
				`{"id":"run-timer-singleton-20261126T070500.000Z","leaseKey":"timer-singleton","type":"run","occurrence":"2026-11-26T07:05:00Z","region":"eastus","owner":"func-abc123-0","instance":"a1b2c3d4e5f6","epoch":3,"pastDue":false,"status":"completed","startedAt":"2026-11-26T07:05:00.112Z","finishedAt":"2026-11-26T07:05:01.020Z"},`+
				`{"id":"run-timer-singleton-20261126T070400.000Z","leaseKey":"timer-singleton","type":"run","occurrence":"2026-11-26T07:04:00Z","region":"westeurope","owner":"func-abc123-1","instance":"f6e5d4c3b2a1","epoch":2,"pastDue":false,"status":"lost","startedAt":"2026-11-26T07:04:00.090Z","finishedAt":"2026-11-26T07:04:30.500Z","error":"lease lost"}],`+
				`"missedOccurrences":[]}`)
		}
	}))
	t.Cleanup(s.srv.Close)
	h.leaseStatusURL = func(host string) string { return s.srv.URL + "/" + host }
	return s
}

const answered = "deployed; LeaseStatus answered: lease timer-singleton held by eastus (func-abc123-0), epoch 3; newest run 2026-11-26T07:05:00Z in eastus: completed"

// noKey fails when an output shows the function key.
func (r result) noKey(t *testing.T) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, stubFunctionKey) {
		t.Fatalf("the function key was printed:\n%s\n%s", r.stdout, r.stderr)
	}
}

// regionCalls are the az calls deploy makes for one app: the zip deployment, then its key (the host name comes
// from the deployment's outputs).
func regionCalls(app, zipPath string, verify bool) []string {
	calls := []string{"functionapp deployment source config-zip --resource-group rg-demo --name " + app + " --src " + zipPath + " --subscription " + sub1}
	if verify {
		calls = append(calls, "functionapp function keys list --resource-group rg-demo --name "+app+" --function-name LeaseStatus --subscription "+sub1+" --output json")
	}
	return calls
}

// Item 12 (issue 12), items 3 and rolling order (issue 18): one zip deployment per region's app, the most
// preferred region (eastus, setup's --location) last; after each, its LeaseStatus answers and deploy prints the
// lease and the newest run, one line per region; the key never shows. A failed region is reported and the others
// still go, and the exit code is 1.
func TestDeployToEveryRegion(t *testing.T) {
	marker := fmt.Sprintf("my-work-%d", time.Now().UnixNano())
	h := newHarness(t)
	h.dir = userModule(t, marker)
	h.prebuilt = testing.Short() // -short: the rolling deployment, without building the user's copy
	recordSetup(t, h.dir)
	status := newLeaseStatusStandIn(t, h)
	log := h.stubAz("ok")
	r := h.run("deploy")
	r.expect(t, ExitOK, "Building github.com/cosmoslease/cosmoslease/functions/leasehandler for linux/amd64", "the most preferred (eastus) last: southeastasia, westeurope, eastus.",
		"[1/3] southeastasia: func-abc123-2 deployed", "[3/3] eastus: func-abc123-0 deployed",
		"[3/3] eastus: func-abc123-0 answers: lease timer-singleton held by eastus")
	r.noKey(t)
	zipPath := filepath.Join(h.dir, "dist", "functionapp-linux-amd64.zip")
	want := []string{"version --output json", "deployment group show --resource-group rg-demo --name cosmoslease-demo --subscription " + sub1 + " --output json"}
	for _, a := range []string{"func-abc123-2", "func-abc123-1", "func-abc123-0"} {
		want = append(want, regionCalls(a, zipPath, true)...)
	}
	if got := azCalls(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("az calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	first, err := os.ReadFile(log + ".zip." + apps3[2].name)
	if err != nil {
		t.Fatal(err)
	}
	if !testing.Short() {
		checkDeployedZip(t, log, apps3[2].name, marker)
	}
	for i, a := range []struct{ name, region string }{apps3[2], apps3[1], apps3[0]} {
		// Every region got the same zip, checked above (decompressing the handler under -race takes seconds).
		if b, err := os.ReadFile(log + ".zip." + a.name); err != nil || !bytes.Equal(b, first) {
			t.Fatalf("%s did not get the zip %s got: %v", a.name, apps3[2].name, err)
		}
		if !strings.HasPrefix(lines[i], a.region) || !strings.Contains(lines[i], a.name+"    ") || !strings.HasSuffix(lines[i], answered) {
			t.Fatalf("stdout line %d does not report %s:\n%s", i, a.name, r.stdout)
		}
	}
	if len(status.keys) != 3 || status.keys[0] != stubFunctionKey {
		t.Fatalf("LeaseStatus was called with keys %q", status.keys)
	}

	// One region fails: it is named with az's reason, at once (one attempt), the next region still gets the build,
	// exit 1.
	h.prebuilt = true // the build was tested above
	log = h.stubAz("ok", "AZ_STUB_FAIL_APPS=func-abc123-1")
	h.waited = nil
	r = h.run("deploy")
	r.expect(t, ExitError, "[2/3] westeurope: func-abc123-1 FAILED: (ResourceNotFound) The Resource 'Microsoft.Web/sites/func-abc123-1' under resource group 'rg-demo' was not found.",
		"[3/3] eastus: func-abc123-0 deployed",
		"cosmoslease: 1 of 3 regions did not deploy and answer (westeurope failed; the reasons are above); the others run the new build")
	if n := callsStarting(t, log, "functionapp deployment source config-zip"); n != 3 || len(h.waited) != 0 {
		t.Fatalf("%d zip deployments after a failure (want 3), waits %v", n, h.waited)
	}
	if !strings.Contains(r.stdout, "func-abc123-1            failed") || !strings.Contains(r.stdout, "func-abc123-0            "+answered) {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
}

// Item 1: right after setup the app's storage role is not in effect and the publish is refused with a storage 403
// (az's error: "An error occured during deployment. Status Code: 400, Details: InaccessibleStorageException …
// 403 (… using this permission.)"). deploy says what it waits for, backs off and tries again; the region is
// deployed and deploy exits 0. A 403 that lasts past 20 minutes of waiting (issue 27, item 4) fails the region,
// saying what to check.
func TestDeployWaitsForTheStorageRole(t *testing.T) {
	h := newHarness(t)
	h.dir = userModule(t, "storage-role")
	h.prebuilt = true // about az; TestDeployToEveryRegion tests the build
	recordSetup(t, h.dir)
	newLeaseStatusStandIn(t, h)
	log := h.stubAz("ok", "AZ_STUB_ZIP_ERRORS=func-abc123-1:storage-403:2")
	r := h.run("deploy")
	r.expect(t, ExitOK, "[2/3] westeurope: func-abc123-1: waiting for the app's storage role to take effect (Azure refused the package: storage 403, not authorized using this permission); trying again in 15s",
		"trying again in 30s", "[2/3] westeurope: func-abc123-1 deployed")
	if n := callsStarting(t, log, "functionapp deployment source config-zip --resource-group rg-demo --name func-abc123-1 "); n != 3 {
		t.Fatalf("%d attempts for func-abc123-1, want 3", n)
	}
	if fmt.Sprint(h.waited) != "[15s 30s]" {
		t.Fatalf("waited %v", h.waited)
	}
	if !strings.Contains(r.stdout, "func-abc123-1            "+answered) {
		t.Fatalf("stdout:\n%s", r.stdout)
	}

	log = h.stubAz("ok", "AZ_STUB_ZIP_ERRORS=func-abc123-1:storage-403:1000")
	h.waited = nil
	r = h.run("deploy", "--no-verify")
	r.expect(t, ExitError, "[2/3] westeurope: func-abc123-1 FAILED: An error occured during deployment. Status Code: 400, Details: InaccessibleStorageException",
		"(still refused after waiting 20m0s for the app's storage role: check that the app's identity holds Storage Blob Data Owner on its storage account)",
		"[3/3] eastus: func-abc123-0 deployed")
	var total time.Duration
	for _, d := range h.waited {
		total += d
	}
	if total != storageRoleWait || callsStarting(t, log, "functionapp deployment source config-zip --resource-group rg-demo --name func-abc123-1 ") != len(h.waited)+1 {
		t.Fatalf("waited %v (%s in all) over %d attempts", h.waited, total, callsStarting(t, log, "functionapp deployment source config-zip --resource-group rg-demo --name func-abc123-1 "))
	}
}

// Item 2: az uploads the package, then cannot fetch the host key for its health check ("Failed to fetch host key
// to check for function app status", exit code 3): the region is deployed, health unknown, and LeaseStatus then
// tells; with --no-verify it stays "deployed, health unknown". Neither is a failure.
func TestDeployWhenAzCannotFetchTheHostKey(t *testing.T) {
	h := newHarness(t)
	h.dir = userModule(t, "hostkey")
	h.prebuilt = true // about az; TestDeployToEveryRegion tests the build
	recordSetup(t, h.dir)
	status := newLeaseStatusStandIn(t, h)
	log := h.stubAz("ok", "AZ_STUB_HOSTKEY_APPS=func-abc123-0")
	r := h.run("deploy")
	r.expect(t, ExitOK, "[3/3] eastus: func-abc123-0 deployed, health unknown: az uploaded the package but could not check the app (Failed to fetch host key to check for function app status)",
		"[3/3] eastus: func-abc123-0 answers: lease timer-singleton held by eastus")
	if !strings.Contains(r.stdout, "func-abc123-0            "+answered) {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	calls := status.calls["func-abc123-0"]
	log = h.stubAz("ok", "AZ_STUB_HOSTKEY_APPS=func-abc123-0")
	r = h.run("deploy", "--no-verify")
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "func-abc123-0            deployed, health unknown") || !strings.Contains(r.stdout, "func-abc123-2            deployed\n") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	if callsStarting(t, log, "functionapp show") > 0 || callsStarting(t, log, "functionapp function") > 0 || status.calls["func-abc123-0"] != calls {
		t.Fatalf("--no-verify verified: %v", azCalls(t, log))
	}
}

// Item 3: the app's Cosmos DB data role takes a while too: LeaseStatus answering 500 is asked again with backoff
// until it answers; one that never answers within 5 minutes of waiting fails the region's check, exit 1.
func TestDeployWaitsForLeaseStatus(t *testing.T) {
	h := newHarness(t)
	h.dir = userModule(t, "verify")
	h.prebuilt = true // about az; TestDeployToEveryRegion tests the build
	recordSetup(t, h.dir)
	status := newLeaseStatusStandIn(t, h)
	status.fail["func-abc123-0"] = 2
	h.stubAz("ok")
	r := h.run("deploy")
	r.expect(t, ExitOK, "[3/3] eastus: func-abc123-0: waiting for LeaseStatus to answer (HTTP 500: the handler could not read the lease (the app's Cosmos DB data role may not be in effect yet",
		"trying again in 10s", "trying again in 20s", "[3/3] eastus: func-abc123-0 answers:")
	if fmt.Sprint(h.waited) != "[10s 20s]" || status.calls["func-abc123-0"] != 3 {
		t.Fatalf("waited %v, %d calls", h.waited, status.calls["func-abc123-0"])
	}
	r.noKey(t)

	status.fail["func-abc123-1"] = -1
	h.waited = nil
	r = h.run("deploy")
	r.expect(t, ExitError, "[2/3] westeurope: func-abc123-1 deployed, but LeaseStatus did not answer within 5m0s: HTTP 500",
		"1 of 3 regions did not deploy and answer (westeurope: LeaseStatus did not answer; the reasons are above)")
	var total time.Duration
	for _, d := range h.waited {
		total += d
	}
	if total != verifyWait || !strings.Contains(r.stdout, "func-abc123-1            deployed; LeaseStatus did not answer") {
		t.Fatalf("waited %v in all; stdout:\n%s", total, r.stdout)
	}
	r.noKey(t)
}

func TestDeployDryRun(t *testing.T) {
	h := newHarness(t)
	recordSetup(t, h.dir)
	log := h.stubAz("ok")
	r := h.run("deploy", "--dry-run", "--no-input") // --no-input as setup and teardown take it
	r.expect(t, ExitOK)
	var at []int
	for _, a := range apps3 {
		line := "az functionapp deployment source config-zip --resource-group rg-demo --name " + a.name + " --src dist/functionapp-linux-amd64.zip --subscription " + sub1
		if !strings.Contains(r.stdout, line) {
			t.Fatalf("dry run lacks %q:\n%s", line, r.stdout)
		}
		at = append(at, strings.Index(r.stdout, line))
	}
	if !(at[2] < at[1] && at[1] < at[0]) || !strings.Contains(r.stdout, "# then: GET https://func-abc123-0.azurewebsites.net/api/LeaseStatus with the key of az functionapp function keys list") {
		t.Fatalf("dry run: not the most preferred region last, or no check:\n%s", r.stdout)
	}
	if callsStarting(t, log, "functionapp") > 0 {
		t.Fatalf("--dry-run deployed: %v", azCalls(t, log))
	}
	if _, err := os.Stat(filepath.Join(h.dir, "dist")); !os.IsNotExist(err) {
		t.Fatal("--dry-run built the handler")
	}
}

func TestDeployNeedsAnEnvironmentAndAModule(t *testing.T) {
	h := newHarness(t)
	h.stubAz("ok")
	h.run("deploy").expect(t, ExitUsage, "deploy needs the environment that setup made: run it where setup wrote appsettings.Local.json, or pass --resource-group and --env-name")
	config.WriteSection(filepath.Join(h.dir, config.LocalFile), setupSection, []config.Pair{{Key: "Mode", Value: "emulator"}})
	h.run("deploy").expect(t, ExitUsage, "setup made an emulator configuration here, with no Function Apps")
	h.run("deploy", "--resource-group", "rg-demo", "--env-name", "demo").expect(t, ExitUsage,
		"the handler is built with Go in the module of the working directory, but "+h.dir+" has no go.mod")
	// Issue 27, item 5: deploy refuses an az older than 2.60, whose config-zip takes the path of the other plans.
	log := h.stubAz("ok", "AZ_STUB_AZ_VERSION=2.55.0")
	h.run("deploy", "--resource-group", "rg-demo", "--env-name", "demo").expect(t, ExitError, "the Azure CLI is version 2.55.0, and cosmoslease needs 2.60.0 or newer")
	if calls := azCalls(t, log); len(calls) != 1 {
		t.Fatalf("az calls after the version was refused: %v", calls)
	}
	h.stubAz("nodeployment")
	h.run("deploy", "--resource-group", "rg-demo", "--env-name", "other").expect(t, ExitUsage,
		"resource group rg-demo has no deployment cosmoslease-other ((DeploymentNotFound) Deployment 'cosmoslease-other' could not be found.)")
}

// setup --deploy, and setup's offer on a terminal, end with the same deployment.
func TestSetupDeploys(t *testing.T) {
	dir := userModule(t, "setup-deploys")

	h := newHarness(t)
	h.dir = dir
	h.prebuilt = true // what deploy builds is TestDeployToEveryRegion's
	log := h.stubAz("ok")
	newLeaseStatusStandIn(t, h)
	h.run(append(fullSetup, "--deploy")...).expect(t, ExitOK, "[3/3] eastus: func-abc123-0 deployed", "[3/3] eastus: func-abc123-0 answers:")
	if n := callsStarting(t, log, "functionapp deployment source config-zip"); n != 3 {
		t.Fatalf("setup --deploy made %d zip deployments", n)
	}
	_, want, _, err := prebuiltHandler()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(log + ".zip.func-abc123-0"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("setup --deploy did not deploy deploy's package: %v", err)
	}

	h = newHarness(t)
	h.dir = dir
	h.prebuilt = true
	newLeaseStatusStandIn(t, h)
	h.tty = true
	log = h.stubAz("ok")
	h.fake = &fakePrompter{answers: []string{"<default>", "<default>", "yes", "westeurope", "yes", "yes", "yes"}}
	h.run("setup", "--subscription", sub1, "--location", "eastus").expect(t, ExitOK)
	if last := h.fake.asked[len(h.fake.asked)-1]; !strings.HasPrefix(last, "Build the lease handler in "+dir+" and deploy it to the 3 Function Apps now?") {
		t.Fatalf("questions: %v", h.fake.asked)
	}
	if n := callsStarting(t, log, "functionapp deployment source config-zip"); n != 3 {
		t.Fatalf("accepting the offer made %d zip deployments", n)
	}
}

// LeaseStatus's answer is read tolerantly: fields deploy does not know are ignored, the newest run is the latest
// occurrence whatever the order, a free lease names no holder; an answer without lease and state is refused.
func TestLeaseStatusSummary(t *testing.T) {
	for body, want := range map[string]string{
		`{"lease":"k","state":"free","owner":"","region":"","epoch":0,"recentRuns":[],"missed":[{"occurrence":"2026-01-01T00:00:00Z"}],"future":{"x":1}}`:                                                                                        "lease k free; no run yet",
		`{"lease":"k","state":"released","region":"eastus","epoch":4,"recentRuns":[{"occurrence":"2026-01-01T00:01:00Z","region":"eastus","status":"completed"},{"occurrence":"2026-01-01T00:02:00Z","region":"westeurope","status":"failed"}]}`: "lease k released, epoch 4; newest run 2026-01-01T00:02:00Z in westeurope: failed",
		`{"lease":"k","state":"expired","owner":"func-x-1","region":"westeurope","epoch":2,"recentRuns":null}`:                                                                                                                                   "lease k expired, last held by westeurope (func-x-1), epoch 2; no run yet",
	} {
		var s leaseStatus
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatal(err)
		}
		if got := s.summary(); got != want {
			t.Errorf("%s:\n got %q\nwant %q", body, got, want)
		}
	}
}

// appFor is the App that h.run would use, for calling one step of a command directly (no build).
func (h *harness) appFor(stderr io.Writer) *App {
	return &App{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: stderr, Dir: h.dir, Getenv: func(k string) string { return h.env[k] },
		Az: h.az, leaseStatusURL: h.leaseStatusURL, wait: func(_ context.Context, d time.Duration) error { h.waited = append(h.waited, d); return nil }}
}

// Issue 27, items 2 and 3: the other forms in which az reports a Flex publish, one region's deployment at a time
// (deployRegion; the build and the rolling order are TestDeployToEveryRegion's). The deployment-status poll's "Zip
// deployment failed. {… 'status_text': 'InaccessibleStorageException … 403 (… using this permission.)' …}" is the
// role not in effect yet, waited for like the publish's 400 form; the same 403 without "using this permission" is
// the storage firewall, which fails the region at once with what to check; az giving up its polls while Azure still
// deploys is "deployed, health unknown" (then verified through LeaseStatus); a 409 (another deployment going on) is
// tried again 3 times, 30 s apart.
func TestDeployFlexForms(t *testing.T) {
	tgt := target{group: "rg-demo", subscription: sub1, env: "demo"}
	for _, tc := range []struct {
		name, form string
		n          int
		state      string
		unknown    bool
		attempts   int
		waited     string
		says       []string
		never      string
	}{
		{"the poll's 403 of a role not in effect yet", "storage-403-poll", 2, stateDeployed, false, 3, "[15s 30s]",
			[]string{"func-abc123-1: waiting for the app's storage role to take effect (Azure refused the package: storage 403, not authorized using this permission); trying again in 15s", "func-abc123-1 deployed in"}, ""},
		{"the firewall's 403", "storage-403-network", 1000, stateFailed, false, 1, "[]",
			[]string{"func-abc123-1 FAILED: Zip deployment failed: InaccessibleStorageException: Failed to access storage account for deployment: BlobUploadFailedException: Failed to upload blob to storage account: Response status code does not indicate success: 403 (This request is not authorized to perform this operation.). (the storage account's network rules refused the platform, not a missing role: check its publicNetworkAccess",
				"any Azure Policy that disables public network access on storage accounts"}, "These are the deployment logs"},
		{"az gives up its polls while Azure deploys", "timeout", 1, stateDeployed, true, 1, "[]",
			[]string{"func-abc123-1 deployed, health unknown: az stopped waiting while Azure was still deploying the package (Timeout reached by the command, however, the deployment operation is still on-going."}, ""},
		{"another deployment, then done", "409", 2, stateDeployed, false, 3, "[30s 30s]",
			[]string{"func-abc123-1: another deployment to the app is going on (HTTP 409); trying again in 30s (1 of 3)", "(2 of 3)", "func-abc123-1 deployed in"}, ""},
		{"another deployment that stays", "409", 1000, stateFailed, false, 4, "[30s 30s 30s]",
			[]string{"func-abc123-1 FAILED: There may be an ongoing deployment. Please track your deployment in https://func-abc123-1.scm.azurewebsites.net/api/deployments/latest (still going on after 4 tries 30s apart"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz("ok", fmt.Sprintf("AZ_STUB_ZIP_ERRORS=func-abc123-1:%s:%d", tc.form, tc.n))
			var stderr syncBuffer
			r := h.appFor(&stderr).deployRegion(context.Background(), tgt, app{name: "func-abc123-1", region: "westeurope"}, "pkg.zip", "[2/3] westeurope", defaultDeployOptions)
			if r.state != tc.state || r.healthUnknown != tc.unknown {
				t.Fatalf("state %q, health unknown %t; stderr:\n%s", r.state, r.healthUnknown, stderr.String())
			}
			if n := callsStarting(t, log, "functionapp deployment source config-zip --resource-group rg-demo --name func-abc123-1 "); n != tc.attempts || fmt.Sprint(h.waited) != tc.waited {
				t.Fatalf("%d attempts, waited %v", n, h.waited)
			}
			for _, s := range tc.says {
				if !strings.Contains(stderr.String(), s) {
					t.Fatalf("stderr does not say %q:\n%s", s, stderr.String())
				}
			}
			if tc.never != "" && strings.Contains(stderr.String(), tc.never) {
				t.Fatalf("stderr says %q:\n%s", tc.never, stderr.String())
			}
		})
	}
}

// Issue 27, item 6: the host name comes from the deployment's outputs (functionAppHostNames), sparing az functionapp
// show and the publishxml/action right it needs (TestDeployToEveryRegion's calls have none); a deployment made
// before that output existed still works, through az functionapp show.
func TestDeployHostNames(t *testing.T) {
	tgt := target{group: "rg-demo", subscription: sub1, env: "demo"}
	for _, host := range []string{"func-abc123-0.azurewebsites.net", ""} {
		h := newHarness(t)
		status := newLeaseStatusStandIn(t, h)
		log := h.stubAz("ok")
		var stderr syncBuffer
		summary, err := h.appFor(&stderr).verifyRegion(context.Background(), tgt, app{name: "func-abc123-0", region: "eastus", host: host}, "[3/3] eastus")
		if err != nil || !strings.HasPrefix(summary, "lease timer-singleton held by eastus") || status.calls["func-abc123-0"] != 1 {
			t.Fatalf("host %q: %q, %v; stderr:\n%s", host, summary, err, stderr.String())
		}
		shows := callsStarting(t, log, "functionapp show --resource-group rg-demo --name func-abc123-0 --subscription "+sub1+" --query defaultHostName --output json")
		if (host == "") != (shows == 1) || shows > 1 {
			t.Fatalf("host %q: %d az functionapp show; az calls:\n%s", host, shows, strings.Join(azCalls(t, log), "\n"))
		}
	}
	// The outputs of such a deployment lack the host names; functionApps leaves them empty.
	out, err := os.ReadFile("../../testdata/az/responses/deployment-no-hostnames.json")
	if err != nil {
		t.Fatal(err)
	}
	outs, err := deploymentOutputs(out)
	if err != nil {
		t.Fatal(err)
	}
	if apps := functionApps(outs); len(apps) != 3 || apps[0].host != "" {
		t.Fatalf("apps from the old outputs: %+v", apps)
	}
	out, _ = os.ReadFile("../../testdata/az/responses/deployment.json")
	outs, _ = deploymentOutputs(out)
	if apps := functionApps(outs); len(apps) != 3 || apps[2].host != "func-abc123-2.azurewebsites.net" || apps[2].region != "southeastasia" {
		t.Fatalf("apps from the outputs: %+v", apps)
	}
}
