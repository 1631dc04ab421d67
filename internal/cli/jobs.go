package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/funcpkg"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

// What goes into a Function App's package, for `package` and `deploy`: the handler (a Go main package that calls
// leasehandler.Serve), command jobs (--job NAME=SCHEDULE -- COMMAND, or --jobs FILE) and the app's files they
// run (--include DIR). Command jobs are app settings (LeaseJobs__NAME__Schedule, __Command, …): the handler
// writes a function folder for each into the package, and deploy sets them in every region's app.

// listFlag is a flag that may be given several times; unlike urfave's StringSlice it does not split values at
// commas, which NCRONTAB schedules contain (0 0 9,17 * * *).
type listFlag []string

func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
func (l *listFlag) String() string     { return strings.Join(*l, " ") }

// packageFlags are the flags of package and deploy that say what goes into the package.
func packageFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "handler", Value: funcpkg.DefaultHandler, Usage: "the handler's Go main package `PKG` (an import path, or ./cmd/jobs in this module): one that calls leasehandler.Serve", EnvVars: []string{"COSMOSLEASE_HANDLER"}},
		&ucli.GenericFlag{Name: "job", Value: &listFlag{}, Usage: "a command job `NAME=SCHEDULE` running the command given after -- (repeatable): its app settings LeaseJobs__NAME__Schedule and __Command are set in every region"},
		&ucli.StringFlag{Name: "jobs", Usage: "command jobs from a JSON `FILE`: {\"jobs\": [{\"name\", \"schedule\", \"command\", and optional \"leaseKey\", \"preferredRegions\", \"failoverDelay\", \"retryAbandoned\", \"runRetention\", \"timeZone\", \"catchUpWindow\", \"overlap\"}], \"include\": [folders]}"},
		&ucli.StringFlag{Name: "time-zone", Usage: "the IANA time zone `ZONE` of the --job jobs' schedules, such as Europe/Berlin (their app setting LeaseJobs__NAME__TimeZone; default UTC)"},
		&ucli.GenericFlag{Name: "include", Value: &listFlag{}, Usage: "a folder `DIR` of the app's files (the commands' scripts) to put in the package under its path (repeatable)"},
	}
}

// commandJob is one command job, as a jobs file writes it.
type commandJob struct {
	Name             string `json:"name"`
	Schedule         string `json:"schedule"`
	Command          string `json:"command"`
	LeaseKey         string `json:"leaseKey,omitempty"`
	PreferredRegions string `json:"preferredRegions,omitempty"`
	FailoverDelay    string `json:"failoverDelay,omitempty"`
	RetryAbandoned   *bool  `json:"retryAbandoned,omitempty"`
	RunRetention     string `json:"runRetention,omitempty"`
	TimeZone         string `json:"timeZone,omitempty"`
	CatchUpWindow    string `json:"catchUpWindow,omitempty"`
	Overlap          string `json:"overlap,omitempty"`
}

// settings are the job's app settings.
func (j commandJob) settings() map[string]string {
	s := map[string]string{jobSetting(j.Name, "Schedule"): j.Schedule, jobSetting(j.Name, "Command"): j.Command}
	for field, v := range map[string]string{"LeaseKey": j.LeaseKey, "PreferredRegions": j.PreferredRegions, "FailoverDelay": j.FailoverDelay, "RunRetention": j.RunRetention,
		"TimeZone": j.TimeZone, "CatchUpWindow": j.CatchUpWindow, "Overlap": j.Overlap} {
		if v != "" {
			s[jobSetting(j.Name, field)] = v
		}
	}
	if j.RetryAbandoned != nil {
		s[jobSetting(j.Name, "RetryAbandoned")] = fmt.Sprint(*j.RetryAbandoned)
	}
	return s
}

func jobSetting(name, field string) string { return "LeaseJobs__" + name + "__" + field }

// packageSpec is what package and deploy put in the package, and the app settings deploy sets.
type packageSpec struct {
	spec funcpkg.Spec
	jobs []commandJob
}

// jobSettings are the app settings of every command job.
func (p *packageSpec) jobSettings() map[string]string {
	out := map[string]string{}
	for _, j := range p.jobs {
		for k, v := range j.settings() {
			out[k] = v
		}
	}
	return out
}

