package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/supervise"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// `run -- COMMAND`: the holder runs the command under internal/supervise for as long as it holds the lease.

// Restart backoff: the first restart waits minBackoff, each next one twice as long up to maxBackoff; a command
// that ran at least maxBackoff starts the count again.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// fitGrace sets the lease's RenewDeadline so that a command stopped when the lease ends is gone before any other
// instance may take the lease over, and refuses a grace that leaves no room for it.
//
// The lease's context ends at RenewDeadline after the last confirmed renewal was sent; the command then gets
// SIGTERM, and SIGKILL Grace later. Another instance takes over only once it has seen the document unchanged for
// LeaseDuration (measured so that it is a lower bound of the time since that same send: the package comment of
// pkg/cosmoslease). So the group gets its SIGKILL at RenewDeadline + Grace, and the library's clock margin,
// max(1s, LeaseDuration/10), must still remain after it:
//
//	RenewDeadline = LeaseDuration − Grace − max(1s, LeaseDuration/10)
//
// RenewInterval must be shorter, so a failed renewal can be retried; unless it was set, it is half of that.
func fitGrace(o *cosmoslease.Options, grace time.Duration) error {
	if grace <= 0 {
		return usagef("--grace must be more than zero")
	}
	d := o.LeaseDuration
	if d == 0 {
		d = cosmoslease.DefaultLeaseDuration
	}
	margin := max(time.Second, d/10)
	deadline := d - grace - margin
	explain := fmt.Sprintf("the command must be gone before another instance may take the lease over, so this instance holds it only until "+
		"--duration (%s) − --grace (%s) − a clock margin of %s = %s after its last renewal", d, grace, margin, deadline)
	if deadline < time.Second {
		return usagef("--grace %s does not fit in the lease: %s, and that must be at least 1s. Use a shorter --grace or a longer --duration", grace, explain)
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = deadline / 2
	}
	if o.RenewInterval >= deadline {
		return usagef("--grace %s does not fit in the lease: %s, which must be longer than --renew-interval (%s). Use a shorter --grace, a longer --duration or a shorter --renew-interval",
			grace, explain, o.RenewInterval)
	}
	o.RenewDeadline = deadline
	return nil
}

// parseMetadata reads --metadata KEY=VALUE pairs.
func parseMetadata(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usagef("--metadata %q: use KEY=VALUE, such as --metadata team=payments", p)
		}
		switch strings.ToLower(k) {
		case "instanceid", "region", "hostname", "starttime":
			return nil, usagef("--metadata %s: %s is written by run itself; use another key", k, k)
		}
		out[k] = v
	}
	return out, nil
}

// commandEnv is the command's environment: run's own, and the lease's identity.
func commandEnv(s cosmoslease.State, instance, region string) []string {
	env := append(os.Environ(),
		"COSMOSLEASE_EPOCH="+strconv.FormatInt(s.Epoch, 10),
		"COSMOSLEASE_LEASE="+s.Key,
		"COSMOSLEASE_INSTANCE="+instance,
		"COSMOSLEASE_REGION="+region)
	meta := map[string]string{"INSTANCEID": s.InstanceID, "REGION": s.Region, "HOSTNAME": s.Hostname}
	for k, v := range s.Metadata {
		meta[metadataVar(k)] = v
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, "COSMOSLEASE_METADATA_"+k+"="+meta[k])
	}
	return env
}

// metadataVar is a metadata key as an environment variable's name: upper case, anything but letters and digits an
// underscore.
func metadataVar(k string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, k)
}

