package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/funcpkg"
)

func (a *App) deployCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "deploy",
		Usage: "build the lease handler in this directory, deploy it to the Function App of every region that setup made, and check each answers",
		UsageText: "cosmoslease deploy [--handler PKG] [--job NAME=SCHEDULE … -- COMMAND [ARGS…]] [--jobs FILE] [--include DIR …] [flags]\n\n" +
			"   cosmoslease deploy --job Export='0 0 2 * * *' --include jobs -- jobs/export.sh --full",
		Description: "Builds the handler (--handler PKG, default this project's: the job LeaseTimer and the command jobs of the app\n" +
			"settings) with Go in the module of the working directory for linux/amd64, with the function folders of its jobs\n" +
			"and of the command jobs given (--job, --jobs) and the --include folders, as 'cosmoslease package' does, into\n" +
			"dist/functionapp-linux-amd64.zip. With command jobs it first sets their app settings (LeaseJobs__NAME__Schedule,\n" +
			"__Command, …) in each region's app. Then deploys that zip to each region's Function App, one region after\n" +
			"another and the most preferred region (setup's --location) last, with 'az functionapp deployment source\n" +
			"config-zip'. While the app's storage role is not in effect yet (a new app, just after setup) Azure refuses the\n" +
			"package with a storage 403 \"not authorized ... using this permission\": deploy waits and tries again, for up to\n" +
			"20 minutes. A 403 from the storage firewall fails the region at once; another deployment going on (HTTP 409) is\n" +
			"waited for 3 times 30 s. Each region gets --timeout in all. Then it calls the app's LeaseStatus function over\n" +
			"HTTPS, for up to 5 minutes (the Cosmos DB data role takes a while too), and prints the lease and the newest run.\n" +
			"The Function Apps are the outputs of setup's deployment, found through the resource group and environment that\n" +
			"setup recorded in appsettings.Local.json (or the flags). A region that fails is reported and the others still\n" +
			"get the build; the exit code is then 1.",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "resource-group", Usage: "the resource group setup made (default: from appsettings.Local.json)", EnvVars: []string{"AZURE_RESOURCE_GROUP"}},
			&ucli.StringFlag{Name: "env-name", Usage: "the environment name setup used (default: from appsettings.Local.json)", EnvVars: []string{"AZURE_ENV_NAME"}},
			&ucli.StringFlag{Name: "subscription", Usage: "subscription `ID or name` (default: from appsettings.Local.json, else az's)", EnvVars: []string{"AZURE_SUBSCRIPTION_ID"}},
			&ucli.DurationFlag{Name: "timeout", Value: defaultDeployTimeout, Usage: "the longest one region's deployment may take, waits for its storage role included; past it the region is reported as timed out and the next one goes", EnvVars: []string{"COSMOSLEASE_DEPLOY_TIMEOUT"}},
			&ucli.BoolFlag{Name: "no-verify", Usage: "do not call each app's LeaseStatus after deploying it", EnvVars: []string{"COSMOSLEASE_NO_VERIFY"}},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the az commands; find the Function Apps (read-only) but build and deploy nothing"},
			&ucli.BoolFlag{Name: "no-input", Usage: "never prompt (deploy asks nothing: a missing value is an error naming its flag); accepted as setup and teardown accept it, so one set of flags serves all three", EnvVars: []string{"COSMOSLEASE_NO_INPUT"}},
		}, packageFlags()...),
		Action: a.deploy,
	}
}

// defaultDeployTimeout bounds one region's deployment: az's own health check after a Flex upload can loop for
// ever (its counter is never incremented), and Azure's storage 403s are retried for up to storageRoleWait.
const defaultDeployTimeout = 30 * time.Minute

// storageRoleWait is how long deploy waits in all, between attempts, for an app's storage role to take effect.
// Azure documents role assignments taking up to about 10 minutes to take effect, and longer where the identity's
// token was cached before ("Troubleshoot Azure RBAC": role assignment changes), so it waits twice that.
const storageRoleWait = 20 * time.Minute

