package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func (a *App) inspectCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "inspect",
		Usage: "show the leases: holder, region, epoch, state and when they expire as far as this machine can tell",
		Flags: append(commonFlags(),
			&ucli.StringFlag{Name: "lease", Usage: "show only this lease `KEY` (one point read); with --runs, the runs of this lease only"},
			&ucli.StringFlag{Name: "owner", Usage: "show only leases whose owner is `ID`"},
			&ucli.BoolFlag{Name: "json", Usage: "print a JSON array instead of a table"},
			&ucli.BoolFlag{Name: "watch", Usage: "read and redraw until Ctrl-C. Cost: with --lease, one point read every 2 s (about 1 RU each: 30 RU a minute); without, the list of every lease every 10 s (one cross-partition query, whose charge grows with the number of leases); with --runs, every 10 s one single-partition query per lease shown (and the list, without --lease)"},
			&ucli.BoolFlag{Name: "runs", Usage: "show the run records of scheduled work (the Functions handler's, or cron's: which region ran each occurrence, how late, how long, its exit code and error), newest first, and the occurrences no region ran (missed), instead of the leases; without --lease, of every lease that has run records; --owner keeps the runs of one owner (the region's app) or instance among those read"},
			&ucli.IntFlag{Name: "limit", Value: cosmoslease.DefaultRunLimit, Usage: "with --runs: read the `N` newest run records (1-1000)"},
		),
		Action: a.inspect,
	}
}