// superviseUnder runs argv while lease is held: until it exits (restarting it as --restart says), the lease is
// lost, or run is interrupted. It returns only once the command's process group is gone.
func (a *App) superviseUnder(ctx context.Context, lease *cosmoslease.Lease, out *reporter, argv []string, grace time.Duration, restart string) error {
	out.acquired(lease.State(), lease.Previous())
	state := lease.State()
	env := commandEnv(state, out.instance, out.region)
	release := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		err := lease.Release(rctx)
		out.released(lease.State(), err)
		return err
	}
	lost := func() error {
		err := lease.Err()
		if err == nil {
			err = context.Cause(lease.Context())
		}
		return withCode(ExitLost, fmt.Errorf("stopped %s: %v", argv[0], err))
	}
	backoff := minBackoff
	for {
		if err := lease.Err(); err != nil {
			out.lost(lease.State(), err)
			return lost()
		}
		started := time.Now()
		p, err := supervise.Start(supervise.Cmd{Argv: argv, Dir: a.Dir, Env: env, Stdout: a.Stdout, Stderr: a.Stderr, Grace: grace})
		if err != nil {
			code := 126
			var se *supervise.StartError
			if errors.As(err, &se) {
				code = se.Code
			}
			out.commandExited(state, supervise.Status{Code: code, Err: err}, 0, "")
			_ = release()
			return withCode(code, err)
		}
		out.commandStarted(state, p.Pid())
		why := ""
		select {
		case <-p.Done():
		case <-lease.Context().Done():
			why = "lease lost"
			out.lost(lease.State(), context.Cause(lease.Context()))
			p.Stop(syscall.SIGTERM)
		case <-ctx.Done():
			why = "interrupted"
			var sig Signalled
			if !errors.As(context.Cause(ctx), &sig) {
				sig.Signal = syscall.SIGTERM
			}
			p.Stop(sig.Signal)
		}
		st := p.Wait()
		out.commandExited(state, st, time.Since(started), why)
		switch {
		case why == "lease lost":
			return lost()
		case why == "interrupted":
			_ = release()
			return errInterrupted
		case st.Code < 0 || st.Err != nil:
			_ = release()
			return fmt.Errorf("%s: %s", argv[0], st)
		case restart == "always" || restart == "on-failure" && st.Code != 0:
			if time.Since(started) >= maxBackoff {
				backoff = minBackoff
			}
			out.restarting(state, backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-lease.Context().Done():
				t.Stop()
				out.lost(lease.State(), context.Cause(lease.Context()))
				return lost()
			case <-ctx.Done():
				t.Stop()
				_ = release()
				return errInterrupted
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if err := release(); err != nil && st.Code == 0 {
			return fmt.Errorf("%s exited 0, but the release was not confirmed (the lease expires on its own): %w", argv[0], err)
		}
		if st.Code != 0 {
			return withCode(st.Code, fmt.Errorf("%s: %s", argv[0], st))
		}
		return nil
	}
}

func (r *reporter) commandStarted(s cosmoslease.State, pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "command-started", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, PID: pid, Command: r.command})
		return
	}
	r.printf("cosmoslease: started %s (pid %d) at epoch %d\n", r.command[0], pid, s.Epoch)
}

// commandExited reports how the command ended; why is "lease lost", "interrupted" or empty (it exited).
func (r *reporter) commandExited(s cosmoslease.State, st supervise.Status, took time.Duration, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		e := event{Event: "command-exited", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, ElapsedMs: took.Milliseconds(), Reason: why}
		if st.Code >= 0 {
			e.ExitCode = &st.Code
		}
		if st.Signal != nil {
			e.Signal = supervise.SignalName(st.Signal)
		}
		if st.Err != nil {
			e.Reason = strings.TrimPrefix(strings.Join([]string{why, st.Err.Error()}, ": "), ": ")
		}
		r.emit(e)
	} else {
		line := fmt.Sprintf("cosmoslease: %s %s after %s", r.command[0], st, took.Round(time.Millisecond))
		if st.Err != nil {
			line = "cosmoslease: " + st.Err.Error()
		}
		if why != "" {
			line += " (" + why + ")"
		}
		r.printf("%s\n", line)
	}
	if st.Leftovers {
		r.printf("cosmoslease: %s exited leaving processes of its group running; they were stopped (SIGTERM, then SIGKILL after --grace)\n", r.command[0])
	}
	if st.StillRunning {
		r.printf("cosmoslease: processes of %s's group were still there %s after SIGKILL\n", r.command[0], supervise.KillBound)
	}
}

func (r *reporter) restarting(s cosmoslease.State, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		r.emit(event{Event: "restarting", Epoch: s.Epoch, LeaseID: s.LeaseID, Owner: s.Owner, DelayMs: after.Milliseconds()})
		return
	}
	r.printf("cosmoslease: starting %s again in %s (--restart), still at epoch %d\n", r.command[0], after, s.Epoch)
}

// commandLine is argv for one line of run's report: quoted where it needs to be, and cut short.
func commandLine(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\") {
			a = strconv.Quote(a)
		}
		b.WriteString(a)
	}
	if s := []rune(b.String()); len(s) > 72 {
		return string(s[:71]) + "…"
	}
	return b.String()
}
