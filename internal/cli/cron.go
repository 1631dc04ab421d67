package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/internal/supervise"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// cronLeaseDuration is cron's lease unless --duration or DefaultLeaseDuration says otherwise: it is held only
// while an occurrence's command runs, so it is short, and a machine that dies mid-run frees it within that long.
const cronLeaseDuration = 30 * time.Second

func (a *App) cronCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "cron",
		Usage: "run a command once per schedule occurrence across every machine that runs the same line, in the most preferred region alive",
		UsageText: "cosmoslease cron --schedule EXPR --region R [--lease KEY] [--preferred-regions a,b,c] [--failover-delay D] [--metrics-addr HOST:PORT] -- COMMAND [ARGS…]\n\n" +
			"   cosmoslease cron --schedule '0 */5 * * * *' --region eastus --preferred-regions eastus,westeurope -- ./reconcile.sh",
		Description: "Each occurrence is its own election (the same as the Functions handler's): the region ranked r (0 first in\n" +
			"--preferred-regions, or the Cosmos DB account's order) contends r × --failover-delay after the occurrence, and\n" +
			"only watches the occurrence's run record before then. The command runs with COSMOSLEASE_OCCURRENCE (RFC 3339,\n" +
			"UTC), COSMOSLEASE_EPOCH, COSMOSLEASE_REGION, COSMOSLEASE_LEASE and COSMOSLEASE_INSTANCE in its environment; its\n" +
			"output goes to stderr, and its exit status into the run record. If the lease is lost it gets SIGTERM, then\n" +
			"SIGKILL after --grace. cron runs until interrupted (exit 130), releasing the lease of a run in progress.\n" +
			"Schedules are NCRONTAB, as the Functions timer reads them: {second} {minute} {hour} {day} {month} {day-of-week}\n" +
			"(or five fields without seconds), UTC unless --time-zone names an IANA zone: then they are that zone's wall-clock\n" +
			"times, named in UTC, with Vixie cron's daylight-saving rules (docs/scheduled-work.md).",
		Flags: append(commonFlags(),
			&ucli.StringFlag{Name: "schedule", Usage: "NCRONTAB `EXPR`, such as '0 */5 * * * *' (required)", EnvVars: []string{"COSMOSLEASE_SCHEDULE"}},
			&ucli.StringFlag{Name: "time-zone", Usage: "read the schedule in IANA time zone `ZONE`, such as Europe/Berlin (default UTC); every machine must give the same", EnvVars: []string{"COSMOSLEASE_TIME_ZONE"}},
			&ucli.StringFlag{Name: "region", Usage: "this machine's `REGION`, such as eastus (default: $REGION_NAME; required)", EnvVars: []string{"COSMOSLEASE_REGION"}},
			&ucli.StringFlag{Name: "instance", Usage: "this machine's `ID` in run records (default: the hostname)", EnvVars: []string{"COSMOSLEASE_INSTANCE"}},
			&ucli.StringFlag{Name: "lease", Value: "cron", Usage: "lease `KEY`: every machine running the same job uses the same one", EnvVars: []string{"COSMOSLEASE_LEASE"}},
			&ucli.StringFlag{Name: "preferred-regions", Usage: "regions `a,b,c`, most preferred first (default: the Cosmos DB account's order); a region not listed ranks last", EnvVars: []string{"COSMOSLEASE_PREFERRED_REGIONS"}},
			&ucli.StringFlag{Name: "failover-delay", Value: "10s", Usage: "how much later each rank contends: `D`"},
			&ucli.StringFlag{Name: "duration", Usage: "lease duration `D` (CosmosLeasing__DefaultLeaseDuration; default 30s): a machine that dies mid-run holds the lease that long"},
			&ucli.StringFlag{Name: "grace", Value: "10s", Usage: "after SIGTERM, the command has `D` to exit before SIGKILL"},
			&ucli.StringFlag{Name: "retention", Value: "30d", Usage: "keep run records for `D` (at least a day and two of the schedule's longest gaps; 30d, 720h or 30.00:00:00)"},
			&ucli.BoolFlag{Name: "retry-abandoned", Usage: "run an occurrence whose machine died mid-run once more, at least once instead of at most once"},
			&ucli.StringFlag{Name: "catch-up-window", Usage: "after an outage of every region, run the newest missed occurrence once, late (marked caught up), if it is no older than `D` (default 0: off)"},
			&ucli.StringFlag{Name: "overlap", Value: cosmoslease.OverlapWait, Usage: "an occurrence due while the previous one runs: `wait` for it to end (while its time lasts) or skip it"},
			&ucli.BoolFlag{Name: "json", Usage: "print one JSON event per line on stdout"},
			&ucli.StringFlag{Name: "trigger-poll", Value: "5s", Usage: "read the lease document every `D` between occurrences for a manual run (cosmoslease trigger); one point read each, about 1 RU per KB; 0 never looks"},
			metricsAddrFlag(),
		),
		Action: a.cron,
	}
}

