// Command wasm is a lease contender for WebAssembly hosts that have JavaScript (GOOS=js GOARCH=wasm): Node.js,
// Deno, browsers and edge runtimes. Nothing in it is special to WebAssembly: under js/wasm the library sends its
// requests with the host's fetch by default, so plain `node` runs it.
//
//	GOOS=js GOARCH=wasm go build -o contender.wasm ./examples/wasm
//	export COSMOS_CONNECTION_STRING='AccountEndpoint=https://myaccount.documents.azure.com:443/;AccountKey=…'
//	node "$(go env GOROOT)/lib/wasm/wasm_exec_node.js" contender.wasm -owner edge-1 -hold 10s
//
// (wasm_exec_node.js is in misc/wasm before Go 1.24.) It acquires the lease (standing by while another instance
// holds it), renews it once by hand, works for -hold while the library renews it, releases it, and prints one
// JSON line per step. Exit codes: 0 done, 1 error, 4 the lease was lost. Under GOOS=wasip1 there are no sockets:
// the host must pass Options.Transport.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func main() {
	owner := flag.String("owner", "wasm-1", "this instance's `ID`")
	key := flag.String("lease", "critical-section-lock", "the lease `KEY`")
	hold := flag.Duration("hold", 5*time.Second, "how long to work under the lease before releasing it")
	duration := flag.Duration("duration", cosmoslease.DefaultLeaseDuration, "the lease duration")
	database := flag.String("database", cosmoslease.DefaultDatabase, "the `database`")
	container := flag.String("container", cosmoslease.DefaultContainer, "the lease `container`")
	flag.Parse()
	cs := os.Getenv("COSMOS_CONNECTION_STRING")
	if cs == "" {
		fmt.Fprintln(os.Stderr, "set COSMOS_CONNECTION_STRING to AccountEndpoint=…;AccountKey=…")
		os.Exit(2)
	}
	os.Exit(run(cosmoslease.Options{ConnectionString: cs, Database: *database, Container: *container, OwnerID: *owner,
		Region: "wasm", LeaseDuration: *duration, RenewInterval: *duration / 3}, *key, *hold))
}

func run(opts cosmoslease.Options, key string, hold time.Duration) int {
	ctx := context.Background()
	c, err := cosmoslease.Open(ctx, opts)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	lease, err := c.Acquire(ctx, key)
	if err != nil {
		return fail(err)
	}
	defer lease.Release(context.Background())
	emit("acquired", lease.State())
	if err := lease.Renew(ctx); err != nil {
		return lost(err)
	}
	emit("renewed", lease.State())
	select {
	case <-lease.Context().Done():
		return lost(context.Cause(lease.Context()))
	case <-time.After(hold):
	}
	if err := lease.Release(ctx); err != nil {
		return fail(err)
	}
	emit("released", lease.State())
	return 0
}

func emit(event string, s cosmoslease.State) {
	b, _ := json.Marshal(map[string]any{"event": event, "owner": s.Owner, "epoch": s.Epoch, "leaseId": s.LeaseID,
		"renewals": s.Renewals, "released": s.Released})
	fmt.Println(string(b))
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "error:", err)
	return 1
}

func lost(err error) int {
	fmt.Fprintln(os.Stderr, "lost:", err)
	return 4
}
