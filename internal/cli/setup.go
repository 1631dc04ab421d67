package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/infra"
	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// setupSection records, in appsettings.Local.json, what setup made, so teardown removes exactly that and deploy
// finds the Function Apps.
const setupSection = "CosmosLeaseSetup"

// BicepParams are the parameters setup passes to infra/main.bicep; BicepOutputs the outputs it reads.
// A test checks that main.bicep declares every one of them.
var (
	BicepParams = []string{"environmentName", "location", "regions", "principalId", "deployFunctions", "serverless", "consistencyLevel", "witnessRegions", "alwaysReady",
		"throughput", "autoscaleMaxThroughput", "enableFreeTier", "leaseTimerSchedule"}
	BicepOutputs = []string{"resourceGroupName", "cosmosEndpoint", "databaseName", "containerName", "functionAppNames", "functionAppRegions", "functionAppHostNames"}
)

// consistencyLevels are main.bicep's allowed values of consistencyLevel.
var consistencyLevels = []string{"Session", "Strong", "BoundedStaleness", "ConsistentPrefix", "Eventual"}

// principalRetryDelays are the waits before each new deployment while Entra ID does not know a managed identity
// the deployment has just created: 3 more tries over 5 minutes (replication to Entra ID usually takes seconds to a
// minute or two).
var principalRetryDelays = []time.Duration{time.Minute, 2 * time.Minute, 2 * time.Minute}

var (
	regionName = regexp.MustCompile(`^[a-z0-9]+$`)
	envName    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)
	groupName  = regexp.MustCompile(`^[-\w._()]{1,90}$`)
	safeWord   = regexp.MustCompile(`^[\w.,/:=@%+-]+$`)
	// principalNotVisible is the data plane's form of Entra ID replication delay; role assignments say PrincipalNotFound.
	principalNotVisible = regexp.MustCompile(`(?i)principal ID \[?[0-9a-f-]+\]? was not found`)
)

