package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/infra"
	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
)

// stubAz points the harness at testdata/az/az, logging its calls.
func (h *harness) stubAz(scenario string) (logPath string) {
	stub, err := filepath.Abs("../../testdata/az/az")
	if err != nil {
		h.t.Fatal(err)
	}
	logPath = filepath.Join(h.t.TempDir(), "az.log")
	h.az = az.Exec{Path: stub, Env: []string{"PATH=" + os.Getenv("PATH"), "AZ_STUB_LOG=" + logPath, "AZ_STUB_SCENARIO=" + scenario}}
	return logPath
}

func azCalls(t *testing.T, logPath string) []string {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var calls []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			calls = append(calls, regexp.MustCompile(`--template-file \S+`).ReplaceAllString(l, "--template-file TEMPLATE"))
		}
	}
	return calls
}

var fullSetup = []string{"setup", "--subscription", "11111111-1111-1111-1111-111111111111", "--location", "eastus",
	"--regions", "westeurope,southeastasia", "--env-name", "demo", "--yes"}

func TestSetupNonInteractive(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("ok")
	r := h.run(fullSetup...)
	r.expect(t, ExitOK)
	want := []string{
		"version --output json",
		"account show --output json --subscription 11111111-1111-1111-1111-111111111111",
		"ad signed-in-user show --output json",
		"group create --name rg-demo --location eastus --subscription 11111111-1111-1111-1111-111111111111 --tags cosmoslease-env=demo azd-env-name=demo --output json",
		`deployment group create --resource-group rg-demo --subscription 11111111-1111-1111-1111-111111111111 --name cosmoslease-demo --template-file TEMPLATE --parameters environmentName=demo location=eastus regions=\[\"westeurope\"\,\"southeastasia\"\] principalId=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee deployFunctions=true serverless=false --output json`,
	}
	if got := azCalls(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("az calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if b, err := os.ReadFile(log + ".bicep"); err != nil || string(b) != string(infra.MainBicep) {
		t.Fatalf("the deployment was not given the embedded main.bicep (%v)", err)
	}
	path := filepath.Join(h.dir, config.LocalFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("settings file: %v %v", err, fi)
	}
	raw, err := config.Load(h.dir, "", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if ep, _ := raw.Get(config.KeyAccountEndpoint); ep != "https://cosmos-abc123.documents.azure.com:443/" {
		t.Fatalf("AccountEndpoint = %q", ep)
	}
	if cs, _ := raw.Get(config.KeyConnectionString); cs != "" {
		t.Fatal("setup wrote a connection string; it must use endpoint mode")
	}
	rec, _ := config.ReadSection(path, setupSection)
	if rec["ResourceGroup"] != "rg-demo" || rec["FunctionApps"] != "func-abc123-0,func-abc123-1,func-abc123-2" || rec["Mode"] != "azure" {
		t.Fatalf("setup record: %v", rec)
	}
	for _, s := range []string{"cosmoslease run --instance westeurope-1 --region westeurope --wait",
		"az functionapp deployment source config-zip --resource-group rg-demo --name func-abc123-2 --src dist/functionapp-linux-amd64.zip",
		"cosmoslease teardown"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("next steps lack %q:\n%s", s, r.stdout)
		}
	}

	// teardown removes the group setup made, after listing it, and the local file.
	r = h.run("teardown")
	r.expect(t, ExitUsage, "pass --yes")
	if _, err := os.Stat(path); err != nil {
		t.Fatal("teardown without confirmation removed the file")
	}
	os.Truncate(log, 0)
	r = h.run("teardown", "--yes")
	r.expect(t, ExitOK, "Microsoft.DocumentDB/databaseAccounts  cosmos-abc123")
	want = []string{
		"group show --name rg-demo --subscription 11111111-1111-1111-1111-111111111111 --output json",
		"resource list --resource-group rg-demo --subscription 11111111-1111-1111-1111-111111111111 --output json",
		"group delete --name rg-demo --subscription 11111111-1111-1111-1111-111111111111 --yes",
	}
	if got := azCalls(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("teardown az calls:\n%s", strings.Join(got, "\n"))
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("teardown left the settings file")
	}
}

func TestSetupFailures(t *testing.T) {
	for _, tc := range []struct {
		name, scenario string
		args           []string
		code           int
		want           string
	}{
		{"not logged in", "notloggedin", fullSetup, ExitError, "not signed in: run 'az login'"},
		{"unknown subscription", "nosub", fullSetup, ExitUsage, "subscription \"11111111-1111-1111-1111-111111111111\" is not one this az login can use (Subscription '11111111-1111-1111-1111-111111111111' not found"},
		{"deployment failed", "deployfail", fullSetup, ExitError, "az deployment group create failed: BadRequest: Serverless accounts do not support multiple regions."},
		{"no location", "ok", []string{"setup", "--env-name", "demo", "--yes"}, ExitUsage, "setup needs --location (or AZURE_LOCATION)"},
		{"bad region", "ok", []string{"setup", "--location", "East US", "--yes"}, ExitUsage, "programmatic name"},
		{"serverless across regions", "ok", []string{"setup", "--location", "eastus", "--regions", "westeurope", "--serverless", "--yes"}, ExitUsage, "serverless Cosmos DB account cannot span regions"},
		{"region twice", "ok", []string{"setup", "--location", "eastus", "--regions", "eastus", "--yes"}, ExitUsage, "listed twice"},
		{"bad env name", "ok", []string{"setup", "--location", "eastus", "--env-name", "Demo_1", "--yes"}, ExitUsage, "--env-name \"Demo_1\""},
		{"no confirmation", "ok", []string{"setup", "--location", "eastus"}, ExitUsage, "pass --yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz(tc.scenario)
			h.run(tc.args...).expect(t, tc.code, tc.want)
			if _, err := os.Stat(filepath.Join(h.dir, config.LocalFile)); !os.IsNotExist(err) {
				t.Fatal("a failed setup wrote the settings file")
			}
			for _, call := range azCalls(t, log) {
				if strings.HasPrefix(call, "group create") && tc.scenario != "deployfail" {
					t.Fatalf("created a group before failing: %v", azCalls(t, log))
				}
			}
		})
	}
	t.Run("az not installed", func(t *testing.T) {
		h := newHarness(t)
		h.az = az.Exec{Path: filepath.Join(t.TempDir(), "az")}
		h.run(fullSetup...).expect(t, ExitError, "the Azure CLI (az) is not installed")
	})
}

