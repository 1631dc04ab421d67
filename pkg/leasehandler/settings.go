package leasehandler

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// App settings every job shares, beside the CosmosLeasing__* names the CLI reads too. Their names come from the
// handler's single-job days: they are the defaults of every job, which a job may override.
const (
	// settingRetention is how long run records are kept (TimeSpan or Go duration; default 30 days).
	settingRetention = "LeaseTimerRunRetention"
	settingRegion    = "LeaseTimerRegion" // overrides REGION_NAME, which the platform sets
	// settingPreferred lists Azure regions, most preferred first; default: the Cosmos DB account's order.
	settingPreferred = "LeaseTimerPreferredRegions"
	// settingFailoverDelay is how much later each rank of region contends for an occurrence (default 10 s).
	settingFailoverDelay = "LeaseTimerFailoverDelay"
	// settingTimeZone makes the host fire timers in local time; the handler names occurrences in UTC.
	settingTimeZone = "WEBSITE_TIME_ZONE"
	// settingJobTimeZone is the IANA time zone every job's schedule is read in, unless LeaseJobs__NAME__TimeZone
	// says otherwise (default UTC). Occurrences are named in UTC; see tickSchedule for how the host fires.
	settingJobTimeZone = "LeaseTimerTimeZone"
	// settingCatchUp is every job's catch-up window (TimeSpan or Go duration; default 0, off): after an outage of
	// every region, the host's past-due tick runs the newest missed occurrence once, if no older than this.
	settingCatchUp = "LeaseTimerCatchUpWindow"
	// settingOverlap is every job's overlap policy: wait (the default) or skip.
	settingOverlap = "LeaseTimerOverlap"
)

// tickSchedule is what the host fires a job with a time zone on: every minute, in UTC (the host reads schedules
// in UTC on Flex Consumption, and WEBSITE_TIME_ZONE is refused). The handler runs the ticks that are occurrences
// of the job's schedule in its zone and answers the others at once, without reading Cosmos DB.
const tickSchedule = "0 * * * * *"

// The settings of the job LeaseTimer (the job of the handler before it served several; see LeaseTimer).
const (
	// settingSchedule is LeaseTimer's schedule: its function.json binds %LeaseTimerSchedule%.
	settingSchedule       = "LeaseTimerSchedule"
	settingLeaseKey       = "LeaseTimerLeaseKey"
	settingRetryAbandoned = "LeaseTimerRetryAbandoned"
)

// jobPrefix starts the name of every setting of one job: LeaseJobs__NAME__FIELD.
const jobPrefix = "LeaseJobs"

// The fields of LeaseJobs__NAME__FIELD, compared without case.
var jobFields = []string{"Schedule", "Command", "LeaseKey", "PreferredRegions", "FailoverDelay", "RetryAbandoned", "RunRetention", "TimeZone", "CatchUpWindow", "Overlap"}

// jobSetting names a job's setting.
func jobSetting(name, field string) string { return jobPrefix + "__" + name + "__" + field }

// defaultLeaseDuration is the lease's default here: it is held only while an occurrence's work runs, so it is
// short, and a region that dies mid-work frees it within that long.
const defaultLeaseDuration = 30 * time.Second

// environment is the app settings as the handler gets them: its environment variables. Names are compared as the
// host compares them, without regard to case (an exact match first).
type environment map[string]string

func environ(list []string) environment {
	e := environment{}
	for _, kv := range list {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			e[k] = v
		}
	}
	return e
}

func (e environment) get(k string) string {
	if v, ok := e[k]; ok {
		return v
	}
	for name, v := range e {
		if strings.EqualFold(name, k) {
			return v
		}
	}
	return ""
}

// jobEnv is the LeaseJobs__NAME__* settings of one job.
type jobEnv struct {
	name   string            // as the first of its settings writes it
	values map[string]string // by field, lower case
	names  map[string]string // the setting's own name, by field
}

func (j *jobEnv) get(field string) (value, name string, ok bool) {
	if j == nil {
		return "", "", false
	}
	f := strings.ToLower(field)
	value, ok = j.values[f]
	return value, j.names[f], ok
}