func (a *App) setupCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "setup",
		Usage: "provision Cosmos DB and a Function App per region with infra/main.bicep (through az), then write appsettings.Local.json",
		Description: "Asks on a terminal; every question has a flag and an environment variable. With --no-input or CI=true\n" +
			"it never asks. Before creating anything it checks az (2.60 or newer), the regions (at least two Function App\n" +
			"regions unless --single-region; Flex Consumption and its custom runtime offered; Cosmos DB allowed for the\n" +
			"subscription; Strong consistency within reach), your right to create role assignments, prints the plan with\n" +
			"its estimated monthly cost at list prices, and validates the deployment with Azure. The lease container gets\n" +
			"autoscale up to 1,000 RU/s (billed from 100 RU/s per region) and the free tier where the subscription still\n" +
			"has it (docs/operating.md). --emulator writes a configuration for a local Cosmos DB emulator instead (no az\n" +
			"needed).",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "subscription", Usage: "subscription `ID or name`", EnvVars: []string{"AZURE_SUBSCRIPTION_ID"}},
			&ucli.StringFlag{Name: "resource-group", Usage: "resource group `NAME` to create (default rg-ENV)", EnvVars: []string{"AZURE_RESOURCE_GROUP"}},
			&ucli.StringFlag{Name: "location", Usage: "primary `REGION`: the Cosmos DB write region", EnvVars: []string{"AZURE_LOCATION"}},
			&ucli.StringFlag{Name: "regions", Usage: "more regions `a,b,c`: read regions and one Function App each", EnvVars: []string{"COSMOSLEASE_REGIONS"}},
			&ucli.StringFlag{Name: "env-name", Usage: "environment `NAME` (lowercase letters, digits, '-'; at most 20)", EnvVars: []string{"AZURE_ENV_NAME"}},
			&ucli.StringFlag{Name: "principal-id", Usage: "object `ID` to grant data access (default: the signed-in user or service principal; 'none' for nobody)", EnvVars: []string{"AZURE_PRINCIPAL_ID"}},
			&ucli.StringFlag{Name: "consistency", Usage: "default consistency `LEVEL`: " + strings.Join(consistencyLevels, ", ") + " (default: Strong across several regions where Azure allows it, else Session)", EnvVars: []string{"COSMOSLEASE_CONSISTENCY"}},
			&ucli.StringFlag{Name: "witness-region", Usage: "with Strong consistency and exactly two regions: a third Cosmos DB `REGION` (read only, no Function App) that keeps writes available while either is down (default: the nearest Strong allows; 'none' for none)", EnvVars: []string{"COSMOSLEASE_WITNESS_REGION"}},
			&ucli.IntFlag{Name: "always-ready", Usage: "keep `N` always-ready instances for the LeaseTimer function in every Function App (billed while idle; 0 scales to zero)", EnvVars: []string{"COSMOSLEASE_ALWAYS_READY"}},
			&ucli.BoolFlag{Name: "no-functions", Usage: "deploy Cosmos DB only", EnvVars: []string{"COSMOSLEASE_NO_FUNCTIONS"}},
			&ucli.BoolFlag{Name: "single-region", Usage: "deploy the Function App in one region only, knowing that no other region can take the work over (without it setup needs --regions)", EnvVars: []string{"COSMOSLEASE_SINGLE_REGION"}},
			&ucli.BoolFlag{Name: "serverless", Usage: "serverless Cosmos DB (one region only)", EnvVars: []string{"COSMOSLEASE_SERVERLESS"}},
			&ucli.IntFlag{Name: "autoscale-max", Usage: "autoscale the lease container up to `RU/s` (1000 or more, in steps of 1000; the default is autoscale up to 1000, billed from 100 RU/s in every region)", EnvVars: []string{"COSMOSLEASE_AUTOSCALE_MAX"}},
			&ucli.IntFlag{Name: "throughput", Usage: "manual provisioned throughput of the lease container in `RU/s` instead of autoscale (400 or more, in steps of 100; billed in full in every region)", EnvVars: []string{"COSMOSLEASE_THROUGHPUT"}},
			&ucli.BoolFlag{Name: "free-tier", Usage: "apply the Cosmos DB free tier (the first 1,000 RU/s and 25 GB free; one account per subscription; default: when no account of the subscription has it)", EnvVars: []string{"COSMOSLEASE_FREE_TIER"}},
			&ucli.StringFlag{Name: "schedule", Value: defaultSchedule, Usage: "NCRONTAB `SCHEDULE` of the LeaseTimer function (app setting LeaseTimerSchedule): six fields, seconds first", EnvVars: []string{"COSMOSLEASE_SCHEDULE"}},
			&ucli.BoolFlag{Name: "deploy", Usage: "then build the lease handler in this directory and deploy it to every Function App (cosmoslease deploy)", EnvVars: []string{"COSMOSLEASE_DEPLOY"}},
			&ucli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation", EnvVars: []string{"COSMOSLEASE_YES"}},
			&ucli.BoolFlag{Name: "what-if", Usage: "show what the deployment would change (az deployment group what-if), change nothing"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the az commands that would create things; only read-only checks (az version, account, user, regions, role assignments) run"},
			&ucli.BoolFlag{Name: "emulator", Usage: "configure a local Cosmos DB emulator instead of Azure", EnvVars: []string{"COSMOSLEASE_EMULATOR"}},
			&ucli.StringFlag{Name: "endpoint", Usage: "with --emulator: the emulator's `URL` (default https://localhost:8081/)"},
			&ucli.BoolFlag{Name: "no-input", Usage: "never prompt", EnvVars: []string{"COSMOSLEASE_NO_INPUT"}},
		},
		Action: a.setup,
	}
}

// plan is what setup will do.
type plan struct {
	subscription, subscriptionName, group, location, env, principal, consistency string
	regions                                                                      []string
	functions, serverless                                                        bool
	// flex holds the regions that offer Flex Consumption; nil when no Function App is deployed.
	flex map[string]bool
	// witness is the Cosmos DB read region with no Function App that Strong with two regions gets (or none).
	witness []string
	// witnessAsked: --witness-region named a region.
	witnessAsked bool
	// alwaysReady is the number of always-ready instances for LeaseTimer in every app.
	alwaysReady int
	// throughput is manual RU/s (0 for autoscale), autoscaleMax autoscale's maximum RU/s; freeTier applies the free
	// tier; schedule is LeaseTimer's NCRONTAB schedule.
	throughput, autoscaleMax int
	freeTier                 bool
	schedule                 string
	// places are the subscription's regions (az account list-locations), once read.
	places map[string]place
	// cosmosAccess says, per region asked about, whether the subscription may create Cosmos DB there.
	cosmosAccess map[string]bool
}

// allRegions is the primary region, then the others in failover order.
func (p *plan) allRegions() []string { return append([]string{p.location}, p.regions...) }