// cronJob is a checked cron command line.
type cronJob struct {
	sched     *ncrontab.Schedule
	key       string
	region    string
	instance  string
	preferred []string
	delay     time.Duration
	grace     time.Duration
	poll      time.Duration // --trigger-poll
	retention time.Duration
	catchUp   time.Duration
	overlap   string
	argv      []string
}

func (a *App) cronArgs(c *ucli.Context) (*cronJob, error) {
	j := &cronJob{argv: c.Args().Slice()}
	if len(j.argv) == 0 {
		return nil, usagef("cron needs the command to run after --, such as: cosmoslease cron --schedule '0 */5 * * * *' --region eastus -- ./job.sh")
	}
	// Checked now, not at the first occurrence, which may be a day away.
	if _, err := supervise.Check(j.argv, a.Dir, nil); err != nil {
		return nil, usagef("%v", err)
	}
	expr := c.String("schedule")
	if strings.TrimSpace(expr) == "" {
		return nil, usagef("cron needs --schedule EXPR (or COSMOSLEASE_SCHEDULE), an NCRONTAB expression such as '0 */5 * * * *'")
	}
	loc := time.UTC
	if z := c.String("time-zone"); c.IsSet("time-zone") {
		l, err := ncrontab.LoadZone(z)
		if err != nil {
			return nil, usagef("--time-zone %v", err)
		}
		loc = l
	}
	var err error
	if j.sched, err = ncrontab.ParseIn(expr, loc); err != nil {
		return nil, usagef("--schedule %v", err)
	}
	j.region = strings.TrimSpace(c.String("region"))
	if j.region == "" {
		j.region = strings.TrimSpace(a.Getenv("REGION_NAME"))
	}
	if j.region == "" {
		return nil, usagef("cron needs --region REGION (or COSMOSLEASE_REGION), the Azure region this machine runs in, such as eastus")
	}
	j.instance = c.String("instance")
	if j.instance == "" {
		if j.instance, err = os.Hostname(); err != nil || j.instance == "" {
			return nil, usagef("cron needs --instance ID: the hostname is unknown")
		}
	}
	j.key = c.String("lease")
	if _, err := leasedoc.ID(j.key); err != nil {
		return nil, usagef("--lease: %v", err)
	}
	if j.preferred, err = cosmoslease.ParseRegions(c.String("preferred-regions")); err != nil {
		return nil, usagef("--preferred-regions: %s", strings.TrimPrefix(err.Error(), cosmoslease.ErrInvalid.Error()+": "))
	}
	for name, into := range map[string]*time.Duration{"failover-delay": &j.delay, "grace": &j.grace} {
		d, err := durationFlag(c, name)
		if err != nil {
			return nil, err
		}
		if d <= 0 || d > time.Hour {
			return nil, usagef("--%s %s: use a duration from 1s to 1h", name, c.String(name))
		}
		*into = d
	}
	if j.poll, err = durationFlag(c, "trigger-poll"); err != nil {
		return nil, err
	}
	if j.poll < 0 || j.poll > 0 && (j.poll < 100*time.Millisecond || j.poll > time.Hour) {
		return nil, usagef("--trigger-poll %s: use a duration from 100ms to 1h, or 0 to never look for manual runs", c.String("trigger-poll"))
	}
	if j.retention, err = config.ParseDuration(days(c.String("retention"))); err != nil {
		return nil, usagef("--retention %q: %v", c.String("retention"), err)
	}
	if least := max(cosmoslease.MinRunRetention, 2*j.sched.Longest()); j.retention < least || j.retention > cosmoslease.MaxRunRetention {
		return nil, usagef("--retention %s: keep run records at least a day and two of the schedule's longest gaps (%s), so no late occurrence can run twice: use at least %s (%dd)",
			c.String("retention"), config.FormatTimeSpan(j.sched.Longest()), config.FormatTimeSpan(least), (least+24*time.Hour-1)/(24*time.Hour))
	}
	if w := c.String("catch-up-window"); w != "" {
		if j.catchUp, err = config.ParseDuration(days(w)); err != nil {
			return nil, usagef("--catch-up-window: %v", err)
		}
	}
	if j.overlap, err = cosmoslease.ParseOverlap(c.String("overlap")); err != nil {
		return nil, usagef("--overlap %q: use skip (an occurrence due while the previous one runs is skipped, and recorded so) or wait (it runs when the previous one ends, while its time lasts; the default)", c.String("overlap"))
	}
	if j.catchUp < 0 || j.catchUp > j.retention {
		return nil, usagef("--catch-up-window %s: use a duration from 0 (off) to the retention (%s): an occurrence older than its record's retention is never run", c.String("catch-up-window"), config.FormatTimeSpan(j.retention))
	}
	return j, nil
}

