package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/supervise"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// DefaultLease is the sample's lease key.
const DefaultLease = "critical-section-lock"

func (a *App) runCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "run",
		Usage: "run COMMAND while this instance holds the lease, others standing by; without a command, the built-in demo",
		UsageText: "cosmoslease run --instance ID [--region R] [--lease KEY] [--grace D] [--restart no|on-failure|always] [--json] -- COMMAND [ARGS…]\n" +
			"   cosmoslease run --instance ID [--region R] [--lease KEY] [--wait] [--hold-for D] [--fence-counter ID] [--metrics-addr HOST:PORT] [--json]",
		Description: "With a COMMAND, the instance that holds the lease runs it, in a process group of its own, with COSMOSLEASE_EPOCH,\n" +
			"COSMOSLEASE_LEASE, COSMOSLEASE_INSTANCE, COSMOSLEASE_REGION and COSMOSLEASE_METADATA_* (the lease's metadata) in its\n" +
			"environment; the others stand by and take over when the lease is released or expires. If the lease is lost the\n" +
			"group gets SIGTERM, then SIGKILL after --grace, and is gone before another instance may take the lease over: the\n" +
			"lease is held only until --duration − --grace − max(1s, --duration/10) after its last renewal, which must be longer\n" +
			"than --renew-interval (default: half of it). If run dies, the group dies with it. The command's output passes\n" +
			"through; run's own lines and --json events go to stderr.\n" +
			"Exit codes with a COMMAND: the command's own status when it exits (128+n when signal n ended it; 126 or 127 when\n" +
			"it cannot be executed), after releasing the lease; 1 error; 2 bad input (or a COMMAND that cannot be executed);\n" +
			"4 lease lost (the command was stopped); 130 interrupted (the signal is passed on to the command, which has\n" +
			"--grace to exit; the lease is then released and a standby takes over at once).\n" +
			"Without a COMMAND (the reference sample's demo): 0 work finished and lease released; 1 error; 2 bad input;\n" +
			"3 held by another instance; 4 lease lost while working, or fenced off by a later holder; 130 interrupted (after\n" +
			"releasing).\n" +
			"Durations take Go form (60s, 1m30s) or .NET TimeSpan form (00:01:00).",
		Flags: append(commonFlags(),
			&ucli.StringFlag{Name: "instance", Usage: "this instance's `ID`, written as ownerId (required)", EnvVars: []string{"COSMOSLEASE_INSTANCE"}},
			&ucli.StringFlag{Name: "region", Usage: "this instance's `REGION`, written to metadata.region (default: $REGION_NAME)", EnvVars: []string{"COSMOSLEASE_REGION"}},
			&ucli.StringFlag{Name: "lease", Value: DefaultLease, Usage: "lease `KEY`", EnvVars: []string{"COSMOSLEASE_LEASE"}},
			&ucli.StringFlag{Name: "duration", Usage: "lease duration `D` (CosmosLeasing__DefaultLeaseDuration, default 00:01:00)"},
			&ucli.StringFlag{Name: "renew-interval", Usage: "renew every `D` (CosmosLeasing__AutoRenewInterval, default 00:00:40)"},
			&ucli.StringFlag{Name: "work-interval", Value: "3s", Usage: "one work item every `D`"},
			&ucli.StringFlag{Name: "hold-for", Usage: "work for `D`, then release and exit 0 (default: until interrupted)"},
			&ucli.BoolFlag{Name: "wait", Usage: "stand by while another instance holds the lease, and take over when it releases or expires"},
			&ucli.BoolFlag{Name: "json", Usage: "print one JSON event per line instead of the text report (on stdout; on stderr with a COMMAND)"},
			&ucli.StringFlag{Name: "grace", Value: "10s", Usage: "with a COMMAND: after SIGTERM, its process group has `D` to exit before SIGKILL"},
			&ucli.StringFlag{Name: "restart", Value: "no", Usage: "with a COMMAND: `no`, on-failure or always: start it again (with backoff, 1s doubling to 30s) while the lease is held"},
			&ucli.StringSliceFlag{Name: "metadata", Usage: "add `KEY=VALUE` to the lease document's metadata (repeatable); a COMMAND gets it as COSMOSLEASE_METADATA_KEY"},
			metricsAddrFlag(),
			&ucli.StringFlag{Name: "fence-counter", Usage: "increment the counter item `ID` (in the lease container) through the lease's fence on each work item: Cosmos DB refuses the write of a superseded holder"},
			// The chaos run's stand-in for an application that calls Lease.Renew itself while automatic
			// renewal runs; not for users.
			&ucli.StringFlag{Name: "renew-concurrently", Hidden: true},
			// Stand-ins for the chaos run and the demo, not for users: skip-lease-check works on without checking
			// the lease and without noticing its loss, as a process paused between its check and its write would;
			// unfenced-counter writes the counter without the fence, so the chaos checker can be shown to catch
			// what the fence prevents.
			&ucli.BoolFlag{Name: "skip-lease-check", Hidden: true},
			&ucli.BoolFlag{Name: "unfenced-counter", Hidden: true},
		),
		Action: a.run,
	}
}