// jobEnvs groups the LeaseJobs__NAME__FIELD settings by job, names compared without case. A setting that starts
// with LeaseJobs__ but does not have that shape is returned in odd.
func (e environment) jobEnvs() (jobs map[string]*jobEnv, odd []string) {
	jobs = map[string]*jobEnv{}
	names := make([]string, 0, len(e))
	for k := range e {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		parts := strings.Split(k, "__")
		if len(parts) < 2 || !strings.EqualFold(parts[0], jobPrefix) {
			continue
		}
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			odd = append(odd, k)
			continue
		}
		key := strings.ToLower(parts[1])
		j := jobs[key]
		if j == nil {
			j = &jobEnv{name: parts[1], values: map[string]string{}, names: map[string]string{}}
			jobs[key] = j
		}
		j.values[strings.ToLower(parts[2])] = e[k]
		j.names[strings.ToLower(parts[2])] = k
	}
	return jobs, odd
}

// appSettings are what every job shares, checked once at start; a problem fails every invocation.
type appSettings struct {
	opts cosmoslease.Options
	// instance names this process (opts.OwnerID names the region's app, whichever process runs it).
	instance string
	// budget splits the host's functionTimeout between the work and finishing in time.
	budget budget
	// The defaults of every job: preferred regions (normalised; empty means the Cosmos DB account's order), the
	// failover delay, and the run-record retention (0: the default for the job's schedule).
	preferred []string
	delay     time.Duration
	retention time.Duration
	catchUp   time.Duration
	overlap   string
	// timeZone is the WEBSITE_TIME_ZONE problem, if any: every timer job fails with it.
	timeZone error
}

// settings are one job's: the app's settings with the job's own.
type settings struct {
	name  string // the job's
	opts  cosmoslease.Options
	key   string
	sched *ncrontab.Schedule
	// ticked is true when the host fires the job every minute (tickSchedule) and the handler picks the ticks that
	// are occurrences: a job with a time zone.
	ticked bool
	// retention is how long run records are kept after their occurrence (their ttl is set so).
	retention time.Duration
	instance  string
	budget    budget
	// preferred are the regions in order of preference, normalised (lower case, no spaces); empty means the
	// Cosmos DB account's order, read when the handler connects.
	preferred      []string
	delay          time.Duration
	delaySource    string // where the delay came from, for messages
	retryAbandoned bool
	// catchUp is the catch-up window (cosmoslease.RunOptions.CatchUpWindow); 0 is off.
	catchUp time.Duration
	// overlap is the overlap policy (cosmoslease.RunOptions.Overlap).
	overlap string
}

