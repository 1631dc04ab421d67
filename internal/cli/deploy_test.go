package cli

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	if strings.Join(names, ",") != "LeaseStatus/function.json,LeaseTimer/function.json,host.json,leasehandler" {
		t.Fatalf("%s got a zip holding %v", app, names)
	}
}

// Item 12: one zip deployment per region's app, the right zip, regions reported one by one; a failed region is
// reported and the others still go, and the exit code is 1.
func TestDeployToEveryRegion(t *testing.T) {
	marker := fmt.Sprintf("my-work-%d", time.Now().UnixNano())
	h := newHarness(t)
	h.dir = userModule(t, marker)
	recordSetup(t, h.dir)
	log := h.stubAz("ok")
	r := h.run("deploy")
	r.expect(t, ExitOK, "Building functions/leasehandler for linux/amd64", "[1/3] eastus: func-abc123-0 deployed", "[3/3] southeastasia: func-abc123-2 deployed")
	zipPath := filepath.Join(h.dir, "dist", "functionapp-linux-amd64.zip")
	want := []string{"deployment group show --resource-group rg-demo --name cosmoslease-demo --subscription " + sub1 + " --output json"}
	for _, a := range apps3 {
		want = append(want, "functionapp deployment source config-zip --resource-group rg-demo --name "+a.name+" --src "+zipPath+" --subscription "+sub1)
	}
	if got := azCalls(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("az calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, a := range apps3 {
		checkDeployedZip(t, log, a.name, marker)
		if !strings.Contains(r.stdout, a.region) || !strings.Contains(r.stdout, a.name+"    ") {
			t.Fatalf("stdout does not report %s:\n%s", a.name, r.stdout)
		}
	}

	// One region fails: it is named with az's reason, the next region still gets the build, exit 1.
	log = h.stubAz("ok", "AZ_STUB_FAIL_APPS=func-abc123-1")
	r = h.run("deploy")
	r.expect(t, ExitError, "[2/3] westeurope: func-abc123-1 FAILED: (ResourceNotFound) The Resource 'Microsoft.Web/sites/func-abc123-1' under resource group 'rg-demo' was not found.",
		"[3/3] southeastasia: func-abc123-2 deployed",
		"cosmoslease: the deployment failed in 1 of 3 regions (westeurope; the reasons are above); the other regions run the new build")
	if n := callsStarting(t, log, "functionapp deployment source config-zip"); n != 3 {
		t.Fatalf("%d zip deployments after a failure, want 3", n)
	}
	if !strings.Contains(r.stdout, "func-abc123-1            failed") || !strings.Contains(r.stdout, "func-abc123-2            deployed") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
}

func TestDeployDryRun(t *testing.T) {
	h := newHarness(t)
	recordSetup(t, h.dir)
	log := h.stubAz("ok")
	r := h.run("deploy", "--dry-run")
	r.expect(t, ExitOK)
	for _, a := range apps3 {
		line := "az functionapp deployment source config-zip --resource-group rg-demo --name " + a.name + " --src dist/functionapp-linux-amd64.zip --subscription " + sub1
		if !strings.Contains(r.stdout, line) {
			t.Fatalf("dry run lacks %q:\n%s", line, r.stdout)
		}
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
		"deploy builds the lease handler from the Go module in the working directory, but "+h.dir+" has no go.mod")
	h.stubAz("nodeployment")
	h.run("deploy", "--resource-group", "rg-demo", "--env-name", "other").expect(t, ExitUsage,
		"resource group rg-demo has no deployment cosmoslease-other ((DeploymentNotFound) Deployment 'cosmoslease-other' could not be found.)")
}

// setup --deploy, and setup's offer on a terminal, end with the same deployment.
func TestSetupDeploys(t *testing.T) {
	marker := fmt.Sprintf("my-work-%d", time.Now().UnixNano())
	dir := userModule(t, marker)

	h := newHarness(t)
	h.dir = dir
	log := h.stubAz("ok")
	h.run(append(fullSetup, "--deploy")...).expect(t, ExitOK, "[3/3] southeastasia: func-abc123-2 deployed")
	if n := callsStarting(t, log, "functionapp deployment source config-zip"); n != 3 {
		t.Fatalf("setup --deploy made %d zip deployments", n)
	}
	checkDeployedZip(t, log, "func-abc123-0", marker)

	h = newHarness(t)
	h.dir = dir
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
