package cli

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/infra"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

// Static tests of infra/main.bicep. No Bicep compiler can be installed here, so these read the template as text:
// each checks one point that would otherwise fail (or silently weaken) the first real deployment.

// bicepResource is one `resource` declaration: its decorators, header line and body.
type bicepResource struct {
	name, typ, version string
	decorators         []string
	header, body       string
}

// bicepResources splits main.bicep into its resources. A declaration starts at column 0 with `resource` and ends
// at the next line that starts with `}` at column 0 (`}` or `}]`).
func bicepResources(t *testing.T) map[string]bicepResource {
	t.Helper()
	lines := strings.Split(string(infra.MainBicep), "\n")
	head := regexp.MustCompile(`^resource (\w+) '([^'@]+)@([^']+)' = `)
	out := map[string]bicepResource{}
	for i := 0; i < len(lines); i++ {
		m := head.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		r := bicepResource{name: m[1], typ: m[2], version: m[3], header: lines[i]}
		for j := i - 1; j >= 0 && strings.HasPrefix(lines[j], "@"); j-- {
			r.decorators = append(r.decorators, lines[j])
		}
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "}"); i++ {
			body = append(body, lines[i])
		}
		r.body = strings.Join(body, "\n")
		if _, dup := out[r.name]; dup {
			t.Fatalf("resource %s declared twice", r.name)
		}
		out[r.name] = r
	}
	if len(out) < 10 {
		t.Fatalf("found only %d resources in main.bicep; the parser no longer matches the template", len(out))
	}
	return out
}

// dependsOn lists the names in a resource's dependsOn block.
func (r bicepResource) dependsOn() []string {
	i := strings.Index(r.body, "dependsOn: [")
	if i < 0 {
		return nil
	}
	rest := r.body[i+len("dependsOn: ["):]
	return strings.Fields(rest[:strings.Index(rest, "]")])
}

// The API versions are those whose schemas (Azure/bicep-types-az, generated/<provider>/<version>/types.md) the
// template's property names were checked against. Changing one means checking the properties again.
func TestTemplateAPIVersionsAreTheCheckedOnes(t *testing.T) {
	checked := map[string]string{
		"Microsoft.DocumentDB/databaseAccounts":                         "2024-11-15",
		"Microsoft.DocumentDB/databaseAccounts/sqlDatabases":            "2024-11-15",
		"Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers": "2024-11-15",
		"Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments":      "2024-11-15",
		"Microsoft.OperationalInsights/workspaces":                      "2023-09-01",
		"Microsoft.Insights/components":                                 "2020-02-02",
		"Microsoft.Storage/storageAccounts":                             "2023-05-01",
		"Microsoft.Storage/storageAccounts/blobServices":                "2023-05-01",
		"Microsoft.Storage/storageAccounts/blobServices/containers":     "2023-05-01",
		"Microsoft.Web/serverfarms":                                     "2024-04-01",
		"Microsoft.Web/sites":                                           "2024-04-01",
		"Microsoft.Authorization/roleAssignments":                       "2022-04-01",
	}
	for _, r := range bicepResources(t) {
		want, ok := checked[r.typ]
		if !ok {
			t.Errorf("resource %s has type %s, which was not checked against its schema", r.name, r.typ)
		} else if r.version != want {
			t.Errorf("resource %s uses %s@%s; its properties were checked against %s", r.name, r.typ, r.version, want)
		}
	}
}

