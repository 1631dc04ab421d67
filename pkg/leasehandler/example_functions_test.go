package leasehandler_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

// The function folders of a handler's jobs are written by the handler itself: started with
// COSMOSLEASE_WRITE_FUNCTIONS set, Serve writes them there, lists them and returns. cosmoslease package and
// deploy do this, and zip the folders with the handler. A job whose schedule is in an app setting binds it as
// the host can resolve it: LeaseJobs:NAME:Schedule (the host cannot find LeaseJobs__NAME__Schedule by that
// name). LeaseTrigger is the handler's own timer, every minute, that serves manual runs (cosmoslease trigger).
func Example_functionFolders() {
	dir, _ := os.MkdirTemp("", "functions")
	defer os.RemoveAll(dir)
	os.Setenv(leasehandler.WriteFunctionsEnv, dir)
	defer os.Unsetenv(leasehandler.WriteFunctionsEnv)

	work := func(ctx context.Context, run leasehandler.Run) error { return nil }
	if err := leasehandler.Serve(leasehandler.Job{Name: "Rollup", Work: work}); err != nil {
		fmt.Println(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "Rollup", "function.json"))
	fmt.Print(string(b))
	// Output:
	// LeaseStatus
	// LeaseTrigger
	// Rollup
	// {
	//   "bindings": [
	//     {
	//       "name": "timer",
	//       "type": "timerTrigger",
	//       "direction": "in",
	//       "schedule": "%LeaseJobs:Rollup:Schedule%",
	//       "runOnStartup": false,
	//       "useMonitor": true
	//     }
	//   ]
	// }
}