// verifyWait is how long deploy waits in all, between attempts, for LeaseStatus to answer.
const verifyWait = 5 * time.Minute

// deployOptions are deploy's flags that setup --deploy leaves at their defaults.
type deployOptions struct {
	timeout time.Duration
	verify  bool
	// pkg is what goes into the package (jobs.go); nil: this project's handler, no command jobs.
	pkg *packageSpec
}

var defaultDeployOptions = deployOptions{timeout: defaultDeployTimeout, verify: true}

// target is where setup deployed.
type target struct{ group, subscription, env string }

func (t target) subscriptionArgs() []string {
	if t.subscription == "" {
		return nil
	}
	return []string{"--subscription", t.subscription}
}

func (a *App) deploy(c *ucli.Context) error {
	pkg, err := a.readPackageSpec(c)
	if err != nil {
		return err
	}
	if a.Az == nil {
		a.Az = az.Exec{}
	}
	opts := deployOptions{timeout: c.Duration("timeout"), verify: !c.Bool("no-verify"), pkg: pkg}
	if opts.timeout <= 0 {
		return usagef("--timeout %s: give a positive duration, such as 20m", opts.timeout)
	}
	t, err := a.deployTarget(c)
	if err != nil {
		return err
	}
	if err := az.RequireVersion(c.Context, a.Az); err != nil {
		return err
	}
	apps, err := a.deployedApps(c.Context, t)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		zip := filepath.Join("dist", funcpkg.Linux.Name()+".zip")
		fmt.Fprintf(a.Stdout, "# build %s from %s for linux/amd64, as cosmoslease package does\n", zip, pkg.spec.Handler)
		a.dryRunJobSettings(t, apps, pkg)
		fmt.Fprintf(a.Stdout, "# the most preferred region last; each region within %s\n", opts.timeout)
		for _, app := range rollingOrder(apps) {
			fmt.Fprintln(a.Stdout, shellLine(append([]string{"az"}, configZip(t, app, zip)...)))
			if opts.verify {
				host := app.host
				if host == "" {
					host = "$(" + shellLine(append([]string{"az"}, hostNameArgs(t, app)...)) + ")"
				}
				fmt.Fprintln(a.Stdout, "# then: GET https://"+host+"/api/LeaseStatus with the key of "+
					shellLine(append([]string{"az"}, functionKeyArgs(t, app)...)))
			}
		}
		return nil
	}
	return a.buildAndDeploy(c.Context, t, apps, opts)
}

// deployTarget takes the resource group, environment and subscription from the flags, else from the record
// setup wrote.
func (a *App) deployTarget(c *ucli.Context) (target, error) {
	path := filepath.Join(a.Dir, config.LocalFile)
	rec, err := config.ReadSection(path, setupSection)
	if err != nil {
		return target{}, err
	}
	if rec["Mode"] == "emulator" && !c.IsSet("resource-group") {
		return target{}, usagef("setup made an emulator configuration here, with no Function Apps: deploy after 'cosmoslease setup' for Azure, or pass --resource-group and --env-name")
	}
	t := target{group: orDefault(c.String("resource-group"), rec["ResourceGroup"]), env: orDefault(c.String("env-name"), rec["EnvironmentName"]),
		subscription: orDefault(c.String("subscription"), rec["Subscription"])}
	if t.group == "" || t.env == "" {
		return target{}, usagef("deploy needs the environment that setup made: run it where setup wrote %s, or pass --resource-group and --env-name (and --subscription)", config.LocalFile)
	}
	return t, nil
}

