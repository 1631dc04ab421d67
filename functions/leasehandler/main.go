// Command leasehandler is this project's Azure Functions custom handler, built on pkg/leasehandler. The same app
// runs in several regions; each region's timers fire, and only the region holding a job's lease in Cosmos DB does
// that job's work, once per occurrence.
//
// It serves the job LeaseTimer (the demo work below, configured by the LeaseTimer* app settings, as the handler
// was before it served several jobs), every command job that the app settings LeaseJobs__NAME__Command
// configure, and LeaseStatus. A team with Go work of its own writes a handler like this one in its own module
// (see the package's Example); teams without Go deploy this one with command jobs (cosmoslease deploy --job).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

func main() {
	work := func(ctx context.Context, run leasehandler.Run) error { return Work(ctx, run) }
	if err := leasehandler.Serve(leasehandler.LeaseTimer(work)); err != nil {
		fmt.Fprintln(os.Stderr, "leasehandler:", err)
		os.Exit(1)
	}
}

// Work is LeaseTimer's work: it says where it runs. The handler already records each run (occurrence, region,
// instance, epoch, started, finished) in the lease container; `cosmoslease inspect --runs` lists them. The
// benchmarks replace it at build time (internal/functionshost.Build).
var Work leasehandler.WorkFunc = func(ctx context.Context, run leasehandler.Run) error {
	run.Logf("work for %s runs in %s (epoch %d)", run.Occurrence.Format(time.RFC3339), run.Region, run.Epoch)
	return ctx.Err()
}
