package cosmoslease

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Operator controls of a scheduled job: pause, resume, stop the run in progress, and trigger a manual run.
//
// They live in the job's lease document, in a top-level property of their own ("control"), beside the holder's
// fields and the job's state. So every contender sees them on the read it already makes for each occurrence (no
// extra request in steady state), and every decision the election makes is conditional on the version that
// carries them: a claim based on a version older than a pause is refused (412) and reads again.
//
// An operator's write (Pause, Resume, Trigger) is a read-modify-write of the whole document on its ETag, retried
// on 412, so it never overwrites a holder's change, and it changes only "control". The holder, whose next renewal
// then gets 412, reads the document and adopts a version that differs from its own only in "control" (lease.go,
// reconcile): an operator's write never costs a holder its lease or its epoch. Every holder's write carries the
// control as it last read it; a new holding drops a stop order, which named an older holding.

// Control is the operator's word on a job, as its lease document carries it.
type Control struct {
	// Paused is set while the job is paused: each occurrence is then decided as usual (the same election) and
	// recorded skipped with cause "paused", and its work does not run.
	Paused *Pause `json:"paused,omitempty"`
	// Stop asks the holding it names to stop (pause --stop): its lease is lost when it next renews.
	Stop *StopOrder `json:"stop,omitempty"`
	// Trigger is a manual run asked for and not yet claimed.
	Trigger *Trigger `json:"trigger,omitempty"`
}

// Pause says who paused a job, when and why.
type Pause struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	// ID tells this pause apart from another one, so that a write whose answer was lost is recognised.
	ID string `json:"id"`
}

