package leasehandler

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// status is the HTTP function LeaseStatus: every job's lease, newest run and missed occurrences, and, for the
// first job that can run, its newest runs in full (the answer's top level, as before several jobs). When it
// cannot read them the invocation fails (500), and the host answers the caller with 500.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	iv := h.invocation(statusFunction, r)
	fail := func(format string, args ...any) {
		iv.fail(format, args...)
		iv.answer(w, nil, nil)
	}
	if h.appErr != nil {
		fail("%v", h.appErr)
		return
	}
	if _, err := readInvocation(r); err != nil {
		fail("%v", err)
		return
	}
	ctx, cancel := h.app.budget.deadline(r.Context(), time.Now())
	defer cancel()
	client, err := h.connect(ctx)
	if err != nil {
		fail("cannot use the lease container: %v", cause(ctx, err))
		return
	}
	body := statusBody{Jobs: []jobStatus{}, RecentRuns: []cosmoslease.RunRecord{}, Missed: []time.Time{}}
	first := true
	for _, j := range h.jobs {
		js := jobStatus{Name: j.name, Missed: []time.Time{}}
		if j.err != nil {
			js.Error = j.err.Error()
			body.Jobs = append(body.Jobs, js)
			continue
		}
		recent, err := h.readJob(ctx, client, j, &js)
		if err != nil {
			fail("job %s: %v", j.name, cause(ctx, err))
			return
		}
		if first {
			first = false
			body.Lease, body.State, body.Owner, body.Region, body.Instance = js.Lease, js.State, js.Owner, js.Region, js.Instance
			body.Epoch, body.ExpiresInMs, body.Renewals, body.Occurrence = js.Epoch, js.ExpiresInMs, js.Renewals, js.Occurrence
			body.RecentRuns, body.MissedCount, body.Missed, body.MissedCapped, body.MissedWindow = recent, js.MissedCount, js.Missed, js.MissedCapped, js.MissedWindow
			body.Cursor, body.Running, body.MissedTotal, body.Overdue, body.Absent = js.Cursor, js.Running, js.MissedTotal, js.Overdue, js.Absent
			body.Paused, body.Stop, body.Trigger = js.Paused, js.Stop, js.Trigger
		}
		body.Jobs = append(body.Jobs, js)
	}
	b, _ := json.Marshal(body)
	iv.answer(w, map[string]any{"res": httpOutput{StatusCode: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b)}}, nil)
}

// readJob reads one job's lease document and newest runs into js (one point read and one single-partition query,
// through History), and returns the runs.
func (h *handler) readJob(ctx context.Context, client *cosmoslease.Client, j *job, js *jobStatus) ([]cosmoslease.RunRecord, error) {
	s := j.s
	_, ranks := s.rank(client.AccountRegions())
	hist, err := client.History(ctx, s.key, cosmoslease.DefaultRunLimit, s.sched.Next, s.missedAfter(ranks))
	if err != nil {
		return nil, err
	}
	recent := hist.Runs
	if recent == nil {
		recent = []cosmoslease.RunRecord{}
	}
	st, missed := hist.Lease, hist.Missed
	*js = jobStatus{Name: j.name, Schedule: s.sched.String(), Lease: s.key, State: st.Status(), Owner: st.Owner, Region: st.Region,
		Instance: st.Hostname, Epoch: st.Epoch, ExpiresInMs: st.ExpiresIn.Milliseconds(), Renewals: st.Renewals,
		Occurrence: st.Metadata["occurrence"], MissedCount: missed.Count, Missed: missed.Times, MissedCapped: missed.Capped,
		Running: hist.Running, MissedTotal: hist.MissedTotal, Overdue: hist.Overdue, Absent: hist.Absent,
		Paused: st.Control.Paused, Stop: st.Control.Stop, Trigger: st.Control.Trigger}
	if !hist.Cursor.IsZero() {
		js.Cursor = &hist.Cursor
	}
	if js.Missed == nil {
		js.Missed = []time.Time{}
	}
	if len(recent) > 0 {
		js.LastRun = &recent[0]
	}
	if !missed.From.IsZero() {
		js.MissedWindow = &window{From: missed.From, To: missed.To}
	}
	return recent, nil
}

