// Package cosmoslease elects one holder of a named lease through a document in Azure Cosmos DB, using ETag
// optimistic concurrency. Run the same workload in several regions; the instance that holds the lease does the
// work, and another takes over when it stops.
//
//	c, err := cosmoslease.Open(ctx, cosmoslease.Options{Endpoint: endpoint, OwnerID: "us-east-1", Region: "us-east"})
//	lease, err := c.Acquire(ctx, "critical-section-lock") // stand by until we hold it
//	defer lease.Release(context.Background())
//	doWork(lease.Context(), lease.Epoch())                // stops when the lease is lost
//
// # What is guaranteed
//
// For each lease key, at most one Lease value, across all processes, is valid (Err returns nil) at any instant
// of real time, and every holding has an epoch greater than every earlier holding's — provided:
//
//  1. The account has a single write region. Open refuses an account with several unless
//     Options.AllowMultipleWriteRegions is set: an ETag check in one write region does not stop a write in
//     another.
//
//  2. No regional failover loses acknowledged writes, which in practice means Strong consistency if the
//     account has several regions. A failover of a Session (or weaker) account can lose the last writes that had
//     not replicated: the document goes back to an earlier version, a contender judges that version expired and
//     takes over, while the holder whose confirmed renewal was lost still believes it holds the lease — two
//     holders, and an epoch handed out twice. Strong consistency has no such loss.
//
//  3. The clocks involved are good enough. Let ρ bound the rate error of every clock involved (the holder's, each
//     contender's, and those of the Cosmos DB hosts), and σ bound how far ahead the clock of the gateway that
//     stamps a response's Date may be of the clock of the primary replica that stamps a document's _ts (two
//     different hosts). Then the condition is
//
//     RenewDeadline·(1+ρ)/(1−ρ) + σ ≤ LeaseDuration,
//
//     that is, about LeaseDuration − RenewDeadline ≥ σ + 2ρ·LeaseDuration. Clock-rate error and Date/_ts skew
//     share the one budget LeaseDuration − RenewDeadline. Options requires it to be at least a tenth of
//     LeaseDuration and at least 1 s; the defaults give 10 s of 60 s. For scale: NTP slewing alone reaches
//     500 ppm (2ρ·LeaseDuration = 60 ms for a 60 s lease); σ between hosts of one Azure region is normally
//     well under a second. Clock offsets between a holder and a contender do not matter: no host's wall clock
//     is compared with another host's, only Date with _ts, both written by Cosmos DB.
//
//  4. Nobody deletes or rewrites lease documents by hand (a deleted document starts again at epoch 1), and no
//     instance of the reference sample shares the container (see below for what holds while one does).
//
// Holding is not exclusive work: a holder paused longer than its deadline (a GC pause, a stopped VM) may still
// act after a contender has taken over. Every holding therefore has an Epoch, the fencing token, greater than
// every earlier holding's and never reset (Release keeps the document). It is one above the epoch of the
// document it replaced, which is not always a holding's: a claim that was applied but never became a Lease (its
// answer was lost and it was not adopted in time) is taken over at its own epoch + 1, so numbers can be skipped.
// Pass it to anything that can refuse stale writers. For Cosmos DB items, Lease.Fence does it: Cosmos DB itself
// refuses a superseded holder's writes, whatever the timing (see Fence for the guarantee and its limits).
//
// # The clock model
//
// A holder counts its validity from the moment its last confirmed write was sent, as the largest of the time
// elapsed on Go's monotonic clock, on the boot clock and on the wall clock. Go's monotonic clock stops while a
// machine sleeps (and in some VM pauses) on Linux and macOS; the boot clock counts that time and is never stepped
// (CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC on macOS; on Windows Go's clock already counts sleep); the wall clock
// is the witness of last resort elsewhere, where a wall clock stepped back during a suspend could hide it. A wall
// clock stepped forward only makes the holder give up early. When RenewDeadline has passed, Lease.Err reports the
// loss and the lease's context is cancelled (the keeper checks at least every RetryPeriod, so a resumed machine
// ends its lease promptly).
//
// A contender declares a lease expired when it has seen the same document version (ETag) unchanged for the
// duration the holder promised (leaseDurationMs), measured as the larger of
//   - the time on the contender's own monotonic clock since it first saw that version, and
//   - the document's age on the server's clocks: the response's Date header minus the document's _ts, less one
//     second for the resolution of both, plus the contender's own time since that response.
//
// Under the conditions above both are lower bounds of the real time since the holder sent its write, so the
// holder always stops first. The server rule lets a contender that has just started take over an abandoned
// lease at once instead of watching it for a whole duration. expiresAt in the documents this package writes is
// for people and queries; the protocol never reads it. Only in a document of the reference sample does it count,
// and only to lengthen the wait: as expiresAt − _ts, two stamps in the one document (see below).
//
// # Documents of the reference sample
//
// During a migration the reference sample's instances may share the container. Their documents have no epoch:
// they are read as leases in sample form (State.Sample, Epoch 0) held by their ownerId, and taken over, with a
// full document at epoch 1, once seen unchanged for max(LeaseDuration, expiresAt − _ts) + (LeaseDuration −
// RenewDeadline). The sample's holder believes it holds the lease until its own clock reads expiresAt; the
// takeover is safe against it when its lease is no longer than LeaseDuration, or its clock is not behind Cosmos
// DB's by more than about LeaseDuration − RenewDeadline (the argument is at sampleHold, in sample.go); an
// expiresAt too far ahead to count in a Duration (.NET's DateTime.MaxValue) is held for as long as one can count.
// Three things cannot be made safe from this side: a sample contender compares its own clock with the expiresAt
// our holder wrote, so the clocks must agree within LeaseDuration − RenewDeadline; the sample deletes the
// document on release and writes its own without an epoch, so while sample instances remain the epoch starts
// again at 1 and does not fence; and the sample judges a lease free when its document names the sample's own
// instance, so a sample instance named like one of our holders (an OwnerID) takes that holder's lease at once,
// and both hold it until our holder's next renewal fails (the epoch then starts again at 1). Give them different
// names; `cosmoslease run` and `inspect` warn when the container shows such a sample document.
//
// # Ambiguous answers
//
// A write whose answer was lost (a timeout, a reset) may have been applied, and the SDK retries such a write,
// so a 409 or 412 can be the answer to our own applied write. Writes on one Lease are serialized (Renew, the
// automatic renewal and Release take turns), and each is conditional on the ETag of the newest version this
// holder knows it wrote, so exactly one of them can have been applied, producing that version with one more
// renewal, or marked released. After a 412 the holder reads the document once; it adopts only that exact
// version (same leaseId and epoch), dated from the send of its first unconfirmed write. An older version of its
// own is a lagging replica's answer and changes nothing; any other document means the lease is lost. Every
// read after our own write carries that write's session token, so under Session consistency it is never
// answered from a replica that has not applied the write. A contender whose claim went unanswered reads once;
// a document carrying the claim's leaseId is its lease, dated from the claim's send.
//
// # Requests
//
// Reads are point reads (1 RU for a lease document in Azure). TryAcquire: at most two requests when
// uncontended (a read, then a create or a conditional replace); one when a recent observation already shows the
// lease free. Renew: exactly one conditional replace on the cached ETag. Release: one conditional replace that
// marks the lease released and keeps the document. A 412 on renewal or release is followed by one read.
// Throttling (429, retry-after honoured), 503, 408 and timeouts mean "unknown", never "lost": they are retried
// until the deadline, each request bounded by RequestTimeout and by the time left.
//
// # Scheduled work: one run per occurrence
//
// Client.RunOnce builds the occurrence election on the lease: every contender (a region's timer, a cron process
// on each machine) calls it for the same occurrence of a schedule, with its rank in the preference order. Rank r
// contends r × FailoverDelay after the occurrence and only watches the occurrence's run record before then; the
// contender that takes the lease claims the occurrence by creating its run record (a document id can be created
// once), runs the work under the lease, records how it ended and releases. So the lease is held only while
// work runs, the preferred live contender runs each occurrence, a dead one is replaced for the very next
// occurrence, and it takes the work back when it returns. Each occurrence runs at most once (exactly once while a
// contender is alive and Cosmos DB reachable); a claimer that dies mid-work leaves its record to be marked
// abandoned by the next holder, and RetryAbandoned runs it once more. Client.Runs reads the history and
// MissedOccurrences finds the occurrences no contender claimed. The guarantee in full is in the repository's
// docs/reliability.md.
//
// # Tuning
//
// Defaults follow the reference sample: LeaseDuration 60 s, RenewInterval 40 s, RenewDeadline halfway between
// (50 s), RetryPeriod LeaseDuration/12 (5 s). A standby takes over within LeaseDuration + RetryPeriod of the
// holder's last renewal, and within about one RetryPeriod of a release. Shorter leases fail over faster and
// cost more request units; RenewDeadline − RenewInterval is the time a holder has to get one renewal through.
//
// # Telemetry
//
// The package records OpenTelemetry metrics and spans through Options.MeterProvider and
// Options.TracerProvider (the global providers by default); it never installs an SDK, so nothing is exported
// unless the program does. Metrics: cosmoslease.lease.held (1 while this Client holds the key, 0 while it
// contends without holding it, judged at collection by the lease's deadline), cosmoslease.lease.epoch,
// cosmoslease.lease.acquisitions, cosmoslease.lease.losses (by cosmoslease.loss.reason: deadline, superseded,
// deleted, invalid), cosmoslease.lease.renewal.duration, cosmoslease.operation.duration (by
// cosmoslease.operation and cosmoslease.outcome), azure.cosmosdb.client.operation.request_charge and
// cosmoslease.fence.refusals; the lease series carry cosmoslease.lease.key, cosmoslease.owner and cloud.region.
// Spans: one for each TryAcquire, Acquire, Renew (automatic renewals are roots linked to the acquisition) and
// Release, with the key, the epoch and the outcome, and the SDK's Cosmos DB spans beneath them. With no SDK
// installed, renewals allocate nothing for either.
package cosmoslease