// readPackageSpec reads the package flags and the command after --.
func (a *App) readPackageSpec(c *ucli.Context) (*packageSpec, error) {
	p := &packageSpec{spec: funcpkg.Spec{Root: a.Dir, Handler: c.String("handler")}}
	argv := c.Args().Slice()
	flagJobs := *c.Generic("job").(*listFlag)
	if len(argv) > 0 && len(flagJobs) == 0 {
		return nil, usagef("%s takes a command after -- only for --job NAME=SCHEDULE: got %q. Try: cosmoslease %s --job Export='0 0 2 * * *' --include jobs -- jobs/export.sh",
			c.Command.Name, strings.Join(argv, " "), c.Command.Name)
	}
	for _, spec := range flagJobs {
		name, sched, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, usagef("--job %q is not NAME=SCHEDULE, such as Export='0 0 2 * * *'", spec)
		}
		if len(argv) == 0 {
			return nil, usagef("--job %s needs the command to run after --, such as: --job '%s' --include jobs -- jobs/export.sh --full", spec, spec)
		}
		p.jobs = append(p.jobs, commandJob{Name: strings.TrimSpace(name), Schedule: strings.TrimSpace(sched), Command: quoteCommand(argv), TimeZone: c.String("time-zone")})
	}
	if path := c.String("jobs"); path != "" {
		file, err := readJobsFile(filepath.Join(a.Dir, path), path)
		if err != nil {
			return nil, err
		}
		p.jobs = append(p.jobs, file.Jobs...)
		p.spec.Include = append(p.spec.Include, file.Include...)
	}
	p.spec.Include = append(p.spec.Include, *c.Generic("include").(*listFlag)...)
	seen := map[string]string{}
	for _, j := range p.jobs {
		if err := leasehandler.CheckName(j.Name); err != nil {
			return nil, usagef("%v", err)
		}
		if other, dup := seen[strings.ToLower(j.Name)]; dup {
			return nil, usagef("jobs %s and %s have the same name (the host ignores case): rename one", other, j.Name)
		}
		seen[strings.ToLower(j.Name)] = j.Name
		if _, err := ncrontab.Parse(j.Schedule); err != nil {
			return nil, usagef("job %s: schedule %v", j.Name, err)
		}
		if j.TimeZone != "" {
			if _, err := ncrontab.LoadZone(j.TimeZone); err != nil {
				return nil, usagef("job %s: time zone %v", j.Name, err)
			}
		}
		if _, err := leasehandler.SplitCommand(j.Command); err != nil {
			return nil, usagef("job %s: command %q: %v", j.Name, j.Command, err)
		}
		if err := a.checkJobRegions(j); err != nil {
			return nil, err
		}
	}
	p.spec.Settings = p.jobSettings()
	return p, nil
}

// checkJobRegions checks a command job's preferred regions as cron checks its own (cosmoslease.CheckRegion,
// against the regions this version knows, since no account is read here): a near miss of a region is refused, so
// that a typo does not rank a region last; a name far from every region is used, with a warning.
func (a *App) checkJobRegions(j commandJob) error {
	if j.PreferredRegions == "" {
		return nil
	}
	regions, err := cosmoslease.ParseRegions(j.PreferredRegions)
	if err != nil {
		return usagef("job %s: preferredRegions %q: %s", j.Name, j.PreferredRegions, strings.TrimPrefix(err.Error(), cosmoslease.ErrInvalid.Error()+": "))
	}
	for _, r := range regions {
		warning, err := cosmoslease.CheckRegion(r, nil)
		if err != nil {
			return usagef("job %s: preferredRegions: %s", j.Name, strings.TrimPrefix(err.Error(), cosmoslease.ErrInvalid.Error()+": "))
		}
		if warning != "" {
			fmt.Fprintf(a.Stderr, "job %s: preferredRegions: %s\n", j.Name, warning)
		}
	}
	return nil
}

// jobsFile is the --jobs file.
type jobsFile struct {
	Jobs    []commandJob `json:"jobs"`
	Include []string     `json:"include"`
}

func readJobsFile(path, shown string) (jobsFile, error) {
	var f jobsFile
	b, err := os.ReadFile(path)
	if err != nil {
		return f, usagef("--jobs %s: %v", shown, errors.Unwrap(err))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, usagef("--jobs %s is not a jobs file (%v): write {\"jobs\": [{\"name\": \"Export\", \"schedule\": \"0 0 2 * * *\", \"command\": \"jobs/export.sh --full\"}], \"include\": [\"jobs\"]}", shown, err)
	}
	for i, j := range f.Jobs {
		if j.Name == "" || j.Schedule == "" || j.Command == "" {
			return f, usagef("--jobs %s: job %d needs a name, a schedule and a command", shown, i+1)
		}
	}
	return f, nil
}