// loadApp reads the settings every job shares. Durations use TimeSpan text (00:00:30) or Go's (30s), as in the
// CLI's files.
func loadApp(e environment) (*appSettings, error) {
	raw := config.FromEnv(e.get)
	var err error
	a := &appSettings{delay: cosmoslease.DefaultFailoverDelay}
	cs, _ := raw.Get(config.KeyConnectionString)
	ep, _ := raw.Get(config.KeyAccountEndpoint)
	switch {
	case cs != "":
		if _, _, err := cosmosstore.ParseConnectionString(cs); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__ConnectionString: %v", err)
		}
		a.opts.ConnectionString = cs
	case ep != "":
		if ph := config.Placeholder(ep); ph != "" {
			return nil, fmt.Errorf("CosmosLeasing__AccountEndpoint is still the placeholder %s: set it to the account endpoint", ph)
		}
		if err := cosmosstore.CheckEndpoint(ep); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__AccountEndpoint: %v", err)
		}
		a.opts.Endpoint = ep // DefaultAzureCredential: the app's managed identity (AZURE_CLIENT_ID for a user-assigned one)
	default:
		return nil, fmt.Errorf("no Cosmos DB account configured: set the app setting CosmosLeasing__AccountEndpoint (managed identity) or CosmosLeasing__ConnectionString")
	}
	a.opts.Database, _ = raw.Get(config.KeyDatabaseName)
	a.opts.Container, _ = raw.Get(config.KeyContainerName)
	a.opts.PartitionKeyPath, _ = raw.Get(config.KeyPartitionKeyPath)
	if err := cosmoslease.CheckRunPartitionKeyPath(a.opts.PartitionKeyPath); err != nil {
		return nil, fmt.Errorf("CosmosLeasing__PartitionKeyPath: %v", err)
	}
	timeout, err := readFunctionTimeout(e.get, hostDirs())
	if err != nil {
		return nil, err
	}
	a.budget = newBudget(timeout)

	// The lease is held only while an occurrence's work runs, renewed meanwhile, and released when it ends; so
	// it is short, whatever the schedule.
	d := defaultLeaseDuration
	if v, _ := raw.Get(config.KeyDefaultLeaseDuration); v != "" {
		if d, err = config.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("CosmosLeasing__DefaultLeaseDuration: %v", err)
		}
	}
	if d < 6*time.Second || d > 10*time.Minute {
		return nil, fmt.Errorf("CosmosLeasing__DefaultLeaseDuration (%s) must be from 00:00:06 to 00:10:00: the lease is held while an occurrence's work runs and renewed meanwhile, and a region that dies mid-work holds it that long (default %s)",
			config.FormatTimeSpan(d), config.FormatTimeSpan(defaultLeaseDuration))
	}
	a.opts.LeaseDuration = d

	if v := e.get(settingFailoverDelay); v != "" {
		if a.delay, err = parseDelay(settingFailoverDelay, v); err != nil {
			return nil, err
		}
	}
	if v := e.get(settingRetention); v != "" {
		if a.retention, err = parseRetention(settingRetention, v); err != nil {
			return nil, err
		}
	}
	if a.overlap, err = parseOverlap(settingOverlap, e.get(settingOverlap)); err != nil {
		return nil, err
	}
	if v := e.get(settingCatchUp); v != "" {
		if a.catchUp, err = parseCatchUp(settingCatchUp, v); err != nil {
			return nil, err
		}
	}
	if a.preferred, err = parsePreferred(settingPreferred, e.get(settingPreferred)); err != nil {
		return nil, err
	}

	// The lease's owner is the region's app, the same for every process it ever starts; the process is only its
	// instance.
	region := strings.TrimSpace(orDefault(e.get(settingRegion), e.get("REGION_NAME")))
	if region == "" {
		return nil, fmt.Errorf("the region is unknown: Azure sets REGION_NAME; elsewhere (func start) set the app setting %s, such as eastus", settingRegion)
	}
	site := orDefault(e.get("WEBSITE_SITE_NAME"), hostname())
	a.opts.Region = region
	a.opts.OwnerID = site + "@" + cosmoslease.NormalizeRegion(region)
	a.instance = instanceID(e.get)
	a.opts.Hostname = a.instance
	a.timeZone = checkTimeZone(e.get(settingTimeZone))
	if v := e.get(settingJobTimeZone); strings.TrimSpace(v) != "" { // each job reads it (jobZone); a bad one fails all
		if _, err := ncrontab.LoadZone(v); err != nil {
			return nil, fmt.Errorf("%s %v", settingJobTimeZone, err)
		}
	}
	return a, nil
}

// checkTimeZone refuses WEBSITE_TIME_ZONE unless it names UTC. With it the host computes a timer's occurrences
// in that zone, while the handler names them in UTC (the same in every region), so ticks and run records would
// disagree, and around daylight-saving changes occurrences would be doubled or lost.
func checkTimeZone(tz string) error {
	switch strings.ToLower(strings.TrimSpace(tz)) {
	case "", "utc", "etc/utc", "coordinated universal time":
		return nil
	}
	return fmt.Errorf("the app setting %s is %q: the host then fires timers on that time zone's clock (and Flex Consumption does not support it), but the handler names each occurrence in UTC, the same in every region, so this job's ticks and its run records would disagree; remove %s, and to run jobs on a time zone's clock set %s (every job) or LeaseJobs__NAME__TimeZone to an IANA name such as Europe/Berlin",
		settingTimeZone, tz, settingTimeZone, settingJobTimeZone)
}

func parseDelay(source, v string) (time.Duration, error) {
	d, err := config.ParseDuration(v)
	if err != nil || d < time.Second || d > time.Hour {
		return 0, fmt.Errorf("%s %q is not a duration from 00:00:01 to 01:00:00, such as 00:00:10 (the default)", source, v)
	}
	return d, nil
}

func parseOverlap(source, v string) (string, error) {
	p, err := cosmoslease.ParseOverlap(v)
	if err != nil {
		return "", fmt.Errorf("%s %q is not an overlap policy: use skip (an occurrence due while the previous one runs is skipped, and recorded so) or wait (it runs when the previous one ends, while its time lasts; the default)", source, v)
	}
	return p, nil
}