// deployedApps reads the Function Apps and their regions from the outputs of setup's deployment.
func (a *App) deployedApps(ctx context.Context, t target) ([]app, error) {
	args := append([]string{"deployment", "group", "show", "--resource-group", t.group, "--name", deploymentName(t.env)}, t.subscriptionArgs()...)
	out, err := a.Az.Run(ctx, append(args, "--output", "json")...)
	var azErr *az.Error
	if errors.As(err, &azErr) && (azErr.HasCode("DeploymentNotFound") || azErr.HasCode("ResourceGroupNotFound")) {
		return nil, usagef("resource group %s has no deployment %s (%s): pass the --resource-group and --env-name that setup used, or run 'cosmoslease setup' first", t.group, deploymentName(t.env), azErr.Message)
	}
	if err != nil {
		return nil, err
	}
	outs, err := deploymentOutputs(out)
	if err != nil {
		return nil, err
	}
	apps := functionApps(outs)
	if len(apps) == 0 {
		return nil, usagef("deployment %s in %s made no Function Apps (setup ran with --no-functions): there is nothing to deploy to", deploymentName(t.env), t.group)
	}
	return apps, nil
}

func configZip(t target, app app, zip string) []string {
	return append([]string{"functionapp", "deployment", "source", "config-zip", "--resource-group", t.group, "--name", app.name, "--src", zip}, t.subscriptionArgs()...)
}

// rollingOrder is the order deploy goes through the apps: the least preferred region first, the most preferred
// (setup's --location, first in the deployment's outputs) last. Deploying a region restarts its app; while the
// others are deployed the preferred region keeps the work, so the region doing it changes at most once.
func rollingOrder(apps []app) []app {
	out := make([]app, len(apps))
	for i, a := range apps {
		out[len(apps)-1-i] = a
	}
	return out
}

// buildAndDeploy builds the handler from the module in a.Dir and deploys it to every app, one region after
// another in rollingOrder; a region that fails or times out does not stop the others.
func (a *App) buildAndDeploy(ctx context.Context, t target, apps []app, opts deployOptions) error {
	zip, err := a.buildPackage(ctx, opts.pkg)
	if err != nil {
		return err
	}
	order := rollingOrder(apps)
	if len(order) > 1 {
		fmt.Fprintf(a.Stderr, "Deploying one region after another, the most preferred (%s) last: ", orDefault(apps[0].region, apps[0].name))
		for i, app := range order {
			if i > 0 {
				fmt.Fprint(a.Stderr, ", ")
			}
			fmt.Fprint(a.Stderr, orDefault(app.region, app.name))
		}
		fmt.Fprintln(a.Stderr, ".")
	}
	var bad []string
	for i, app := range order {
		step := fmt.Sprintf("[%d/%d] %s", i+1, len(order), orDefault(app.region, "?"))
		if err := a.setJobSettings(ctx, t, app, step, opts.pkg); err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			bad = append(bad, fmt.Sprintf("%s: the command jobs' app settings were not set", orDefault(app.region, app.name)))
			fmt.Fprintf(a.Stdout, "%-16s %-24s %s\n", app.region, app.name, "failed: the command jobs' app settings were not set")
			continue
		}
		r := a.deployRegion(ctx, t, app, zip, step, opts)
		if ctx.Err() != nil {
			return errInterrupted
		}
		line := r.state
		switch {
		case r.state != stateDeployed:
			bad = append(bad, fmt.Sprintf("%s %s", orDefault(app.region, app.name), r.state))
		case !opts.verify && r.healthUnknown:
			line = "deployed, health unknown"
		case opts.verify:
			summary, err := a.verifyRegion(ctx, t, app, step)
			if ctx.Err() != nil {
				return errInterrupted
			}
			if err != nil {
				fmt.Fprintf(a.Stderr, "%s: %s deployed, but %v\n", step, app.name, err)
				line = "deployed; LeaseStatus did not answer"
				bad = append(bad, fmt.Sprintf("%s: LeaseStatus did not answer", orDefault(app.region, app.name)))
				break
			}
			fmt.Fprintf(a.Stderr, "%s: %s answers: %s\n", step, app.name, summary)
			line = "deployed; LeaseStatus answered: " + summary
		}
		if r.state == stateTimedOut {
			line = "timed out: the package may be deployed; check the app"
		}
		fmt.Fprintf(a.Stdout, "%-16s %-24s %s\n", app.region, app.name, line)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d regions did not deploy and answer (%s; the reasons are above); the others run the new build: fix the cause and run 'cosmoslease deploy' again",
			len(bad), len(apps), strings.Join(bad, ", "))
	}
	return nil
}

