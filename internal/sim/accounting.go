package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/cosmoslease/cosmoslease/internal/libhook"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Accounting (issue 24, "What every run checks" 4): every due occurrence up to the final cursor ends executed,
// recorded with its reason, or counted missed exactly once — by the records (MissedOccurrences over them), by the
// job's state (History.MissedTotal) and by the cosmoslease.occurrence.missed counter summed over every process —
// and nothing counted missed or skipped ever runs. Judged against what the work functions saw, on the container as
// it is at the end.

// Checks of the accounting.
const (
	checkAccounted = "accounting"   // every occurrence up to the cursor has one record, and the records agree with what ran
	checkMissed    = "missed-count" // the missed occurrences, counted by the records, History and the counter, agree
	checkCause     = "missed-cause" // an occurrence that came due while a run was going is not counted missed
	// missed-cause-earlier: the same, when the run going at its time was not the one the deciding claim replaced
	// (a known finding: known.go).
	checkCauseEarlier = "missed-cause-earlier"
)

// jobRecord is what the accounting checks collect of one job.
type jobRecord struct {
	readers []*procReader // one per incarnation of each participant
	// At the end, read inside the bubble:
	state   jobDoc // the job's state in its lease document
	records []cosmoslease.RunRecord
	history cosmoslease.History
	hErr    error
	read    bool
}

// jobDoc is the job state as docs/reliability.md describes it (the lease document's "job" property).
type jobDoc struct {
	Cursor   time.Time               `json:"cursor"`
	Run      *cosmoslease.RunRecord  `json:"run"`
	Recorded bool                    `json:"recorded"`
	Settle   []cosmoslease.RunRecord `json:"settle"`
	Pending  []cosmoslease.RunRecord `json:"pending"`
	Missed   int64                   `json:"missed"`
}

func (r *recorder) job(key string) *jobRecord {
	jr := r.jobs[key]
	if jr == nil {
		jr = &jobRecord{}
		r.jobs[key] = jr
	}
	return jr
}

// readJobs reads, at the end of the run and inside the bubble, each job's lease document and run records straight
// from the container, and its History as a reader with no faults sees it.
func (w *world) readJobs() {
	if len(w.cfg.Jobs) == 0 {
		return
	}
	c, err := libhook.NewClient(libhook.Parts{Store: w.mem, Clock: trueClock{}}, cosmoslease.Options{OwnerID: "sim-reader",
		Region: "eastus", Logger: discard})
	if err != nil {
		panic(err)
	}
	reader := c.(*cosmoslease.Client)
	for _, j := range w.cfg.Jobs {
		jr := w.rec.job(j.Key)
		jr.read = true
		if it, err := w.mem.Read(bg, j.Key, "lease-"+j.Key, ""); err == nil {
			var d struct {
				Job *jobDoc `json:"job"`
			}
			if json.Unmarshal(it.Body, &d) == nil && d.Job != nil {
				jr.state = *d.Job
			}
		}
		items, _, _ := w.mem.List(bg, cosmoslease.RunPrefix+j.Key+"-")
		for _, it := range items {
			var r cosmoslease.RunRecord
			if json.Unmarshal(it.Body, &r) == nil && r.LeaseKey == j.Key {
				jr.records = append(jr.records, r)
			}
		}
		sched := schedule{every: j.Every, zero: w.start.Truncate(24 * time.Hour)}
		jr.history, jr.hErr = reader.History(context.Background(), j.Key, 1000, sched.Next, window(j))
	}
}

// window is the claim window of j's occurrences (RunOptions.MissedAfter as cron and the handler set it).
func window(j JobConfig) time.Duration {
	return cosmoslease.ClaimWindow(len(j.Regions), j.FailoverDelay, j.LeaseDuration)
}

