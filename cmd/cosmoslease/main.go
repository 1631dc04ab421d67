// Command cosmoslease contends for a lease in Azure Cosmos DB, works while it holds it, and shows leases.
// Run 'cosmoslease --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/cosmoslease/cosmoslease/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	dir, _ := os.Getwd()
	interactive := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
	app := &cli.App{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Dir: dir,
		Interactive: interactive, StdoutTTY: term.IsTerminal(int(os.Stdout.Fd())), Version: version,
		Prompter: cli.SurveyPrompter{In: os.Stdin, Out: os.Stderr, Err: os.Stderr},
	}
	code := app.Run(ctx, os.Args)
	stop()
	os.Exit(code)
}