// The states of a region's deployment.
const (
	stateDeployed = "deployed"
	stateFailed   = "failed"
	stateTimedOut = "timed out"
)

type regionResult struct {
	state string
	// healthUnknown: the package was uploaded but az could not check the app afterwards.
	healthUnknown bool
}

// The forms in which az reports a Flex Consumption publish that failed (appservice custom.py; the fixtures in
// testdata/az/responses quote the source): enable_zip_deploy_flex raises "An error occured during deployment. Status
// Code: 400, Details: <body>" when the publish endpoint refuses the package, and _check_zip_deployment_status_flex
// raises "Zip deployment failed. {<the deployment record>}. These are the deployment logs: …" when the
// deployment-status poll says it failed, the record's 'status_text' holding the reason.
var (
	// storage403 is the platform failing to write the package into the app's deployment container.
	storage403 = regexp.MustCompile(`(?i)(InaccessibleStorageException|BlobUploadFailedException).*\b403\b`)
	// storageRoleNotYet is the one 403 that waiting cures: Storage's AuthorizationPermissionMismatch ("…not
	// authorized to perform this operation using this permission"), the app's identity without its data role
	// yet. Its firewall answers AuthorizationFailure ("This request is not authorized to perform this
	// operation."), which no wait cures.
	storageRoleNotYet = regexp.MustCompile(`(?i)(InaccessibleStorageException|BlobUploadFailedException).*\b403\b.*using this permission`)
	// stillDeploying is az giving up its status polls while the deployment goes on (a triple-quoted message, so
	// spanning two lines before az.Message joins them).
	stillDeploying = regexp.MustCompile(`(?i)Timeout reached by the command, however, the deployment operation\s+is still on-going`)
	// ongoingDeployment is the publish endpoint's 409: another deployment to the app is going on.
	ongoingDeployment = regexp.MustCompile(`(?i)There may be an ongoing deployment`)
	// statusText is the reason in the poll's deployment record.
	statusText = regexp.MustCompile(`'status_text': '([^']*)'`)
)

// uploadedUnchecked matches az's check after an upload that failed (appservice custom.py,
// check_flex_app_after_deployment): it could not list the app's host keys (ResourceNotFoundError('Failed to fetch
// host key to check for function app status'), exit code 3), or the host status answered 2xx but not 200
// (CLIError("Deployment was successful but the app appears to be unhealthy. …")). The package was uploaded.
var uploadedUnchecked = regexp.MustCompile(`(?i)Failed to fetch host key|Deployment was successful but the app appears to be unhealthy`)

// conflictRetries is how many times deploy tries again, conflictDelay apart, while another deployment to the app
// is going on (a redeploy right after setup, or a deploy run twice).
const (
	conflictRetries = 3
	conflictDelay   = 30 * time.Second
)

// zipDeployReason shortens az's message of a failed publish to its reason: the record's status_text for the
// poll's form (the record and the logs after it run to kilobytes).
func zipDeployReason(msg string) string {
	if m := statusText.FindStringSubmatch(msg); m != nil {
		return "Zip deployment failed: " + m[1]
	}
	return msg
}