// parameters are main.bicep's parameters, as az takes them.
func (p *plan) parameters() []string {
	regions, _ := json.Marshal(append([]string{}, p.regions...))
	witness, _ := json.Marshal(append([]string{}, p.witness...))
	return []string{"environmentName=" + p.env, "location=" + p.location, "regions=" + string(regions), "principalId=" + p.principal,
		fmt.Sprintf("deployFunctions=%t", p.functions), fmt.Sprintf("serverless=%t", p.serverless), "consistencyLevel=" + p.consistency,
		"witnessRegions=" + string(witness), fmt.Sprintf("alwaysReady=%d", p.alwaysReady),
		fmt.Sprintf("throughput=%d", p.throughput), fmt.Sprintf("autoscaleMaxThroughput=%d", max(p.autoscaleMax, minAutoscaleMax)),
		fmt.Sprintf("enableFreeTier=%t", p.freeTier), "leaseTimerSchedule=" + p.schedule}
}

// deploymentName is the name of setup's deployment in the resource group; deploy reads its outputs.
func deploymentName(env string) string { return "cosmoslease-" + env }

func (a *App) setup(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usagef("setup takes no arguments, got %q. Try: cosmoslease setup --help", c.Args().First())
	}
	if c.Bool("emulator") {
		return a.setupEmulator(c)
	}
	p, err := a.gather(c)
	if err != nil {
		return err
	}
	groupArgs := []string{"group", "create", "--name", p.group, "--location", p.location, "--subscription", p.subscription,
		"--tags", "cosmoslease-env=" + p.env, "--output", "json"}
	deployment := func(verb, templ string) []string {
		return append([]string{"deployment", "group", verb, "--resource-group", p.group, "--subscription", p.subscription,
			"--name", deploymentName(p.env), "--template-file", templ, "--parameters"}, p.parameters()...)
	}
	output := []string{"--output", "json"}
	if c.Bool("dry-run") {
		fmt.Fprintln(a.Stdout, shellLine(append([]string{"az"}, groupArgs...)))
		fmt.Fprintln(a.Stdout, shellLine(append(append([]string{"az"}, deployment("validate", "infra/main.bicep")...), output...)))
		fmt.Fprintln(a.Stdout, shellLine(append(append([]string{"az"}, deployment("create", "infra/main.bicep")...), output...)))
		if c.Bool("deploy") && p.functions {
			fmt.Fprintln(a.Stdout, "cosmoslease deploy   # then, for each Function App: az functionapp deployment source config-zip …")
		}
		return nil
	}
	dir, err := os.MkdirTemp("", "cosmoslease-infra")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	templ, err := infra.Write(dir)
	if err != nil {
		return err
	}
	ctx := c.Context
	if c.Bool("what-if") {
		if _, err := a.Az.Run(ctx, "group", "show", "--name", p.group, "--subscription", p.subscription, "--output", "json"); err != nil {
			var azErr *az.Error
			if errors.As(err, &azErr) && strings.Contains(azErr.Message, "could not be found") {
				fmt.Fprintf(a.Stdout, "Resource group %s does not exist yet: setup would create it and everything in main.bicep.\n", p.group)
				return nil
			}
			return err
		}
		out, err := a.withSpinner("Asking Azure what would change", func() ([]byte, error) {
			return a.Az.Run(ctx, deployment("what-if", templ)...)
		})
		if err != nil {
			return err
		}
		_, _ = a.Stdout.Write(out)
		return nil
	}
	if _, err := a.Az.Run(ctx, groupArgs...); err != nil {
		return err
	}
	// Preflight: Azure checks the template, the parameters, policies and rights before anything else is created.
	if _, err := a.withSpinner("Validating the deployment with Azure", func() ([]byte, error) {
		return a.Az.Run(ctx, append(deployment("validate", templ), output...)...)
	}); err != nil {
		var azErr *az.Error
		if errors.As(err, &azErr) {
			return fmt.Errorf("Azure does not accept the deployment: %s. Nothing was created but the resource group %s (empty unless it existed before): "+
				"run setup again once this is fixed, or delete it with 'az group delete --name %s'", azErr.Message, p.group, p.group)
		}
		return err
	}
	create := func() ([]byte, error) {
		return a.withSpinner(fmt.Sprintf("Deploying to %s (several minutes)", p.group), func() ([]byte, error) {
			return a.Az.Run(ctx, append(deployment("create", templ), output...)...)
		})
	}
	out, err := create()
	for try := 0; ; try++ {
		var azErr *az.Error
		if !errors.As(err, &azErr) || !(azErr.HasCode("PrincipalNotFound") || principalNotVisible.MatchString(azErr.Message)) {
			break
		}
		if try == len(principalRetryDelays) {
			return fmt.Errorf("%w (a managed identity this deployment created was still not visible to Microsoft Entra ID after %d deployments over %s: run setup again later; the deployment is idempotent)",
				err, try+1, sumDurations(principalRetryDelays))
		}
		// A managed identity the deployment has just created may take a while to reach Entra ID. Everything in
		// the template is idempotent, so deploying again finishes the job once it has.
		fmt.Fprintf(a.Stderr, "A managed identity this deployment created is not visible to Microsoft Entra ID yet (%s).\n"+
			"Deploying again in %s (%d of %d); the deployment is idempotent.\n", azErr.Message, principalRetryDelays[try], try+1, len(principalRetryDelays))
		if err := a.sleep(ctx, principalRetryDelays[try]); err != nil {
			return errInterrupted
		}
		out, err = create()
	}
	if err != nil {
		return err
	}
	outs, err := deploymentOutputs(out)
	if err != nil {
		return err
	}
	endpoint, _ := outs["cosmosEndpoint"].(string)
	db, _ := outs["databaseName"].(string)
	ctr, _ := outs["containerName"].(string)
	if endpoint == "" {
		return errors.New("the deployment succeeded but returned no cosmosEndpoint output; is infra/main.bicep current?")
	}
	apps := functionApps(outs)
	path := filepath.Join(a.Dir, config.LocalFile)
	if err := config.WriteLocal(path, []config.Pair{{Key: config.KeyAccountEndpoint, Value: endpoint},
		{Key: config.KeyDatabaseName, Value: orDefault(db, cosmoslease.DefaultDatabase)}, {Key: config.KeyContainerName, Value: orDefault(ctr, cosmoslease.DefaultContainer)}}); err != nil {
		return err
	}
	var names, regions []string
	for _, app := range apps {
		names, regions = append(names, app.name), append(regions, app.region)
	}
	if err := config.WriteSection(path, setupSection, []config.Pair{{Key: "Mode", Value: "azure"}, {Key: "Subscription", Value: p.subscription},
		{Key: "ResourceGroup", Value: p.group}, {Key: "EnvironmentName", Value: p.env},
		{Key: "FunctionApps", Value: strings.Join(names, ",")}, {Key: "FunctionAppRegions", Value: strings.Join(regions, ",")}}); err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "Wrote %s (mode 0600): endpoint mode, DefaultAzureCredential.\n", path)
	if gitWouldCommit(path) {
		fmt.Fprintf(a.Stderr, "warning: %s is not git-ignored; add %s to .gitignore\n", path, config.LocalFile)
	}
	fmt.Fprintf(a.Stdout, "Cosmos DB: %s (database %s, container %s) in resource group %s.\n\nNext steps:\n", endpoint, db, ctr, p.group)
	fmt.Fprintf(a.Stdout, "  cosmoslease run --instance %s-1 --region %s\n", p.location, p.location)
	for _, r := range p.regions {
		fmt.Fprintf(a.Stdout, "  cosmoslease run --instance %s-1 --region %s --wait\n", r, r)
	}
	if len(apps) > 0 {
		fmt.Fprintf(a.Stdout, "\nDeploy the lease handler, built from your copy of this repository, to the %d Function Apps:\n  cosmoslease deploy\n", len(apps))
	}
	fmt.Fprintf(a.Stdout, "\nRemove it all with: cosmoslease teardown\n")
	if len(apps) == 0 {
		return nil
	}
	doDeploy := c.Bool("deploy")
	if !doDeploy && a.canPrompt(c) && moduleProblem(a.Dir) == "" {
		if doDeploy, err = a.Prompter.Confirm(fmt.Sprintf("Build the lease handler in %s and deploy it to the %d Function Apps now?", a.Dir, len(apps)), true); err != nil {
			return err
		}
	}
	if !doDeploy {
		return nil
	}
	fmt.Fprintln(a.Stderr)
	return a.buildAndDeploy(ctx, target{group: p.group, subscription: p.subscription}, apps, defaultDeployOptions)
}