// decisions puts together the records and the job's state as History does: the document's word (records still
// pending, a run's outcome not yet recorded, the unfinished runs: the cursor's and those to settle) replaces a
// stored record of the same id decided no later (strictly earlier, for the unfinished).
func (jr *jobRecord) decisions() []cosmoslease.RunRecord {
	recs := append([]cosmoslease.RunRecord(nil), jr.records...)
	byID := map[string]int{}
	for i, r := range recs {
		byID[r.ID] = i
	}
	put := func(r cosmoslease.RunRecord, strictly bool) {
		if i, ok := byID[r.ID]; ok {
			if recs[i].Decided < r.Decided || !strictly && recs[i].Decided == r.Decided {
				recs[i] = r
			}
			return
		}
		byID[r.ID] = len(recs)
		recs = append(recs, r)
	}
	st := jr.state
	for _, r := range st.Pending {
		put(r, false)
	}
	if st.Run != nil && st.Run.Status != cosmoslease.RunStarted && !st.Recorded {
		put(*st.Run, false)
	}
	if st.Run != nil && st.Run.Status == cosmoslease.RunStarted {
		put(*st.Run, true)
	}
	for _, r := range st.Settle {
		put(r, true)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Occurrence.Before(recs[j].Occurrence) })
	return recs
}

