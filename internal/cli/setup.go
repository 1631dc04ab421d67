package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/infra"
	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// setupSection records, in appsettings.Local.json, what setup made, so teardown removes exactly that.
const setupSection = "CosmosLeaseSetup"

// BicepParams are the parameters setup passes to infra/main.bicep; BicepOutputs the outputs it reads.
// A test checks that main.bicep declares every one of them.
var (
	BicepParams  = []string{"environmentName", "location", "regions", "principalId", "deployFunctions", "serverless"}
	BicepOutputs = []string{"resourceGroupName", "cosmosEndpoint", "databaseName", "containerName", "functionAppNames", "functionAppRegions"}
)

// commonRegions are offered when prompting for more regions.
var commonRegions = []string{"eastus", "eastus2", "westus2", "westus3", "centralus", "northeurope", "westeurope",
	"uksouth", "swedencentral", "southeastasia", "eastasia", "japaneast", "australiaeast", "centralindia", "brazilsouth"}

var (
	regionName = regexp.MustCompile(`^[a-z0-9]+$`)
	envName    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)
	groupName  = regexp.MustCompile(`^[-\w._()]{1,90}$`)
	safeWord   = regexp.MustCompile(`^[\w.,/:=@%+-]+$`)
)

func (a *App) setupCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "setup",
		Usage: "provision Cosmos DB and a Function App per region with infra/main.bicep (through az), then write appsettings.Local.json",
		Description: "Asks on a terminal; every question has a flag and an environment variable. With --no-input or CI=true\n" +
			"it never asks. --emulator writes a configuration for a local Cosmos DB emulator instead (no az needed).",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "subscription", Usage: "subscription `ID or name`", EnvVars: []string{"AZURE_SUBSCRIPTION_ID"}},
			&ucli.StringFlag{Name: "resource-group", Usage: "resource group `NAME` to create (default rg-ENV)", EnvVars: []string{"AZURE_RESOURCE_GROUP"}},
			&ucli.StringFlag{Name: "location", Usage: "primary `REGION`: the Cosmos DB write region", EnvVars: []string{"AZURE_LOCATION"}},
			&ucli.StringFlag{Name: "regions", Usage: "more regions `a,b,c`: read regions and one Function App each", EnvVars: []string{"COSMOSLEASE_REGIONS"}},
			&ucli.StringFlag{Name: "env-name", Usage: "environment `NAME` (lowercase letters, digits, '-'; at most 20)", EnvVars: []string{"AZURE_ENV_NAME"}},
			&ucli.StringFlag{Name: "principal-id", Usage: "object `ID` to grant data access (default: the signed-in user; 'none' for nobody)", EnvVars: []string{"AZURE_PRINCIPAL_ID"}},
			&ucli.BoolFlag{Name: "no-functions", Usage: "deploy Cosmos DB only", EnvVars: []string{"COSMOSLEASE_NO_FUNCTIONS"}},
			&ucli.BoolFlag{Name: "serverless", Usage: "serverless Cosmos DB (one region only)", EnvVars: []string{"COSMOSLEASE_SERVERLESS"}},
			&ucli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation", EnvVars: []string{"COSMOSLEASE_YES"}},
			&ucli.BoolFlag{Name: "what-if", Usage: "show what the deployment would change (az deployment group what-if), change nothing"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the az commands that would create things; only read-only checks (az version, account, signed-in user) run"},
			&ucli.BoolFlag{Name: "emulator", Usage: "configure a local Cosmos DB emulator instead of Azure", EnvVars: []string{"COSMOSLEASE_EMULATOR"}},
			&ucli.StringFlag{Name: "endpoint", Usage: "with --emulator: the emulator's `URL` (default https://localhost:8081/)"},
			&ucli.BoolFlag{Name: "no-input", Usage: "never prompt", EnvVars: []string{"COSMOSLEASE_NO_INPUT"}},
		},
		Action: a.setup,
	}
}

