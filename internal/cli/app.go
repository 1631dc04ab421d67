// Package cli is the cosmoslease command: one file per command, errors mapped to exit codes in one place
// (exitCode), data on stdout, logs and prompts on stderr.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/AlecAivazis/survey/v2/terminal"
	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/funcpkg"
	"github.com/cosmoslease/cosmoslease/internal/supervise"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitHeld        = 3
	ExitLost        = 4
	ExitInterrupted = 130
)

// App is the command with its surroundings, so tests can run it with buffers.
type App struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Dir is the working directory, where the configuration files are read and written.
	Dir string
	// Interactive is true when stdin and stderr are terminals; StdoutTTY when stdout is.
	Interactive bool
	StdoutTTY   bool
	// Prompter asks questions when prompting is allowed; main sets the survey one.
	Prompter Prompter
	// Az runs the Azure CLI (setup, deploy, teardown); nil runs the az on PATH.
	Az az.Runner
	// Version is printed by --version.
	Version string

	// wait pauses between attempts (setup's and deploy's retries); nil waits for real. Tests make it return at once.
	wait func(ctx context.Context, d time.Duration) error
	// leaseStatusURL, for tests only, replaces https://HOST, the base URL of an app's LeaseStatus that deploy calls.
	leaseStatusURL func(host string) string
	// httpClient calls LeaseStatus; nil uses one with a 30-second timeout.
	httpClient *http.Client
	// buildHandler, for tests only, replaces the build of package and deploy (funcpkg.Build, for linux/amd64):
	// the tests of deploy's dealings with az, and of command jobs, package the handler built once per test binary
	// (their jobs' function folders and files still written for each), and two tests build for real.
	buildHandler func(ctx context.Context, spec funcpkg.Spec, out string, t funcpkg.Target) (zip string, functions []string, err error)
}

// sleep waits d, or until ctx ends.
func (a *App) sleep(ctx context.Context, d time.Duration) error {
	if a.wait != nil {
		return a.wait(ctx, d)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// exitError carries an exit code and the one line to print; none when reported is set, because the command
// already said it on stdout (run's "lock acquisition failed" box).
type exitError struct {
	code     int
	err      error
	reported bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

func usagef(format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, args...))
}

// errInterrupted is returned when the user pressed Ctrl-C or the process got SIGINT/SIGTERM.
var errInterrupted = errors.New("interrupted")

// Signalled is the cause main gives the context it cancels on SIGINT or SIGTERM, so that `run -- COMMAND` can
// pass the same signal on to the command. It is a context.Canceled.
type Signalled struct{ Signal os.Signal }

func (s Signalled) Error() string { return "interrupted by " + supervise.SignalName(s.Signal) }
func (s Signalled) Unwrap() error { return context.Canceled }

// exitCode maps an error to the process exit code. It is the only place that does.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errInterrupted), errors.Is(err, terminal.InterruptErr), errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, cosmoslease.ErrInvalid), errors.Is(err, config.ErrInvalid):
		return ExitUsage
	}
	return ExitError
}

// Run runs the command line args (args[0] is the program name) and returns the exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = func(string) string { return "" }
	}
	if a.Dir == "" {
		a.Dir = "."
	}
	var notFound string
	app := &ucli.App{
		Name:                 "cosmoslease",
		Usage:                "elect one active region through a lease in Azure Cosmos DB",
		Version:              a.Version,
		Writer:               a.Stdout,
		ErrWriter:            a.Stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*ucli.Context, error) {},
		OnUsageError:         onUsageError,
		CommandNotFound: func(c *ucli.Context, name string) {
			notFound = name
		},
		Commands: []*ucli.Command{a.runCommand(), a.cronCommand(), a.inspectCommand(), a.pauseCommand(), a.resumeCommand(), a.triggerCommand(), a.configureCommand(), a.setupCommand(), a.packageCommand(), a.deployCommand(), a.teardownCommand()},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = onUsageError
	}
	err := app.RunContext(ctx, args)
	if notFound != "" && err == nil {
		err = usagef("unknown command %q. Try: cosmoslease --help", notFound)
	}
	if err != nil {
		code := exitCode(err)
		msg := err.Error()
		if code == ExitInterrupted {
			msg = "interrupted"
		}
		if ee := (*exitError)(nil); !errors.As(err, &ee) || !ee.reported {
			fmt.Fprintf(a.Stderr, "cosmoslease: %s\n", msg)
		}
		return code
	}
	return ExitOK
}

func onUsageError(c *ucli.Context, err error, _ bool) error {
	hint := "cosmoslease --help"
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		hint = "cosmoslease " + c.Command.Name + " --help"
	}
	return usagef("%s. Try: %s", strings.TrimSuffix(err.Error(), "."), hint)
}

// commonFlags are accepted by every command that reaches Cosmos DB.
func commonFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "config", Usage: "read only this settings `FILE` (default: appsettings.json, then appsettings.Local.json)", EnvVars: []string{"COSMOSLEASE_CONFIG"}},
		&ucli.StringFlag{Name: "endpoint", Usage: "Cosmos DB account endpoint `URL` (CosmosLeasing__AccountEndpoint)"},
		&ucli.StringFlag{Name: "connection-string", Usage: "key auth `AccountEndpoint=…;AccountKey=…` (CosmosLeasing__ConnectionString; prefer the variable, flags show in process lists)"},
		&ucli.StringFlag{Name: "database", Usage: "database `NAME` (CosmosLeasing__DatabaseName, default DistributedLeasing)"},
		&ucli.StringFlag{Name: "container", Usage: "container `NAME` (CosmosLeasing__ContainerName, default Leases)"},
		&ucli.BoolFlag{Name: "emulator", Usage: "use a local Cosmos DB emulator: well-known key, endpoint " + "https://localhost:8081/ unless --endpoint is given; creates a missing database and container", EnvVars: []string{"COSMOSLEASE_EMULATOR"}},
		&ucli.BoolFlag{Name: "no-input", Usage: "never prompt; fail naming the missing flag or variable instead", EnvVars: []string{"COSMOSLEASE_NO_INPUT"}},
		&ucli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error", EnvVars: []string{"COSMOSLEASE_LOG_LEVEL"}},
		&ucli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"COSMOSLEASE_LOG_FORMAT"}},
	}
}

// logger builds the stderr logger from --log-level and --log-format.
func (a *App) logger(c *ucli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(a.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(a.Stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: use text or json", c.String("log-format"))
}

// canPrompt says whether questions may be asked.
func (a *App) canPrompt(c *ucli.Context) bool {
	return a.Interactive && a.Prompter != nil && !c.Bool("no-input") && a.Getenv("CI") != "true"
}

// color says whether ANSI colours may be written to stdout.
func (a *App) color() bool {
	return a.StdoutTTY && a.Getenv("NO_COLOR") == "" && a.Getenv("TERM") != "dumb"
}