// duration reads a duration flag; zero when unset.
func durationFlag(c *ucli.Context, name string) (time.Duration, error) {
	if !c.IsSet(name) && c.String(name) == "" {
		return 0, nil
	}
	d, err := config.ParseDuration(c.String(name))
	if err != nil {
		return 0, usagef("--%s: %v", name, err)
	}
	return d, nil
}

func (a *App) run(c *ucli.Context) error {
	argv := c.Args().Slice()
	supervised := len(argv) > 0
	instance := c.String("instance")
	if instance == "" {
		return usagef("run needs --instance ID (or COSMOSLEASE_INSTANCE), such as --instance us-east-1")
	}
	region := c.String("region")
	if region == "" {
		region = a.Getenv("REGION_NAME")
	}
	key := c.String("lease")
	if _, err := leasedoc.ID(key); err != nil {
		return usagef("--lease: %v", err)
	}
	if supervised {
		for _, name := range []string{"wait", "hold-for", "work-interval", "fence-counter", "renew-concurrently", "skip-lease-check", "unfenced-counter"} {
			if c.IsSet(name) {
				return usagef("--%s is for the built-in demo; with a command, run supervises the command (and always stands by). Try: cosmoslease run --help", name)
			}
		}
		// Checked now, not when this instance wins the lease, which may be much later.
		if _, err := supervise.Check(argv, a.Dir, nil); err != nil {
			return usagef("%v", err)
		}
	} else {
		for _, name := range []string{"grace", "restart"} {
			if c.IsSet(name) {
				return usagef("--%s needs a command to run after --, such as: cosmoslease run --instance us-east-1 -- ./job.sh", name)
			}
		}
	}
	restart := c.String("restart")
	if restart != "no" && restart != "on-failure" && restart != "always" {
		return usagef("--restart %q: use no, on-failure or always", restart)
	}
	metadata, err := parseMetadata(c.StringSlice("metadata"))
	if err != nil {
		return err
	}
	durs := map[string]time.Duration{}
	for _, name := range []string{"duration", "renew-interval", "work-interval", "hold-for", "renew-concurrently", "grace"} {
		d, err := durationFlag(c, name)
		if err != nil {
			return err
		}
		durs[name] = d
	}
	if durs["work-interval"] <= 0 {
		return usagef("--work-interval must be more than zero")
	}
	counterID := c.String("fence-counter")
	if c.IsSet("fence-counter") {
		if err := checkCounterID(counterID); err != nil {
			return usagef("%v", err)
		}
	} else if c.Bool("unfenced-counter") {
		return usagef("--unfenced-counter needs --fence-counter ID")
	}
	log, err := a.logger(c)
	if err != nil {
		return err
	}
	s, err := a.loadSettings(c)
	if err != nil {
		return err
	}
	opts := cosmoslease.Options{OwnerID: instance, Region: region, Logger: log, Metadata: metadata,
		LeaseDuration: s.leaseDuration, RenewInterval: s.renewInterval, ManualRenew: !s.autoRenew}
	if d := durs["duration"]; d > 0 {
		opts.LeaseDuration = d
		if durs["renew-interval"] == 0 && s.renewInterval >= d {
			opts.RenewInterval = 0 // let the library derive one that fits the shorter lease
		}
	}
	if d := durs["renew-interval"]; d > 0 {
		opts.RenewInterval = d
	}
	if supervised {
		if !s.autoRenew {
			return usagef("AutoRenew is false in the settings: run -- COMMAND renews the lease for as long as the command runs; remove the setting or set it to true")
		}
		if err := fitGrace(&opts, durs["grace"]); err != nil {
			return err
		}
	} else if err := checkTimings(opts, opts.RenewInterval != 0); err != nil {
		return err
	} else if !s.autoRenew {
		log.Warn("AutoRenew is false: the lease is not renewed and ends after its duration")
	}

	reportTo, color := a.Stdout, a.color()
	if supervised {
		reportTo, color = a.Stderr, false // stdout is the command's
	}
	out := newReporter(reportTo, c.Bool("json"), color, instance, region, key)
	if supervised {
		out.command = argv
	}
	var current atomic.Pointer[cosmoslease.Lease]
	opts.OnOperation = func(op cosmoslease.Operation) {
		if op.Name == "renew" && op.Outcome == "ok" {
			if l := current.Load(); l != nil {
				out.renewed(l.State())
			}
		}
	}
	tel, err := a.startTelemetry(c, log, &opts)
	if err != nil {
		return err
	}
	defer tel.stop()
	out.metricsURL = tel.metricsURL()
	ctx := c.Context
	client, err := a.open(ctx, c, s, opts)
	if err != nil {
		return err
	}
	defer client.Close()
	defer tel.flush()
	warnSampleNamesakes(ctx, a.Stderr, log, client, []string{instance})
	out.started()

	lease, err := client.TryAcquire(ctx, key)
	var held *cosmoslease.HeldError
	if errors.As(err, &held) {
		out.held(held.Holder, c.Bool("wait") || supervised)
		if !c.Bool("wait") && !supervised {
			// The text report's box has said who holds it; --json's held event is data, so stderr says it too.
			return &exitError{code: ExitHeld, err: fmt.Errorf("%s", held.Error()), reported: !c.Bool("json")}
		}
		out.standingBy(held.Holder, client.Options().RetryPeriod)
		lease, err = client.Acquire(ctx, key)
	}
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	current.Store(lease)
	if supervised {
		return a.superviseUnder(ctx, lease, out, argv, durs["grace"], restart)
	}
	if every := durs["renew-concurrently"]; every > 0 {
		go renewConcurrently(lease, every)
	}
	w := worker{lease: lease, out: out, every: durs["work-interval"], holdFor: durs["hold-for"], log: log,
		checkLease: !c.Bool("skip-lease-check"), writeTimeout: 2 * client.Options().RequestTimeout}
	if counterID != "" {
		w.counter = newFenceCounter(client, lease, counterID, c.Bool("unfenced-counter"))
	}
	return a.work(ctx, w)
}