// gather settles every value of the plan from flags, environment, az and prompts, checks it against Azure
// (read-only), then confirms.
func (a *App) gather(c *ucli.Context) (*plan, error) {
	ask := a.canPrompt(c)
	ctx := c.Context
	if a.Az == nil {
		a.Az = az.Exec{}
	}
	p := &plan{subscription: c.String("subscription"), group: c.String("resource-group"), location: c.String("location"),
		env: c.String("env-name"), principal: c.String("principal-id"), functions: !c.Bool("no-functions"), serverless: c.Bool("serverless"),
		consistency: c.String("consistency"), alwaysReady: c.Int("always-ready"), throughput: c.Int("throughput"), autoscaleMax: c.Int("autoscale-max"),
		schedule: c.String("schedule")}
	witness := c.String("witness-region")
	// A value that can never work is a usage error, whatever the state of az.
	if i := indexFold(consistencyLevels, p.consistency); i >= 0 {
		p.consistency = consistencyLevels[i]
	} else if p.consistency != "" {
		return nil, usagef("--consistency %q: use one of %s", p.consistency, strings.Join(consistencyLevels, ", "))
	}
	if witness != "" && witness != "none" {
		if err := checkRegionName(witness); err != nil {
			return nil, usagef("--witness-region %q: %v, or none", witness, err)
		}
	}
	switch {
	case p.alwaysReady < 0:
		return nil, usagef("--always-ready %d: give 0 or more always-ready instances", p.alwaysReady)
	case p.alwaysReady > 0 && !p.functions:
		return nil, usagef("--always-ready %d keeps LeaseTimer's instances, but --no-functions deploys no Function App: drop one of them", p.alwaysReady)
	}
	if err := checkThroughput(c, p); err != nil {
		return nil, err
	}
	if _, err := ncrontab.Parse(p.schedule); err != nil {
		return nil, usagef("--schedule: %v", err)
	}
	// Preflight: az present, new enough, and (next) signed in.
	if err := az.RequireVersion(ctx, a.Az); err != nil {
		return nil, err
	}

	type account struct {
		ID, Name  string
		IsDefault bool
		State     string
		User      struct{ Name, Type string }
	}
	if p.subscription == "" && ask {
		out, err := a.Az.Run(ctx, "account", "list", "--output", "json")
		if err != nil {
			return nil, err
		}
		var accounts []account
		if err := json.Unmarshal(out, &accounts); err != nil {
			return nil, fmt.Errorf("az account list: unexpected output: %v", err)
		}
		if len(accounts) == 0 {
			return nil, az.ErrNotLoggedIn
		}
		var options []string
		def := ""
		for _, acc := range accounts {
			o := fmt.Sprintf("%s (%s)", acc.Name, acc.ID)
			options = append(options, o)
			if acc.IsDefault {
				def = o
			}
		}
		choice, err := a.Prompter.Select("Subscription", "", options, def)
		if err != nil {
			return nil, err
		}
		p.subscription = accounts[indexOf(options, choice)].ID
	}
	showArgs := []string{"account", "show", "--output", "json"}
	if p.subscription != "" {
		showArgs = append(showArgs, "--subscription", p.subscription)
	}
	out, err := a.Az.Run(ctx, showArgs...)
	if err != nil {
		var azErr *az.Error
		if errors.As(err, &azErr) && p.subscription != "" {
			return nil, usagef("subscription %q is not one this az login can use (%s): check --subscription or AZURE_SUBSCRIPTION_ID against 'az account list'", p.subscription, azErr.Message)
		}
		return nil, err
	}
	var acc account
	if err := json.Unmarshal(out, &acc); err != nil || acc.ID == "" {
		return nil, fmt.Errorf("az account show: unexpected output")
	}
	if acc.State != "" && acc.State != "Enabled" {
		return nil, usagef("subscription %s (%s) is %s, not Enabled: pick another with --subscription", acc.Name, acc.ID, acc.State)
	}
	p.subscription, p.subscriptionName = acc.ID, acc.Name

	// input settles one value: the flag or variable, else the answer to a prompt that asks again until the
	// answer passes check (and askCheck, when given), else the default. A flag's bad value is a usage error.
	input := func(value *string, flag, env, msg, def string, check, askCheck func(string) error) error {
		if askCheck == nil {
			askCheck = check
		}
		if *value == "" && ask {
			v, err := a.Prompter.Input(msg, "", def, askCheck)
			if err != nil {
				return err
			}
			*value = v
		}
		if *value == "" {
			*value = def
		}
		if *value == "" {
			return usagef("setup needs --%s (or %s)", flag, env)
		}
		if err := check(*value); err != nil {
			return usagef("--%s %q: %v", flag, *value, err)
		}
		return nil
	}
	if err := input(&p.env, "env-name", "AZURE_ENV_NAME", "Environment name", "cosmoslease", checkEnvName, nil); err != nil {
		return nil, err
	}
	if err := input(&p.group, "resource-group", "AZURE_RESOURCE_GROUP", "Resource group to create", "rg-"+p.env, checkGroupName, nil); err != nil {
		return nil, err
	}
	if !c.IsSet("no-functions") && ask {
		yes, err := a.Prompter.Confirm("Deploy a Function App in every region (the lease handler)?", true)
		if err != nil {
			return nil, err
		}
		p.functions = yes
	}
	if p.functions {
		if p.flex, err = a.flexRegions(ctx, p.subscription); err != nil {
			return nil, err
		}
	}
	flex := func(v string) error {
		if p.flex != nil && !p.flex[v] {
			return fmt.Errorf("Flex Consumption, the Function Apps' plan, is not offered in %s ('az functionapp list-flexconsumption-locations' lists where it is); pick another region, or deploy Cosmos DB only with --no-functions", v)
		}
		return nil
	}
	// The regions are chosen from a list (type to filter): those that offer Flex Consumption when there are
	// Function Apps, else every region of the subscription.
	regionOptions := func() ([]string, error) {
		var options []string
		if p.flex != nil {
			for r := range p.flex {
				options = append(options, r)
			}
		} else {
			places, err := a.places(ctx, p)
			if err != nil {
				return nil, err
			}
			for r := range places {
				options = append(options, r)
			}
		}
		sort.Strings(options)
		return options, nil
	}
	single := c.Bool("single-region")
	if p.location == "" {
		// The default primary is the usable region nearest to the one az defaults to, if it defaults to one.
		def, from, err := a.defaultPrimary(ctx, p, regionOptions)
		if err != nil {
			return nil, err
		}
		switch {
		case ask:
			options, err := regionOptions()
			if err != nil {
				return nil, err
			}
			if p.location, err = a.Prompter.Select("Primary region (the Cosmos DB write region)", "type to filter", options, def); err != nil {
				return nil, err
			}
		case def != "":
			p.location = def
			fmt.Fprintf(a.Stderr, "Primary region %s: the nearest usable region to az's default location, %s ('az configure --list-defaults'); --location chooses another.\n", def, from)
		}
	}
	if p.location == "" {
		return nil, usagef("setup needs --location (or AZURE_LOCATION): az has no default location to start from ('az configure --defaults location=REGION' sets one)")
	}
	if err := checkRegionName(p.location); err != nil {
		return nil, usagef("--location %q: %v", p.location, err)
	}
	if c.IsSet("regions") || c.String("regions") != "" {
		for _, r := range strings.Split(c.String("regions"), ",") {
			if r = strings.TrimSpace(r); r != "" {
				p.regions = append(p.regions, r)
			}
		}
	} else if ask && !single {
		all, err := regionOptions()
		if err != nil {
			return nil, err
		}
		var options []string
		for _, r := range all {
			if r != p.location {
				options = append(options, r)
			}
		}
		for try := 0; try < 2; try++ {
			chosen, err := a.Prompter.MultiSelect("Failover regions (read regions and a Function App each, in failover order)", "type to filter, space to choose", options, nil)
			if err != nil {
				return nil, err
			}
			p.regions = chosen
			if len(chosen) > 0 || !p.functions || try == 1 {
				break
			}
			fmt.Fprintf(a.Stderr, "Choose at least one failover region: with one region no other can take the work over when it is down (run setup with --single-region to deploy one knowingly).\n")
		}
	}
	switch {
	case single && len(p.regions) > 0:
		return nil, usagef("--single-region deploys one region, but --regions names %s: drop one of them", strings.Join(p.regions, ","))
	case p.functions && len(p.regions) == 0 && !single:
		return nil, usagef("setup deploys Function Apps in at least two regions, so that one can take the work over when the other is down: add a failover region with --regions REGION, or pass --single-region to deploy one knowingly")
	}
	seen := map[string]bool{p.location: true}
	for _, r := range p.regions {
		if err := checkRegionName(r); err != nil {
			return nil, usagef("--regions: %q: %v", r, err)
		}
		if seen[r] {
			return nil, usagef("--regions: %s is listed twice (the primary region counts)", r)
		}
		seen[r] = true
	}
	var noFlex []string
	for _, r := range p.allRegions() {
		if flex(r) != nil {
			noFlex = append(noFlex, r)
		}
	}
	if len(noFlex) > 0 {
		return nil, usagef("Flex Consumption, the Function Apps' plan, is not offered in %s ('az functionapp list-flexconsumption-locations' lists where it is): choose other regions, or deploy Cosmos DB only with --no-functions",
			strings.Join(noFlex, ", "))
	}
	if p.serverless && len(p.regions) > 0 {
		return nil, usagef("a serverless Cosmos DB account cannot span regions: drop --serverless, or --regions")
	}
	if p.functions {
		if err := a.checkCustomRuntime(ctx, p, p.allRegions()); err != nil {
			return nil, err
		}
	}
	if err := a.checkCosmosRegions(ctx, p, p.allRegions()); err != nil {
		return nil, err
	}
	if witness != "" && witness != "none" && (len(p.regions) != 1 || p.consistency != "" && p.consistency != "Strong") {
		return nil, usagef("--witness-region %s: a witness region is for Strong consistency with exactly two regions; this plan has %s and %d region(s): drop --witness-region",
			witness, orDefault(p.consistency, "default")+" consistency", len(p.allRegions()))
	}
	p.witnessAsked = witness != "" && witness != "none"
	if err := a.chooseConsistency(ctx, p); err != nil {
		return nil, err
	}
	if err := a.chooseWitness(ctx, p, witness); err != nil {
		return nil, err
	}
	if err := a.warnNearStrongLimit(ctx, p); err != nil {
		return nil, err
	}
	me, err := a.signedIn(ctx, p.subscription, acc.User.Name, acc.User.Type)
	if err != nil {
		return nil, err
	}
	switch {
	case p.principal == "none":
		p.principal = ""
	case p.principal == "" && me.objectID != "":
		use := true
		if ask {
			if use, err = a.Prompter.Confirm(fmt.Sprintf("Grant %s data access to the leases?", me.who), true); err != nil {
				return nil, err
			}
		}
		if use {
			p.principal = me.objectID
		}
	case p.principal == "":
		fmt.Fprintf(a.Stderr, "note: could not tell the object id of %s; nobody else gets data access. Pass --principal-id to grant it.\n", orDefault(me.who, "the signed-in identity"))
	}
	if p.functions {
		// The apps' role assignments need the right to create role assignments; say so now rather than after
		// the account and the apps exist.
		if err := a.checkRoleRights(ctx, p, me); err != nil {
			return nil, err
		}
	}

	if err := a.chooseFreeTier(ctx, c, p); err != nil {
		return nil, err
	}

	confirmed := c.Bool("dry-run") || c.Bool("what-if") || c.Bool("yes")
	if !confirmed && !ask {
		return nil, usagef("setup creates Azure resources: pass --yes to confirm without a prompt (or --dry-run to see the commands)")
	}
	fmt.Fprintf(a.Stderr, "\nSetup will create, in subscription %s (%s):\n  resource group  %s (%s)\n  Cosmos DB       write region %s", p.subscriptionName, p.subscription, p.group, p.location, p.location)
	if len(p.regions) > 0 {
		fmt.Fprintf(a.Stderr, ", read regions %s", strings.Join(p.regions, ", "))
	}
	for _, w := range p.witness {
		fmt.Fprintf(a.Stderr, ", witness region %s (a read region with no Function App, last in failover priority: it keeps Strong writes available while either other region is down, for one more region's RU/s)", w)
	}
	fmt.Fprintf(a.Stderr, "; %s consistency; keys disabled, RBAC only\n", p.consistency)
	switch {
	case p.serverless:
		fmt.Fprintf(a.Stderr, "  throughput      serverless (billed per request unit)\n")
	case p.throughput > 0:
		fmt.Fprintf(a.Stderr, "  throughput      %s RU/s manual on the lease container, in every region", thousands(p.throughput))
	default:
		fmt.Fprintf(a.Stderr, "  throughput      autoscale on the lease container, %s to %s RU/s in every region", thousands(p.autoscaleMax/10), thousands(p.autoscaleMax))
	}
	if !p.serverless {
		if p.freeTier {
			fmt.Fprintf(a.Stderr, "; free tier (the subscription's one free-tier account; --free-tier=false keeps it for another)")
		}
		fmt.Fprintln(a.Stderr)
	}
	if p.functions {
		fmt.Fprintf(a.Stderr, "  Function Apps   one in each of %s (Flex Consumption), the most preferred first", strings.Join(p.allRegions(), ", "))
		if p.alwaysReady > 0 {
			fmt.Fprintf(a.Stderr, "; %d always-ready instance%s for LeaseTimer in each (billed while idle)", p.alwaysReady, map[bool]string{true: "s"}[p.alwaysReady > 1])
		}
		fmt.Fprintln(a.Stderr)
	}
	if p.principal != "" {
		fmt.Fprintf(a.Stderr, "  data access     %s\n", p.principal)
	}
	fmt.Fprintln(a.Stderr)
	cost, err := estimateCost(p)
	if err != nil {
		return nil, err
	}
	printEstimate(a.Stderr, cost, p)
	fmt.Fprintln(a.Stderr)
	if confirmed {
		return p, nil
	}
	ok, err := a.Prompter.Confirm("Create these resources?", true)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, withCode(ExitOK, errors.New("nothing created"))
	}
	return p, nil
}