// checkAccounting judges one job's accounting at the end of the run.
func (w *world) checkAccounting(j JobConfig, byOcc map[int64][]*workRun) {
	jr := w.rec.jobs[j.Key]
	if jr == nil || !jr.read {
		return
	}
	end := w.cfg.Duration
	sched := schedule{every: j.Every, zero: w.start.Truncate(24 * time.Hour)}
	st := jr.state
	recs := jr.decisions()
	bad := func(check, format string, args ...any) {
		w.violate(Violation{At: end, Check: check, Key: j.Key, Text: fmt.Sprintf(format, args...)})
	}
	// Which record covers each occurrence.
	cover := map[int64]*cosmoslease.RunRecord{}
	var first time.Time
	nMissed := 0
	for i := range recs {
		r := &recs[i]
		n := 0
		for t := r.Occurrence; !t.After(r.Last()); t = sched.Next(t) {
			n++
			if o := cover[t.UnixNano()]; o != nil {
				bad(checkAccounted, "occurrence %s is covered by two records: %s (%s) and %s (%s)", w.occName(t), o.ID, o.Status, r.ID, r.Status)
			}
			cover[t.UnixNano()] = r
			if r.Status == cosmoslease.RunMissed {
				nMissed++
			}
		}
		if n != r.Occurrences() {
			bad(checkAccounted, "record %s covers %d occurrences from %s through %s but says %d", r.ID, n, w.occName(r.Occurrence), w.occName(r.Last()), r.Occurrences())
		}
		if first.IsZero() || r.Occurrence.Before(first) {
			first = r.Occurrence
		}
	}
	settling := map[string]bool{}
	for _, s := range st.Settle {
		settling[s.ID+"/"+s.ClaimID] = true
	}
	// Every occurrence from the first decided to the cursor: one record, and it agrees with what ran.
	if !first.IsZero() && !st.Cursor.IsZero() {
		for t := first; !t.After(st.Cursor); t = sched.Next(t) {
			r := cover[t.UnixNano()]
			ran := byOcc[t.UnixNano()]
			switch {
			case r == nil:
				bad(checkAccounted, "occurrence %s, before the cursor (%s), has no record: neither executed, nor recorded with its reason, nor counted missed (%d starts)",
					w.occName(t), w.occName(st.Cursor), len(ran))
			case r.Status == cosmoslease.RunMissed || r.Status == cosmoslease.RunSkipped:
				if len(ran) > 0 {
					bad(checkAccounted, "occurrence %s is recorded %s (%s) but ran (%s#%d at %s)", w.occName(t), r.Status, r.Reason,
						ran[0].p.cfg.Name, ran[0].inc, fmtAt(ran[0].from))
				}
				if r.Reason == "" || r.Status == cosmoslease.RunSkipped && r.Cause == "" {
					bad(checkAccounted, "occurrence %s is recorded %s without its reason", w.occName(t), r.Status)
				}
				if r.Status == cosmoslease.RunMissed {
					w.checkMissedCause(j, t, r)
				}
				if r.Cause != "overlap" {
					w.checkPassedOver(j, t, r)
				}
			case r.Status == cosmoslease.RunStarted:
				if !(t.Equal(st.Cursor) && st.Run != nil && st.Run.Status == cosmoslease.RunStarted && st.Run.ClaimID == r.ClaimID) &&
					!settling[r.ID+"/"+r.ClaimID] {
					bad(checkAccounted, "occurrence %s is recorded started (claim %s, epoch %d), and nothing left will judge it: it is neither the cursor's unfinished run nor a run to settle",
						w.occName(t), r.ClaimID, r.Epoch)
				}
			case r.Status == cosmoslease.RunCompleted || r.Status == cosmoslease.RunTimedOut:
				if len(ran) == 0 {
					bad(checkAccounted, "occurrence %s is recorded %s but its work never started", w.occName(t), r.Status)
				}
				if r.CaughtUp {
					w.judged["caught up"]++
					if j.CatchUpWindow <= 0 {
						bad(checkAccounted, "occurrence %s is recorded caught up, but the job has no catch-up window", w.occName(t))
					}
				}
			}
		}
	}
	// Work only ever starts for a decided occurrence.
	for k, runs := range byOcc {
		t := time.Unix(0, k)
		if st.Cursor.IsZero() || t.After(st.Cursor) {
			bad(checkAccounted, "occurrence %s ran (%s#%d at %s) but the cursor (%s) never reached it", w.occName(t), runs[0].p.cfg.Name, runs[0].inc,
				fmtAt(runs[0].from), w.occName(st.Cursor))
		}
	}
	// Missed: counted once, alike by the records, the job's state, History and the counters.
	if int64(nMissed) != st.Missed {
		bad(checkMissed, "the records mark %d occurrences missed, the job's state counts %d", nMissed, st.Missed)
	}
	if jr.hErr != nil {
		bad(checkMissed, "History failed: %v", jr.hErr)
	} else if jr.history.MissedTotal != st.Missed || !jr.history.Cursor.Equal(st.Cursor) {
		bad(checkMissed, "History says %d missed, cursor %s; the job's state %d, cursor %s", jr.history.MissedTotal, w.occName(jr.history.Cursor),
			st.Missed, w.occName(st.Cursor))
	}
	if !st.Cursor.IsZero() && !first.IsZero() {
		m := cosmoslease.MissedOccurrences(recs, sched.Next, st.Cursor.Add(window(j)), window(j), 1000)
		if !m.Capped && m.Count != nMissed {
			bad(checkMissed, "MissedOccurrences over every record counts %d missed from %s to %s; the records mark %d", m.Count, w.occName(m.From),
				w.occName(m.To), nMissed)
		}
	}
	w.judged["occurrences"] += len(cover)
	w.judged["starts"] += len(byOcc)
	w.judged["missed"] += nMissed
	var counted int64
	for _, r := range jr.readers {
		if r.err != nil {
			bad(checkMissed, "reading the counters: %v", r.err)
			return
		}
		counted += r.missed
	}
	// docs/reliability.md: the counter is incremented by the process whose claim decided them, once its claim is
	// confirmed; a claim whose answer is lost and never recognised leaves its missed occurrences out of that
	// process's counter. So the counter is at most the state's count, and at least that less what writes of the
	// job's document whose answer was lost added to it.
	unheard := w.unheardMissed(j.Key)
	w.judged["counted"] += int(counted)
	if counted > st.Missed || counted < st.Missed-unheard {
		bad(checkMissed, "the missed counter summed over every process is %d; the job's state counts %d (writes of the lease document whose answer was lost added %d)",
			counted, st.Missed, unheard)
	}
}