// days reads a number of days, "30d", as hours, which config.ParseDuration reads.
func days(s string) string {
	if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && strings.HasSuffix(s, "d") {
		return strconv.Itoa(n*24) + "h"
	}
	return s
}

func (a *App) cron(c *ucli.Context) error {
	j, err := a.cronArgs(c)
	if err != nil {
		return err
	}
	log, err := a.logger(c)
	if err != nil {
		return err
	}
	s, err := a.loadSettings(c)
	if err != nil {
		return err
	}
	d, err := durationFlag(c, "duration")
	if err != nil {
		return err
	}
	if d == 0 {
		d = s.leaseDuration
	}
	if d == 0 {
		d = cronLeaseDuration
	}
	// The owner is the machine: a restarted cron on it runs the next occurrence as any contender would.
	opts := cosmoslease.Options{OwnerID: j.instance, Region: j.region, Hostname: j.instance, Logger: log, LeaseDuration: d}
	if err := checkTimings(opts, false); err != nil {
		return err
	}
	tel, err := a.startTelemetry(c, log, &opts)
	if err != nil {
		return err
	}
	defer tel.stop()
	ctx := c.Context
	client, err := a.open(ctx, c, s, opts)
	if err != nil {
		return err
	}
	defer client.Close()
	defer tel.flush()
	if err := a.checkRegions(log, j.region, j.preferred, client.AccountRegions()); err != nil {
		return err
	}
	order := cosmoslease.Order(j.preferred, client.AccountRegions())
	rank, ranks := cosmoslease.Rank(j.region, j.preferred, client.AccountRegions())
	out := &cronReporter{w: a.Stdout, json: c.Bool("json"), job: j, metricsURL: tel.metricsURL()}
	out.started(rank, j.sched.Next(time.Now()))
	o := cosmoslease.RunOptions{Regions: order, FailoverDelay: j.delay, RetryAbandoned: c.Bool("retry-abandoned"), Retention: j.retention,
		Instance: j.instance, Schedule: j.sched.String(), MissedAfter: cosmoslease.ClaimWindow(ranks, j.delay, d), Grace: j.grace + 5*time.Second,
		TriggerPoll: j.poll}
	o.CatchUpWindow = j.catchUp
	o.Overlap = j.overlap
	// Each occurrence is contended for from its own time, beside earlier ones still waiting or running: the
	// election runs them in order, one at a time, and records the ones it passes over.
	err = client.RunSchedule(ctx, j.key, j.sched, o, func(ctx context.Context, run cosmoslease.Run) error {
		return a.execJob(ctx, j, run)
	}, func(res cosmoslease.RunResult, err error) {
		if ctx.Err() != nil && res.WorkStarted.IsZero() && res.Status != cosmoslease.RunSkipped {
			return // interrupted while it watched or waited: nothing ran here and nothing was recorded for it
		}
		out.occurrence(res, err)
		if res.StillRunning {
			log.Warn("the command did not exit after SIGKILL; no other occurrence starts in this process until it does", "occurrence", res.Occurrence)
		}
	})
	if ctx.Err() != nil {
		return errInterrupted
	}
	return err
}

// execJob runs the job for one occurrence, in a process group of its own (internal/supervise). When ctx ends
// (the lease is lost, or cron is interrupted) the whole group gets SIGTERM, then SIGKILL after the grace; if cron
// itself dies, the group dies with it. It returns only once the group is gone, so the run is recorded and the
// lease released only when nothing the command started still runs.
func (a *App) execJob(ctx context.Context, j *cronJob, run cosmoslease.Run) error {
	env := append(os.Environ(), run.Env()...)
	st := supervise.Run(ctx, supervise.Cmd{Argv: j.argv, Dir: a.Dir, Grace: j.grace, Stdout: a.Stderr, Stderr: a.Stderr, Env: env})
	if st.Code >= 0 {
		run.SetExitCode(st.Code)
	}
	if st.Leftovers {
		fmt.Fprintf(a.Stderr, "cosmoslease: %s exited leaving processes of its group running; they were stopped (SIGTERM, then SIGKILL after --grace)\n", j.argv[0])
	}
	var err error
	switch {
	case st.Err != nil:
		err = st.Err
	case ctx.Err() != nil:
		err = fmt.Errorf("stopped (%v): %s", context.Cause(ctx), st)
	case st.Code != 0:
		err = fmt.Errorf("%s: %s", j.argv[0], st)
	}
	if st.StillRunning {
		err = errors.Join(err, fmt.Errorf("processes of %s's group were still there %s after SIGKILL", j.argv[0], supervise.KillBound))
	}
	return err
}