// Every parameter setup passes and every output it reads is declared in main.bicep, and every parameter is
// described and either has a default or is passed.
func TestTemplateDeclaresWhatSetupUses(t *testing.T) {
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
		if m[2] == "" && !slices.Contains(BicepParams, m[1]) {
			t.Errorf("param %s has no default, but setup does not pass it", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^param (\w+)`).FindAllStringSubmatchIndex(src, -1) {
		lines := strings.Split(strings.TrimRight(src[:m[0]], "\n"), "\n")
		found := false
		for i := len(lines) - 1; i >= 0 && strings.HasPrefix(lines[i], "@"); i-- {
			found = found || strings.HasPrefix(lines[i], "@description(")
		}
		if !found {
			t.Errorf("param %s has no @description", src[m[2]:m[3]])
		}
	}
	allowed := regexp.MustCompile(`(?s)@allowed\(\[(.*?)\]\)\s*@description\([^\n]*\)\s*param consistencyLevel `).FindStringSubmatch(src)
	if allowed == nil {
		t.Fatal("consistencyLevel has no @allowed list")
	}
	for _, l := range consistencyLevels {
		if !strings.Contains(allowed[1], "'"+l+"'") {
			t.Errorf("setup accepts --consistency %s, which main.bicep does not allow", l)
		}
	}
}

// The properties the lease protocol's safety rests on.
func TestTemplateSafetyProperties(t *testing.T) {
	rs := bicepResources(t)
	for name, musts := range map[string][]string{
		"cosmos": {"enableMultipleWriteLocations: false", "enableAutomaticFailover: true", "disableLocalAuth: !allowLocalAuth", "consistencyPolicy: consistencyPolicy"},
		"leases": {"partitionKeyPath"},
		"apps":   {"name: 'custom'", "version: '1.0'", "type: 'SystemAssigned'", "name: 'LeaseTimerSchedule'", "value: leaseTimerSchedule"},
		"plans":  {"'FlexConsumption'", "name: 'FC1'", "reserved: true"},
	} {
		for _, must := range musts {
			if !strings.Contains(rs[name].body, must) {
				t.Errorf("resource %s lacks %s", name, must)
			}
		}
	}
	if !strings.Contains(string(infra.MainBicep), "var partitionKeyPath = '/leaseKey'") {
		t.Error("the lease container is not partitioned on /leaseKey")
	}
	// Flex Consumption: at least 40 instances may be the maximum, and memory is one of its sizes.
	if m := regexp.MustCompile(`maximumInstanceCount: (\d+)`).FindStringSubmatch(rs["apps"].body); m == nil || atoi(t, m[1]) < 40 {
		t.Errorf("maximumInstanceCount %v: Flex Consumption needs 40 or more", m)
	}
	if m := regexp.MustCompile(`instanceMemoryMB: (\d+)`).FindStringSubmatch(rs["apps"].body); m == nil || !slices.Contains([]string{"512", "2048", "4096"}, m[1]) {
		t.Errorf("instanceMemoryMB %v: Flex Consumption offers 512, 2048 and 4096", m)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Issue 12, item 1: Flex Consumption rejects siteConfig.ftpsState (error 51021); minTlsVersion stays.
func TestTemplateSiteConfigFitsFlexConsumption(t *testing.T) {
	apps := bicepResources(t)["apps"].body
	if regexp.MustCompile(`(?m)^\s*ftpsState:`).MatchString(apps) {
		t.Error("the Function Apps set siteConfig.ftpsState, which Flex Consumption rejects")
	}
	if !strings.Contains(apps, "minTlsVersion: '1.2'") {
		t.Error("the Function Apps lost minTlsVersion '1.2'")
	}
}

// Item 2: BoundedStaleness comes with both bounds, at least the multi-region minimums (100000 writes, 300 s).
func TestTemplateBoundedStalenessHasItsBounds(t *testing.T) {
	src := string(infra.MainBicep)
	m := regexp.MustCompile(`(?s)var consistencyPolicy = consistencyLevel == 'BoundedStaleness' \? \{(.*?)\} : \{(.*?)\}`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("main.bicep has no consistencyPolicy that depends on BoundedStaleness")
	}
	for key, min := range map[string]int{"maxStalenessPrefix": 100000, "maxIntervalInSeconds": 300} {
		v := regexp.MustCompile(key + `: (\d+)`).FindStringSubmatch(m[1])
		if v == nil || atoi(t, v[1]) < min {
			t.Errorf("BoundedStaleness: %s is %v, want at least %d", key, v, min)
		}
	}
	if !strings.Contains(m[1], "defaultConsistencyLevel: consistencyLevel") || !strings.Contains(m[2], "defaultConsistencyLevel: consistencyLevel") {
		t.Error("consistencyPolicy does not set defaultConsistencyLevel in both branches")
	}
}

// Item 4: the Cosmos DB role assignments wait for the container and run one at a time; the storage role loop
// uses a plain index range.
func TestTemplateRoleAssignmentsAreOrdered(t *testing.T) {
	rs := bicepResources(t)
	var sql []bicepResource
	for _, r := range rs {
		if r.typ == "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments" {
			sql = append(sql, r)
		}
	}
	if len(sql) != 2 {
		t.Fatalf("want the principal's and the apps' Cosmos DB role assignments, found %d", len(sql))
	}
	for _, r := range sql {
		if !slices.Contains(r.dependsOn(), "leases") {
			t.Errorf("%s does not wait for the lease container (dependsOn %v)", r.name, r.dependsOn())
		}
	}
	apps := rs["appDataAccess"]
	if !slices.Contains(apps.decorators, "@batchSize(1)") {
		t.Errorf("appDataAccess runs in parallel: decorators %v", apps.decorators)
	}
	if !slices.Contains(apps.dependsOn(), "principalDataAccess") {
		t.Errorf("appDataAccess may run beside principalDataAccess: dependsOn %v", apps.dependsOn())
	}
	storage := rs["appStorageAccess"]
	if !strings.Contains(storage.header, "[for k in range(0, length(functionRegions) * storageRoleCount)") {
		t.Errorf("the storage role loop is not a plain index range: %s", storage.header)
	}
	code := regexp.MustCompile(`(?m)(^|\s)//.*$`).ReplaceAllString(string(infra.MainBicep), "")
	for _, bad := range []string{"flatten(", "map(", "=>"} {
		if strings.Contains(code, bad) {
			t.Errorf("main.bicep uses %s; role assignment names and scopes must be computable when the deployment starts", bad)
		}
	}
	for _, must := range []string{"scope: storage[k / storageRoleCount]", "apps[k / storageRoleCount].identity.principalId", "storageRoles[k % storageRoleCount]", "principalType: 'ServicePrincipal'"} {
		if !strings.Contains(storage.body+storage.header, must) {
			t.Errorf("appStorageAccess lacks %s", must)
		}
	}
}

// Item 9: Application Insights over Entra ID, as the Flex Consumption samples do.
func TestTemplateApplicationInsightsOverEntraID(t *testing.T) {
	rs := bicepResources(t)
	if !strings.Contains(rs["insights"].body, "DisableLocalAuth: true") {
		t.Error("Application Insights still accepts the instrumentation key alone (DisableLocalAuth)")
	}
	if !regexp.MustCompile(`name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'\s*\n\s*value: 'Authorization=AAD'`).MatchString(rs["apps"].body) {
		t.Error("the apps do not send telemetry with their identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD)")
	}
	if !strings.Contains(string(infra.MainBicep), "var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'") {
		t.Error("Monitoring Metrics Publisher's role id is missing or wrong")
	}
	var found bool
	for _, r := range rs {
		if r.typ == "Microsoft.Authorization/roleAssignments" && strings.Contains(r.body, "scope: insights[i]") &&
			strings.Contains(r.body, "monitoringMetricsPublisherRoleId") && strings.Contains(r.body, "principalId: apps[i].identity.principalId") &&
			strings.Contains(r.body, "principalType: 'ServicePrincipal'") {
			found = true
		}
	}
	if !found {
		t.Error("no app identity holds Monitoring Metrics Publisher on its Application Insights")
	}
}

// Item 10: the lease container has default TTL −1 and indexes only the paths the queries use; the emulator
// mode creates it from the same file.
func TestTemplateLeaseContainer(t *testing.T) {
	var def struct {
		DefaultTTL     *int `json:"defaultTtl"`
		IndexingPolicy struct {
			IndexingMode  string
			Automatic     bool
			IncludedPaths []struct{ Path string }
			ExcludedPaths []struct{ Path string }
		} `json:"indexingPolicy"`
	}
	if err := json.Unmarshal(infra.LeaseContainerJSON, &def); err != nil {
		t.Fatal(err)
	}
	if def.DefaultTTL == nil || *def.DefaultTTL != -1 {
		t.Errorf("defaultTtl %v, want -1 (TTL on, only items with their own ttl expire)", def.DefaultTTL)
	}
	var included, excluded []string
	for _, p := range def.IndexingPolicy.IncludedPaths {
		included = append(included, p.Path)
	}
	for _, p := range def.IndexingPolicy.ExcludedPaths {
		excluded = append(excluded, p.Path)
	}
	// /type/? and /occurrence/? serve the run history (filter and ORDER BY); id and _ts are always indexed.
	if strings.Join(included, " ") != "/type/? /occurrence/?" || strings.Join(excluded, " ") != "/*" ||
		!strings.EqualFold(def.IndexingPolicy.IndexingMode, "consistent") || !def.IndexingPolicy.Automatic {
		t.Errorf("indexing policy: included %v, excluded %v, mode %q", included, excluded, def.IndexingPolicy.IndexingMode)
	}
	// main.bicep passes every key of the file through, and adds the partition key path.
	leases := bicepResources(t)["leases"].body
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(infra.LeaseContainerJSON, &struct {
		IndexingPolicy *map[string]json.RawMessage `json:"indexingPolicy"`
	}{&keys})
	for k := range keys {
		use := k + ": leaseContainer.indexingPolicy." + k
		if k == "includedPaths" {
			use = "includedPaths: concat(leaseContainer.indexingPolicy.includedPaths, ["
		}
		if !strings.Contains(leases, use) {
			t.Errorf("main.bicep drops indexingPolicy.%s of lease-container.json", k)
		}
	}
	for _, must := range []string{"defaultTtl: leaseContainer.defaultTtl", "path: '${partitionKeyPath}/?'"} {
		if !strings.Contains(leases, must) {
			t.Errorf("the lease container lacks %s", must)
		}
	}
	if !strings.Contains(string(infra.MainBicep), "var leaseContainer = loadJsonContent('lease-container.json')") {
		t.Error("main.bicep does not load lease-container.json")
	}
	// The emulator's container: the same file, the same partition key path added.
	props, err := emulator.LeaseContainer("Leases", "/leaseKey")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range props.IndexingPolicy.IncludedPaths {
		got = append(got, p.Path)
	}
	if strings.Join(got, " ") != "/type/? /occurrence/? /leaseKey/?" || *props.DefaultTimeToLive != -1 || props.IndexingPolicy.ExcludedPaths[0].Path != "/*" {
		t.Errorf("emulator container: included %v, ttl %d", got, *props.DefaultTimeToLive)
	}
}

// Item 11: nothing in infra/ is there only for a tool the repository does not use (azd's parameter file with
// ${AZURE_*} placeholders is gone, and no azure.yaml pretends azd can deploy a handler to every region).
func TestInfraHasNothingDead(t *testing.T) {
	entries, err := os.ReadDir("../../infra")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "main.bicep", "lease-container.json", "infra.go":
		default:
			t.Errorf("infra/%s is neither the template, a file it loads, nor the package that embeds them", e.Name())
		}
		b, _ := os.ReadFile("../../infra/" + e.Name())
		if strings.Contains(string(b), "${AZURE_") {
			t.Errorf("infra/%s has ${AZURE_*} placeholders that only azd fills in", e.Name())
		}
	}
	if _, err := os.Stat("../../azure.yaml"); err == nil {
		t.Error("azure.yaml exists, but the README says the project provisions with cosmoslease setup, not azd")
	}
}