// checkMissedCause: an occurrence recorded missed must not have come due while a run of the job was going, in calm
// weather with clocks that agree (then it is skipped for overlap; a waiting occurrence is not missed).
func (w *world) checkMissedCause(j JobConfig, t time.Time, r *cosmoslease.RunRecord) {
	at := t.Sub(w.start)
	if !w.clockSensitiveOK(j) || !w.quiet(j, at-2*j.LeaseDuration, at+window(j)) {
		return
	}
	m := w.clockSpread(j) + 2*time.Second
	w.judged[checkCause]++
	// The run the deciding claim replaced: the latest one started under an earlier epoch.
	var prev *workRun
	for _, run := range w.rec.work[j.Key] {
		if run.epoch < r.Decided && (prev == nil || run.epoch > prev.epoch) {
			prev = run
		}
	}
	for _, run := range w.rec.work[j.Key] {
		if d, dead := w.rec.deaths[[2]int{run.p.id, run.inc}]; run.from < at-m && (run.to < 0 || run.to > at+m) && (!dead || d > at+m) {
			check, how := checkCause, "the run the deciding claim replaced"
			if run != prev {
				check, how = checkCauseEarlier, "an earlier run than the one the deciding claim replaced"
			}
			w.violate(Violation{At: at, Check: check, Key: j.Key,
				Text: fmt.Sprintf("occurrence %s is recorded missed (%s), but it came due while %s#%d ran occurrence %s (from %s to %s; %s): it waited behind a run",
					w.occName(t), r.Reason, run.p.cfg.Name, run.inc, w.occName(run.occurrence), fmtAt(run.from), fmtAt(run.to), how)})
			return
		}
	}
}

// checkPassedOver: in quiet weather (since two occurrences and a failover before it, until its claim window
// ends), with a participant up throughout and no earlier occurrence's work going at its time, an occurrence is run:
// every live contender contends for every occurrence until its Until (issue 23, item 3), so nothing passes it over
// as superseded or missed.
func (w *world) checkPassedOver(j JobConfig, t time.Time, r *cosmoslease.RunRecord) {
	at := t.Sub(w.start)
	back := 2*j.Every + j.LeaseDuration + horizon(j)
	if !w.clockSensitiveOK(j) || at < back+2*w.cfg.LeaseDuration || !w.quiet(j, at-back, at+window(j)) {
		return
	}
	up := false
	for _, id := range j.Procs {
		up = up || !w.procDown(w.procs[id], at-back, at+window(j))
	}
	if !up {
		return
	}
	m := w.clockSpread(j) + 2*time.Second
	for _, run := range w.rec.work[j.Key] {
		if run.occurrence.Before(t) && run.from < at+m && (run.to < 0 || run.to > at-m) {
			return
		}
	}
	w.judged["passed-over"]++
	w.violate(Violation{At: at, Check: checkRecovering, Key: j.Key,
		Text: fmt.Sprintf("occurrence %s was passed over (%s: %s) in calm weather, with a contender up and no earlier run going at its time", w.occName(t),
			r.Status, r.Reason)})
}

// unheardMissed is how much the writes of key's lease document whose caller got no answer added to the missed
// count (each against the version applied before it).
func (w *world) unheardMissed(key string) int64 {
	lost := map[int]bool{}
	for _, o := range w.ops {
		if o.applied && o.status == 0 && o.doc == "lease-"+key {
			lost[o.seq] = true
		}
	}
	var prev, sum int64
	for _, jw := range w.rec.jobWrites {
		if jw.doc != "lease-"+key {
			continue
		}
		if lost[jw.seq] && jw.info.missed > prev {
			sum += jw.info.missed - prev
		}
		prev = jw.info.missed
	}
	return sum
}

// procReader is the metrics of one incarnation of a participant; the missed counter as it was when it died.
type procReader struct {
	proc, inc int
	reader    *sdkmetric.ManualReader
	dead      bool
	missed    int64
	err       error
}

type jobWrite struct {
	doc       string
	seq       int
	at        time.Duration
	proc, inc int
	info      jobWriteInfo
}

// sumCounter sums an Int64 counter over every reader.
func sumCounter(readers []*sdkmetric.ManualReader, name string) (int64, error) {
	var sum int64
	for _, rd := range readers {
		var rm metricdata.ResourceMetrics
		if err := rd.Collect(context.Background(), &rm); err != nil {
			return 0, err
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != name {
					continue
				}
				s, ok := m.Data.(metricdata.Sum[int64])
				if !ok {
					return 0, fmt.Errorf("%s is a %T, not an Int64 sum", name, m.Data)
				}
				for _, dp := range s.DataPoints {
					sum += dp.Value
				}
			}
		}
	}
	return sum, nil
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))
