package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/infra"
	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// stubAz points the harness at testdata/az/az, logging its calls; env adds variables such as AZ_STUB_FAIL_APPS.
func (h *harness) stubAz(scenario string, env ...string) (logPath string) {
	stub, err := filepath.Abs("../../testdata/az/az")
	if err != nil {
		h.t.Fatal(err)
	}
	logPath = filepath.Join(h.t.TempDir(), "az.log")
	h.az = az.Exec{Path: stub, Env: append([]string{"PATH=" + os.Getenv("PATH"), "AZ_STUB_LOG=" + logPath, "AZ_STUB_SCENARIO=" + scenario}, env...)}
	return logPath
}

// callsStarting counts the logged az calls that start with prefix.
func callsStarting(t *testing.T, logPath, prefix string) int {
	t.Helper()
	n := 0
	for _, c := range azCalls(t, logPath) {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
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

const sub1 = "11111111-1111-1111-1111-111111111111"

var fullSetup = []string{"setup", "--subscription", sub1, "--location", "eastus",
	"--regions", "westeurope,southeastasia", "--env-name", "demo", "--yes"}

// deploymentParams are the parameters fullSetup passes to main.bicep, as the stub logs them.
const deploymentParams = `--parameters environmentName=demo location=eastus regions=\[\"westeurope\"\,\"southeastasia\"\] principalId=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee deployFunctions=true serverless=false consistencyLevel=Session witnessRegions=\[\] alwaysReady=0 throughput=0 autoscaleMaxThroughput=1000 enableFreeTier=true leaseTimerSchedule=0\ \*/1\ \*\ \*\ \*\ \*`

func TestSetupNonInteractive(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("ok")
	r := h.run(fullSetup...)
	r.expect(t, ExitOK)
	// eastus and southeastasia are too far apart for Strong: Session, with the warning that says what it costs.
	if !strings.Contains(r.stderr, "warning: Azure blocks Strong consistency for eastus and southeastasia") ||
		!strings.Contains(r.stderr, "two instances may both hold a lease") {
		t.Fatalf("no warning about Session across regions in:\n%s", r.stderr)
	}
	// Read-only checks first (Flex regions, distances for Strong, the right to assign roles), then the group,
	// Azure's validation of the deployment, and only then the deployment.
	deployment := "--resource-group rg-demo --subscription " + sub1 + " --name cosmoslease-demo --template-file TEMPLATE " + deploymentParams + " --output json"
	want := []string{
		"version --output json",
		"account show --output json --subscription " + sub1,
		"functionapp list-flexconsumption-locations --subscription " + sub1 + " --output json",
	}
	for _, r := range []string{"eastus", "westeurope", "southeastasia"} {
		want = append(want, "functionapp list-flexconsumption-runtimes --location "+r+" --runtime custom --subscription "+sub1+" --output json")
	}
	for _, r := range []string{"eastus", "westeurope", "southeastasia"} {
		want = append(want, "cosmosdb locations show --location "+r+" --subscription "+sub1+" --output json")
	}
	want = append(want,
		"account list-locations --subscription "+sub1+" --output json",
		"account get-access-token --subscription "+sub1+" --output json",
		"role assignment list --all --assignee aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee --include-groups --subscription "+sub1+" --output json",
		"cosmosdb list --subscription "+sub1+" --output json",
		"group create --name rg-demo --location eastus --subscription "+sub1+" --tags cosmoslease-env=demo --output json",
		"deployment group validate "+deployment,
		"deployment group create "+deployment,
	)
	if got := azCalls(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("az calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The deployment was given the embedded template and the file it loads, side by side.
	for name, want := range map[string][]byte{"main.bicep": infra.MainBicep, "lease-container.json": infra.LeaseContainerJSON} {
		if b, err := os.ReadFile(filepath.Join(log+".template", name)); err != nil || string(b) != string(want) {
			t.Fatalf("the deployment was not given the embedded %s (%v)", name, err)
		}
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
	if rec["ResourceGroup"] != "rg-demo" || rec["FunctionApps"] != "func-abc123-0,func-abc123-1,func-abc123-2" ||
		rec["FunctionAppRegions"] != "eastus,westeurope,southeastasia" || rec["Mode"] != "azure" {
		t.Fatalf("setup record: %v", rec)
	}
	for _, s := range []string{"cosmoslease run --instance westeurope-1 --region westeurope --wait", "to the 3 Function Apps:\n  cosmoslease deploy", "cosmoslease teardown"} {
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
		"group show --name rg-demo --subscription " + sub1 + " --output json",
		"resource list --resource-group rg-demo --subscription " + sub1 + " --output json",
		"group delete --name rg-demo --subscription " + sub1 + " --yes",
	}
	if got := azCalls(t, log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("teardown az calls:\n%s", strings.Join(got, "\n"))
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("teardown left the settings file")
	}
}

func TestSetupFailures(t *testing.T) {
	far := []string{"setup", "--subscription", sub1, "--location", "eastus", "--regions", "westeurope,southeastasia", "--consistency", "Strong", "--env-name", "demo", "--yes"}
	for _, tc := range []struct {
		name, scenario string
		args           []string
		code           int
		want           string
		// groupCreated: the failure comes from Azure after setup created the (empty) group.
		groupCreated bool
	}{
		{"not logged in", "notloggedin", fullSetup, ExitError, "not signed in: run 'az login'", false},
		{"unknown subscription", "nosub", fullSetup, ExitUsage, "subscription \"11111111-1111-1111-1111-111111111111\" is not one this az login can use (Subscription '11111111-1111-1111-1111-111111111111' not found", false},
		{"no location", "ok", []string{"setup", "--env-name", "demo", "--yes"}, ExitUsage, "setup needs --location (or AZURE_LOCATION)", false},
		{"bad region", "ok", []string{"setup", "--location", "East US", "--yes"}, ExitUsage, "programmatic name", false},
		{"serverless across regions", "ok", []string{"setup", "--location", "eastus", "--regions", "westeurope", "--serverless", "--no-functions", "--yes"}, ExitUsage, "serverless Cosmos DB account cannot span regions", false},
		{"region twice", "ok", []string{"setup", "--location", "eastus", "--regions", "eastus", "--yes"}, ExitUsage, "listed twice", false},
		{"bad env name", "ok", []string{"setup", "--location", "eastus", "--env-name", "Demo_1", "--yes"}, ExitUsage, "--env-name \"Demo_1\"", false},
		{"no confirmation", "ok", []string{"setup", "--location", "eastus", "--single-region"}, ExitUsage, "pass --yes", false},
		// Issue 27, item 7: one Function App region only when the user says so.
		{"one Function App region", "ok", []string{"setup", "--location", "eastus", "--yes"}, ExitUsage,
			"setup deploys Function Apps in at least two regions, so that one can take the work over when the other is down: add a failover region with --regions REGION, or pass --single-region to deploy one knowingly", false},
		{"--single-region with --regions", "ok", []string{"setup", "--location", "eastus", "--regions", "westeurope", "--single-region", "--yes"}, ExitUsage,
			"--single-region deploys one region, but --regions names westeurope: drop one of them", false},
		{"unknown consistency", "ok", []string{"setup", "--location", "eastus", "--consistency", "Linearizable", "--yes"}, ExitUsage, "--consistency \"Linearizable\": use one of Session, Strong, BoundedStaleness, ConsistentPrefix, Eventual", false},
		// Item 7: a region without Flex Consumption is named before anything is created.
		{"region without Flex Consumption", "ok", []string{"setup", "--location", "eastus", "--regions", "westindia", "--yes"}, ExitUsage,
			"Flex Consumption, the Function Apps' plan, is not offered in westindia ('az functionapp list-flexconsumption-locations' lists where it is): choose other regions, or deploy Cosmos DB only with --no-functions", false},
		{"every region without Flex Consumption is named", "ok", []string{"setup", "--location", "westindia", "--regions", "eastus,jioindiawest", "--yes"}, ExitUsage,
			"is not offered in westindia, jioindiawest (", false},
		// Item 3: Strong consistency across regions more than 8,000 km apart.
		{"Strong across continents", "ok", far, ExitUsage,
			"Azure blocks Strong consistency across regions more than 8,000 km (5,000 miles) apart unless its support lifts the limit for the subscription: eastus and southeastasia (about 15,", false},
		// Item 6: no role that may create role assignments on the group (Owner of another group does not count).
		{"no right to create role assignments", "norole", fullSetup, ExitError,
			"dev@contoso.com holds none of Owner, User Access Administrator or Role Based Access Control Administrator on resource group rg-demo or above (only Contributor), and the template creates role assignments", false},
		// Item 8: Azure's validation fails: one readable message, nothing deployed.
		{"validation fails", "validatefail", fullSetup, ExitError,
			"cosmoslease: Azure does not accept the deployment: RequestDisallowedByPolicy: Resource 'cosmos-abc123' was disallowed by policy.", true},
		{"deployment failed", "deployfail", fullSetup, ExitError, "az deployment group create failed: BadRequest: Serverless accounts do not support multiple regions.", true},
		// Item 5 (issue 27, item 4: 3 more tries over 5 minutes), then reported.
		{"new identity never visible", "principalnotfound2", fullSetup, ExitError, "BadRequest: The provided principal ID [99999999-0000-0000-0000-000000000000] was not found", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz(tc.scenario)
			r := h.run(tc.args...)
			r.expect(t, tc.code, tc.want)
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && strings.Contains(r.stderr, "ActivityId") {
				t.Fatalf("the error is not one readable message:\n%s", r.stderr)
			}
			if _, err := os.Stat(filepath.Join(h.dir, config.LocalFile)); !os.IsNotExist(err) {
				t.Fatal("a failed setup wrote the settings file")
			}
			if created := callsStarting(t, log, "group create") > 0; created != tc.groupCreated {
				t.Fatalf("group created: %v, want %v: %v", created, tc.groupCreated, azCalls(t, log))
			}
			if tc.scenario == "validatefail" && callsStarting(t, log, "deployment group create") > 0 {
				t.Fatal("deployed after the validation failed")
			}
			if tc.scenario == "principalnotfound2" {
				if n := callsStarting(t, log, "deployment group create"); n != 4 || !strings.Contains(r.stderr, "still not visible to Microsoft Entra ID after 4 deployments over 5m0s") {
					t.Fatalf("%d deployments; stderr:\n%s", n, r.stderr)
				}
			}
		})
	}
	// Issue 27, item 5: an az older than 2.60 is refused before anything else, with the upgrade command.
	t.Run("az too old", func(t *testing.T) {
		h := newHarness(t)
		log := h.stubAz("ok", "AZ_STUB_AZ_VERSION=2.58.0")
		h.run(fullSetup...).expect(t, ExitError, "the Azure CLI is version 2.58.0, and cosmoslease needs 2.60.0 or newer", "'az upgrade'")
		if calls := azCalls(t, log); len(calls) != 1 {
			t.Fatalf("az calls after the version was refused: %v", calls)
		}
	})
	t.Run("az not installed", func(t *testing.T) {
		h := newHarness(t)
		h.az = az.Exec{Path: filepath.Join(t.TempDir(), "az")}
		h.run(fullSetup...).expect(t, ExitError, "the Azure CLI (az) is not installed")
	})
	t.Run("a value that can never work is a usage error even without az", func(t *testing.T) {
		h := newHarness(t)
		h.az = az.Exec{Path: filepath.Join(t.TempDir(), "az")}
		h.run("setup", "--location", "eastus", "--consistency", "Linearizable", "--yes").expect(t, ExitUsage, "--consistency \"Linearizable\": use one of")
	})
}

// Item 5: a managed identity the deployment created is not visible to Entra ID yet; setup says so, waits, and
// deploys once more.
func TestSetupRetriesOnceWhenANewIdentityIsNotVisible(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("principalnotfound")
	r := h.run(fullSetup...)
	r.expect(t, ExitOK, "A managed identity this deployment created is not visible to Microsoft Entra ID yet (BadRequest: The provided principal ID", "Deploying again in 1m0s (1 of 3); the deployment is idempotent.")
	if n := callsStarting(t, log, "deployment group create"); n != 2 {
		t.Fatalf("%d deployments, want 2", n)
	}
	if len(h.waited) != 1 || h.waited[0] != principalRetryDelays[0] {
		t.Fatalf("waited %v before deploying again", h.waited)
	}
	if _, err := os.Stat(filepath.Join(h.dir, config.LocalFile)); err != nil {
		t.Fatal("the settings file was not written after the second deployment")
	}
}

// A role the check does not know (a custom role) may allow creating role assignments: setup says so and lets
// Azure's validation decide.
func TestSetupLeavesCustomRolesToValidation(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("customrole")
	h.run(fullSetup...).expect(t, ExitOK, "note: dev@contoso.com holds none of Owner, User Access Administrator or Role Based Access Control Administrator on resource group rg-demo, but holds Platform Deployer, which may allow creating role assignments")
	if callsStarting(t, log, "deployment group validate") != 1 {
		t.Fatalf("az calls: %v", azCalls(t, log))
	}
}

// Item 3: Strong between nearby regions passes (after measuring them); the consistency level reaches the template.
// Without --consistency, several regions get Strong where Azure allows it (a lease needs it to stay exclusive
// across a regional failover), else Session with a warning; one region gets Session.
func TestSetupConsistency(t *testing.T) {
	for _, tc := range []struct {
		flag, regions, param string
		measured             bool
		warning              string
	}{
		{"Strong", "eastus2,centralus", "consistencyLevel=Strong", true, ""},
		{"boundedstaleness", "westeurope,southeastasia", "consistencyLevel=BoundedStaleness", false, "warning: with BoundedStaleness consistency a regional failover can lose the last writes"},
		{"Strong", "", "consistencyLevel=Strong", false, ""}, // one region: nothing to measure
		{"", "eastus2,centralus", "consistencyLevel=Strong", true, ""},
		{"", "westeurope,southeastasia", "consistencyLevel=Session", true, "warning: Azure blocks Strong consistency for eastus and southeastasia"},
		{"", "", "consistencyLevel=Session", false, ""},
	} {
		h := newHarness(t)
		log := h.stubAz("ok")
		args := []string{"setup", "--subscription", sub1, "--location", "eastus", "--regions", tc.regions, "--env-name", "demo", "--yes"}
		if tc.regions == "" {
			args = append(args, "--single-region")
		}
		if tc.flag != "" {
			args = append(args, "--consistency", tc.flag)
		}
		r := h.run(args...)
		r.expect(t, ExitOK)
		calls := strings.Join(azCalls(t, log), "\n")
		if !strings.Contains(calls, tc.param+" witnessRegions=") || strings.Contains(calls, "account list-locations") != tc.measured {
			t.Fatalf("--consistency %q --regions %q: az calls:\n%s", tc.flag, tc.regions, calls)
		}
		if (tc.warning == "") != !strings.Contains(r.stderr, "warning:") || !strings.Contains(r.stderr, tc.warning) {
			t.Fatalf("--consistency %q --regions %q: stderr:\n%s\nwant warning %q", tc.flag, tc.regions, r.stderr, tc.warning)
		}
	}
}

// Without Function Apps there is no Flex region to check and no role assignment to create (the Cosmos DB data
// role assignment is a Cosmos DB resource that Contributor may create).
func TestSetupWithoutFunctionsSkipsTheirChecks(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("norole")
	h.run("setup", "--subscription", sub1, "--location", "westindia", "--env-name", "demo", "--no-functions", "--yes").expect(t, ExitOK)
	if callsStarting(t, log, "functionapp") > 0 || callsStarting(t, log, "role assignment") > 0 {
		t.Fatalf("checked for Function Apps that are not deployed: %v", azCalls(t, log))
	}
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
	for _, s := range []string{"az group create --name rg-demo --location eastus", "az deployment group validate --resource-group rg-demo",
		"az deployment group create --resource-group rg-demo", `'regions=["westeurope","southeastasia"]'`, "consistencyLevel=Session"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("dry run lacks %q:\n%s", s, r.stdout)
		}
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

// Item 13: a mistyped answer is asked again instead of ending setup.
func TestSetupPromptsAskAgain(t *testing.T) {
	h := newHarness(t)
	h.tty = true
	log := h.stubAz("ok")
	h.fake = &fakePrompter{answers: []string{
		"Contoso Dev (11111111-1111-1111-1111-111111111111)",
		"Demo_1", "demo", // environment name
		"<default>",  // resource group rg-demo
		"no",         // no Function Apps
		"eastus",     // primary region
		"westeurope", // more regions
		"yes",        // grant data access
		"yes",        // create
	}}
	h.run("setup").expect(t, ExitOK)
	if strings.Join(h.fake.refused, ",") != "Demo_1" {
		t.Fatalf("refused answers: %v", h.fake.refused)
	}
	// The primary region is chosen from a list (type to filter), as the more regions are.
	if opts := h.fake.options["Primary region (the Cosmos DB write region)"]; !slices.Contains(opts, "eastus") || !slices.Contains(opts, "westeurope") || slices.Contains(opts, "East US") {
		t.Fatalf("primary region options: %v", opts)
	}
	if !strings.Contains(strings.Join(azCalls(t, log), "\n"), "environmentName=demo location=eastus") {
		t.Fatalf("az calls: %v", azCalls(t, log))
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
	// Item 10: the container is the one main.bicep makes: default TTL −1, the same indexing policy.
	cs, err := cosmosstore.Open(cosmosstore.Config{ConnectionString: emulator.ConnectionString(h.srv.Endpoint),
		Database: cosmoslease.DefaultDatabase, Container: cosmoslease.DefaultContainer})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ctr, _ := cs.Database().NewContainer(cosmoslease.DefaultContainer)
	resp, err := ctr.Read(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := emulator.LeaseContainer(cosmoslease.DefaultContainer, cosmoslease.DefaultPartitionKeyPath)
	got := resp.ContainerProperties
	gotPolicy, _ := json.Marshal(got.IndexingPolicy.IncludedPaths)
	wantPolicy, _ := json.Marshal(want.IndexingPolicy.IncludedPaths)
	if got.DefaultTimeToLive == nil || *got.DefaultTimeToLive != -1 || string(gotPolicy) != string(wantPolicy) ||
		len(got.IndexingPolicy.ExcludedPaths) != 1 || got.IndexingPolicy.ExcludedPaths[0].Path != "/*" ||
		!strings.EqualFold(string(got.IndexingPolicy.IndexingMode), "consistent") || got.PartitionKeyDefinition.Paths[0] != "/leaseKey" {
		t.Fatalf("the emulator's lease container: ttl %v, included %s, excluded %v, mode %q", got.DefaultTimeToLive, gotPolicy, got.IndexingPolicy.ExcludedPaths, got.IndexingPolicy.IndexingMode)
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

// Item 4: a service principal that cannot read Microsoft Graph and holds Owner passes the role check: setup asks
// for role assignments by the object id in its access token (the oid claim), not by its application id, which
// az would take for an object id and match to nothing; the object id is also --principal-id's default.
func TestSetupServicePrincipal(t *testing.T) {
	const appID, oid = "5f2c8e1a-3b4d-4c6e-9f7a-1b2c3d4e5f60", "bbbbbbbb-1111-2222-3333-444444444444"
	h := newHarness(t)
	log := h.stubAz("sp")
	r := h.run(fullSetup...)
	r.expect(t, ExitOK)
	calls := strings.Join(azCalls(t, log), "\n")
	if !strings.Contains(calls, "role assignment list --all --assignee "+oid+" --include-groups") || strings.Contains(calls, "--assignee "+appID) ||
		!strings.Contains(calls, "principalId="+oid+" ") || strings.Contains(calls, "ad signed-in-user") {
		t.Fatalf("az calls:\n%s", calls)
	}
	if strings.Contains(r.stderr+r.stdout, "eyJ0eXAi") {
		t.Fatal("the access token was printed")
	}
	// No role assignment visible to a service principal: a warning, and Azure's validation decides.
	h = newHarness(t)
	log = h.stubAz("sp", "AZ_STUB_SP_ROLES=none")
	h.run(fullSetup...).expect(t, ExitOK, "note: no role assignment of service principal "+appID+" (object id "+oid+") is visible",
		"Azure's validation of the deployment decides")
	if callsStarting(t, log, "deployment group validate") != 1 {
		t.Fatalf("az calls: %v", azCalls(t, log))
	}
	// Without an access token a user is still found through Microsoft Graph.
	h = newHarness(t)
	log = h.stubAz("notoken")
	h.run(fullSetup...).expect(t, ExitOK)
	calls = strings.Join(azCalls(t, log), "\n")
	if !strings.Contains(calls, "ad signed-in-user show --output json") || !strings.Contains(calls, "--assignee aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee") {
		t.Fatalf("az calls:\n%s", calls)
	}
}

// Item 5: Strong with exactly two regions gets a witness region, a third Cosmos DB read region with no Function
// App: by default the nearest region Azure recommends that keeps every pair within Strong's distance limit, shown
// in the plan and passed as witnessRegions; --witness-region picks it, --witness-region none declines it with a
// warning that says what is lost. Elsewhere --witness-region is a usage error.
func TestSetupWitnessRegion(t *testing.T) {
	two := []string{"setup", "--subscription", sub1, "--location", "eastus", "--regions", "eastus2", "--env-name", "demo", "--yes"}
	for _, tc := range []struct {
		name    string
		extra   []string
		code    int
		witness string // the witnessRegions parameter
		says    string
	}{
		{"default: the nearest that Strong allows (not a region Azure does not recommend)", nil, ExitOK, `\[\"centralus\"\]`,
			"witness region centralus (a read region with no Function App, last in failover priority"},
		{"explicit Strong", []string{"--consistency", "Strong"}, ExitOK, `\[\"centralus\"\]`, "witness region centralus"},
		{"chosen", []string{"--witness-region", "westus2"}, ExitOK, `\[\"westus2\"\]`, "witness region westus2"},
		{"declined", []string{"--witness-region", "none"}, ExitOK, `\[\]`,
			"warning: no witness region (--witness-region none): with Strong consistency and two regions, Cosmos DB stops accepting writes while either region is down"},
		{"too far for Strong", []string{"--witness-region", "southeastasia"}, ExitUsage, "",
			"--witness-region southeastasia: Azure blocks Strong consistency across regions more than 8,000 km (5,000 miles) apart"},
		{"one of the two", []string{"--witness-region", "eastus2"}, ExitUsage, "", "--witness-region eastus2 is already one of the regions"},
		{"not a region", []string{"--witness-region", "atlantis"}, ExitUsage, "", "--witness-region atlantis: not a region Azure lists"},
		{"not Strong", []string{"--consistency", "Session", "--witness-region", "centralus"}, ExitUsage, "",
			"--witness-region centralus: a witness region is for Strong consistency with exactly two regions; this plan has Session consistency and 2 region(s)"},
		{"Strong blocked by distance", []string{"--regions", "southeastasia", "--witness-region", "centralus"}, ExitUsage, "", "--witness-region: Azure blocks Strong consistency for eastus and southeastasia"},
		{"three regions", []string{"--regions", "eastus2,centralus", "--witness-region", "westus2"}, ExitUsage, "", "--witness-region westus2: a witness region is for Strong consistency with exactly two regions; this plan has default consistency and 3 region(s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz("ok")
			r := h.run(append(append([]string{}, two...), tc.extra...)...)
			r.expect(t, tc.code, tc.says)
			calls := strings.Join(azCalls(t, log), "\n")
			if tc.code != ExitOK {
				if strings.Contains(calls, "group create") {
					t.Fatal("created the group after a usage error")
				}
				return
			}
			if !strings.Contains(calls, "consistencyLevel=Strong witnessRegions="+tc.witness+" alwaysReady=0 throughput=") {
				t.Fatalf("az calls:\n%s", calls)
			}
		})
	}
	// Three regions, or one, need no witness.
	h := newHarness(t)
	log := h.stubAz("ok")
	h.run("setup", "--subscription", sub1, "--location", "eastus", "--regions", "eastus2,centralus", "--env-name", "demo", "--yes").expect(t, ExitOK)
	if !strings.Contains(strings.Join(azCalls(t, log), "\n"), `consistencyLevel=Strong witnessRegions=\[\] `) {
		t.Fatalf("az calls: %v", azCalls(t, log))
	}
	// --dry-run shows it too.
	r := h.run(append(append([]string{}, two...), "--dry-run")...)
	r.expect(t, ExitOK, "witness region centralus")
	if !strings.Contains(r.stdout, `'witnessRegions=["centralus"]'`) {
		t.Fatalf("dry run:\n%s", r.stdout)
	}
}

// Item 6: --always-ready N keeps N always-ready instances for LeaseTimer in every app; it is shown in the plan.
func TestSetupAlwaysReady(t *testing.T) {
	h := newHarness(t)
	log := h.stubAz("ok")
	h.run(append(append([]string{}, fullSetup...), "--always-ready", "1")...).expect(t, ExitOK, "1 always-ready instance for LeaseTimer in each")
	if !strings.Contains(strings.Join(azCalls(t, log), "\n"), " alwaysReady=1 throughput=") {
		t.Fatalf("az calls: %v", azCalls(t, log))
	}
	h.run("setup", "--location", "eastus", "--always-ready", "-1", "--yes").expect(t, ExitUsage, "--always-ready -1: give 0 or more")
	h.run("setup", "--location", "eastus", "--no-functions", "--always-ready", "2", "--yes").expect(t, ExitUsage, "--always-ready 2 keeps LeaseTimer's instances, but --no-functions deploys no Function App")
}

// Issue 27, items 1 and 6: before creating anything, setup asks Azure whether the subscription may create Cosmos
// DB in each region (az cosmosdb locations show) and whether Flex Consumption offers the custom runtime in each
// Function App region; a region that fails is refused by name, a witness candidate that fails is skipped for the
// next nearest.
func TestSetupRegionAccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"Cosmos DB restricted in a region", []string{"AZ_STUB_COSMOS_DENIED=westeurope southeastasia"}, fullSetup,
			"subscription Contoso Dev may not create Cosmos DB accounts in westeurope, southeastasia ('az cosmosdb locations show --location westeurope': isSubscriptionRegionAccessAllowedForRegular is false"},
		{"Cosmos DB restricted in the primary region, without Function Apps", []string{"AZ_STUB_COSMOS_DENIED=westindia"},
			[]string{"setup", "--subscription", sub1, "--location", "westindia", "--env-name", "demo", "--no-functions", "--yes"},
			"may not create Cosmos DB accounts in westindia ("},
		{"no custom runtime on Flex Consumption", []string{"AZ_STUB_NO_CUSTOM=westeurope"}, fullSetup,
			"Flex Consumption in westeurope does not offer the custom runtime that the lease handler runs on ('az functionapp list-flexconsumption-runtimes --location westeurope --runtime custom')"},
		{"a chosen witness region restricted", []string{"AZ_STUB_COSMOS_DENIED=westus2"},
			[]string{"setup", "--subscription", sub1, "--location", "eastus", "--regions", "eastus2", "--witness-region", "westus2", "--env-name", "demo", "--yes"},
			"may not create Cosmos DB accounts in westus2 ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz("ok", tc.env...)
			h.run(tc.args...).expect(t, ExitUsage, tc.want)
			if callsStarting(t, log, "group create") > 0 {
				t.Fatalf("created the group after refusing a region: %v", azCalls(t, log))
			}
		})
	}
	// The nearest witness candidate is restricted: the next nearest is taken, and the skip is said.
	h := newHarness(t)
	log := h.stubAz("ok", "AZ_STUB_COSMOS_DENIED=centralus")
	r := h.run("setup", "--subscription", sub1, "--location", "eastus", "--regions", "eastus2", "--env-name", "demo", "--yes")
	r.expect(t, ExitOK, "note: witness region candidates skipped, as subscription Contoso Dev may not create Cosmos DB there (or az could not tell): centralus")
	calls := strings.Join(azCalls(t, log), "\n")
	if strings.Contains(calls, `witnessRegions=\[\"centralus\"\]`) || !regexp.MustCompile(`witnessRegions=\\\[\\"\w+\\"\\\]`).MatchString(calls) {
		t.Fatalf("az calls:\n%s", calls)
	}
}

// Issue 27, item 7: with no --location the primary region is the one az defaults to ('az configure --defaults
// location=…'), or the nearest usable region to it (Flex Consumption offered, Cosmos DB allowed): offered as the
// default at the prompt, taken, and said, without one. When az has no default there is none. A failover region is
// asked for until one is chosen (once more), or refused with the flag that allows one region.
func TestSetupDefaultPrimary(t *testing.T) {
	base := []string{"setup", "--subscription", sub1, "--regions", "westeurope", "--env-name", "demo", "--yes"}
	for _, tc := range []struct {
		name, location string
		env            []string
		want           string // the primary region; "" for a usage error
	}{
		{"az's default offers Flex Consumption", "eastus2", nil, "eastus2"},
		{"the nearest region with Flex Consumption", "westindia", nil, "centralindia"},
		{"the nearest where Cosmos DB is allowed", "westindia", []string{"AZ_STUB_COSMOS_DENIED=centralindia"}, "southeastasia"},
		{"no default in az", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			env := tc.env
			if tc.location != "" {
				env = append(env, "AZ_STUB_DEFAULT_LOCATION="+tc.location)
			}
			log := h.stubAz("ok", env...)
			r := h.run(base...)
			if tc.want == "" {
				r.expect(t, ExitUsage, "setup needs --location (or AZURE_LOCATION): az has no default location to start from ('az configure --defaults location=REGION' sets one)")
				return
			}
			r.expect(t, ExitOK, "Primary region "+tc.want+": the nearest usable region to az's default location, "+tc.location)
			if !strings.Contains(strings.Join(azCalls(t, log), "\n"), "environmentName=demo location="+tc.want+" ") {
				t.Fatalf("az calls:\n%s", strings.Join(azCalls(t, log), "\n"))
			}
		})
	}

	// On a terminal it is the default of the question; an empty choice of failover regions is asked again.
	h := newHarness(t)
	h.tty = true
	log := h.stubAz("ok", "AZ_STUB_DEFAULT_LOCATION=westindia")
	h.fake = &fakePrompter{answers: []string{"<default>", "yes", "<default>", "", "westeurope", "yes", "yes"}}
	r := h.run("setup", "--subscription", sub1, "--env-name", "demo")
	r.expect(t, ExitOK, "Choose at least one failover region")
	if d := h.fake.defaults["Primary region (the Cosmos DB write region)"]; d != "centralindia" {
		t.Fatalf("default primary region %q", d)
	}
	if !strings.Contains(strings.Join(azCalls(t, log), "\n"), `location=centralindia regions=\[\"westeurope\"\]`) {
		t.Fatalf("az calls:\n%s", strings.Join(azCalls(t, log), "\n"))
	}
	h = newHarness(t)
	h.tty = true
	h.stubAz("ok")
	h.fake = &fakePrompter{answers: []string{"<default>", "yes", "eastus", "", ""}}
	r = h.run("setup", "--subscription", sub1, "--env-name", "demo")
	if r.code != ExitUsage || strings.Count(r.stderr, "Choose at least one failover region") != 1 || !strings.Contains(r.stderr, "cosmoslease: setup deploys Function Apps in at least two regions") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if d := h.fake.defaults["Primary region (the Cosmos DB write region)"]; d != "" {
		t.Fatalf("a default primary region without a default in az: %q", d)
	}
}

// Issue 27, item 6: Strong across regions within 300 km of Azure's 8,000 km limit is warned about (setup's
// distance and Azure's may differ); farther from it, nothing is said.
func TestSetupWarnsNearTheStrongLimit(t *testing.T) {
	h := newHarness(t)
	h.stubAz("ok")
	r := h.run("setup", "--subscription", sub1, "--location", "westeurope", "--regions", "westus2,eastus", "--env-name", "demo", "--yes")
	r.expect(t, ExitOK, "warning: westeurope and westus2 (about 7,800 km): within 300 km of the 8,000 km beyond which Azure blocks Strong consistency")
	h.stubAz("ok")
	if r = h.run(fullSetup...); strings.Contains(r.stderr, "within 300 km") {
		t.Fatalf("warned for Session:\n%s", r.stderr)
	}
	if r = h.run("setup", "--subscription", sub1, "--location", "eastus", "--regions", "eastus2,centralus", "--env-name", "demo", "--yes"); r.code != ExitOK || strings.Contains(r.stderr, "within 300 km") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// Issue 27, item 8: the lease container gets autoscale up to 1,000 RU/s by default (billed from 100 RU/s in every
// region), the free tier when no account of the subscription has it, and setup prints the monthly cost of what it
// will create at the list prices in cost.go before it asks to confirm. --throughput, --autoscale-max, --free-tier
// and --schedule change the plan and the estimate; impossible combinations are usage errors.
func TestSetupThroughputAndCost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  []string
		env    []string
		params string // the throughput parameters passed
		says   []string
	}{
		{"defaults: autoscale 1,000 and the free tier", nil, nil, "throughput=0 autoscaleMaxThroughput=1000 enableFreeTier=true",
			[]string{"throughput      autoscale on the lease container, 100 to 1,000 RU/s in every region; free tier (the subscription's one free-tier account",
				"Estimated monthly cost at list prices (US dollars, East US, pay-as-you-go, as of " + pricesDate,
				"Cosmos DB             $0.00  autoscale up to 1,000 RU/s, billed from 100 RU/s × 3 regions, less the free tier's 1,000 RU/s",
				"Function Apps         $0.82  43,800 occurrences of \"0 */1 * * * *\" and 43,800 LeaseTrigger ticks × 3 regions: 262,800 executions, about 131,400 GB-s with every region healthy",
				"total                 $0.82  a month with every region healthy; Function Apps $11.07 a month with the preferred region down all month (about 525,600 GB-s"}},
		{"without the free tier", []string{"--free-tier=false"}, nil, "throughput=0 autoscaleMaxThroughput=1000 enableFreeTier=false",
			[]string{"Cosmos DB            $26.28  autoscale up to 1,000 RU/s, billed from 100 RU/s × 3 regions\n"}},
		{"the free tier taken by another account", nil, []string{"AZ_STUB_FREE_TIER_ACCOUNT=cosmos-shop"}, "enableFreeTier=false",
			[]string{"note: Cosmos DB account cosmos-shop has the subscription's free tier, so this account is billed in full.", "Cosmos DB            $26.28"}},
		{"400 RU/s manual, as the template had", []string{"--throughput", "400", "--free-tier=false"}, nil, "throughput=400 autoscaleMaxThroughput=1000 enableFreeTier=false",
			[]string{"throughput      400 RU/s manual on the lease container, in every region\n", "Cosmos DB            $70.08  400 RU/s manual × 3 regions"}},
		{"a larger autoscale maximum", []string{"--autoscale-max", "4000"}, nil, "throughput=0 autoscaleMaxThroughput=4000 enableFreeTier=true",
			[]string{"Cosmos DB            $17.52  autoscale up to 4,000 RU/s, billed from 400 RU/s × 3 regions, less the free tier's 1,000 RU/s"}},
		{"an hourly schedule and an always-ready instance", []string{"--schedule", "0 0 * * * *", "--always-ready", "1"}, nil, "leaseTimerSchedule=0\\ 0\\ \\*\\ \\*\\ \\*\\ \\*",
			[]string{"730 occurrences of \"0 0 * * * *\" and 43,800 LeaseTrigger ticks × 3 regions", "Always ready         $15.77  1 instance(s) of 0.5 GB × 3 regions, billed every second: 3,942,000 GB-s",
				"The always-ready and blob storage rates were not checked against Microsoft's pricing page"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz("ok", tc.env...)
			r := h.run(append(append([]string{}, fullSetup...), tc.extra...)...)
			r.expect(t, ExitOK, tc.says...)
			if !strings.Contains(strings.Join(azCalls(t, log), "\n"), tc.params) {
				t.Fatalf("az calls lack %s:\n%s", tc.params, strings.Join(azCalls(t, log), "\n"))
			}
		})
	}
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		wants string
	}{
		{"--free-tier when another account has it", []string{"setup", "--subscription", sub1, "--location", "eastus", "--regions", "eastus2,centralus", "--env-name", "demo", "--yes", "--free-tier"},
			[]string{"AZ_STUB_FREE_TIER_ACCOUNT=cosmos-shop"},
			"--free-tier: Cosmos DB account cosmos-shop already has the subscription's free tier (one account per subscription may): drop --free-tier"},
		{"both kinds of throughput", append(append([]string{}, fullSetup...), "--throughput", "400", "--autoscale-max", "1000"), nil,
			"--throughput 400 and --autoscale-max 1000: the container has either manual or autoscale throughput; drop one of them"},
		{"too little manual throughput", append(append([]string{}, fullSetup...), "--throughput", "350"), nil, "--throughput 350: give 400 RU/s or more, in steps of 100"},
		{"an autoscale maximum off its steps", append(append([]string{}, fullSetup...), "--autoscale-max", "1500"), nil, "--autoscale-max 1500: give 1000 RU/s or more, in steps of 1000"},
		{"serverless with throughput", []string{"setup", "--location", "eastus", "--serverless", "--no-functions", "--throughput", "400", "--yes"}, nil,
			"a serverless account has no provisioned throughput"},
		{"a schedule that is not NCRONTAB", append(append([]string{}, fullSetup...), "--schedule", "00:05:00"), nil, "--schedule: \"00:05:00\" is a TimeSpan schedule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			log := h.stubAz("ok", tc.env...)
			h.run(tc.args...).expect(t, ExitUsage, tc.wants)
			if callsStarting(t, log, "group create") > 0 {
				t.Fatal("created the group after a usage error")
			}
		})
	}
}