// renewConcurrently calls Renew every d, beside the automatic renewal, until the lease ends.
func renewConcurrently(lease *cosmoslease.Lease, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-lease.Context().Done():
			return
		case <-t.C:
			_ = lease.Renew(lease.Context())
		}
	}
}

// worker is what `run` does while it holds the lease.
type worker struct {
	lease          *cosmoslease.Lease
	out            *reporter
	every, holdFor time.Duration
	log            *slog.Logger
	// counter, when set, is incremented through the fence on each work item.
	counter      *fenceCounter
	writeTimeout time.Duration
	// checkLease is false only for the hidden --skip-lease-check.
	checkLease bool
}

// work runs work items under the lease until it is lost, a write is fenced off, the hold time ends, or the
// process is interrupted.
func (a *App) work(ctx context.Context, w worker) error {
	lease, out := w.lease, w.out
	out.acquired(lease.State(), lease.Previous())
	start := time.Now()
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	var hold <-chan time.Time
	if w.holdFor > 0 {
		t := time.NewTimer(w.holdFor)
		defer t.Stop()
		hold = t.C
	}
	lost := lease.Context().Done()
	release := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		err := lease.Release(rctx)
		out.released(lease.State(), err)
		return err
	}
	for item := 1; ; {
		select {
		case <-ctx.Done():
			_ = release()
			return errInterrupted
		case <-lost:
			if w.checkLease {
				return a.lost(lease, out)
			}
			lost = nil // --skip-lease-check: the loss goes unnoticed; only the fence can stop this process
		case <-hold:
			if err := release(); err != nil {
				return fmt.Errorf("work finished, but the release was not confirmed (the lease expires on its own): %w", err)
			}
			return nil
		case <-tick.C:
			// Check the lease before every work item: never start work on a lease we may have lost. The item's
			// time is read before the check, so its event says "started at t, with the lease valid after t",
			// even if the process is paused between the check and the print.
			at := time.Now()
			if w.checkLease && lease.Err() != nil {
				return a.lost(lease, out)
			}
			var counter *int64
			if w.counter != nil {
				// The write is bounded by its own timeout, not by the lease's context: once the item has started,
				// whether its write applies is the fence's decision, judged by Cosmos DB.
				wctx, cancel := context.WithTimeout(ctx, w.writeTimeout)
				value, err := w.counter.increment(wctx, item)
				cancel()
				var fenced *cosmoslease.FencedError
				switch {
				case errors.As(err, &fenced):
					out.fenced(lease.State(), item, fenced)
					return withCode(ExitLost, fmt.Errorf("stopped work: Cosmos DB refused the write of work item #%d: %v", item, err))
				case err != nil && !passing(err):
					_ = release()
					return fmt.Errorf("stopped work: the counter item cannot be written: %v", err)
				case err != nil:
					if ctx.Err() == nil {
						w.log.Warn("work item not done: the counter write failed; the next item tries again", "item", item, "error", err)
					}
					continue
				}
				counter = &value
			}
			out.work(lease.State(), item, at, at.Sub(start), counter)
			item++
		}
	}
}