// plan is what setup will do.
type plan struct {
	subscription, subscriptionName, group, location, env, principal string
	regions                                                         []string
	functions, serverless                                           bool
}

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
		"--tags", "cosmoslease-env=" + p.env, "azd-env-name=" + p.env, "--output", "json"}
	deployArgs := func(templ string) []string {
		regions, _ := json.Marshal(append([]string{}, p.regions...))
		args := []string{"--resource-group", p.group, "--subscription", p.subscription, "--name", "cosmoslease-" + p.env,
			"--template-file", templ, "--parameters", "environmentName=" + p.env, "location=" + p.location,
			"regions=" + string(regions), "principalId=" + p.principal,
			fmt.Sprintf("deployFunctions=%t", p.functions), fmt.Sprintf("serverless=%t", p.serverless)}
		return args
	}
	output := []string{"--output", "json"}
	if c.Bool("dry-run") {
		fmt.Fprintln(a.Stdout, shellLine(append([]string{"az"}, groupArgs...)))
		fmt.Fprintln(a.Stdout, shellLine(append(append([]string{"az", "deployment", "group", "create"}, deployArgs("infra/main.bicep")...), output...)))
		return nil
	}
	dir, err := os.MkdirTemp("", "cosmoslease-infra")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	templ := filepath.Join(dir, "main.bicep")
	if err := os.WriteFile(templ, infra.MainBicep, 0o600); err != nil {
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
			return a.Az.Run(ctx, append([]string{"deployment", "group", "what-if"}, deployArgs(templ)...)...)
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
	out, err := a.withSpinner(fmt.Sprintf("Deploying to %s (several minutes)", p.group), func() ([]byte, error) {
		return a.Az.Run(ctx, append(append([]string{"deployment", "group", "create"}, deployArgs(templ)...), output...)...)
	})
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
	var apps []string
	if list, ok := outs["functionAppNames"].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				apps = append(apps, s)
			}
		}
	}
	path := filepath.Join(a.Dir, config.LocalFile)
	if err := config.WriteLocal(path, []config.Pair{{Key: config.KeyAccountEndpoint, Value: endpoint},
		{Key: config.KeyDatabaseName, Value: orDefault(db, cosmoslease.DefaultDatabase)}, {Key: config.KeyContainerName, Value: orDefault(ctr, cosmoslease.DefaultContainer)}}); err != nil {
		return err
	}
	if err := config.WriteSection(path, setupSection, []config.Pair{{Key: "Mode", Value: "azure"}, {Key: "Subscription", Value: p.subscription},
		{Key: "ResourceGroup", Value: p.group}, {Key: "EnvironmentName", Value: p.env}, {Key: "FunctionApps", Value: strings.Join(apps, ",")}}); err != nil {
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
		fmt.Fprintf(a.Stdout, "\nDeploy the lease handler to each Function App:\n  make package\n")
		for _, app := range apps {
			fmt.Fprintf(a.Stdout, "  az functionapp deployment source config-zip --resource-group %s --name %s --src dist/functionapp-linux-amd64.zip\n", p.group, app)
		}
	}
	fmt.Fprintf(a.Stdout, "\nRemove it all with: cosmoslease teardown\n")
	return nil
}

