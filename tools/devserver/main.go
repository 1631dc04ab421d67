// Command devserver is `make server`: the pinned local Cosmos-protocol server (testdata/cosmosdb-server, which
// answers a missing document 404 as Azure does), with the lease database and container, kept up until Ctrl-C. It
// prints the endpoint and the command lines to paste into other terminals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func main() {
	port := flag.Int("port", 8081, "loopback `PORT` to listen on (0: any free one)")
	bin := flag.String("bin", "bin/cosmoslease", "the CLI the printed lines use when cosmoslease is not on PATH")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *port, *bin, onPath()); err != nil {
		fmt.Fprintf(os.Stderr, "devserver: %v\n", err)
		os.Exit(1)
	}
}

// onPath reports whether a cosmoslease command is on PATH.
func onPath() bool {
	_, err := exec.LookPath("cosmoslease")
	return err == nil
}

// run starts the server on port, creates the database and container, prints the lines, and waits for ctx to end.
func run(ctx context.Context, out io.Writer, port int, bin string, cliOnPath bool) error {
	if port != 0 {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("port %d is in use (%v): choose another, make server PORT=%d", port, err, port+1)
		}
		l.Close()
	}
	endpoint, server, err := cosmostest.StartProcessOn(port)
	if err != nil {
		return err
	}
	defer cosmostest.Stop(server)
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := emulator.EnsureContainer(setupCtx, endpoint, cosmoslease.DefaultDatabase, cosmoslease.DefaultContainer, cosmoslease.DefaultPartitionKeyPath); err != nil {
		return fmt.Errorf("create the database and container: %w", err)
	}
	cli := "cosmoslease"
	if !cliOnPath {
		cli = bin
	}
	fmt.Fprint(out, Banner(endpoint, cli, cosmoslease.DefaultDatabase, cosmoslease.DefaultContainer, cliOnPath))
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\nStopping the server; everything it held is gone.")
		return nil
	case err := <-exited:
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("the server exited: %v", err)
	}
}

// Lines are the command lines printed for the endpoint, with the CLI named cli: two contenders for a lease, a
// look at it, and a scheduled job with a look at its runs.
func Lines(endpoint, cli string) []string {
	at := cli + " %s --emulator --endpoint " + endpoint
	return []string{
		fmt.Sprintf(at, "run") + " --instance us-east-1 --region eastus",
		fmt.Sprintf(at, "run") + " --instance eu-west-1 --region westeurope --wait",
		fmt.Sprintf(at, "inspect") + " --watch",
		fmt.Sprintf(at, "cron") + " --schedule '*/10 * * * * *' --region eastus --preferred-regions eastus,westeurope -- sh -c 'echo \"occurrence $COSMOSLEASE_OCCURRENCE in $COSMOSLEASE_REGION\"'",
		fmt.Sprintf(at, "inspect") + " --runs --lease cron",
	}
}

// Banner is what the server prints once it is ready.
func Banner(endpoint, cli, database, container string, cliOnPath bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Local Cosmos-protocol server at %s (database %s, container %s). Ctrl-C stops it.\n", endpoint, database, container)
	fmt.Fprintf(&b, "It keeps everything in memory: a restart starts empty.\n\n")
	if !cliOnPath {
		fmt.Fprintf(&b, "Paste these into other terminals, in this directory (or 'go install ./cmd/cosmoslease', with\n$(go env GOPATH)/bin on your PATH, and drop the %s):\n\n", filepath.Dir(cli)+"/")
	} else {
		fmt.Fprintf(&b, "Paste these into other terminals:\n\n")
	}
	l := Lines(endpoint, cli)
	fmt.Fprintf(&b, "  # a lease: the first holds it, the second stands by; Ctrl-C the first and watch the second take over\n")
	fmt.Fprintf(&b, "  %s\n  %s\n  %s\n\n", l[0], l[1], l[2])
	fmt.Fprintf(&b, "  # a scheduled job (every 10 s): run the same line in two terminals, with --region westeurope in one\n")
	fmt.Fprintf(&b, "  %s\n  %s\n", l[3], l[4])
	return b.String()
}
