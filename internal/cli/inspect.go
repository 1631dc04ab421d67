package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
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
			&ucli.StringFlag{Name: "lease", Usage: "show only this lease `KEY`"},
			&ucli.StringFlag{Name: "owner", Usage: "show only leases whose owner is `ID`"},
			&ucli.BoolFlag{Name: "json", Usage: "print a JSON array instead of a table"},
			&ucli.BoolFlag{Name: "watch", Usage: "redraw every 2 s until Ctrl-C"},
			&ucli.BoolFlag{Name: "runs", Usage: "show the run records of scheduled work (the Functions handler's, or cron's: which region ran each occurrence), newest first, and the occurrences no region ran (missed), instead of the leases; --lease names the lease (default " + config.TimerLeaseKey + "), --owner keeps the runs of one owner (the region's app) or instance among those read"},
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
}

func toJSON(s cosmoslease.State) leaseJSON {
	return leaseJSON{Key: s.Key, ID: s.ID, State: s.Status(), Owner: s.Owner, Region: s.Region, Hostname: s.Hostname,
		Epoch: s.Epoch, LeaseID: s.LeaseID, Renewals: s.Renewals, AcquiredAt: leasedoc.FormatTime(s.AcquiredAt),
		RenewedAt: leasedoc.FormatTime(s.RenewedAt), ExpiresAt: leasedoc.FormatTime(s.ExpiresAt),
		ReleasedAt: leasedoc.FormatTime(s.ReleasedAt), ExpiresInMs: s.ExpiresIn.Milliseconds(),
		DurationMs: s.Duration.Milliseconds(), ETag: s.ETag, Metadata: s.Metadata, Problem: s.Problem, Sample: s.Sample}
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
		return a.inspectRuns(c, client)
	}
	warned := map[string]bool{} // with --watch, each warning once
	for {
		states, all, err := a.leases(c.Context, c, client)
		if err != nil {
			if c.Context.Err() != nil {
				return errInterrupted
			}
			return err
		}
		for _, w := range sampleNamesakes(all, ourOwners(all)) {
			if !warned[w] {
				warned[w] = true
				fmt.Fprintln(a.Stderr, w)
			}
		}
		if c.Bool("watch") && a.StdoutTTY {
			fmt.Fprint(a.Stdout, "\x1b[H\x1b[2J")
		}
		if c.Bool("json") {
			out := make([]leaseJSON, 0, len(states))
			for _, s := range states {
				out = append(out, toJSON(s))
			}
			writeJSONLine(a.Stdout, out)
		} else {
			if c.Bool("watch") {
				fmt.Fprintf(a.Stdout, "%s  (Ctrl-C to stop)\n", time.Now().Format("15:04:05"))
			}
			printTable(a.Stdout, states)
		}
		if !c.Bool("watch") {
			return nil
		}
		select {
		case <-c.Context.Done():
			return errInterrupted
		case <-time.After(2 * time.Second):
		}
		if !a.StdoutTTY && !c.Bool("json") {
			fmt.Fprintln(a.Stdout)
		}
	}
}

// inspectRuns lists the newest run records of a lease, newest first, with one single-partition query however
// many records the lease has, and between them the occurrences that the schedule (recorded in the newest run)
// says were due but that no region claimed.
func (a *App) inspectRuns(c *ucli.Context, client *cosmoslease.Client) error {
	key := c.String("lease")
	if key == "" {
		key = config.TimerLeaseKey
	}
	limit := c.Int("limit")
	recs, err := client.Runs(c.Context, key, limit)
	if err != nil {
		return err
	}
	missed, sched := a.missed(recs, limit)
	rows := make([]cosmoslease.RunRecord, 0, len(recs)+len(missed.Times))
	rows = append(rows, recs...)
	if owner := c.String("owner"); owner != "" {
		kept := rows[:0]
		for _, r := range rows {
			if r.Owner == owner || r.Instance == owner {
				kept = append(kept, r)
			}
		}
		rows = kept
	} else {
		for _, t := range missed.Times {
			rows = append(rows, cosmoslease.RunRecord{LeaseKey: key, Occurrence: t, Status: "missed"})
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Occurrence.After(rows[j].Occurrence) })
	}
	if c.Bool("json") {
		writeJSONLine(a.Stdout, rows)
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintln(a.Stdout, "No runs.")
		return nil
	}
	tw := tabwriter.NewWriter(a.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OCCURRENCE\tLEASE\tREGION\tINSTANCE\tEPOCH\tSTATUS\tTOOK\tPAST DUE")
	for _, r := range rows {
		took := "-"
		if !r.FinishedAt.IsZero() && !r.StartedAt.IsZero() {
			took = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
		}
		epoch := "-"
		if r.Epoch > 0 {
			epoch = strconv.FormatInt(r.Epoch, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\n", r.Occurrence.UTC().Format("2006-01-02 15:04:05Z"), r.LeaseKey,
			dash(r.Region), dash(r.Instance), epoch, r.Status, took, r.PastDue)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case sched == "":
	case missed.Count == 0 && !missed.From.IsZero():
		fmt.Fprintf(a.Stdout, "\nNo occurrence of %q missed from %s to %s.\n", sched, missed.From.Format("2006-01-02 15:04:05Z"), missed.To.Format("2006-01-02 15:04:05Z"))
	case missed.Count > 0:
		more := ""
		if missed.Capped {
			more = " at least"
		}
		fmt.Fprintf(a.Stdout, "\nMissed:%s %d occurrence(s) of %q from %s to %s ran in no region (every region down, Cosmos DB unreachable, or the timer not fired)",
			more, missed.Count, sched, missed.From.Format("2006-01-02 15:04:05Z"), missed.To.Format("2006-01-02 15:04:05Z"))
		if len(missed.Times) < missed.Count {
			fmt.Fprintf(a.Stdout, "; the newest %d are listed", len(missed.Times))
		}
		fmt.Fprintln(a.Stdout, ".")
	}
	for _, r := range rows {
		if r.Status == cosmoslease.RunSkipped || r.Status == cosmoslease.RunAbandoned {
			fmt.Fprintf(a.Stdout, "%s %s: %s\n", r.Occurrence.UTC().Format("2006-01-02 15:04:05Z"), r.Status, r.Reason)
		}
	}
	return nil
}

// missed works out the occurrences missing among recs from the schedule and the failover window the newest
// record carries (the handler and cron write them), listing at most limit of them. Without them it finds none.
func (a *App) missed(recs []cosmoslease.RunRecord, limit int) (cosmoslease.Missed, string) {
	for _, r := range recs {
		if r.Schedule == "" {
			continue
		}
		sched, err := ncrontab.Parse(r.Schedule)
		if err != nil {
			return cosmoslease.Missed{}, ""
		}
		return cosmoslease.MissedOccurrences(recs, sched.Next, time.Now(), time.Duration(r.MissedAfterMs)*time.Millisecond, limit), r.Schedule
	}
	return cosmoslease.Missed{}, ""
}

// leases reads the leases to show, and every lease in the container (for the warnings; nil when they could not be
// listed).
func (a *App) leases(ctx context.Context, c *ucli.Context, client *cosmoslease.Client) (states, all []cosmoslease.State, err error) {
	if key := c.String("lease"); key != "" {
		s, err := client.Inspect(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		states = []cosmoslease.State{s}
		all, _ = client.List(ctx) // only for the warnings: a failure here hides none of the lease shown
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

func printTable(w io.Writer, states []cosmoslease.State) {
	if len(states) == 0 {
		fmt.Fprintln(w, "No leases.")
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