func parseCatchUp(source, v string) (time.Duration, error) {
	d, err := config.ParseDuration(v)
	if err != nil || d < 0 || d > cosmoslease.MaxRunRetention {
		return 0, fmt.Errorf("%s %q is not a duration such as 01:00:00 (an hour) or 1.00:00:00 (a day); 00:00:00, the default, turns catch-up off", source, v)
	}
	return d, nil
}

func parseRetention(source, v string) (time.Duration, error) {
	d, err := config.ParseDuration(v)
	if err != nil || d > cosmoslease.MaxRunRetention {
		return 0, fmt.Errorf("%s %q is not a duration up to 68 years, such as 30.00:00:00 (30 days, the default)", source, v)
	}
	return d, checkRetention(source, d)
}

func checkRetention(source string, d time.Duration) error {
	if d > cosmoslease.MaxRunRetention {
		return fmt.Errorf("%s (%s) is longer than 68 years", source, d)
	}
	if d < cosmoslease.MinRunRetention {
		return fmt.Errorf("%s (%s) is too short: a run record must outlive every late tick and past-due replay of its occurrence, so keep records at least a day (and at least two of the schedule's longest gaps)",
			source, config.FormatTimeSpan(d))
	}
	return nil
}

func parsePreferred(source, v string) ([]string, error) {
	p, err := cosmoslease.ParseRegions(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", source, strings.TrimPrefix(err.Error(), cosmoslease.ErrInvalid.Error()+": "))
	}
	return p, nil
}

func parseBool(source, v string) (bool, error) {
	b, err := config.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s %q is not true or false", source, v)
	}
	return b, nil
}

