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
	// The first SIGINT or SIGTERM cancels the context with the signal as its cause (run passes it on to its
	// command); later ones are ignored while the command winds down.
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() { cancel(cli.Signalled{Signal: <-signals}) }()
	dir, _ := os.Getwd()
	interactive := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
	app := &cli.App{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Dir: dir,
		Interactive: interactive, StdoutTTY: term.IsTerminal(int(os.Stdout.Fd())), Version: version,
		Prompter: cli.SurveyPrompter{In: os.Stdin, Out: os.Stderr, Err: os.Stderr},
	}
	code := app.Run(ctx, os.Args)
	signal.Stop(signals)
	os.Exit(code)
}