// deployRegion deploys zip to one app within opts.timeout, waiting for the app's storage role to take effect.
func (a *App) deployRegion(ctx context.Context, t target, app app, zip, step string, opts deployOptions) regionResult {
	rctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	start := time.Now()
	timedOut := func() regionResult {
		fmt.Fprintf(a.Stderr, "%s: %s timed out after %s (--timeout): the package may be deployed; check the app ('az functionapp show --resource-group %s --name %s', or the portal)\n",
			step, app.name, time.Since(start).Round(time.Second), t.group, app.name)
		return regionResult{state: stateTimedOut}
	}
	var waited time.Duration
	var conflicts int
	delay := 15 * time.Second
	for {
		_, err := a.withSpinner(fmt.Sprintf("%s: deploying to %s", step, app.name), func() ([]byte, error) {
			return a.Az.Run(rctx, configZip(t, app, zip)...)
		})
		if ctx.Err() != nil {
			return regionResult{state: stateFailed}
		}
		if err == nil {
			fmt.Fprintf(a.Stderr, "%s: %s deployed in %s\n", step, app.name, time.Since(start).Round(time.Second))
			return regionResult{state: stateDeployed}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return timedOut()
		}
		msg := err.Error()
		var azErr *az.Error
		if errors.As(err, &azErr) {
			msg = azErr.Message
		}
		switch {
		case azErr != nil && uploadedUnchecked.MatchString(msg):
			fmt.Fprintf(a.Stderr, "%s: %s deployed, health unknown: az uploaded the package but could not check the app (%s)\n", step, app.name, msg)
			return regionResult{state: stateDeployed, healthUnknown: true}
		case azErr != nil && stillDeploying.MatchString(msg):
			fmt.Fprintf(a.Stderr, "%s: %s deployed, health unknown: az stopped waiting while Azure was still deploying the package (%s)\n", step, app.name, msg)
			return regionResult{state: stateDeployed, healthUnknown: true}
		case azErr != nil && ongoingDeployment.MatchString(msg) && conflicts < conflictRetries:
			conflicts++
			fmt.Fprintf(a.Stderr, "%s: %s: another deployment to the app is going on (HTTP 409); trying again in %s (%d of %d)\n", step, app.name, conflictDelay, conflicts, conflictRetries)
			if err := a.sleep(rctx, conflictDelay); err != nil {
				if ctx.Err() != nil {
					return regionResult{state: stateFailed}
				}
				return timedOut()
			}
			continue
		case azErr != nil && ongoingDeployment.MatchString(msg):
			msg += fmt.Sprintf(" (still going on after %d tries %s apart: let it finish, then run 'cosmoslease deploy' again)", conflictRetries+1, conflictDelay)
		case azErr != nil && storageRoleNotYet.MatchString(msg) && waited < storageRoleWait:
			delay = min(delay, storageRoleWait-waited)
			fmt.Fprintf(a.Stderr, "%s: %s: waiting for the app's storage role to take effect (Azure refused the package: storage 403, not authorized using this permission); trying again in %s\n", step, app.name, delay)
			if err := a.sleep(rctx, delay); err != nil {
				if ctx.Err() != nil {
					return regionResult{state: stateFailed}
				}
				return timedOut()
			}
			waited += delay
			delay = min(2*delay, time.Minute)
			continue
		case azErr != nil && storageRoleNotYet.MatchString(msg):
			msg = zipDeployReason(msg) + fmt.Sprintf(" (still refused after waiting %s for the app's storage role: check that the app's identity holds Storage Blob Data Owner on its storage account)", storageRoleWait)
		case azErr != nil && storage403.MatchString(msg):
			// Not the role: the storage account's firewall refused the platform. No wait cures that.
			msg = zipDeployReason(msg) + " (the storage account's network rules refused the platform, not a missing role: " +
				"check its publicNetworkAccess and networkRuleSet.defaultAction ('az storage account show --resource-group " + t.group +
				" --name ACCOUNT', the account named by the app setting AzureWebJobsStorage__accountName) and any Azure Policy that disables public network access on storage accounts; " +
				"this template needs the apps' storage reachable over the public endpoint)"
		case azErr != nil:
			msg = zipDeployReason(msg)
		}
		fmt.Fprintf(a.Stderr, "%s: %s FAILED: %s\n", step, app.name, msg)
		return regionResult{state: stateFailed}
	}
}