// gather settles every value of the plan from flags, environment, az and prompts, then confirms.
func (a *App) gather(c *ucli.Context) (*plan, error) {
	ask := a.canPrompt(c)
	ctx := c.Context
	if a.Az == nil {
		a.Az = az.Exec{}
	}
	// Preflight: az present and signed in.
	if _, err := a.Az.Run(ctx, "version", "--output", "json"); err != nil {
		return nil, err
	}
	p := &plan{subscription: c.String("subscription"), group: c.String("resource-group"), location: c.String("location"),
		env: c.String("env-name"), principal: c.String("principal-id"), functions: !c.Bool("no-functions"), serverless: c.Bool("serverless")}

	type account struct {
		ID, Name  string
		IsDefault bool
		State     string
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

	input := func(value *string, flag, env, msg, def string, check func(string) error) error {
		if *value == "" && ask {
			v, err := a.Prompter.Input(msg, "", def)
			if err != nil {
				return err
			}
			*value = strings.TrimSpace(v)
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
	if err := input(&p.env, "env-name", "AZURE_ENV_NAME", "Environment name", "cosmoslease", func(v string) error {
		if !envName.MatchString(v) {
			return errors.New("use 1 to 20 lowercase letters, digits or '-', starting with a letter or digit")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := input(&p.group, "resource-group", "AZURE_RESOURCE_GROUP", "Resource group to create", "rg-"+p.env, func(v string) error {
		if !groupName.MatchString(v) || strings.HasSuffix(v, ".") {
			return errors.New("use up to 90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	checkRegion := func(v string) error {
		if !regionName.MatchString(v) {
			return errors.New("write the region's programmatic name, such as eastus or westeurope ('az account list-locations -o table')")
		}
		return nil
	}
	if err := input(&p.location, "location", "AZURE_LOCATION", "Primary region (the Cosmos DB write region)", "", checkRegion); err != nil {
		return nil, err
	}
	if c.IsSet("regions") || c.String("regions") != "" {
		for _, r := range strings.Split(c.String("regions"), ",") {
			if r = strings.TrimSpace(r); r != "" {
				p.regions = append(p.regions, r)
			}
		}
	} else if ask {
		var options []string
		for _, r := range commonRegions {
			if r != p.location {
				options = append(options, r)
			}
		}
		chosen, err := a.Prompter.MultiSelect("More regions (read regions and a Function App each)", "", options, nil)
		if err != nil {
			return nil, err
		}
		p.regions = chosen
	}
	seen := map[string]bool{p.location: true}
	for _, r := range p.regions {
		if err := checkRegion(r); err != nil {
			return nil, usagef("--regions: %q: %v", r, err)
		}
		if seen[r] {
			return nil, usagef("--regions: %s is listed twice (the primary region counts)", r)
		}
		seen[r] = true
	}
	if p.serverless && len(p.regions) > 0 {
		return nil, usagef("a serverless Cosmos DB account cannot span regions: drop --serverless, or --regions")
	}
	if !c.IsSet("no-functions") && ask {
		yes, err := a.Prompter.Confirm("Deploy a Function App in every region (the lease handler)?", true)
		if err != nil {
			return nil, err
		}
		p.functions = yes
	}
	switch {
	case p.principal == "none":
		p.principal = ""
	case p.principal == "":
		out, err := a.Az.Run(ctx, "ad", "signed-in-user", "show", "--output", "json")
		var user struct {
			ID                string `json:"id"`
			UserPrincipalName string `json:"userPrincipalName"`
		}
		if err == nil && json.Unmarshal(out, &user) == nil && user.ID != "" {
			use := true
			if ask {
				if use, err = a.Prompter.Confirm(fmt.Sprintf("Grant %s data access to the leases?", user.UserPrincipalName), true); err != nil {
					return nil, err
				}
			}
			if use {
				p.principal = user.ID
			}
		} else {
			fmt.Fprintf(a.Stderr, "note: could not read the signed-in user (a service principal?); nobody else gets data access. Pass --principal-id to grant it.\n")
		}
	}

	confirmed := c.Bool("dry-run") || c.Bool("what-if") || c.Bool("yes")
	if !confirmed && !ask {
		return nil, usagef("setup creates Azure resources: pass --yes to confirm without a prompt (or --dry-run to see the commands)")
	}
	fmt.Fprintf(a.Stderr, "\nSetup will create, in subscription %s (%s):\n  resource group  %s (%s)\n  Cosmos DB       write region %s", p.subscriptionName, p.subscription, p.group, p.location, p.location)
	if len(p.regions) > 0 {
		fmt.Fprintf(a.Stderr, ", read regions %s", strings.Join(p.regions, ", "))
	}
	fmt.Fprintf(a.Stderr, "; keys disabled, RBAC only\n")
	if p.functions {
		fmt.Fprintf(a.Stderr, "  Function Apps   one in each of %s (Flex Consumption)\n", strings.Join(append([]string{p.location}, p.regions...), ", "))
	}
	if p.principal != "" {
		fmt.Fprintf(a.Stderr, "  data access     %s\n", p.principal)
	}
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