func (a *App) lost(lease *cosmoslease.Lease, out *reporter) error {
	err := lease.Err()
	if err == nil {
		err = context.Cause(lease.Context())
	}
	out.lost(lease.State(), err)
	return withCode(ExitLost, fmt.Errorf("stopped work: %v", err))
}

// reporter writes the run's events: the sample's text report, or one JSON object per line.
type reporter struct {
	mu                      sync.Mutex
	w                       interface{ Write([]byte) (int, error) }
	json, color             bool
	instance, region, lease string
	metricsURL              string // where --metrics-addr serves, for the started event
	// command, when run supervises one, is its argv: the text report is then plain lines (on stderr).
	command []string
}

func newReporter(w interface{ Write([]byte) (int, error) }, json, color bool, instance, region, lease string) *reporter {
	return &reporter{w: w, json: json, color: color, instance: instance, region: region, lease: lease}
}

// event is one line of --json output. The first seven fields are always present.
type event struct {
	Event       string `json:"event"`
	Time        string `json:"time"`
	Instance    string `json:"instance"`
	Lease       string `json:"lease"`
	Epoch       int64  `json:"epoch"`
	LeaseID     string `json:"leaseId"`
	Owner       string `json:"owner"`
	Region      string `json:"region,omitempty"`
	OwnerRegion string `json:"ownerRegion,omitempty"`
	ETag        string `json:"etag,omitempty"`
	Renewals    *int64 `json:"renewals,omitempty"`
	Item        int    `json:"item,omitempty"`
	ElapsedMs   int64  `json:"elapsedMs,omitempty"`
	ExpiresInMs int64  `json:"expiresInMs,omitempty"`
	From        string `json:"from,omitempty"`
	FromEpoch   int64  `json:"fromEpoch,omitempty"`
	Reason      string `json:"reason,omitempty"`
	PID         int    `json:"pid,omitempty"`
	// MetricsURL is where the Prometheus metrics are served (--metrics-addr).
	MetricsURL string `json:"metricsUrl,omitempty"`
	// AcquiredAt is the holder's clock when it wrote the acquisition, just before sending it.
	AcquiredAt string `json:"acquiredAt,omitempty"`
	// Counter is the value a work item wrote to the --fence-counter item, through the fence.
	Counter *int64 `json:"counter,omitempty"`
	// FencedBy is the later epoch whose write to the counter fenced this holder off.
	FencedBy int64 `json:"fencedBy,omitempty"`
	// Command is the supervised command (command-started).
	Command []string `json:"command,omitempty"`
	// ExitCode is the command's exit status as a shell reports it (command-exited); Signal the signal that ended it.
	ExitCode *int   `json:"exitCode,omitempty"`
	Signal   string `json:"signal,omitempty"`
	// DelayMs is how long run waits before it starts the command again (restarting).
	DelayMs int64 `json:"delayMs,omitempty"`
}