// quoteCommand writes argv as one command line that leasehandler.SplitCommand reads back word for word.
func quoteCommand(argv []string) string {
	words := make([]string, len(argv))
	for i, w := range argv {
		safe := w != ""
		for _, r := range w {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./:=@%+,", r)) {
				safe = false
				break
			}
		}
		if safe {
			words[i] = w
		} else {
			words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(words, " ")
}

// buildPackage builds the handler and the package for Flex Consumption (linux/amd64) into dist/, and says so.
func (a *App) buildPackage(ctx context.Context, p *packageSpec) (string, error) {
	if p == nil {
		p = &packageSpec{spec: funcpkg.Spec{Root: a.Dir}}
	}
	if problem := moduleProblem(a.Dir); problem != "" {
		return "", usagef("the handler is built with Go in the module of the working directory, but %s: run it at the root of your handler's module (or of your copy of cosmoslease), or make one: go mod init jobs && go get github.com/cosmoslease/cosmoslease", problem)
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", errors.New("the handler is built with Go, which is not on PATH: install Go (https://go.dev/dl/) and run it again")
	}
	var zip string
	var functions []string
	if _, err := a.withSpinner(fmt.Sprintf("Building %s for linux/amd64", p.spec.Handler), func() ([]byte, error) {
		var err error
		build := funcpkg.Build
		if a.buildHandler != nil {
			build = a.buildHandler
		}
		zip, functions, err = build(ctx, p.spec, filepath.Join(a.Dir, "dist"), funcpkg.Linux)
		return nil, err
	}); err != nil {
		return "", err
	}
	fmt.Fprintf(a.Stderr, "Built %s: the functions %s.\n", zip, strings.Join(functions, ", "))
	return zip, nil
}

// moduleProblem says why dir is not a module that the handler can be built in, or returns "".
func moduleProblem(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return fmt.Sprintf("%s has no go.mod", dir)
	}
	return ""
}

// appSettingsArgs sets the command jobs' app settings in one app.
func appSettingsArgs(t target, app app, settings map[string]string) []string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"functionapp", "config", "appsettings", "set", "--resource-group", t.group, "--name", app.name, "--settings"}
	for _, k := range keys {
		args = append(args, k+"="+settings[k])
	}
	return append(append(args, t.subscriptionArgs()...), "--output", "json")
}

// setJobSettings sets the command jobs' app settings in one app, before its package is deployed: the new
// package's functions bind %LeaseJobs:NAME:Schedule%, which must resolve when the host loads them. The app
// restarts. Nothing to do without command jobs.
func (a *App) setJobSettings(ctx context.Context, t target, app app, step string, p *packageSpec) error {
	if p == nil || len(p.jobs) == 0 {
		return nil
	}
	_, err := a.withSpinner(fmt.Sprintf("%s: setting the app settings of %d command jobs on %s", step, len(p.jobs), app.name), func() ([]byte, error) {
		return a.Az.Run(ctx, appSettingsArgs(t, app, p.jobSettings())...)
	})
	if err != nil {
		msg := err.Error()
		var azErr *az.Error
		if errors.As(err, &azErr) {
			msg = azErr.Message
		}
		fmt.Fprintf(a.Stderr, "%s: %s FAILED: the command jobs' app settings were not set, so its package was not deployed: %s\n", step, app.name, msg)
		return err
	}
	return nil
}

// dryRunJobSettings prints what setJobSettings would run in every app.
func (a *App) dryRunJobSettings(t target, apps []app, p *packageSpec) {
	if p == nil || len(p.jobs) == 0 {
		return
	}
	fmt.Fprintf(a.Stdout, "# in each region, before its package: the app settings of the command jobs\n")
	for _, app := range rollingOrder(apps) {
		fmt.Fprintln(a.Stdout, shellLine(append([]string{"az"}, appSettingsArgs(t, app, p.jobSettings())...)))
	}
}

func (a *App) packageCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "package",
		Usage: "build a Function App package: the lease handler, its function folders and the app's files, without deploying it",
		UsageText: "cosmoslease package [--handler PKG] [--job NAME=SCHEDULE … -- COMMAND [ARGS…]] [--jobs FILE] [--include DIR …]\n\n" +
			"   cosmoslease package --job Export='0 0 2 * * *' --include jobs -- jobs/export.sh --full\n" +
			"   cosmoslease package --handler ./cmd/jobs",
		Description: "Builds the handler (--handler, default this project's: the job LeaseTimer and the command jobs of the app\n" +
			"settings) with Go in the module of the working directory, for linux/amd64 (Flex Consumption), runs it to\n" +
			"write the function folder of each of its jobs and of each command job given, and zips it all with host.json\n" +
			"(the module's, or the default) and the --include folders into dist/functionapp-linux-amd64.zip (unpacked\n" +
			"beside it, for func start). It prints the zip's path and the functions in it. 'cosmoslease deploy' takes the\n" +
			"same flags, builds the same package, and sets the command jobs' app settings in every region.",
		Flags:  packageFlags(),
		Action: a.packageAction,
	}
}

func (a *App) packageAction(c *ucli.Context) error {
	p, err := a.readPackageSpec(c)
	if err != nil {
		return err
	}
	zip, err := a.buildPackage(c.Context, p)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.Stdout, zip)
	if len(p.jobs) > 0 {
		fmt.Fprintf(a.Stdout, "# the command jobs' app settings, to set in every region's app (cosmoslease deploy does):\n")
		keys := make([]string, 0)
		settings := p.jobSettings()
		for k := range settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintln(a.Stdout, shellLine([]string{k + "=" + settings[k]}))
		}
	}
	return nil
}