// statusBody is LeaseStatus's answer: every job (Jobs), and at the top level the first job that can run, as the
// handler answered when it had one job: its lease as its document shows it, its newest runs, and the
// occurrences missed among them. On Flex Consumption HTTP functions run on instances of their own, never the
// timers', so the answer says nothing about the process that serves it. A lease is held only while an
// occurrence's work runs: between runs it is released.
type statusBody struct {
	Lease string `json:"lease"`
	// State is held, expired, released, free or invalid; ExpiresInMs is the longest the holder may still hold it,
	// as far as this reader can tell.
	State string `json:"state"`
	// Owner is the region's app that last held the lease; Instance its process; Occurrence the occurrence it ran.
	Owner       string                  `json:"owner"`
	Region      string                  `json:"region"`
	Instance    string                  `json:"instance"`
	Epoch       int64                   `json:"epoch"`
	ExpiresInMs int64                   `json:"expiresInMs"`
	Renewals    int64                   `json:"renewals"`
	Occurrence  string                  `json:"occurrence,omitempty"`
	RecentRuns  []cosmoslease.RunRecord `json:"recentRuns"`
	// Cursor is the newest occurrence decided; Running the run of it that has not finished, if any (its holder
	// holds the lease, or stopped without releasing it).
	Cursor  *time.Time             `json:"cursor,omitempty"`
	Running *cosmoslease.RunRecord `json:"running,omitempty"`
	// MissedCount is how many occurrences in MissedWindow (from the oldest run shown to the newest occurrence
	// decided) ran in no region; Missed lists the newest of them. Alert on it, and on each job's. MissedTotal counts
	// every occurrence ever decided missed.
	MissedCount  int         `json:"missedCount"`
	Missed       []time.Time `json:"missed"`
	MissedCapped bool        `json:"missedCapped,omitempty"`
	MissedWindow *window     `json:"missedWindow,omitempty"`
	MissedTotal  int64       `json:"missedTotal"`
	// Overdue are occurrences after the cursor whose claim window has passed with nobody claiming them (every
	// region down right now, or the timer not firing): the next claim records them.
	Overdue []time.Time `json:"overdue,omitempty"`
	// Absent are the regions that let an occurrence pass and have not come back, with when: the regions after them
	// do not wait for them.
	Absent map[string]time.Time `json:"absent,omitempty"`
	// Paused is set while the job is paused (cosmoslease pause): who, when and why; its occurrences are recorded
	// skipped with cause paused. Stop is a stop order for the run in progress (pause --stop); Trigger a manual run
	// asked for and not yet claimed (cosmoslease trigger). Manual runs are in RecentRuns with manual: true.
	Paused  *cosmoslease.Pause     `json:"paused,omitempty"`
	Stop    *cosmoslease.StopOrder `json:"stop,omitempty"`
	Trigger *cosmoslease.Trigger   `json:"trigger,omitempty"`
	// Jobs are every job the handler serves, in the order it lists them (Go jobs as registered, then command
	// jobs by name).
	Jobs []jobStatus `json:"jobs"`
}

// jobStatus is one job in LeaseStatus's answer: its lease, its newest run, the occurrences it missed among its
// newest runs (as at the top level), or the reason it cannot run.
type jobStatus struct {
	Name         string                 `json:"name"`
	Schedule     string                 `json:"schedule,omitempty"`
	Lease        string                 `json:"lease,omitempty"`
	State        string                 `json:"state,omitempty"`
	Owner        string                 `json:"owner,omitempty"`
	Region       string                 `json:"region,omitempty"`
	Instance     string                 `json:"instance,omitempty"`
	Epoch        int64                  `json:"epoch,omitempty"`
	ExpiresInMs  int64                  `json:"expiresInMs,omitempty"`
	Renewals     int64                  `json:"renewals,omitempty"`
	Occurrence   string                 `json:"occurrence,omitempty"`
	LastRun      *cosmoslease.RunRecord `json:"lastRun,omitempty"`
	MissedCount  int                    `json:"missedCount"`
	Missed       []time.Time            `json:"missed"`
	MissedCapped bool                   `json:"missedCapped,omitempty"`
	MissedWindow *window                `json:"missedWindow,omitempty"`
	Cursor       *time.Time             `json:"cursor,omitempty"`
	Running      *cosmoslease.RunRecord `json:"running,omitempty"`
	MissedTotal  int64                  `json:"missedTotal"`
	Overdue      []time.Time            `json:"overdue,omitempty"`
	Absent       map[string]time.Time   `json:"absent,omitempty"`
	Paused       *cosmoslease.Pause     `json:"paused,omitempty"`
	Stop         *cosmoslease.StopOrder `json:"stop,omitempty"`
	Trigger      *cosmoslease.Trigger   `json:"trigger,omitempty"`
	// Error is why the job cannot run (its settings): each of its invocations fails with it.
	Error string `json:"error,omitempty"`
}

type window struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}