func checkEnvName(v string) error {
	if !envName.MatchString(v) {
		return errors.New("use 1 to 20 lowercase letters, digits or '-', starting with a letter or digit")
	}
	return nil
}

func checkRegionName(v string) error {
	if !regionName.MatchString(v) {
		return errors.New("write the region's programmatic name, such as eastus or westeurope ('az account list-locations -o table')")
	}
	return nil
}

func checkGroupName(v string) error {
	if !groupName.MatchString(v) || strings.HasSuffix(v, ".") {
		return errors.New("use up to 90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'")
	}
	return nil
}

// setupEmulator writes a configuration for a local emulator and creates its container.
func (a *App) setupEmulator(c *ucli.Context) error {
	ep := c.String("endpoint")
	if ep == "" {
		ep = orDefault(a.Getenv("COSMOSLEASE_EMULATOR_ENDPOINT"), emulator.DefaultEndpoint)
	}
	if err := checkEndpointFlag(ep); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	if err := emulator.EnsureContainer(ctx, ep, cosmoslease.DefaultDatabase, cosmoslease.DefaultContainer, cosmoslease.DefaultPartitionKeyPath); err != nil {
		return fmt.Errorf("%v (is the emulator running at %s?)", err, ep)
	}
	path := filepath.Join(a.Dir, config.LocalFile)
	if err := config.WriteLocal(path, []config.Pair{{Key: config.KeyConnectionString, Value: emulator.ConnectionString(ep)},
		{Key: config.KeyDatabaseName, Value: cosmoslease.DefaultDatabase}, {Key: config.KeyContainerName, Value: cosmoslease.DefaultContainer}}); err != nil {
		return err
	}
	if err := config.WriteSection(path, setupSection, []config.Pair{{Key: "Mode", Value: "emulator"}}); err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "Wrote %s (mode 0600) for the emulator at %s.\n", path, ep)
	fmt.Fprintf(a.Stdout, "Next: cosmoslease run --instance us-east-1 --region us-east\n")
	return nil
}

