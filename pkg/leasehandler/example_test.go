package leasehandler_test

import (
	"context"
	"fmt"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

// A team's whole handler, the main package of its own module: two jobs, one on a schedule fixed here, one on
// the schedule of the app setting LeaseJobs__Rollup__Schedule. Deploy it with `cosmoslease deploy --handler
// ./cmd/jobs`; the host starts it. Started any other way it says what is missing (a real main then exits
// non-zero).
func Example() {
	report := leasehandler.Job{Name: "NightlyReport", Schedule: "0 0 2 * * *", Work: func(ctx context.Context, run leasehandler.Run) error {
		run.Logf("report for %s in %s, epoch %d", run.Occurrence.Format("2006-01-02"), run.Region, run.Epoch)
		return nil // return soon after ctx ends: the lease is lost or the deadline has come
	}}
	rollup := leasehandler.Job{Name: "Rollup", RetryAbandoned: true, Work: func(ctx context.Context, run leasehandler.Run) error {
		// Run again after a region died mid-work (run.Retry), so idempotent; writes fenced with run.Epoch.
		return nil
	}}
	if err := leasehandler.Serve(report, rollup); err != nil {
		fmt.Println("leasehandler:", err)
	}
	// Output: leasehandler: FUNCTIONS_CUSTOMHANDLER_PORT is not set; the Azure Functions host sets it when it starts the handler (run it with 'func start')
}