// Issue 18, item 5: the witness regions are Cosmos DB regions after the others in failover priority, and get no
// Function App, no storage, no Application Insights.
func TestTemplateWitnessRegions(t *testing.T) {
	src := string(infra.MainBicep)
	for _, must := range []string{
		"param witnessRegions array = []",
		"var allRegions = concat([location], regions)",
		"var cosmosRegions = concat(allRegions, witnessRegions)",
		"var functionRegions = deployFunctions ? allRegions : []",
	} {
		if !strings.Contains(src, must) {
			t.Errorf("main.bicep lacks %s", must)
		}
	}
	cosmos := bicepResources(t)["cosmos"].body
	if !regexp.MustCompile(`locations: \[for \(region, i\) in cosmosRegions: \{\s*locationName: region\s*failoverPriority: i\s`).MatchString(cosmos) {
		t.Errorf("the account's locations are not cosmosRegions in order of failover priority:\n%s", cosmos)
	}
	for name, r := range bicepResources(t) {
		if strings.Contains(r.header+r.body, "witnessRegions") || (name != "cosmos" && strings.Contains(r.header+r.body, "cosmosRegions")) {
			t.Errorf("resource %s uses the witness regions", name)
		}
	}
}

// Issue 18, item 6: every app gets LeaseTimerPreferredRegions, the regions most preferred first (--location,
// then --regions in order), and deploy takes the same order from functionAppRegions.
func TestTemplatePreferredRegionsSetting(t *testing.T) {
	apps := bicepResources(t)["apps"].body
	if !regexp.MustCompile(`name: 'LeaseTimerPreferredRegions'\s*\n\s*value: join\(allRegions, ','\)`).MatchString(apps) {
		t.Error("the apps lack LeaseTimerPreferredRegions = join(allRegions, ',')")
	}
	if !strings.Contains(string(infra.MainBicep), "output functionAppRegions array = functionRegions") {
		t.Error("functionAppRegions is no longer the regions in order of preference")
	}
}

