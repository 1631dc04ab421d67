package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
		Usage: "build the lease handler in this directory and deploy it to the Function App of every region that setup made",
		Description: "Builds ./functions/leasehandler of the Go module in the working directory (your copy, with your Work) for\n" +
			"linux/amd64 and zips it as 'make package' does, into dist/functionapp-linux-amd64.zip. Then deploys that zip to\n" +
			"each region's Function App, one region after another, with 'az functionapp deployment source config-zip'.\n" +
			"The Function Apps are the outputs of setup's deployment, found through the resource group and environment\n" +
			"that setup recorded in appsettings.Local.json (or the flags). A region that fails is reported and the others\n" +
			"still get the build; the exit code is then 1.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "resource-group", Usage: "the resource group setup made (default: from appsettings.Local.json)", EnvVars: []string{"AZURE_RESOURCE_GROUP"}},
			&ucli.StringFlag{Name: "env-name", Usage: "the environment name setup used (default: from appsettings.Local.json)", EnvVars: []string{"AZURE_ENV_NAME"}},
			&ucli.StringFlag{Name: "subscription", Usage: "subscription `ID or name` (default: from appsettings.Local.json, else az's)", EnvVars: []string{"AZURE_SUBSCRIPTION_ID"}},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the az commands; find the Function Apps (read-only) but build and deploy nothing"},
		},
		Action: a.deploy,
	}
}

// target is where setup deployed.
type target struct{ group, subscription, env string }

func (t target) subscriptionArgs() []string {
	if t.subscription == "" {
		return nil
	}
	return []string{"--subscription", t.subscription}
}

func (a *App) deploy(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usagef("deploy takes no arguments, got %q. Try: cosmoslease deploy --help", c.Args().First())
	}
	if a.Az == nil {
		a.Az = az.Exec{}
	}
	t, err := a.deployTarget(c)
	if err != nil {
		return err
	}
	apps, err := a.deployedApps(c.Context, t)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		zip := filepath.Join("dist", funcpkg.Linux.Name()+".zip")
		fmt.Fprintf(a.Stdout, "# build %s from ./functions/leasehandler for linux/amd64, as make package does\n", zip)
		for _, app := range apps {
			fmt.Fprintln(a.Stdout, shellLine(append([]string{"az"}, configZip(t, app, zip)...)))
		}
		return nil
	}
	return a.buildAndDeploy(c.Context, t, apps)
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

// moduleProblem says why dir is not a module that deploy can build the handler from, or returns "".
func moduleProblem(dir string) string {
	for _, f := range []string{"go.mod", "host.json", filepath.Join("functions", "leasehandler")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Sprintf("%s has no %s", dir, f)
		}
	}
	return ""
}

// buildAndDeploy builds the handler from the module in a.Dir and deploys it to every app, one region after
// another; a region that fails does not stop the others.
func (a *App) buildAndDeploy(ctx context.Context, t target, apps []app) error {
	if problem := moduleProblem(a.Dir); problem != "" {
		return usagef("deploy builds the lease handler from the Go module in the working directory, but %s: run it at the root of your copy of cosmoslease (where functions/leasehandler/work.go holds your work)", problem)
	}
	if _, err := exec.LookPath("go"); err != nil {
		return errors.New("deploy builds the lease handler with Go, which is not on PATH: install Go (https://go.dev/dl/) and run it again")
	}
	var zip string
	if _, err := a.withSpinner("Building functions/leasehandler for linux/amd64", func() ([]byte, error) {
		var err error
		zip, err = funcpkg.Build(a.Dir, filepath.Join(a.Dir, "dist"), funcpkg.Linux)
		return nil, err
	}); err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "Built %s.\n", zip)
	var failed []string
	for i, app := range apps {
		step := fmt.Sprintf("[%d/%d] %s", i+1, len(apps), orDefault(app.region, "?"))
		start := time.Now()
		_, err := a.withSpinner(fmt.Sprintf("%s: deploying to %s", step, app.name), func() ([]byte, error) {
			return a.Az.Run(ctx, configZip(t, app, zip)...)
		})
		if ctx.Err() != nil {
			return errInterrupted
		}
		if err != nil {
			msg := err.Error()
			var azErr *az.Error
			if errors.As(err, &azErr) {
				msg = azErr.Message
			}
			fmt.Fprintf(a.Stderr, "%s: %s FAILED: %s\n", step, app.name, msg)
			fmt.Fprintf(a.Stdout, "%-16s %-24s failed\n", app.region, app.name)
			failed = append(failed, app.region)
			continue
		}
		fmt.Fprintf(a.Stderr, "%s: %s deployed in %s\n", step, app.name, time.Since(start).Round(time.Second))
		fmt.Fprintf(a.Stdout, "%-16s %-24s deployed\n", app.region, app.name)
	}
	if len(failed) > 0 {
		return fmt.Errorf("the deployment failed in %d of %d regions (%s; the reasons are above); the other regions run the new build: fix the cause and run 'cosmoslease deploy' again",
			len(failed), len(apps), strings.Join(failed, ", "))
	}
	return nil
}
