package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// The operator controls of a scheduled job: pause, resume, trigger (pkg/cosmoslease's control.go).

// Exit codes of trigger --wait.
const (
	// ExitRunFailed: the manual run ended, and not completed (failed, lost, timed-out, abandoned).
	ExitRunFailed = 5
	// ExitWaitTimeout: --timeout passed before the manual run ended (as GNU timeout's 124).
	ExitWaitTimeout = 124
)

func controlFlags(extra ...ucli.Flag) []ucli.Flag {
	return append(append(commonFlags(),
		&ucli.StringFlag{Name: "lease", Usage: "the job's lease `KEY` (cron's --lease, default cron; the handler's job name or LeaseKey) (required)", EnvVars: []string{"COSMOSLEASE_LEASE"}},
		&ucli.StringFlag{Name: "by", Usage: "who does this, recorded with it (default: $USER@hostname)"},
		&ucli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
	), extra...)
}

func (a *App) pauseCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "pause",
		Usage:     "pause a scheduled job: every occurrence is recorded skipped (paused) in every region until resume; a run in progress finishes unless --stop",
		UsageText: "cosmoslease pause --lease KEY [--reason TEXT] [--stop]",
		Description: "Writes the pause into the job's lease document (one read and one conditional write), where every region and\n" +
			"cron machine sees it at the next occurrence. Each occurrence is then decided as usual and recorded skipped with\n" +
			"cause paused and your reason; none is counted missed. A run already in progress finishes; --stop stops it: its\n" +
			"holder loses the lease at its next renewal, its command is told to stop as on a lease loss, and the run is\n" +
			"recorded lost. cosmoslease resume ends the pause; cosmoslease trigger still runs the job once while paused.",
		Flags: controlFlags(
			&ucli.StringFlag{Name: "reason", Usage: "why, recorded with the pause and in every occurrence skipped: `TEXT`"},
			&ucli.BoolFlag{Name: "stop", Usage: "also stop the run in progress (its lease is lost, its process told to stop)"},
		),
		Action: a.pause,
	}
}

func (a *App) resumeCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "resume",
		Usage:     "resume a paused job: the next occurrences run again",
		UsageText: "cosmoslease resume --lease KEY",
		Flags:     controlFlags(),
		Action:    a.resume,
	}
}

func (a *App) triggerCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "trigger",
		Usage:     "run a scheduled job once, now, in the most preferred live region, through the same election as an occurrence",
		UsageText: "cosmoslease trigger --lease KEY [--wait [--timeout D]]\n   cosmoslease trigger --lease KEY --cancel",
		Description: "Writes a trigger into the job's lease document. The contenders that watch it (cron every --trigger-poll, 5 s\n" +
			"by default; the Functions handler at its LeaseTrigger tick, every minute) elect one to run it, most preferred\n" +
			"live region first: once, never beside another run, at a new epoch. The run record (id run-KEY-manual-ID) is\n" +
			"marked manual with who asked and when. It runs while the job is paused too.\n" +
			"With --wait it returns when the run ends and prints its status: exit 0 when it completed, 5 when it ended\n" +
			"otherwise (failed, lost, timed-out, abandoned), 124 when --timeout passed first (the trigger stays: the run\n" +
			"may still come). --cancel withdraws a manual run no contender has claimed yet.",
		Flags: controlFlags(
			&ucli.BoolFlag{Name: "wait", Usage: "wait for the run to end and exit with its status"},
			&ucli.BoolFlag{Name: "cancel", Usage: "withdraw the manual run waiting to be claimed instead"},
			&ucli.StringFlag{Name: "timeout", Value: "10m", Usage: "with --wait, give up after `D`"},
		),
		Action: a.trigger,
	}
}

