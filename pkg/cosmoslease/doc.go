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
// At most one Lease value, across all processes, believes it holds a given key at any instant of real time,
// provided (1) the account has a single write region (Open refuses others unless told otherwise), (2) clocks
// run at rates that differ by less than (LeaseDuration − RenewDeadline) / LeaseDuration — 1/6 with the
// defaults — and (3) for the server-time rule below, the Cosmos DB clocks that stamp _ts and Date agree to
// within LeaseDuration − RenewDeadline − 1 s. Clock *offsets* between hosts do not matter: no host's wall
// clock is ever compared with another's.
//
// Holding is not exclusive work: a holder paused longer than its deadline (a GC pause, a stopped VM) may still
// act after a contender has taken over. Every holding therefore has an Epoch, the fencing token, one higher
// than every earlier holding's and never reset (Release keeps the document). Pass it to anything that can
// refuse stale writers. The lease document's epoch can only go backwards if a person deletes the document, or
// if a regional failover of a Session-consistency account loses the last writes; Strong consistency prevents
// the latter.
//
// # The clock model
//
// A holder counts its validity on its own monotonic clock from the moment its last confirmed write was sent;
// when RenewDeadline has passed since then, Lease.Err reports the loss and the lease's context is cancelled.
// A contender declares a lease expired when it has seen the same document version (ETag) unchanged for the
// duration the holder promised (leaseDurationMs), measured as the larger of
//   - the time on the contender's own monotonic clock since it first saw that version, and
//   - the document's age on the server's clock: the response's Date header minus the document's _ts,
//     less one second for _ts's resolution.
//
// Both are lower bounds of the real time since the holder sent its write, so the holder always stops first,
// by at least LeaseDuration − RenewDeadline. The server rule lets a contender that has just started take over
// an abandoned lease at once instead of watching it for a whole duration. expiresAt in the document is written
// for people and queries; the protocol never trusts it.
//
// # Requests
//
// TryAcquire: at most two requests when uncontended (a read, then a create or a conditional replace); one when
// a recent observation already shows the lease free. Renew: exactly one conditional replace on the cached ETag.
// Release: one conditional replace that marks the lease released and keeps the document. A 412 on renewal or
// release is followed by one read: if the document still carries our leaseId, one of our own writes was applied
// although we never heard back (a timeout, a reset, the SDK's own retry), and we adopt it. Throttling (429,
// retry-after honoured), 503, 408 and timeouts mean "unknown", never "lost": they are retried until the
// deadline, each request bounded by RequestTimeout and by the time left.
//
// Reads are single-partition queries by id (one request; a few more RU than a point read in Azure), because
// the local Cosmos-protocol server used by the tests cannot answer a point read of a missing document.
//
// # Tuning
//
// Defaults follow the reference sample: LeaseDuration 60 s, RenewInterval 40 s, RenewDeadline halfway between
// (50 s), RetryPeriod LeaseDuration/12 (5 s). A standby takes over within LeaseDuration + RetryPeriod of the
// holder's last renewal, and within about one RetryPeriod of a release. Shorter leases fail over faster and
// cost more request units; RenewDeadline − RenewInterval is the time a holder has to get one renewal through.
package cosmoslease
