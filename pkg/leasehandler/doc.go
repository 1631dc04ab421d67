// Package leasehandler is an Azure Functions custom handler for scheduled jobs that run once per occurrence
// across regions. Deploy the same Function App in several regions: every region's timer fires for every
// occurrence of a job's schedule, and the occurrence election of package cosmoslease (Client.RunOnce) runs it
// once, in the most preferred region that is alive, under the job's lease in Cosmos DB.
//
// A team's handler is a main package in its own module that registers its jobs and calls Serve:
//
//	func main() {
//		err := leasehandler.Serve(leasehandler.Job{Name: "NightlyReport", Schedule: "0 0 2 * * *", Work: report})
//		if err != nil {
//			log.Fatal(err)
//		}
//	}
//
// `cosmoslease deploy --handler ./cmd/jobs` builds it for linux/amd64, writes each job's function folder beside
// it (Serve writes them when WriteFunctionsEnv is set), zips the app and deploys it to every region.
//
// # Jobs
//
// Each job is a timer function of its own (NAME/function.json, route /NAME) with its own schedule, lease, run
// history and missed count. Its work is a Go function (Job.Work), or a command: for teams that do not write Go,
// Serve also runs every job that the app settings configure with LeaseJobs__NAME__Command (a program or script
// of the app's files, with its arguments) and LeaseJobs__NAME__Schedule. A command runs with
// COSMOSLEASE_OCCURRENCE, COSMOSLEASE_EPOCH, COSMOSLEASE_REGION, COSMOSLEASE_LEASE and COSMOSLEASE_INSTANCE in
// its environment, in a process group of its own that is killed when the lease is lost or the invocation's
// deadline comes; its output goes to the invocation's logs and its exit status into the run record.
//
// A job's settings come from, in this order: its app settings LeaseJobs__NAME__Schedule (when its code fixes no
// schedule), __LeaseKey, __PreferredRegions, __FailoverDelay, __RetryAbandoned, __RunRetention, __TimeZone,
// __CatchUpWindow and __Overlap; its Job fields; the app settings every job shares, LeaseTimerPreferredRegions,
// LeaseTimerFailoverDelay, LeaseTimerRunRetention, LeaseTimerTimeZone, LeaseTimerCatchUpWindow and
// LeaseTimerOverlap; the defaults (the Cosmos DB account's region order, 10 s, 30 days, UTC, no catch-up, wait).
//
// A job with a time zone (an IANA name such as Europe/Berlin) has its schedule read on that zone's wall clock,
// across daylight-saving changes by Vixie cron's rules, and its occurrences named in UTC, the same in every
// region. Its function.json then fires every minute (the host reads schedules in UTC), and the handler answers
// the minutes that are no occurrence at once, without reading Cosmos DB. The lease key
// defaults to the job's name. The account is CosmosLeasing__AccountEndpoint (the app's managed identity) or
// CosmosLeasing__ConnectionString, as for the CLI. LeaseTimer is the job of the handler before it served several,
// with the settings it had then.
//
// # What runs, and when it does not
//
// Each occurrence runs at most once, and exactly once while some region is alive and reaches Cosmos DB. A region
// that dies while the work runs leaves its occurrence to be marked abandoned by the next holder; with
// RetryAbandoned that holder runs it once more, so work may then run twice (at least once): make it
// idempotent, and pass the run's epoch to whatever it writes (Run.Fence for Cosmos DB items), which refuses the
// writes of a superseded region.
//
// An occurrence that no region claimed in time (every region down) is recorded missed; with CatchUpWindow the
// host's past-due tick after such an outage runs the newest one once, late (Run.CaughtUp). An occurrence due
// while the previous one still runs waits for it (Overlap "wait", the default) while its time lasts, or is
// skipped at once ("skip"); either way it is recorded.
//
// A job whose settings are wrong fails each of its invocations with one line saying what is wrong and how to fix
// it (the host logs it as an error and counts a failed execution); the other jobs run on. Among the settings
// refused: a failover delay under which the last region would still wait when the next occurrence is due
// ((regions − 1) × delay at least the schedule's shortest gap: the host fires no tick while an invocation
// waits), and WEBSITE_TIME_ZONE (the host would fire in local time while occurrences are named in UTC: use
// LeaseTimerTimeZone or LeaseJobs__NAME__TimeZone instead).
//
// LeaseStatus (HTTP GET, function key) answers with every job's lease, newest run and missed occurrences, and
// the reason any job cannot run.
//
// The guarantee in full, the waits and their costs are in the repository's docs/scheduled-work.md and
// docs/reliability.md.
package leasehandler