// Issue 18, item 6: --always-ready N gives LeaseTimer N always-ready instances in every app (Flex Consumption's
// functionAppConfig.scaleAndConcurrency.alwaysReady: {name, instanceCount}, a function outside the http, blob and
// durable groups being named function:<name>; Microsoft.Web/sites@2024-04-01 FunctionsAlwaysReadyConfig), and
// none by default.
func TestTemplateAlwaysReady(t *testing.T) {
	src := string(infra.MainBicep)
	if !regexp.MustCompile(`@minValue\(0\)\n@description\([^\n]*\)\nparam alwaysReady int = 0\n`).MatchString(src) {
		t.Error("main.bicep has no param alwaysReady int = 0 with @minValue(0)")
	}
	apps := bicepResources(t)["apps"].body
	if !regexp.MustCompile(`scaleAndConcurrency: \{[^}]*alwaysReady: alwaysReady > 0 \? \[\s*\{\s*name: 'function:LeaseTimer'\s*instanceCount: alwaysReady\s*\}\s*\] : \[\]`).MatchString(apps) {
		t.Errorf("the apps do not keep alwaysReady instances for function:LeaseTimer:\n%s", apps)
	}
	if main, err := os.ReadFile("../../functions/leasehandler/main.go"); err != nil || leasehandler.LeaseTimer(nil).Name != "LeaseTimer" ||
		!strings.Contains(string(main), "leasehandler.LeaseTimer(") {
		t.Errorf("the default handler serves no function LeaseTimer for function:LeaseTimer to name (%v)", err)
	}
}