// TimeFormat is RFC 3339 with nanoseconds, fixed width so lines sort by time.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func (r *reporter) emit(e event) {
	if e.Time == "" {
		e.Time = time.Now().UTC().Format(TimeFormat)
	}
	e.Instance, e.Lease = r.instance, r.lease
	if e.Region == "" {
		e.Region = r.region
	}
	writeJSONLine(r.w, e)
}

func (r *reporter) printf(format string, args ...any) {
	fmt.Fprintf(r.w, format, args...)
}

const rule = "================================================================================"

func (r *reporter) started() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "started", PID: os.Getpid(), MetricsURL: r.metricsURL})
		return
	}
	if r.command != nil {
		r.printf("cosmoslease: %s%s contends for lease %s, to run %s\n", r.instance, regionSuffix(r.region), r.lease, commandLine(r.command))
		return
	}
	r.printf("%s\nDISTRIBUTED LOCK DEMO - COSMOS DB\nInstance ID: %s\nRegion: %s\n%s\n\n", rule, r.instance, orDefault(r.region, "(none)"), rule)
}

func (r *reporter) box(color string, lines ...string) {
	const width = 56
	paint := func(s string) string {
		if r.color {
			return color + s + "\x1b[0m"
		}
		return s
	}
	r.printf("%s\n", paint("╔"+repeat("═", width)+"╗"))
	for _, l := range lines {
		r.printf("%s\n", paint("║  "+pad(l, width-2)+"║"))
	}
	r.printf("%s\n\n", paint("╚"+repeat("═", width)+"╝"))
}

func (r *reporter) acquired(s cosmoslease.State, prev *cosmoslease.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		if prev != nil && prev.Owner != "" {
			reason := "expired"
			if prev.Released {
				reason = "released"
			}
			r.emit(event{Event: "takeover", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, From: prev.Owner,
				FromEpoch: prev.Epoch, OwnerRegion: prev.Region, Reason: reason})
		}
		r.emit(event{Event: "acquired", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, ETag: s.ETag, Renewals: &s.Renewals,
			AcquiredAt: s.AcquiredAt.UTC().Format(TimeFormat)})
		return
	}
	if prev != nil && prev.Owner != "" {
		how := "its lease expired"
		if prev.Released {
			how = "it released the lease"
		}
		if r.command != nil {
			r.printf("cosmoslease: took over lease %s from %s%s at epoch %d: %s\n", r.lease, prev.Owner, regionSuffix(prev.Region), s.Epoch, how)
			return
		}
		r.printf("%s Took over from %s%s at epoch %d: %s.\n\n", time.Now().Format("15:04:05"), prev.Owner, regionSuffix(prev.Region), s.Epoch, how)
	}
	if r.command != nil {
		r.printf("cosmoslease: %s holds lease %s at epoch %d\n", r.instance, r.lease, s.Epoch)
		return
	}
	r.box("\x1b[32m", "✓ LOCK ACQUIRED SUCCESSFULLY", "This region is now the ACTIVE processor")
	r.printf("Lock Details:\n  • Lease ID: %s\n  • Instance: %s\n  • Region: %s\n  • ETag: %s\n  • Epoch (fencing token): %d\n\n",
		s.LeaseID, r.instance, orDefault(r.region, "(none)"), s.ETag, s.Epoch)
	r.printf("▶ Starting critical work execution...\n  (Auto-renewal is active - lock will be maintained)\n\n")
}