// StopOrder asks the holding with LeaseID to stop: it loses its lease when it next renews, its work's context
// ends as on any lease loss, and its run is recorded lost.
type StopOrder struct {
	LeaseID string    `json:"leaseId"`
	Epoch   int64     `json:"epoch"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

// Trigger is a manual run of a job, asked for by By at At. The run's record id is ManualRunID(key, ID).
type Trigger struct {
	ID string    `json:"id"`
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// Errors of the controls. Each error returned wraps one of them; the message says what to do.
var (
	ErrNoSuchJob     = errors.New("no such job")
	ErrAlreadyPaused = errors.New("the job is already paused")
	ErrNotPaused     = errors.New("the job is not paused")
	// ErrPauseUncertain: a pause's answer was lost, and the job is not paused now: the pause may have been applied
	// and then ended by someone's resume, so it is not written again (that would undo the resume).
	ErrPauseUncertain = errors.New("the pause's answer was lost and the job is not paused now")
	ErrTriggerPending = errors.New("a manual run is already waiting to be claimed")
	ErrNoTrigger      = errors.New("no manual run is waiting to be claimed")
)

// causePaused is the cause of an occurrence decided while the job was paused.
const causePaused = "paused"

// decodeControl reads the control property of a document; zero when it has none.
func decodeControl(d *leasedoc.Doc) (Control, error) {
	var c Control
	if d == nil || len(d.Control) == 0 || string(d.Control) == "null" {
		return c, nil
	}
	if err := json.Unmarshal(d.Control, &c); err != nil {
		return c, fmt.Errorf("the lease document %s holds a control property this library cannot read (%v); fix or delete it by hand", d.ID, err)
	}
	return c, nil
}

// encode renders the control for the document; nil when there is nothing in it.
func (c Control) encode() json.RawMessage {
	if c.Paused == nil && c.Stop == nil && c.Trigger == nil {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("cosmoslease: control cannot be encoded: %v", err)) // only times and strings
	}
	return b
}

// carriedControl is the control a new holding's document carries over from prev: all of it but a stop order,
// which named an earlier holding.
func carriedControl(prev *leasedoc.Doc) json.RawMessage {
	if prev == nil || len(prev.Control) == 0 {
		return nil
	}
	c, err := decodeControl(prev)
	if err != nil {
		return prev.Control // unreadable: kept as it is, for people to fix; the election refuses to decide on it
	}
	c.Stop = nil
	return c.encode()
}

// operatorEdit reports whether doc is mine with only its control changed: an operator's write over the holder's
// newest version. Nothing else may differ.
func operatorEdit(doc, mine *leasedoc.Doc) bool {
	if doc.LeaseID != mine.LeaseID || doc.Epoch != mine.Epoch || doc.Renewals != mine.Renewals || doc.Released != mine.Released {
		return false
	}
	return sameButControl(doc, mine)
}

// sameButControl compares two versions of a document as JSON values, leaving out control and the server's
// properties.
func sameButControl(a, b *leasedoc.Doc) bool {
	norm := func(d *leasedoc.Doc) map[string]any {
		x := *d
		x.Control, x.ETag, x.TS = nil, "", 0
		body, err := leasedoc.Encode(&x, "")
		if err != nil {
			return nil
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			return nil
		}
		return m
	}
	ma, mb := norm(a), norm(b)
	return ma != nil && reflect.DeepEqual(ma, mb)
}

// stopsHolding reports the stop order in doc that names the holding leaseID, if any.
func stopsHolding(doc *leasedoc.Doc, leaseID string) *StopOrder {
	c, err := decodeControl(doc)
	if err != nil || c.Stop == nil || c.Stop.LeaseID != leaseID {
		return nil
	}
	return c.Stop
}

// ManualRunID is the id of the run record of a manual run (Client.Trigger).
func ManualRunID(key, triggerID string) string { return RunPrefix + key + "-manual-" + triggerID }

// PauseOptions are Pause's.
type PauseOptions struct {
	// By names who pauses (a person, a pipeline); default this client's OwnerID.
	By string
	// Reason is recorded with the pause and in the record of every occurrence decided while paused.
	Reason string
	// Stop also stops the run in progress, if any: its holder loses the lease when it next renews (within
	// RenewInterval), its work's context ends as on any lease loss, and its run is recorded lost. Without it a
	// run in progress finishes. With Stop, an already paused job is not an error: only the stop is written.
	Stop bool
}

// PauseResult is what Pause did.
type PauseResult struct {
	Pause Pause
	// Running is the run in progress when the pause was written (nil when none): without Stop it finishes.
	Running *RunRecord
	// Stopped is the stop order written (PauseOptions.Stop with a run in progress).
	Stopped *StopOrder
}

// Pause pauses the job of key: from the next decision on, each occurrence is recorded skipped with cause "paused"
// (and the reason) instead of running, and not counted missed. A run in progress finishes unless opts.Stop. The
// lease document must exist and hold a job's state (the job has decided an occurrence): ErrNoSuchJob otherwise,
// also for a lease that is no scheduled job's; ErrAlreadyPaused when it is paused (unless opts.Stop). With
// RetryAbandoned, a run abandoned before or during the pause is judged abandoned by the first claim while paused
// and not run again. Requests: a point read and one conditional replace (more after a 412).
func (c *Client) Pause(ctx context.Context, key string, opts PauseOptions) (PauseResult, error) {
	var res PauseResult
	by := opts.By
	if by == "" {
		by = c.opts.OwnerID
	}
	p := Pause{By: by, At: c.clock.Now().UTC().Truncate(time.Millisecond), Reason: opts.Reason, ID: controlID(c.clock.Now())}
	err := c.control(ctx, key, func(doc *leasedoc.Doc, ctl *Control, job jobState, maybe bool) (bool, error) {
		res = PauseResult{Pause: p}
		if job.Cursor.IsZero() && job.Run == nil {
			return false, notAJob(key)
		}
		if maybe && ctl.Paused == nil {
			// An earlier attempt's answer was lost: it may have paused the job, and someone resumed it since.
			// Writing the pause again would undo that resume; say what is known instead.
			return false, fmt.Errorf("%w: lease %q is not paused, and this pause may have been applied and then ended by a resume; check with cosmoslease inspect --lease %s and pause again if it should be",
				ErrPauseUncertain, key, key)
		}
		if job.unfinished() && !doc.Released {
			r := *job.Run
			res.Running = &r
		}
		mine := ctl.Paused != nil && ctl.Paused.ID == p.ID
		if ctl.Paused != nil && !mine && !opts.Stop {
			return false, fmt.Errorf("%w: lease %q was paused by %s at %s%s; resume it first to pause it again", ErrAlreadyPaused, key,
				ctl.Paused.By, ctl.Paused.At.Format(time.RFC3339), reasonSuffix(ctl.Paused.Reason))
		}
		changed := false
		if ctl.Paused == nil {
			ctl.Paused, changed = &p, true
		} else {
			res.Pause = *ctl.Paused
		}
		if opts.Stop && res.Running != nil {
			if ctl.Stop == nil || ctl.Stop.LeaseID != doc.LeaseID {
				ctl.Stop, changed = &StopOrder{LeaseID: doc.LeaseID, Epoch: doc.Epoch, By: by, At: p.At}, true
			}
			s := *ctl.Stop
			res.Stopped = &s
		}
		return changed, nil
	})
	return res, err
}

// Resume ends the pause of the job of key (and any stop order): the next occurrences run again. ErrNotPaused
// when it is not paused. It returns the pause it ended.
func (c *Client) Resume(ctx context.Context, key string) (Pause, error) {
	var ended Pause
	err := c.control(ctx, key, func(doc *leasedoc.Doc, ctl *Control, job jobState, maybe bool) (bool, error) {
		if ctl.Paused == nil {
			if maybe && ended.ID != "" {
				return false, nil // our own resume, whose answer was lost
			}
			return false, fmt.Errorf("%w: lease %q is not paused; nothing to resume", ErrNotPaused, key)
		}
		ended = *ctl.Paused
		ctl.Paused, ctl.Stop = nil, nil
		return true, nil
	})
	return ended, err
}

// Trigger asks for one manual run of the job of key, now: the contenders (RunSchedule's trigger poll, the
// handler's) elect one to run it exactly as they elect one for an occurrence — the most preferred live region
// first, one run at a time, at a new epoch — and record it in the run record ManualRunID(key, trigger.ID), marked
// manual, with who and when. It runs on a paused job too. ErrTriggerPending while an earlier trigger waits to be
// claimed; ErrNoSuchJob when the lease document does not exist or is no job's. WaitRun waits for its record.
func (c *Client) Trigger(ctx context.Context, key, by string) (Trigger, error) {
	if by == "" {
		by = c.opts.OwnerID
	}
	now := c.clock.Now()
	t := Trigger{ID: controlID(now), By: by, At: now.UTC().Truncate(time.Millisecond)}
	err := c.control(ctx, key, func(doc *leasedoc.Doc, ctl *Control, job jobState, maybe bool) (bool, error) {
		if ctl.Trigger != nil && ctl.Trigger.ID == t.ID {
			return false, nil // ours, whose answer was lost
		}
		if maybe && c.manualRunClaimed(ctx, key, job, t.ID) {
			return false, nil // ours, whose answer was lost, and a contender has claimed it since: written again, it would run twice
		}
		if ctl.Trigger != nil {
			return false, fmt.Errorf("%w: lease %q has a manual run asked for by %s at %s that no contender has claimed yet (is a cron or handler of this job running?); wait for it (cosmoslease inspect --runs --lease %s)",
				ErrTriggerPending, key, ctl.Trigger.By, ctl.Trigger.At.Format(time.RFC3339), key)
		}
		if job.Cursor.IsZero() && job.Run == nil {
			return false, notAJob(key)
		}
		ctl.Trigger = &t
		return true, nil
	})
	return t, err
}

// CancelTrigger withdraws the manual run waiting to be claimed for the job of key, and returns it. ErrNoTrigger when
// none waits (none was asked for, or a contender has claimed it: then it runs, and pause --stop stops it).
func (c *Client) CancelTrigger(ctx context.Context, key string) (Trigger, error) {
	var gone Trigger
	err := c.control(ctx, key, func(doc *leasedoc.Doc, ctl *Control, job jobState, maybe bool) (bool, error) {
		if ctl.Trigger == nil {
			switch {
			case gone.ID != "" && c.manualRunClaimed(ctx, key, job, gone.ID):
				return false, fmt.Errorf("%w for lease %q: a contender claimed the manual run asked for by %s at %s before it could be withdrawn, so it runs (cosmoslease inspect --runs --lease %s shows it; pause --stop stops it)",
					ErrNoTrigger, key, gone.By, gone.At.Format(time.RFC3339), key)
			case gone.ID != "" && maybe:
				return false, nil // our own withdrawal, whose answer was lost
			}
			return false, fmt.Errorf("%w for lease %q: none was asked for, or a contender has claimed it (cosmoslease inspect --runs --lease %s shows it; pause --stop stops it)", ErrNoTrigger, key, key)
		}
		gone = *ctl.Trigger
		ctl.Trigger = nil
		return true, nil
	})
	return gone, err
}

// WaitRun waits until the run record id of the job of key says how the run ended (any status but started), reading
// it every poll (default 1 s; one point read each), until ctx ends. For a manual run (ManualRunID) it also reads the
// lease document while the record is missing, and returns ErrNoTrigger once the trigger is gone unclaimed
// (withdrawn with CancelTrigger): that run never comes.
func (c *Client) WaitRun(ctx context.Context, key, id string, poll time.Duration) (RunRecord, error) {
	if poll <= 0 {
		poll = time.Second
	}
	for {
		rec, err := c.readRun(ctx, key, id)
		switch {
		case err == nil && rec != nil && rec.Status != RunStarted:
			return *rec, nil
		case err != nil && !store.Retryable(err):
			return RunRecord{}, err
		case err == nil && rec == nil:
			if werr := c.withdrawn(ctx, key, id); werr != nil {
				return RunRecord{}, werr
			}
		}
		if serr := c.sleep(ctx, poll); serr != nil {
			if rec != nil {
				return *rec, serr
			}
			return RunRecord{}, serr
		}
	}
}

// control changes the control of key's lease document with a read-modify-write on its ETag: fn edits ctl and
// reports whether it changed anything. fn is called again on the newest version after a 412, so it must judge
// afresh each time.
//
// maybe tells fn that one of the earlier attempts' writes may have been applied although its answer was lost (a
// timeout, a reset): then a change of fn's own may already be in the document, or already consumed (a trigger
// claimed). A 412 says the write was not applied.
func (c *Client) control(ctx context.Context, key string, fn func(doc *leasedoc.Doc, ctl *Control, job jobState, maybe bool) (bool, error)) error {
	id, err := leasedoc.ID(key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	maybe := false
	for attempt := 0; ; attempt++ {
		obs, err := c.observe(ctx, key, id, time.Time{})
		if err == nil {
			switch {
			case obs.invalid != nil:
				return obs.invalid
			case obs.doc == nil:
				return fmt.Errorf("%w: there is no lease %q in this container (check the key and the container: cosmoslease inspect --runs lists the jobs)", ErrNoSuchJob, key)
			}
			ctl, cerr := decodeControl(obs.doc)
			if cerr != nil {
				return cerr
			}
			job, jerr := decodeJob(obs.doc)
			if jerr != nil {
				return jerr
			}
			changed, ferr := fn(obs.doc, &ctl, job, maybe)
			if ferr != nil || !changed {
				return ferr
			}
			next := *obs.doc
			next.Control = ctl.encode()
			_, _, err = c.replaceDoc(ctx, "control", key, id, &next, obs.etag)
			if err == nil {
				return nil
			}
			maybe = maybe || store.KindOf(err) == store.Unknown
			if k := store.KindOf(err); k == store.NotFound {
				return fmt.Errorf("%w: lease %q was deleted meanwhile", ErrNoSuchJob, key)
			} else if k != store.Precondition && !store.Retryable(err) {
				return err
			}
		} else if !store.Retryable(err) {
			return err
		}
		if attempt >= 10 {
			return fmt.Errorf("the lease document of %q kept changing (or Cosmos DB kept failing) while the control was written; try again: %w", key, err)
		}
		if serr := c.sleep(ctx, 20*time.Millisecond<<min(attempt, 5)); serr != nil {
			return serr
		}
	}
}

// manualRunClaimed reports whether the manual run of the trigger triggerID was claimed: the document names it as
// the job's run or among the runs to judge or to record, or its record exists. (A claim makes it the job's run; a
// later claim moves it to the runs to judge or to record, or its record was written.) A failed read of the record
// counts as not claimed.
func (c *Client) manualRunClaimed(ctx context.Context, key string, job jobState, triggerID string) bool {
	id := ManualRunID(key, triggerID)
	if job.Run != nil && job.Run.ID == id {
		return true
	}
	for _, r := range append(slices.Clone(job.Settle), job.Pending...) {
		if r.ID == id {
			return true
		}
	}
	rec, err := c.readRun(ctx, key, id)
	return err == nil && rec != nil
}

// withdrawn reports (ErrNoTrigger) that the manual run id of key will never run: its trigger is no longer in the
// lease document, and neither the document nor a record names the run. Nil for any other id, and while unsure.
func (c *Client) withdrawn(ctx context.Context, key, id string) error {
	prefix := ManualRunID(key, "")
	if !strings.HasPrefix(id, prefix) {
		return nil
	}
	tid := strings.TrimPrefix(id, prefix)
	lid, err := leasedoc.ID(key)
	if err != nil {
		return nil
	}
	obs, err := c.observe(ctx, key, lid, time.Time{})
	if err != nil || obs.invalid != nil {
		return nil
	}
	ctl, cerr := decodeControl(obs.doc)
	job, jerr := decodeJob(obs.doc)
	if cerr != nil || jerr != nil || ctl.Trigger != nil && ctl.Trigger.ID == tid || c.manualRunClaimed(ctx, key, job, tid) {
		return nil
	}
	return fmt.Errorf("%w: the manual run %s of lease %q was withdrawn (trigger --cancel) before any contender claimed it, so it will not run", ErrNoTrigger, id, key)
}

// notAJob is the error for a lease document that holds no job state.
func notAJob(key string) error {
	return fmt.Errorf("%w: lease %q has never decided an occurrence, so it is no scheduled job's lease (cron and the Functions handler write the job's state at its first occurrence); check the key with cosmoslease inspect --runs", ErrNoSuchJob, key)
}

// controlID is a new id for a pause or a trigger: its time, readable, and a random part.
func controlID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", now.UTC().Format("20060102T150405.000Z"), b)
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// pausedReason is the reason recorded for an occurrence decided while paused.
func pausedReason(p *Pause) string {
	return fmt.Sprintf("paused by %s at %s%s", dashIfEmpty(p.By), p.At.UTC().Format(time.RFC3339), reasonSuffix(p.Reason))
}