// leaseJSON is one lease in inspect --json.
type leaseJSON struct {
	Key         string            `json:"key"`
	ID          string            `json:"id"`
	State       string            `json:"state"`
	Owner       string            `json:"owner"`
	Region      string            `json:"region"`
	Hostname    string            `json:"hostname,omitempty"`
	Epoch       int64             `json:"epoch"`
	LeaseID     string            `json:"leaseId"`
	Renewals    int64             `json:"renewals"`
	AcquiredAt  string            `json:"acquiredAt,omitempty"`
	RenewedAt   string            `json:"renewedAt,omitempty"`
	ExpiresAt   string            `json:"expiresAt,omitempty"`
	ReleasedAt  string            `json:"releasedAt,omitempty"`
	ExpiresInMs int64             `json:"expiresInMs"`
	DurationMs  int64             `json:"durationMs"`
	ETag        string            `json:"etag"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Problem     string            `json:"problem,omitempty"`
	Sample      bool              `json:"sample,omitempty"`
	// Control is the operator's word on a job (pause, stop, a manual run waiting); absent when there is none.
	Control *cosmoslease.Control `json:"control,omitempty"`
}

func toJSON(s cosmoslease.State) leaseJSON {
	state := s.Status()
	if !exists(s) {
		state = "none" // never acquired: no document
	}
	return leaseJSON{Key: s.Key, ID: s.ID, State: state, Owner: s.Owner, Region: s.Region, Hostname: s.Hostname,
		Epoch: s.Epoch, LeaseID: s.LeaseID, Renewals: s.Renewals, AcquiredAt: leasedoc.FormatTime(s.AcquiredAt),
		RenewedAt: leasedoc.FormatTime(s.RenewedAt), ExpiresAt: leasedoc.FormatTime(s.ExpiresAt),
		ReleasedAt: leasedoc.FormatTime(s.ReleasedAt), ExpiresInMs: s.ExpiresIn.Milliseconds(),
		DurationMs: s.Duration.Milliseconds(), ETag: s.ETag, Metadata: s.Metadata, Problem: s.Problem, Sample: s.Sample, Control: controlOf(s)}
}

// controlOf is a lease's control for the JSON, nil when there is none.
func controlOf(s cosmoslease.State) *cosmoslease.Control {
	if c := s.Control; c.Paused != nil || c.Stop != nil || c.Trigger != nil {
		return &c
	}
	return nil
}

// controlLines says what the operator's controls of a job are: paused, a stop order, a manual run waiting.
func controlLines(s cosmoslease.State) []string {
	var out []string
	c := s.Control
	if p := c.Paused; p != nil {
		out = append(out, fmt.Sprintf("%s: PAUSED by %s at %s%s: its occurrences are recorded skipped (paused); cosmoslease resume --lease %s ends it",
			s.Key, dash(p.By), p.At.UTC().Format(tableTime), reasonText(p.Reason), s.Key))
	}
	if st := c.Stop; st != nil {
		out = append(out, fmt.Sprintf("%s: the holding at epoch %d was told to stop by %s at %s (pause --stop)", s.Key, st.Epoch, dash(st.By), st.At.UTC().Format(tableTime)))
	}
	if t := c.Trigger; t != nil {
		out = append(out, fmt.Sprintf("%s: a manual run asked for by %s at %s waits to be claimed (record %s)", s.Key, dash(t.By), t.At.UTC().Format(tableTime),
			cosmoslease.ManualRunID(s.Key, t.ID)))
	}
	return out
}

func (a *App) inspect(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usagef("inspect takes no arguments, got %q; to show one lease use --lease KEY", c.Args().First())
	}
	if k := c.String("lease"); c.IsSet("lease") {
		if _, err := leasedoc.ID(k); err != nil {
			return usagef("--lease: %v", err)
		}
	}
	if c.IsSet("limit") {
		if !c.Bool("runs") {
			return usagef("--limit applies to --runs only")
		}
		if n := c.Int("limit"); n < 1 || n > 1000 {
			return usagef("--limit %d: read from 1 to 1000 run records", n)
		}
	}
	log, err := a.logger(c)
	if err != nil {
		return err
	}
	s, err := a.loadSettings(c)
	if err != nil {
		return err
	}
	opts := cosmoslease.Options{OwnerID: "cosmoslease-inspect", Logger: log}
	if c.Bool("watch") {
		// A watch runs until stopped: its reads are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
		tel, err := a.startTelemetry(c, log, &opts)
		if err != nil {
			return err
		}
		defer tel.stop()
	}
	client, err := a.open(c.Context, c, s, opts)
	if err != nil {
		return err
	}
	defer client.Close()
	if c.Bool("runs") {
		return a.watch(c, watchRunsEvery, func(first bool) error { return a.inspectRuns(c, client) })
	}
	every := watchListEvery
	if c.String("lease") != "" {
		every = watchLeaseEvery
	}
	warned := map[string]bool{} // with --watch, each warning once
	var all []cosmoslease.State
	return a.watch(c, every, func(first bool) error {
		states, listed, err := a.leases(c.Context, c, client, first)
		if err != nil {
			return err
		}
		if listed != nil {
			all = listed
		}
		for _, w := range sampleNamesakes(all, ourOwners(all)) {
			if !warned[w] {
				warned[w] = true
				fmt.Fprintln(a.Stderr, w)
			}
		}
		if c.Bool("json") {
			out := make([]leaseJSON, 0, len(states))
			for _, s := range states {
				out = append(out, toJSON(s))
			}
			writeJSONLine(a.Stdout, out)
			return nil
		}
		printTable(a.Stdout, states, all)
		return nil
	})
}

// How often --watch reads again. A point read of one lease (--lease) costs about 1 RU; listing every lease is a
// cross-partition query whose charge grows with the container, so it is done less often; the run history is one
// single-partition query per lease shown.
const (
	watchLeaseEvery = 2 * time.Second
	watchListEvery  = 10 * time.Second
	watchRunsEvery  = 10 * time.Second
)

// watch calls show once, or with --watch every interval until interrupted, redrawing the screen on a terminal.
func (a *App) watch(c *ucli.Context, every time.Duration, show func(first bool) error) error {
	for first := true; ; first = false {
		if c.Bool("watch") && a.StdoutTTY {
			fmt.Fprint(a.Stdout, "\x1b[H\x1b[2J")
		}
		if c.Bool("watch") && !c.Bool("json") {
			fmt.Fprintf(a.Stdout, "%s  (every %s; Ctrl-C to stop)\n", time.Now().Format("15:04:05"), every)
		}
		if err := show(first); err != nil {
			if c.Context.Err() != nil {
				return errInterrupted
			}
			return err
		}
		if !c.Bool("watch") {
			return nil
		}
		select {
		case <-c.Context.Done():
			return errInterrupted
		case <-time.After(every):
		}
		if !a.StdoutTTY && !c.Bool("json") {
			fmt.Fprintln(a.Stdout)
		}
	}
}

// inspectRuns lists the newest run records of a lease, newest first, with one single-partition query however
// many records the lease has, and between them the occurrences that the schedule (recorded in the newest run)
// says were due but that no region claimed. Without --lease it shows every lease that has run records.
func (a *App) inspectRuns(c *ucli.Context, client *cosmoslease.Client) error {
	keys := []string{c.String("lease")}
	if keys[0] == "" {
		var err error
		if keys, err = scheduledLeases(c.Context, client); err != nil {
			return err
		}
	}
	var views []runsView
	for _, key := range keys {
		v, err := a.readRuns(c, client, key)
		if err != nil {
			return err
		}
		if len(v.records) == 0 {
			continue // a lease of scheduled work whose records have all expired, or a lease of none
		}
		views = append(views, v)
	}
	if c.String("lease") == "" {
		// The lease with the newest run first.
		sort.SliceStable(views, func(i, j int) bool {
			return views[i].records[0].Occurrence.After(views[j].records[0].Occurrence)
		})
	}
	if c.Bool("json") {
		var out []runJSON
		for _, v := range views {
			for _, r := range v.rows {
				out = append(out, r.json())
			}
		}
		if out == nil {
			out = []runJSON{}
		}
		writeJSONLine(a.Stdout, out)
		return nil
	}
	if len(views) == 0 {
		if key := c.String("lease"); key != "" {
			state, err := client.Inspect(c.Context, key)
			if err != nil {
				return err
			}
			if !exists(state) {
				fmt.Fprintf(a.Stdout, "Lease %s: no such lease (never acquired), and no runs.\n", key)
			} else {
				fmt.Fprintf(a.Stdout, "Lease %s: no runs (it is not used for scheduled work, or its run records have expired).\n", key)
			}
			return nil
		}
		fmt.Fprintf(a.Stdout, "No lease in this container has run records. cron writes them under lease %q by default, the Functions handler under %q; --lease KEY names another.\n", "cron", config.TimerLeaseKey)
		return nil
	}
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(a.Stdout)
		}
		if err := v.print(a.Stdout, c.Int("limit")); err != nil {
			return err
		}
	}
	return nil
}

// scheduledLeases lists the keys of the leases used for scheduled work: those whose document names an
// occurrence, which RunOnce writes. One cross-partition query.
func scheduledLeases(ctx context.Context, client *cosmoslease.Client) ([]string, error) {
	all, err := client.List(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, s := range all {
		if s.Metadata["occurrence"] != "" {
			keys = append(keys, s.Key)
		}
	}
	return keys, nil
}

// runsView is what inspect --runs shows of one lease.
type runsView struct {
	key      string
	records  []cosmoslease.RunRecord
	rows     []runRow
	missed   cosmoslease.Missed
	schedule string
	window   time.Duration // the claim window the newest record gives (MissedAfterMs)
	filtered bool
	state    cosmoslease.State // the lease, for its controls (paused, a manual run waiting)
}

// readRuns reads a lease's newest records (one single-partition query) and works out its rows.
func (a *App) readRuns(c *ucli.Context, client *cosmoslease.Client, key string) (runsView, error) {
	limit := c.Int("limit")
	recs, err := client.Runs(c.Context, key, limit)
	if err != nil {
		return runsView{}, err
	}
	v := runsView{key: key, records: recs}
	if v.state, err = client.Inspect(c.Context, key); err != nil {
		return runsView{}, err
	}
	v.missed, v.schedule, v.window = a.missed(recs, limit)
	for _, r := range recs {
		v.rows = append(v.rows, recordRow(r))
	}
	if owner := c.String("owner"); owner != "" {
		v.filtered = true
		kept := v.rows[:0]
		for _, r := range v.rows {
			if r.rec.Owner == owner || r.rec.Instance == owner {
				kept = append(kept, r)
			}
		}
		v.rows = kept
	} else {
		for _, t := range v.missed.Times {
			v.rows = append(v.rows, missedRow(key, t))
		}
		sort.SliceStable(v.rows, func(i, j int) bool { return v.rows[i].rec.Occurrence.After(v.rows[j].rec.Occurrence) })
	}
	return v, nil
}

// runRow is one row of the runs table. Each kind of row (a record, a missed occurrence; later a range of
// occurrences) is built by its own constructor and printed by the same code.
type runRow struct {
	rec cosmoslease.RunRecord
	// ran is set for a record whose work started here: lateness, duration and PAST DUE apply to it.
	ran bool
}

// recordRow is a run record as written.
func recordRow(r cosmoslease.RunRecord) runRow {
	ran := r.Status != cosmoslease.RunSkipped && !r.StartedAt.IsZero()
	return runRow{rec: r, ran: ran}
}

// missedRow is an occurrence the schedule says was due and that no region claimed.
func missedRow(key string, t time.Time) runRow {
	return runRow{rec: cosmoslease.RunRecord{LeaseKey: key, Occurrence: t, Status: "missed"}}
}

// late is how long after its occurrence the work started.
func (r runRow) late() (time.Duration, bool) {
	if !r.ran {
		return 0, false
	}
	return r.rec.StartedAt.Sub(r.rec.Occurrence), true
}

// took is how long the work ran, when it has finished.
func (r runRow) took() (time.Duration, bool) {
	if !r.ran || r.rec.FinishedAt.IsZero() {
		return 0, false
	}
	return r.rec.FinishedAt.Sub(r.rec.StartedAt), true
}

// pastDue: the occurrence started after its own claim window (the longest the last region in the preference
// order may take to claim it, which the record carries), so it ran later than any failover explains. Unknown
// when the record carries no window.
func (r runRow) pastDue() (bool, bool) {
	late, ok := r.late()
	if !ok || r.rec.MissedAfterMs <= 0 || r.rec.Manual {
		return false, false
	}
	return late > time.Duration(r.rec.MissedAfterMs)*time.Millisecond, true
}

// status is the record's status, marked for a manual run and for an occurrence skipped because the job was
// paused, so that both stand out from the schedule's own runs.
func (r runRow) status() string {
	switch {
	case r.rec.Manual:
		return r.rec.Status + " (manual)"
	case r.rec.Cause == "paused":
		return r.rec.Status + " (paused)"
	}
	return r.rec.Status
}

// note is the first line of the error, or the reason a record gives.
func (r runRow) note() string {
	s := r.rec.Error
	if s == "" {
		s = r.rec.Reason
	}
	first, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if r.rec.Manual && r.rec.Error != "" {
		first = "manual run by " + dash(r.rec.TriggeredBy) + ": " + first
	}
	return first
}

// runJSON is one row of inspect --runs --json: the record as written, and what the table works out from it.
type runJSON struct {
	cosmoslease.RunRecord
	LateMs *int64 `json:"lateMs,omitempty"`
	// DurationMs is how long the work ran.
	DurationMs *int64 `json:"durationMs,omitempty"`
	// AfterClaimWindow is the table's PAST DUE: the work started after the occurrence's claim window. The record's
	// own pastDue is the scheduler's flag (the host's IsPastDue, or cron catching up).
	AfterClaimWindow *bool `json:"afterClaimWindow,omitempty"`
}

func (r runRow) json() runJSON {
	out := runJSON{RunRecord: r.rec}
	if d, ok := r.late(); ok {
		ms := d.Milliseconds()
		out.LateMs = &ms
	}
	if d, ok := r.took(); ok {
		ms := d.Milliseconds()
		out.DurationMs = &ms
	}
	if p, ok := r.pastDue(); ok {
		out.AfterClaimWindow = &p
	}
	return out
}

const tableTime = "2006-01-02 15:04:05Z"

// print writes the lease's runs table, then what the missed-occurrence check covered.
func (v runsView) print(w io.Writer, limit int) error {
	for _, l := range controlLines(v.state) {
		fmt.Fprintln(w, l+".")
	}
	fmt.Fprintf(w, "Runs of lease %s, newest first (the %d newest records; --limit N for more):\n", v.key, limit)
	if len(v.rows) == 0 {
		fmt.Fprintln(w, "  none of the records read is of this owner or instance.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OCCURRENCE\tREGION\tINSTANCE\tEPOCH\tSTATUS\tLATE\tTOOK\tEXIT\tPAST DUE\tERROR OR REASON")
	for _, r := range v.rows {
		epoch := "-"
		if r.rec.Epoch > 0 {
			epoch = strconv.FormatInt(r.rec.Epoch, 10)
		}
		late, took, exit, pastDue := "-", "-", "-", "-"
		if d, ok := r.late(); ok {
			late = roundDuration(d)
		}
		if d, ok := r.took(); ok {
			took = roundDuration(d)
		}
		if r.rec.ExitCode != nil {
			exit = strconv.Itoa(*r.rec.ExitCode)
		}
		if p, ok := r.pastDue(); ok {
			pastDue = map[bool]string{true: "yes", false: "no"}[p]
		}
		if r.rec.CaughtUp {
			pastDue = "caught up" // the newest missed occurrence, run late after an outage (--catch-up-window)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.rec.Occurrence.UTC().Format(tableTime), dash(r.rec.Region),
			dash(r.rec.Instance), epoch, r.status(), late, took, exit, pastDue, dash(clip(r.note(), 80)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	v.printMissed(w)
	return nil
}

// printMissed says which stretch of time the missed-occurrence check covered, and why the newest rows are outside
// it when they are.
func (v runsView) printMissed(w io.Writer) {
	m := v.missed
	switch {
	case v.schedule == "":
		fmt.Fprintln(w, "Missed occurrences: not checked (the records name no schedule).")
		return
	case v.filtered:
		fmt.Fprintln(w, "Missed occurrences: not checked with --owner (another owner may have run them).")
		return
	case m.From.IsZero():
		fmt.Fprintf(w, "Missed occurrences: none judged yet: every listed occurrence is within its claim window (%s), in which a later region may still claim it.\n", roundDuration(v.window))
		return
	case m.Count == 0:
		fmt.Fprintf(w, "No occurrence of %q missed from %s to %s", v.schedule, m.From.Format(tableTime), m.To.Format(tableTime))
	default:
		more := ""
		if m.Capped {
			more = " at least"
		}
		fmt.Fprintf(w, "Missed:%s %d occurrence(s) of %q from %s to %s ran in no region (every region down, Cosmos DB unreachable, or the timer not fired)",
			more, m.Count, v.schedule, m.From.Format(tableTime), m.To.Format(tableTime))
		if len(m.Times) < m.Count {
			fmt.Fprintf(w, "; the newest %d are listed", len(m.Times))
		}
	}
	newer := 0
	for _, r := range v.records {
		if r.Occurrence.After(m.To) {
			newer++
		}
	}
	if newer > 0 {
		fmt.Fprintf(w, "; the %d newer listed occurrence(s) are within their claim window (%s), in which a later region may still claim one, so occurrences after %s are not judged yet", newer, roundDuration(v.window), m.To.Format(tableTime))
	}
	fmt.Fprintln(w, ".")
}

// roundDuration prints a duration to the millisecond below a second, to the tenth of a second below a minute,
// and to the second above.
func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + roundDuration(-d)
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// clip shortens s to n characters, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// missed works out the occurrences missing among recs from the schedule and the claim window the newest record
// carries (the handler and cron write them), listing at most limit of them. Without them it finds none.
func (a *App) missed(recs []cosmoslease.RunRecord, limit int) (cosmoslease.Missed, string, time.Duration) {
	for _, r := range recs {
		if r.Schedule == "" {
			continue
		}
		sched, err := ncrontab.ParseRecord(r.Schedule) // CRON_TZ=ZONE first for a schedule read in a time zone
		if err != nil {
			return cosmoslease.Missed{}, "", 0
		}
		window := time.Duration(r.MissedAfterMs) * time.Millisecond
		return cosmoslease.MissedOccurrences(recs, sched.Next, time.Now(), window, limit), r.Schedule, window
	}
	return cosmoslease.Missed{}, "", 0
}

// leases reads the leases to show: with --lease, one point read (and, the first time, the list of every lease, for
// the warnings and to name the others when the key names none); otherwise the list (one cross-partition query).
// all is nil when the list was not read this time.
func (a *App) leases(ctx context.Context, c *ucli.Context, client *cosmoslease.Client, first bool) (states, all []cosmoslease.State, err error) {
	if key := c.String("lease"); key != "" {
		s, err := client.Inspect(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		states = []cosmoslease.State{s}
		if first {
			all, _ = client.List(ctx) // only for the warnings and the names: a failure here hides none of the lease shown
		}
	} else {
		if all, err = client.List(ctx); err != nil {
			return nil, nil, err
		}
		states = all
	}
	if owner := c.String("owner"); owner != "" {
		var kept []cosmoslease.State
		for _, s := range states {
			if s.Owner == owner {
				kept = append(kept, s)
			}
		}
		states = kept
	}
	return states, all, nil
}

// exists reports whether a lease has a document: a key that was never acquired has none.
func exists(s cosmoslease.State) bool { return s.ETag != "" || s.Problem != "" }

// printTable writes the leases; a key with no document gets a line of its own, naming the leases there are (all,
// when known).
func printTable(w io.Writer, states, all []cosmoslease.State) {
	var shown []cosmoslease.State
	for _, s := range states {
		if exists(s) {
			shown = append(shown, s)
			continue
		}
		fmt.Fprintf(w, "Lease %s: no such lease (never acquired).", s.Key)
		if len(all) > 0 {
			names := make([]string, 0, len(all))
			for _, o := range all {
				names = append(names, o.Key)
			}
			fmt.Fprintf(w, " The leases in this container: %s.", strings.Join(names, ", "))
		}
		fmt.Fprintln(w)
	}
	if len(states) == 0 {
		fmt.Fprintln(w, "No leases.")
	}
	if states = shown; len(states) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tOWNER\tREGION\tEPOCH\tSTATE\tACQUIRED\tEXPIRES IN\tRENEWALS\tETAG")
	for _, s := range states {
		expires := "-"
		if s.Status() == "held" {
			expires = s.ExpiresIn.Round(time.Second).String()
		}
		acquired := "-"
		if !s.AcquiredAt.IsZero() {
			acquired = s.AcquiredAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Key, dash(s.Owner), dash(s.Region), s.Epoch, s.Status(),
			acquired, expires, strconv.FormatInt(s.Renewals, 10), dash(s.ETag))
	}
	tw.Flush()
	for _, s := range states {
		for _, l := range controlLines(s) {
			fmt.Fprintf(w, "\n%s\n", l)
		}
		switch {
		case s.Problem != "":
			fmt.Fprintf(w, "\n%s: %s\n", s.Key, s.Problem)
		case s.Sample:
			fmt.Fprintf(w, "\n%s: written by the reference sample (no epoch, shown as 0); cosmoslease takes it over at epoch 1 once its holder stops renewing\n", s.Key)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	_, _ = w.Write(append(b, '\n'))
}