// cronReporter prints one line (or JSON event) per occurrence on stdout.
type cronReporter struct {
	w          io.Writer
	json       bool
	job        *cronJob
	metricsURL string // where --metrics-addr serves, for the started event
}

func (r *cronReporter) started(rank int, next time.Time) {
	if r.json {
		ev := map[string]any{"event": "started", "time": time.Now().UTC(), "lease": r.job.key, "schedule": r.job.sched.Expr(),
			"region": r.job.region, "instance": r.job.instance, "rank": rank, "next": next.UTC()}
		if loc := r.job.sched.Location(); loc != time.UTC {
			ev["timeZone"] = loc.String()
		}
		if r.metricsURL != "" {
			ev["metricsUrl"] = r.metricsURL
		}
		writeJSONLine(r.w, ev)
		return
	}
	zone := ""
	if loc := r.job.sched.Location(); loc != time.UTC {
		zone = " (" + loc.String() + " time; occurrences named in UTC)"
	}
	fmt.Fprintf(r.w, "cron %q%s for lease %s in %s (rank %d, %s later per rank); next occurrence %s\n", r.job.sched.Expr(), zone, r.job.key,
		r.job.region, rank, r.job.delay, next.UTC().Format(time.RFC3339))
}

func (r *cronReporter) occurrence(res cosmoslease.RunResult, err error) {
	status, reason := res.Status, res.Reason
	if err != nil && reason == "" {
		reason = err.Error()
	}
	if r.json {
		ev := map[string]any{"event": "occurrence", "time": time.Now().UTC(), "lease": r.job.key, "occurrence": res.Occurrence,
			"status": status, "region": r.job.region, "instance": r.job.instance}
		if res.Epoch > 0 {
			ev["epoch"] = res.Epoch
		}
		if !res.WorkStarted.IsZero() {
			ev["failoverDelayMs"] = res.FailoverDelay.Milliseconds()
		}
		if res.Record.ExitCode != nil {
			ev["exitCode"] = *res.Record.ExitCode
		}
		if reason != "" {
			ev["reason"] = reason
		}
		if status == cosmoslease.RunSkipped && res.Record.Owner != "" {
			ev["claimedBy"] = res.Record.Owner
		}
		if res.Record.CaughtUp && status != cosmoslease.RunSkipped {
			ev["caughtUp"] = true
		}
		if res.Record.Manual {
			ev["manual"], ev["triggeredBy"], ev["record"] = true, res.Record.TriggeredBy, res.Record.ID
		}
		if res.Record.Cause != "" {
			ev["cause"] = res.Record.Cause
		}
		writeJSONLine(r.w, ev)
		return
	}
	line := res.Occurrence.UTC().Format(time.RFC3339) + "  " + status
	if res.Record.Manual {
		line = res.Occurrence.UTC().Format(time.RFC3339) + "  manual (triggered by " + res.Record.TriggeredBy + ")  " + status
	}
	if res.Record.CaughtUp && status != cosmoslease.RunSkipped {
		line += " (caught up)"
	}
	if res.Epoch > 0 && status != cosmoslease.RunSkipped {
		line += fmt.Sprintf("  epoch %d", res.Epoch)
	}
	if res.Record.ExitCode != nil && status != cosmoslease.RunSkipped {
		line += fmt.Sprintf("  exit %d", *res.Record.ExitCode)
	}
	if reason != "" {
		line += "  " + reason
	}
	fmt.Fprintln(r.w, line)
}

// checkRegions refuses a region name that is a typo of a region (against the account's regions and Azure's), which
// would otherwise rank last and so never run the work while a listed region lives; a name it does not know at all
// is used, with a warning.
func (a *App) checkRegions(log *slog.Logger, region string, preferred, account []string) error {
	check := func(flag, name string) error {
		warning, err := cosmoslease.CheckRegion(name, account)
		if err != nil {
			return usagef("%s: %s", flag, strings.TrimPrefix(err.Error(), cosmoslease.ErrInvalid.Error()+": "))
		}
		if warning != "" {
			log.Warn(flag + ": " + warning)
		}
		return nil
	}
	if err := check("--region", region); err != nil {
		return err
	}
	for _, r := range preferred {
		if err := check("--preferred-regions", r); err != nil {
			return err
		}
	}
	return nil
}