// controlClient checks the common flags and opens a client for a control command.
func (a *App) controlClient(c *ucli.Context, name string) (*cosmoslease.Client, string, string, error) {
	if c.NArg() > 0 {
		return nil, "", "", usagef("%s takes no arguments, got %q; name the job with --lease KEY", name, c.Args().First())
	}
	key := c.String("lease")
	if key == "" {
		return nil, "", "", usagef("%s needs --lease KEY, the job's lease key (cron's --lease; the handler's job name): cosmoslease inspect --runs lists them", name)
	}
	if _, err := leasedoc.ID(key); err != nil {
		return nil, "", "", usagef("--lease: %v", err)
	}
	by := strings.TrimSpace(c.String("by"))
	if by == "" {
		by = a.Getenv("USER")
		if h, err := os.Hostname(); err == nil && h != "" {
			if by == "" {
				by = h
			} else {
				by += "@" + h
			}
		}
	}
	log, err := a.logger(c)
	if err != nil {
		return nil, "", "", err
	}
	s, err := a.loadSettings(c)
	if err != nil {
		return nil, "", "", err
	}
	client, err := a.open(c.Context, c, s, cosmoslease.Options{OwnerID: "cosmoslease-" + name, Logger: log})
	if err != nil {
		return nil, "", "", err
	}
	return client, key, by, nil
}

// controlError gives a control's refusal its exit code: bad input (2) for an unknown job or a state that makes the
// request wrong, 1 for the rest.
func controlError(c *ucli.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case c.Context.Err() != nil:
		return errInterrupted
	case errors.Is(err, cosmoslease.ErrNoSuchJob), errors.Is(err, cosmoslease.ErrAlreadyPaused), errors.Is(err, cosmoslease.ErrNotPaused),
		errors.Is(err, cosmoslease.ErrTriggerPending), errors.Is(err, cosmoslease.ErrNoTrigger):
		return withCode(ExitUsage, err)
	}
	return err
}

func (a *App) pause(c *ucli.Context) error {
	client, key, by, err := a.controlClient(c, "pause")
	if err != nil {
		return err
	}
	defer client.Close()
	res, err := client.Pause(c.Context, key, cosmoslease.PauseOptions{By: by, Reason: c.String("reason"), Stop: c.Bool("stop")})
	if err != nil {
		return controlError(c, err)
	}
	if c.Bool("json") {
		writeJSONLine(a.Stdout, map[string]any{"lease": key, "paused": res.Pause, "running": res.Running, "stopped": res.Stopped})
		return nil
	}
	p := res.Pause
	fmt.Fprintf(a.Stdout, "Lease %s is paused (by %s at %s%s): every occurrence is recorded skipped (paused) until 'cosmoslease resume --lease %s'.\n",
		key, p.By, p.At.Format(time.RFC3339), reasonText(p.Reason), key)
	switch r := res.Running; {
	case r == nil:
		fmt.Fprintln(a.Stdout, "No run was in progress.")
	case res.Stopped != nil:
		fmt.Fprintf(a.Stdout, "The run in progress (%s in %s, instance %s, epoch %d) was told to stop: its holder loses the lease at its next renewal, its work is stopped as on a lease loss, and the run is recorded lost.\n",
			runName(*r), dash(r.Region), dash(r.Instance), r.Epoch)
	default:
		fmt.Fprintf(a.Stdout, "The run in progress (%s in %s, instance %s, epoch %d) finishes; to stop it: cosmoslease pause --lease %s --stop\n",
			runName(*r), dash(r.Region), dash(r.Instance), r.Epoch, key)
	}
	return nil
}

func (a *App) resume(c *ucli.Context) error {
	client, key, _, err := a.controlClient(c, "resume")
	if err != nil {
		return err
	}
	defer client.Close()
	p, err := client.Resume(c.Context, key)
	if err != nil {
		return controlError(c, err)
	}
	if c.Bool("json") {
		writeJSONLine(a.Stdout, map[string]any{"lease": key, "resumed": p})
		return nil
	}
	fmt.Fprintf(a.Stdout, "Lease %s is resumed (it was paused by %s at %s%s): the next occurrence runs.\n", key, p.By, p.At.Format(time.RFC3339), reasonText(p.Reason))
	return nil
}