// job resolves one job's settings: its LeaseJobs__NAME__* settings first, then what its code says, then the
// app's defaults. The job's schedule is the one the host fires on: its function.json's literal, or the app
// setting that its function.json names.
func (a *appSettings) job(j Job, e environment, je *jobEnv) (*settings, error) {
	s := &settings{name: j.Name, opts: a.opts, instance: a.instance, budget: a.budget, preferred: a.preferred,
		delay: a.delay, delaySource: settingFailoverDelay}
	var err error

	// The schedule.
	if v, name, ok := je.get("Schedule"); ok && j.Schedule != "" && !strings.HasPrefix(j.Schedule, "%") {
		return nil, fmt.Errorf("%s is set (%q), but job %s's schedule is fixed in its code (%q), and the host fires on that one: remove the setting, or leave Job.Schedule empty so that the setting rules",
			name, v, j.Name, j.Schedule)
	}
	setting, expr := scheduleSetting(j), j.Schedule
	if v, name, ok := je.get("Schedule"); ok && setting != "" && !strings.EqualFold(name, setting) {
		return nil, fmt.Errorf("%s is set (%q), but job %s's schedule is the app setting %s (its function.json binds %%%s%%), which the host fires on: set that one instead, and remove %s",
			name, v, j.Name, setting, bindingName(setting), name)
	}
	if setting != "" {
		expr = e.get(setting)
		if strings.TrimSpace(expr) == "" {
			return nil, fmt.Errorf("the app setting %s is not set: the host does not load %s without it (its function.json binds %%%s%%); set it to an NCRONTAB expression such as 0 */5 * * * *",
				setting, j.Name, bindingName(setting))
		}
	}
	zone, zoneSource, err := jobZone(e, je, j)
	if err != nil {
		return nil, err
	}
	if s.sched, err = ncrontab.ParseIn(expr, zone); err != nil {
		if setting == "" {
			setting = "job " + j.Name + "'s Schedule"
		}
		return nil, fmt.Errorf("%s %v", setting, err)
	}
	if a.timeZone != nil {
		return nil, a.timeZone
	}
	if s.ticked = s.sched.Location() != time.UTC; s.ticked && !s.sched.WholeMinutes() {
		return nil, fmt.Errorf("job %s's schedule %q fires at seconds other than 0, but a job with a time zone (%s %s) is fired by the host once a minute: use whole minutes (five fields, or 0 for the second), or UTC",
			j.Name, s.sched.Expr(), zoneSource, s.sched.Location())
	}
	if err := checkTicks(j.Name, s.ticked, zoneSource, zone); err != nil {
		return nil, err
	}

	// The lease key: the job's name unless something says otherwise.
	s.key = j.Name
	keySource := "job " + j.Name + "'s name (its default lease key)"
	if j.LeaseKey != "" {
		s.key, keySource = j.LeaseKey, "job "+j.Name+"'s LeaseKey"
	}
	if j.legacy {
		s.key, keySource = config.TimerLeaseKey, settingLeaseKey+" (default)"
		if v := e.get(settingLeaseKey); v != "" {
			s.key, keySource = v, settingLeaseKey
		}
	}
	if v, name, ok := je.get("LeaseKey"); ok && v != "" {
		s.key, keySource = v, name
	}
	if _, err := leasedoc.ID(s.key); err != nil {
		return nil, fmt.Errorf("%s: %v", keySource, err)
	}

	// The preference, the failover delay, the retention and the retry: the job's settings, its code, the app's.
	if len(j.PreferredRegions) > 0 {
		if s.preferred, err = parsePreferred("job "+j.Name+"'s PreferredRegions", strings.Join(j.PreferredRegions, ",")); err != nil {
			return nil, err
		}
	}
	if v, name, ok := je.get("PreferredRegions"); ok {
		if s.preferred, err = parsePreferred(name, v); err != nil {
			return nil, err
		}
	}
	if j.FailoverDelay != 0 {
		if j.FailoverDelay < time.Second || j.FailoverDelay > time.Hour {
			return nil, fmt.Errorf("job %s's FailoverDelay (%s) is not from 1s to 1h", j.Name, j.FailoverDelay)
		}
		s.delay, s.delaySource = j.FailoverDelay, "job "+j.Name+"'s FailoverDelay"
	}
	if v, name, ok := je.get("FailoverDelay"); ok {
		if s.delay, err = parseDelay(name, v); err != nil {
			return nil, err
		}
		s.delaySource = name
	}
	retention, retentionSource := a.retention, settingRetention
	if j.Retention != 0 {
		retention, retentionSource = j.Retention, "job "+j.Name+"'s Retention"
		if err := checkRetention(retentionSource, retention); err != nil {
			return nil, err
		}
	}
	if v, name, ok := je.get("RunRetention"); ok {
		if retention, err = parseRetention(name, v); err != nil {
			return nil, err
		}
		retentionSource = name
	}
	// Run records must outlive every late tick and past-due replay of their occurrence, or it could run twice.
	least := max(cosmoslease.MinRunRetention, 2*s.sched.Longest())
	switch {
	case retention == 0:
		s.retention = max(cosmoslease.DefaultRunRetention, least)
	case retention < least:
		return nil, fmt.Errorf("%s (%s) is too short: a run record must outlive every late tick and past-due replay of its occurrence, so keep records at least a day and at least two of the schedule's longest gaps (%s); use at least %s",
			retentionSource, config.FormatTimeSpan(retention), config.FormatTimeSpan(s.sched.Longest()), config.FormatTimeSpan(least))
	default:
		s.retention = retention
	}
	// Catch-up: the job's setting, its code, the app's; within the retention (older occurrences are never run).
	catchUpSource := settingCatchUp
	s.catchUp = a.catchUp
	if j.CatchUpWindow != 0 {
		s.catchUp, catchUpSource = j.CatchUpWindow, "job "+j.Name+"'s CatchUpWindow"
		if j.CatchUpWindow < 0 {
			return nil, fmt.Errorf("%s (%s) is negative: use 0 (off) or a window such as an hour", catchUpSource, j.CatchUpWindow)
		}
	}
	if v, name, ok := je.get("CatchUpWindow"); ok && strings.TrimSpace(v) != "" {
		if s.catchUp, err = parseCatchUp(name, v); err != nil {
			return nil, err
		}
		catchUpSource = name
	}
	if s.catchUp > s.retention {
		return nil, fmt.Errorf("%s (%s) is longer than the run-record retention (%s): an occurrence older than the retention is never run (its record may have expired); use at most %s",
			catchUpSource, config.FormatTimeSpan(s.catchUp), config.FormatTimeSpan(s.retention), config.FormatTimeSpan(s.retention))
	}
	// The overlap policy: the job's setting, its code, the app's.
	s.overlap = a.overlap
	if j.Overlap != "" {
		if s.overlap, err = parseOverlap("job "+j.Name+"'s Overlap", j.Overlap); err != nil {
			return nil, err
		}
	}
	if v, name, ok := je.get("Overlap"); ok && strings.TrimSpace(v) != "" {
		if s.overlap, err = parseOverlap(name, v); err != nil {
			return nil, err
		}
	}
	s.retryAbandoned = j.RetryAbandoned
	if j.legacy {
		if v := strings.TrimSpace(e.get(settingRetryAbandoned)); v != "" {
			if s.retryAbandoned, err = parseBool(settingRetryAbandoned, v); err != nil {
				return nil, err
			}
		}
	}
	if v, name, ok := je.get("RetryAbandoned"); ok && strings.TrimSpace(v) != "" {
		if s.retryAbandoned, err = parseBool(name, v); err != nil {
			return nil, err
		}
	}

	// The waits must fit the invocation, and the host's next tick.
	if b := s.budget; b.timeout > 0 && time.Duration(max(len(s.preferred), 1))*s.delay >= b.work/2 {
		return nil, fmt.Errorf("%s (%s) is too long for functionTimeout (%s): the last of %d regions would wait %s before contending; use a shorter delay",
			s.delaySource, config.FormatTimeSpan(s.delay), config.FormatTimeSpan(b.timeout), max(len(s.preferred), 1),
			time.Duration(max(len(s.preferred), 1))*s.delay)
	}
	if len(s.preferred) > 0 {
		if _, ranks := s.rank(nil); ranks > 0 {
			if err := s.checkGap(ranks); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// checkGap refuses a failover delay under which the last of ranks regions would still wait for an occurrence
// when the next one is due. The host fires a timer function's next tick only once the current invocation has
// returned, so a region waiting out (ranks − 1) × delay would miss the ticks in between: those occurrences
// would run nowhere while it waits.
func (s *settings) checkGap(ranks int) error {
	if ranks < 2 {
		return nil
	}
	wait, gap := time.Duration(ranks-1)*s.delay, s.sched.Shortest()
	if wait < gap {
		return nil
	}
	largest := ((gap - 1) / time.Duration(ranks-1)).Truncate(time.Second)
	allowed := fmt.Sprintf("the largest allowed failover delay is %s", config.FormatTimeSpan(largest))
	if largest < time.Second {
		allowed = "no failover delay of 1 s or more fits"
	}
	return fmt.Errorf("job %s: the schedule's shortest gap is %s, but with %d regions and a failover delay of %s (%s) the last region waits %s before it contends, and the host fires no tick while an invocation waits, so occurrences would run nowhere; %s with %d regions: lower %s, list fewer regions, or choose a schedule with longer gaps",
		s.name, config.FormatTimeSpan(gap), ranks, config.FormatTimeSpan(s.delay), s.delaySource, config.FormatTimeSpan(wait), allowed, ranks, s.delaySource)
}

// scheduleSetting is the app setting that holds a job's schedule ("" when its code fixes it).
func scheduleSetting(j Job) string {
	switch {
	case strings.HasPrefix(j.Schedule, "%"):
		return strings.ReplaceAll(strings.Trim(j.Schedule, "%"), ":", "__")
	case j.Schedule != "":
		return ""
	case j.legacy:
		return settingSchedule
	}
	return jobSetting(j.Name, "Schedule")
}

// bindingName is how function.json names an app setting in %…%. The host resolves it through .NET
// configuration, which holds an environment variable A__B under the key A:B and cannot find it as A__B
// (Azure/azure-functions-host#10246): so a setting whose name holds "__" is named with ":" instead.
func bindingName(setting string) string { return strings.ReplaceAll(setting, "__", ":") }

// rank is this region's place in the preference order (the job's, or else the account's regions), and the
// number of ranks in use.
func (s *settings) rank(account []string) (rank, n int) {
	return cosmoslease.Rank(s.opts.Region, s.preferred, account)
}

// instanceID names this process's instance of the app as the host does on Linux Consumption and Flex
// (WEBSITE_POD_NAME, then CONTAINER_NAME), then as App Service does (WEBSITE_INSTANCE_ID), then by hostname,
// which containers can share.
func instanceID(getenv func(string) string) string {
	for _, k := range []string{"WEBSITE_POD_NAME", "CONTAINER_NAME", "WEBSITE_INSTANCE_ID"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return hostname()
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown-host"
	}
	return h
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
