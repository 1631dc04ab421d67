package main

import (
	"context"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Run describes the occurrence being executed.
type Run struct {
	// Occurrence is the schedule time this run is for; each occurrence runs once across all regions while one
	// of them is alive (at most once when a region dies mid-work, unless LeaseTimerRetryAbandoned is set).
	Occurrence time.Time
	Region     string
	Instance   string
	// Epoch is the lease's fencing token: pass it to any system that can refuse writes from a superseded holder.
	// For Cosmos DB items, write through Fence.
	Epoch int64
	// PastDue is true when the host is catching up on a missed occurrence.
	PastDue bool
	// Retry is true when this runs an occurrence again whose first run was abandoned (its region died mid-work),
	// with LeaseTimerRetryAbandoned set. Make such work idempotent.
	Retry bool
	// Logf writes a line to the invocation's logs (and stdout).
	Logf func(format string, args ...any)
}

// Fence returns a view of container whose writes carry this run's epoch and which Cosmos DB refuses once a later
// holder of the lease (another region, or a newer process of this one) has written the same item through its
// own fence; see cosmoslease.Fence. Keep one fence per container for the run: it starts each item's next write
// from the version it wrote last. A work function that gets an error wrapping cosmoslease.ErrFenced should
// return it: the run is then recorded as lost.
func (r Run) Fence(container *azcosmos.ContainerClient) *cosmoslease.Fence {
	return cosmoslease.NewFence(container, r.Epoch)
}

// WorkFunc is the job. ctx ends when the lease is lost or the invocation's deadline passes: stop then.
type WorkFunc func(ctx context.Context, run Run) error

// Work is the job this app runs once per schedule occurrence, in the most preferred region that is alive.
// Replace it with your own. The handler already records each run (occurrence, region, instance, epoch,
// started, finished) in the lease container; `cosmoslease inspect --runs` lists them.
//
// Writes to Cosmos DB made here should go through run.Fence(container), so that a region superseded while its
// work still runs cannot overwrite what the new holder wrote:
//
//	orders := run.Fence(container)
//	_, err := orders.UpdateItem(ctx, azcosmos.NewPartitionKeyString("orders"), "daily-total", computeTotal)
var Work WorkFunc = func(ctx context.Context, run Run) error {
	run.Logf("work for %s runs in %s (epoch %d)", run.Occurrence.Format(time.RFC3339), run.Region, run.Epoch)
	return ctx.Err()
}