func (a *App) trigger(c *ucli.Context) error {
	timeout, err := durationFlag(c, "timeout")
	if err != nil {
		return err
	}
	if c.IsSet("timeout") && !c.Bool("wait") {
		return usagef("--timeout applies to --wait only")
	}
	if c.Bool("cancel") && c.Bool("wait") {
		return usagef("--cancel and --wait do not go together: --cancel withdraws the manual run waiting to be claimed")
	}
	if timeout <= 0 {
		return usagef("--timeout %s: use a duration above zero, such as 10m", c.String("timeout"))
	}
	client, key, by, err := a.controlClient(c, "trigger")
	if err != nil {
		return err
	}
	defer client.Close()
	if c.Bool("cancel") {
		gone, err := client.CancelTrigger(c.Context, key)
		if err != nil {
			return controlError(c, err)
		}
		if c.Bool("json") {
			writeJSONLine(a.Stdout, map[string]any{"lease": key, "cancelled": gone})
			return nil
		}
		fmt.Fprintf(a.Stdout, "Withdrew the manual run of lease %s asked for by %s at %s; no contender had claimed it.\n", key, gone.By, gone.At.Format(time.RFC3339))
		return nil
	}
	t, err := client.Trigger(c.Context, key, by)
	if err != nil {
		return controlError(c, err)
	}
	id := cosmoslease.ManualRunID(key, t.ID)
	if !c.Bool("wait") {
		if c.Bool("json") {
			writeJSONLine(a.Stdout, map[string]any{"lease": key, "trigger": t, "record": id})
			return nil
		}
		fmt.Fprintf(a.Stdout, "Triggered a manual run of lease %s (record %s): the most preferred live region runs it, within seconds on cron, within a minute on Functions.\nFollow it: cosmoslease inspect --runs --lease %s\n", key, id, key)
		return nil
	}
	if !c.Bool("json") {
		fmt.Fprintf(a.Stderr, "Triggered a manual run of lease %s (record %s); waiting up to %s for it to end…\n", key, id, timeout)
	}
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	rec, err := client.WaitRun(ctx, key, id, time.Second)
	if err != nil {
		if c.Context.Err() != nil {
			return errInterrupted
		}
		if errors.Is(err, cosmoslease.ErrNoTrigger) {
			return withCode(ExitRunFailed, err) // withdrawn: it will not run
		}
		if ctx.Err() == nil {
			return err
		}
		where := "no contender has claimed it yet (is a cron or the Functions app of this job running?)"
		if rec.Status == cosmoslease.RunStarted {
			where = fmt.Sprintf("it runs in %s (instance %s, epoch %d)", dash(rec.Region), dash(rec.Instance), rec.Epoch)
		} else if st, ierr := client.Inspect(context.WithoutCancel(c.Context), key); ierr == nil && st.Control.Trigger == nil {
			where = "it was claimed and runs (or was withdrawn just now)"
		}
		return withCode(ExitWaitTimeout, fmt.Errorf("the manual run of lease %s did not end within --timeout %s: %s; the trigger stays, so the run may still come (cosmoslease inspect --runs --lease %s)",
			key, timeout, where, key))
	}
	if c.Bool("json") {
		writeJSONLine(a.Stdout, rec)
	} else {
		line := fmt.Sprintf("manual run of lease %s: %s in %s (instance %s, epoch %d)", key, rec.Status, dash(rec.Region), dash(rec.Instance), rec.Epoch)
		if !rec.FinishedAt.IsZero() && !rec.StartedAt.IsZero() {
			line += ", took " + roundDuration(rec.FinishedAt.Sub(rec.StartedAt))
		}
		if rec.ExitCode != nil {
			line += fmt.Sprintf(", exit %d", *rec.ExitCode)
		}
		if rec.Error != "" {
			line += ": " + rec.Error
		}
		fmt.Fprintln(a.Stdout, line)
	}
	if rec.Status != cosmoslease.RunCompleted {
		return &exitError{code: ExitRunFailed, err: fmt.Errorf("the manual run ended %s", rec.Status), reported: true}
	}
	return nil
}

func reasonText(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

func runName(r cosmoslease.RunRecord) string {
	if r.Manual {
		return "manual run triggered by " + dash(r.TriggeredBy)
	}
	return "occurrence " + r.Occurrence.UTC().Format(time.RFC3339)
}