func TestSetupDryRunAndWhatIf(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("ok")
	r := h.run(append(fullSetup, "--dry-run")...)
	r.expect(t, ExitOK)
	for _, call := range azCalls(t, log) {
		if strings.HasPrefix(call, "group create") || strings.HasPrefix(call, "deployment") {
			t.Fatalf("--dry-run ran %q", call)
		}
	}
	if !strings.Contains(r.stdout, "az group create --name rg-demo --location eastus") ||
		!strings.Contains(r.stdout, `az deployment group create --resource-group rg-demo`) || !strings.Contains(r.stdout, `'regions=["westeurope","southeastasia"]'`) {
		t.Fatalf("dry run printed:\n%s", r.stdout)
	}
	r = h.run(append(fullSetup, "--what-if")...)
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "Resource changes: 1 to create.") {
		t.Fatalf("what-if printed:\n%s", r.stdout)
	}
	h.stubAz("nogroup")
	r = h.run(append(fullSetup, "--what-if")...)
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "does not exist yet") {
		t.Fatalf("what-if without a group printed:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(h.dir, config.LocalFile)); !os.IsNotExist(err) {
		t.Fatal("dry run or what-if wrote the settings file")
	}
}

func TestTeardownRefusesWhatSetupDidNotMake(t *testing.T) {
	h := newHarness(t)
	h.stubAz("ok")
	h.run("teardown", "--yes").expect(t, ExitUsage, "records no setup")
	path := filepath.Join(h.dir, config.LocalFile)
	config.WriteSection(path, setupSection, []config.Pair{{Key: "Mode", Value: "azure"}, {Key: "Subscription", Value: "s"}, {Key: "ResourceGroup", Value: "rg-demo"}, {Key: "EnvironmentName", Value: "other"}})
	h.run("teardown", "--yes").expect(t, ExitError, "not tagged cosmoslease-env=other")
	if _, err := os.Stat(path); err != nil {
		t.Fatal("refused teardown removed the file")
	}
}

func TestSetupEmulator(t *testing.T) {
	h := newHarness(t).withServer()
	r := h.run("setup", "--emulator", "--endpoint", h.srv.Endpoint)
	r.expect(t, ExitOK)
	path := filepath.Join(h.dir, config.LocalFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("settings: %v", err)
	}
	// The written configuration works without --emulator.
	delete(h.env, "CosmosLeasing__DatabaseName")
	delete(h.env, "CosmosLeasing__ContainerName")
	h.run("run", "--instance", "a", "--hold-for", "100ms", "--work-interval", "50ms", "--json").expect(t, ExitOK)
	h.run("teardown", "--yes").expect(t, ExitOK)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("teardown left the file")
	}
}

// Every parameter setup passes and every output it reads is declared in main.bicep.
func TestBicepDeclaresWhatSetupUses(t *testing.T) {
	src := string(infra.MainBicep)
	for _, p := range BicepParams {
		if !regexp.MustCompile(`(?m)^param ` + p + ` `).MatchString(src) {
			t.Errorf("main.bicep declares no param %s", p)
		}
	}
	for _, o := range BicepOutputs {
		if !regexp.MustCompile(`(?m)^output ` + o + ` `).MatchString(src) {
			t.Errorf("main.bicep declares no output %s", o)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^param (\w+) \w+( = .*)?$`).FindAllStringSubmatch(src, -1) {
		if m[2] == "" && m[1] != "environmentName" {
			t.Errorf("param %s has no default, but setup does not pass it", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^param (\w+)`).FindAllStringSubmatchIndex(src, -1) {
		before := src[:m[0]]
		lines := strings.Split(strings.TrimRight(before, "\n"), "\n")
		found := false
		for i := len(lines) - 1; i >= 0 && strings.HasPrefix(lines[i], "@"); i-- {
			if strings.HasPrefix(lines[i], "@description(") {
				found = true
			}
		}
		if !found {
			t.Errorf("param %s has no @description", src[m[2]:m[3]])
		}
	}
	for _, must := range []string{"enableMultipleWriteLocations: false", "enableAutomaticFailover: true", "disableLocalAuth: !allowLocalAuth",
		"'/leaseKey'", "name: 'custom'", "version: '1.0'", "00000000-0000-0000-0000-000000000002", "'FlexConsumption'", "type: 'SystemAssigned'"} {
		if !strings.Contains(src, must) {
			t.Errorf("main.bicep lacks %s", must)
		}
	}
	if strings.Contains(src, "defaultTtl") && !strings.Contains(src, "No defaultTtl") {
		t.Error("main.bicep sets a TTL on the lease container")
	}
}