func (r *reporter) held(h cosmoslease.State, waiting bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "held", Epoch: h.Epoch, LeaseID: h.LeaseID, Owner: h.Owner, OwnerRegion: h.Region, ExpiresInMs: h.ExpiresIn.Milliseconds()})
		return
	}
	if r.command != nil {
		return // standingBy says it
	}
	r.box("\x1b[31m", "LOCK ACQUISITION FAILED", "Another region is currently holding the lock")
	if h.Sample {
		r.printf("Current holder: %s%s, an instance of the reference sample (its document has no epoch)\n", h.Owner, regionSuffix(h.Region))
	} else {
		r.printf("Current holder: %s%s, epoch %d\n", h.Owner, regionSuffix(h.Region), h.Epoch)
	}
	if h.ExpiresIn > 0 {
		r.printf("It holds lease %q for at most %s more unless it renews.\n", h.Key, h.ExpiresIn.Round(time.Second))
	}
	if !waiting {
		r.printf("This instance cannot execute critical work at this time.\nThe lock is held by another instance in a different region.\nExiting gracefully...\n")
	}
}

func (r *reporter) standingBy(h cosmoslease.State, every time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		return
	}
	if r.command != nil {
		r.printf("cosmoslease: lease %s is held by %s%s at epoch %d; standing by to take over when it is released or expires (at most %s from now)\n",
			r.lease, h.Owner, regionSuffix(h.Region), h.Epoch, h.ExpiresIn.Round(time.Second))
		return
	}
	r.printf("Standing by: will take over when %s releases the lock or its lease expires (at most %s from now; checking every %s).\n\n",
		h.Owner, h.ExpiresIn.Round(time.Second), every.Round(time.Millisecond))
}

func (r *reporter) renewed(s cosmoslease.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "renewed", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, ETag: s.ETag, Renewals: &s.Renewals})
	}
}

func (r *reporter) work(s cosmoslease.State, item int, at time.Time, elapsed time.Duration, counter *int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "work", Time: at.UTC().Format(TimeFormat), Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, Item: item,
			ElapsedMs: elapsed.Milliseconds(), Renewals: &s.Renewals, Counter: counter})
		return
	}
	secs := int(elapsed.Round(time.Second) / time.Second)
	suffix := ""
	if counter != nil {
		suffix = fmt.Sprintf(" | Counter: %d (epoch %d)", *counter, s.Epoch)
	}
	r.printf("[%s] Processing work item #%d | Elapsed: %02d:%02d | Renewals: %d%s\n", r.instance, item, secs/60, secs%60, s.Renewals, suffix)
}

func (r *reporter) fenced(s cosmoslease.State, item int, why *cosmoslease.FencedError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "fenced", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, Item: item, FencedBy: why.By, Reason: why.Error()})
		return
	}
	r.printf("\n")
	r.box("\x1b[31m", "✗ FENCED OFF - Cosmos DB refused the write", "A later holder has written; this one stops")
	r.printf("Work item #%d was not applied: %v\n", item, why)
}

func (r *reporter) lost(s cosmoslease.State, why error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "lost", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, Reason: why.Error()})
		return
	}
	if r.command != nil {
		r.printf("cosmoslease: lease %s lost at epoch %d (%v); stopping %s\n", r.lease, s.Epoch, why, r.command[0])
		return
	}
	r.printf("\n")
	r.box("\x1b[31m", "✗ LOCK LOST - work stopped", "Another instance may now be the ACTIVE processor")
	r.printf("Reason: %v\n", why)
}

func (r *reporter) released(s cosmoslease.State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		e := event{Event: "released", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner}
		if err != nil {
			e.Reason = "not confirmed: " + err.Error()
		}
		r.emit(e)
		return
	}
	if r.command != nil {
		if err != nil {
			r.printf("cosmoslease: release of lease %s not confirmed (%v); it expires on its own\n", r.lease, err)
		} else {
			r.printf("cosmoslease: lease %s released at epoch %d\n", r.lease, s.Epoch)
		}
		return
	}
	if err != nil {
		r.printf("\nRelease not confirmed (%v); the lease expires on its own.\n", err)
		return
	}
	r.printf("\n✓ Lock released (epoch %d kept for the next holder).\n", s.Epoch)
}

func regionSuffix(region string) string {
	if region == "" {
		return ""
	}
	return " (" + region + " region)"
}

func repeat(s string, n int) string {
	out := make([]byte, 0, n*len(s))
	for range n {
		out = append(out, s...)
	}
	return string(out)
}

// pad fills s with spaces to n runes.
func pad(s string, n int) string {
	if k := len([]rune(s)); k < n {
		return s + repeat(" ", n-k)
	}
	return s
}