// Issue 27, item 6: the apps' host names are outputs (Microsoft.Web/sites@2024-04-01 SiteProperties.defaultHostName,
// read-only), in the order of functionAppNames, so deploy needs no az functionapp show.
func TestTemplateHostNamesOutput(t *testing.T) {
	if !strings.Contains(string(infra.MainBicep), "output functionAppHostNames array = [for (region, i) in functionRegions: apps[i].properties.defaultHostName]") {
		t.Error("main.bicep does not output the apps' default host names in the order of functionAppNames")
	}
}

// Issue 27, item 8: the lease container's throughput is autoscale up to autoscaleMaxThroughput (1,000 by default,
// the least Azure allows) unless throughput asks for manual RU/s; the account takes enableFreeTier; serverless has
// neither. Property names as in Microsoft.DocumentDB@2024-11-15 (Azure/bicep-types-az): the container's
// CreateUpdateOptionsOrSqlContainerGetPropertiesOptions {throughput int, autoscaleSettings: AutoscaleSettings
// {maxThroughput int}}, "either throughput or autoscaleSettings … but not both"; the account's
// DatabaseAccountCreateUpdatePropertiesOrDatabaseAccountGetProperties.enableFreeTier bool.
func TestTemplateThroughput(t *testing.T) {
	src := string(infra.MainBicep)
	for _, want := range []string{
		"@minValue(0)\n@description(", "param throughput int = 0\n",
		"@minValue(1000)\n@description(", "param autoscaleMaxThroughput int = 1000\n",
		"param enableFreeTier bool = false\n",
		"param leaseTimerSchedule string = '" + defaultSchedule + "'\n",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("main.bicep lacks %q", want)
		}
	}
	leases := bicepResources(t)["leases"].body
	if !regexp.MustCompile(`options: serverless \? \{\} : \(throughput > 0 \? \{\s*throughput: throughput\s*\} : \{\s*autoscaleSettings: \{\s*maxThroughput: autoscaleMaxThroughput\s*\}\s*\}\)`).MatchString(leases) {
		t.Errorf("the lease container's options are not serverless ? {} : manual throughput or autoscale:\n%s", leases)
	}
	if !strings.Contains(bicepResources(t)["cosmos"].body, "enableFreeTier: enableFreeTier") {
		t.Error("the account does not take enableFreeTier")
	}
	if strings.Contains(bicepResources(t)["database"].body, "options") {
		t.Error("the database has throughput of its own: the lease container's is dedicated (docs/provisioning.md, docs/operating.md)")
	}
}
