package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// readsResult is a holder and a standby left to run, each counted at its own HTTP transport.
type readsResult struct {
	window                  time.Duration
	renewEvery, pollEvery   time.Duration
	holder, standby         *counter
	holderLost, standbyHeld bool
}

// steadyReads runs a holder (automatic renewal) and a standby (Acquire) on one key for window, and counts what
// each sends. Open's account and container reads come before the counting starts: they are not lease reads.
func steadyReads(ctx context.Context, e env, window time.Duration) (*readsResult, error) {
	r := &readsResult{window: window, holder: &counter{next: &http.Client{}}, standby: &counter{next: &http.Client{}}}
	open := func(owner string, tr *counter) (*cosmoslease.Client, error) {
		o := e.options(owner, tr)
		o.ManualRenew = false
		return cosmoslease.Open(ctx, o)
	}
	hc, err := open("holder", r.holder)
	if err != nil {
		return nil, err
	}
	defer hc.Close()
	sc, err := open("standby", r.standby)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	r.renewEvery, r.pollEvery = hc.Options().RenewInterval, sc.Options().RetryPeriod
	r.holder.n.Clear()
	r.standby.n.Clear()
	key := fmt.Sprintf("steady-%d", time.Now().UnixNano())
	lease, err := hc.TryAcquire(ctx, key)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	if l, err := sc.Acquire(wctx, key); err == nil {
		r.standbyHeld = true
		_ = l.Release(ctx)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	r.holderLost = lease.Err() != nil
	return r, lease.Release(ctx)
}

const readsHeading = "## Reads in steady state"

// readsSection renders the measurement; replaceSection puts it into an existing report on its own.
func readsSection(r *readsResult) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s\n\nMeasured on %s. A holder (automatic renewal every %s) and a standby (`Acquire`, polling every RetryPeriod, %s ± 10 %%) on one key for %s,\n",
		readsHeading, time.Now().UTC().Format("2006-01-02"), r.renewEvery, r.pollEvery.Round(time.Millisecond), r.window)
	w("each counted at its own HTTP transport: a point read is `GET …/docs/{id}`, a query is `POST …/docs` with a query body.\n\n")
	w("| client | point reads | queries | creates | replaces | point reads / all reads |\n|---|---|---|---|---|---|\n")
	var reads, points int64
	for _, c := range []struct {
		name string
		n    *counter
	}{{"holder", r.holder}, {"standby", r.standby}} {
		p, q := c.n.count("read"), c.n.count("query")
		reads, points = reads+p+q, points+p
		w("| %s | %d | %d | %d | %d | %s |\n", c.name, p, q, c.n.count("create"), c.n.count("replace"), share(p, p+q))
	}
	w("| both | %d | %d | | | %s |\n\n", points, reads-points, share(points, reads))
	w("The holder reads once, to acquire; its renewals are conditional writes on the ETag it holds, with no read before them.\n")
	w("The standby's every poll is a point read. In Azure a point read of a lease document (under 1 KB) costs 1 RU, and the\n")
	w("single-partition query by id that reads used before costs about 2.3–3 RU; this server reports 1 RU for everything, so the\n")
	w("request kinds are measured here, not the charges. With the default RetryPeriod (5 s) a standby makes 720 reads an hour.\n")
	if r.holderLost || r.standbyHeld {
		w("\n**The run was not steady**: the holder lost the lease (%t), or the standby acquired it (%t).\n", r.holderLost, r.standbyHeld)
	}
	w("\n")
	return b.String()
}

func share(part, all int64) string {
	if all == 0 {
		return "no reads"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(part)/float64(all))
}

// replaceSection rewrites one section (from its heading to the next) of an existing report, or puts it before
// the section headed before when the report has none yet.
func replaceSection(path, heading, section, before string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w (run the whole bench first)", err)
	}
	doc := string(b)
	start := strings.Index(doc, heading+"\n")
	end := start
	if start < 0 {
		if start = strings.Index(doc, before); start < 0 {
			return fmt.Errorf("%s has no section %q to put %q before", path, strings.TrimSpace(before), heading)
		}
		end = start
	} else if next := strings.Index(doc[start+len(heading):], "\n## "); next >= 0 {
		end = start + len(heading) + next + 1
	} else {
		end = len(doc)
	}
	doc = doc[:start] + section + doc[end:]
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Printf("bench: rewrote %q in %s\n%s", heading, path, section)
	return nil
}
