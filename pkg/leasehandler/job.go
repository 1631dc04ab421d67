package leasehandler

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Job is one scheduled job of the Function App: a timer function of its own (its folder NAME/function.json and
// its route /NAME), whose every occurrence runs once, in the most preferred region alive, under a lease of its
// own. Fields left zero take the app's settings (see the package documentation), and the app settings
// LeaseJobs__NAME__LeaseKey, __PreferredRegions, __FailoverDelay, __RetryAbandoned, __RunRetention, __TimeZone,
// __CatchUpWindow and __Overlap override the fields.
type Job struct {
	// Name is the function's name: its folder, its route, and the NAME of its settings. A letter, then up to 127
	// letters, digits and single underscores: the host's rule for function names without the hyphen (Linux app
	// settings cannot carry one) and without a double underscore (which separates the parts of a setting's
	// name). The host ignores case, so two jobs may not differ only by it; LeaseStatus is taken.
	Name string
	// Schedule is the job's NCRONTAB expression, in UTC unless the job has a time zone ("0 */5 * * * *", or five
	// fields without seconds); or "%Setting%", the app setting that holds it. Empty means the app setting
	// LeaseJobs__NAME__Schedule. A schedule in an app setting can change without a new build; the host reads it
	// when the app starts.
	Schedule string
	// Work is the job: it runs once per occurrence, under the lease.
	Work WorkFunc
	// LeaseKey is the job's lease, and the partition of its run records; default Name. Two jobs cannot share one.
	LeaseKey string
	// PreferredRegions are Azure regions, most preferred first; default LeaseTimerPreferredRegions, else the
	// Cosmos DB account's order. A region not listed ranks last.
	PreferredRegions []string
	// FailoverDelay is how much later each rank of region contends for an occurrence, 1 s to 1 h; default
	// LeaseTimerFailoverDelay, else 10 s.
	FailoverDelay time.Duration
	// Retention is how long run records are kept after their occurrence; default LeaseTimerRunRetention, else 30
	// days; at least a day and two of the schedule's longest gaps.
	Retention time.Duration
	// TimeZone is the IANA time zone the schedule is read in (Europe/Berlin); default LeaseTimerTimeZone, else
	// UTC; the app setting LeaseJobs__NAME__TimeZone overrides it. Occurrences are named in UTC. The host then
	// fires the job every minute and the handler runs the minutes that are occurrences (docs/scheduled-work.md).
	TimeZone string
	// RetryAbandoned runs an occurrence whose region died while its work ran once more, in the region that
	// notices (at least once); by default it is only marked abandoned (at most once).
	RetryAbandoned bool
	// CatchUpWindow, when not zero, runs the newest missed occurrence once after an outage of every region, late
	// and marked caught up, if it is no older than this (the host's past-due tick after a restart does it); the
	// other missed occurrences stay missed. Default LeaseTimerCatchUpWindow, else 0: off.
	CatchUpWindow time.Duration
	// Overlap is what an occurrence due while the previous one still runs does: "wait" (the default) for it to
	// end, and run while its time lasts (until the next occurrence's turn); or "skip" it (recorded skipped for
	// overlap). Default LeaseTimerOverlap, else wait.
	Overlap string

	legacy bool // LeaseTimer: the settings of the single-job handler
}

// LeaseTimer is the job of the handler before it served several jobs, with work as its work: the function
// LeaseTimer, configured by the app settings LeaseTimerSchedule (its schedule, bound as %LeaseTimerSchedule%),
// LeaseTimerLeaseKey (its lease, default timer-singleton) and LeaseTimerRetryAbandoned, beside the settings
// every job shares. An app deployed before several jobs keeps its settings, its lease and its run history.
func LeaseTimer(work WorkFunc) Job {
	return Job{Name: "LeaseTimer", Work: work, legacy: true}
}

// WorkFunc is a job's work. ctx ends when the lease is lost or the invocation's deadline comes: stop then.
type WorkFunc func(ctx context.Context, run Run) error

// Run describes the occurrence being run.
type Run struct {
	// Job is the job's name; Key its lease.
	Job, Key string
	// Occurrence is the schedule time this run is for; each occurrence runs once across all regions while one
	// of them is alive (at most once when a region dies mid-work, unless the job retries abandoned runs).
	Occurrence time.Time
	Region     string
	Instance   string
	// Epoch is the lease's fencing token: pass it to any system that can refuse writes from a superseded holder.
	// For Cosmos DB items, write through Fence.
	Epoch int64
	// PastDue is true when the host is catching up on a missed occurrence.
	PastDue bool
	// CaughtUp is true when this runs the newest missed occurrence late, after an outage of every region
	// (CatchUpWindow); PastDue is true with it.
	CaughtUp bool
	// Retry is true when this runs an occurrence again whose first run was abandoned (its region died
	// mid-work), for a job with RetryAbandoned. Make such work idempotent.
	Retry bool
	// Manual is true for a manual run (cosmoslease trigger): Occurrence is then when it was asked for, by
	// TriggeredBy.
	Manual      bool
	TriggeredBy string
	// Logf writes a line to the invocation's logs.
	Logf func(format string, args ...any)

	run cosmoslease.Run
}

// Fence returns a view of container whose writes carry this run's epoch and which Cosmos DB refuses once a later
// holder of the lease (another region, or a newer process of this one) has written the same item through its
// own fence; see cosmoslease.Fence. Keep one fence per container for the run: it starts each item's next write
// from the version it wrote last. A work function that gets an error wrapping cosmoslease.ErrFenced should
// return it: the run is then recorded as lost.
func (r Run) Fence(container *azcosmos.ContainerClient) *cosmoslease.Fence {
	return cosmoslease.NewFence(container, r.Epoch)
}

// SetExitCode records the exit status of a command the work ran in the run record (inspect --runs shows it).
func (r Run) SetExitCode(code int) { r.run.SetExitCode(code) }

// statusFunction is the HTTP function that reports every job.
const statusFunction = "LeaseStatus"

// functionName is the host's rule for a function's name (Utility.IsValidFunctionName in azure-functions-host:
// ^[a-z][a-z0-9_\-]{0,127}$ without regard to case, and not "host"), without the hyphen.
var functionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,127}$`)

// CheckName says whether name can be a job's name (see Job.Name), and if not, why.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("a job needs a name")
	case !functionName.MatchString(name) || strings.EqualFold(name, "host"):
		return fmt.Errorf("job name %q is not a function name: use a letter, then up to 127 letters, digits and underscores, such as NightlyReport", name)
	case strings.Contains(name, "__"):
		return fmt.Errorf("job name %q holds a double underscore, which separates the parts of its settings' names (LeaseJobs__NAME__Schedule): use a single one", name)
	case strings.EqualFold(name, statusFunction):
		return fmt.Errorf("job name %q is taken by the handler's status function", name)
	case strings.EqualFold(name, triggerFunction):
		return fmt.Errorf("job name %q is taken by the handler's trigger function", name)
	}
	return nil
}

// jobSpec is a job as registered: a Go job, or a command job found in the app settings.
type jobSpec struct {
	Job
	// command is a command job's command line and the setting that holds it.
	command, commandSetting string
	env                     *jobEnv
	// ticked: the job has a time zone, so the host fires it every minute (tickSchedule).
	ticked bool
	// err is a problem found in the registration: the job's invocations fail with it.
	err error
}

// checkGoJobs refuses registrations that no setting can fix: a job without a name or work, or two jobs of one
// name.
func checkGoJobs(jobs []Job) error {
	seen := map[string]string{}
	for _, j := range jobs {
		if err := CheckName(j.Name); err != nil {
			return err
		}
		if j.Work == nil {
			return fmt.Errorf("job %s has no Work", j.Name)
		}
		if other, dup := seen[strings.ToLower(j.Name)]; dup {
			return fmt.Errorf("jobs %s and %s have the same name (the host ignores case): rename one", other, j.Name)
		}
		seen[strings.ToLower(j.Name)] = j.Name
	}
	return nil
}

// listJobs lists the jobs to serve: the Go jobs as registered, then the command jobs that the app settings
// configure (LeaseJobs__NAME__Command), by name. It returns what it could not make a job of, for the log.
func listJobs(goJobs []Job, e environment) (specs []jobSpec, problems []string) {
	envs, odd := e.jobEnvs()
	for _, k := range odd {
		problems = append(problems, fmt.Sprintf("the app setting %s is not of the form %s__NAME__FIELD: it is ignored", k, jobPrefix))
	}
	for _, j := range goJobs {
		je := envs[strings.ToLower(j.Name)]
		delete(envs, strings.ToLower(j.Name))
		spec := jobSpec{Job: j, env: je}
		if _, name, ok := je.get("Command"); ok {
			problems = append(problems, fmt.Sprintf("the app setting %s names a command for %s, which is a Go job of this handler: the command is not run; remove the setting, or give the command job another name", name, j.Name))
		}
		spec.err = je.unknownFields()
		spec.zone(e)
		specs = append(specs, spec)
	}
	names := make([]string, 0, len(envs))
	for k := range envs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		je := envs[k]
		if err := CheckName(je.name); err != nil {
			problems = append(problems, fmt.Sprintf("app settings %s__%s__…: %v", jobPrefix, je.name, err))
			continue
		}
		spec := jobSpec{Job: Job{Name: je.name}, env: je}
		spec.command, spec.commandSetting, _ = je.get("Command")
		switch {
		case spec.commandSetting == "":
			spec.err = fmt.Errorf("app settings configure a job %s, but %s is not set, and this handler has no Go job of that name: set it to the command to run (a program or script in the app's files, with its arguments)",
				je.name, jobSetting(je.name, "Command"))
		default:
			spec.err = je.unknownFields()
		}
		spec.zone(e)
		specs = append(specs, spec)
	}
	return specs, problems
}

// unknownFields refuses a LeaseJobs__NAME__FIELD setting whose FIELD is not one of jobFields (a typo would
// otherwise be ignored in silence).
func (j *jobEnv) unknownFields() error {
	if j == nil {
		return nil
	}
	known := map[string]bool{}
	for _, f := range jobFields {
		known[strings.ToLower(f)] = true
	}
	var unknown []string
	for f, name := range j.names {
		if !known[f] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("unknown app setting %s: a job's settings are %s__%s__ followed by one of %s",
		strings.Join(unknown, ", "), jobPrefix, j.name, strings.Join(jobFields, ", "))
}

// zone reads the job's time zone (see jobZone): a bad one is a problem of the job.
func (spec *jobSpec) zone(e environment) {
	loc, _, err := jobZone(e, spec.env, spec.Job)
	if err != nil && spec.err == nil {
		spec.err = err
	}
	spec.ticked = loc != nil
}
