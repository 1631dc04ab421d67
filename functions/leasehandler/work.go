package main

import (
	"context"
	"time"
)

// Run describes the occurrence being executed.
type Run struct {
	// Occurrence is the schedule time this run is for; each occurrence runs at most once across all regions.
	Occurrence time.Time
	Region     string
	Instance   string
	// Epoch is the lease's fencing token: pass it to any system that can refuse writes from a superseded holder.
	Epoch int64
	// PastDue is true when the host is catching up on a missed occurrence.
	PastDue bool
	// Logf writes a line to the invocation's logs (and stdout).
	Logf func(format string, args ...any)
}

// WorkFunc is the job. ctx ends when the lease is lost or the invocation is cancelled: stop then.
type WorkFunc func(ctx context.Context, run Run) error

// Work is the job this app runs once per schedule occurrence, in whichever region holds the lease.
// Replace it with your own. The handler already records each run (occurrence, region, instance, epoch,
// started, finished) in the lease container; `cosmoslease inspect --runs` lists them.
var Work WorkFunc = func(ctx context.Context, run Run) error {
	run.Logf("work for %s runs in %s (epoch %d)", run.Occurrence.Format(time.RFC3339), run.Region, run.Epoch)
	return ctx.Err()
}