func checkEndpointFlag(ep string) error {
	if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
		return usagef("--endpoint %q is not a URL such as https://localhost:8081/", ep)
	}
	return nil
}

// deploymentOutputs reads properties.outputs of `az deployment group create -o json`.
func deploymentOutputs(out []byte) (map[string]any, error) {
	var d struct {
		Properties struct {
			ProvisioningState string `json:"provisioningState"`
			Outputs           map[string]struct {
				Value any `json:"value"`
			} `json:"outputs"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("az deployment group create: unexpected output: %v", err)
	}
	if s := d.Properties.ProvisioningState; s != "" && s != "Succeeded" {
		return nil, fmt.Errorf("the deployment ended %s", s)
	}
	outs := map[string]any{}
	for k, v := range d.Properties.Outputs {
		outs[k] = v.Value
	}
	return outs, nil
}

func sumDurations(ds []time.Duration) time.Duration {
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	return total
}

// app is one Function App that setup deployed; host is its default host name ("" from a deployment made before
// main.bicep had the functionAppHostNames output).
type app struct{ name, region, host string }

// functionApps pairs the deployment's functionAppNames, functionAppRegions and functionAppHostNames outputs.
func functionApps(outs map[string]any) []app {
	names, _ := outs["functionAppNames"].([]any)
	regions, _ := outs["functionAppRegions"].([]any)
	hosts, _ := outs["functionAppHostNames"].([]any)
	at := func(list []any, i int) string {
		if i < len(list) {
			s, _ := list[i].(string)
			return s
		}
		return ""
	}
	var apps []app
	for i, v := range names {
		if name, _ := v.(string); name != "" {
			apps = append(apps, app{name: name, region: at(regions, i), host: at(hosts, i)})
		}
	}
	return apps
}

func indexFold(list []string, s string) int {
	for i, v := range list {
		if strings.EqualFold(v, s) {
			return i
		}
	}
	return -1
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return 0
}

// shellLine quotes args for a POSIX shell.
func shellLine(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if safeWord.MatchString(a) {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// withSpinner runs fn with a spinner on stderr when it is a terminal, or one line otherwise.
func (a *App) withSpinner(msg string, fn func() ([]byte, error)) ([]byte, error) {
	if !a.Interactive {
		fmt.Fprintf(a.Stderr, "%s…\n", msg)
		return fn()
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		start := time.Now()
		for i := 0; ; i++ {
			select {
			case <-done:
				fmt.Fprintf(a.Stderr, "\r\x1b[K")
				return
			case <-time.After(100 * time.Millisecond):
				fmt.Fprintf(a.Stderr, "\r%c %s… %s", frames[i%len(frames)], msg, time.Since(start).Round(time.Second))
			}
		}
	}()
	out, err := fn()
	close(done)
	<-stopped
	return out, err
}
