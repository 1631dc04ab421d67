package leasehandler

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Manual runs (cosmoslease trigger) on Functions. A trigger is written into a job's lease document; a timer has no
// tick for it. So the handler serves a timer function of its own, LeaseTrigger, every minute in every region: each
// tick reads each job's lease document (one point read per job) and runs the manual runs it finds through the
// job's election (cosmoslease.Client.RunTrigger), the most preferred live region first. A trigger therefore runs
// within about a minute (the next minute's tick, plus the rank's failover delay when the preferred region is
// down). The cost: one point read per job per region per minute (about 1 RU per KB of lease document) and one
// short invocation per region per minute.

// triggerFunction is the timer function that serves manual runs.
const triggerFunction = "LeaseTrigger"

// triggerSchedule is LeaseTrigger's schedule: every minute, on the minute.
const triggerSchedule = "0 */1 * * * *"

// triggerResult is one job's part of a LeaseTrigger tick's answer.
type triggerResult struct {
	Job    string `json:"job"`
	Status string `json:"status"` // executed, skipped, failed
	Record string `json:"record,omitempty"`
	Epoch  int64  `json:"epoch,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// triggers is one tick of LeaseTrigger: for each job that can run, read its lease document, and run the manual run
// it asks for, if any, through the election. Jobs are served side by side (their leases are independent). The tick
// fails (500) when a job's document could not be read or its manual run failed here.
func (h *handler) triggers(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	iv := h.invocation(triggerFunction, r)
	if h.appErr != nil {
		iv.fail("%v", h.appErr)
		iv.answer(w, nil, nil)
		return
	}
	if _, err := readInvocation(r); err != nil {
		iv.fail("%v", err)
		iv.answer(w, nil, nil)
		return
	}
	ctx, cancel := h.app.budget.deadline(r.Context(), start)
	defer cancel()
	client, err := h.connect(ctx)
	if err != nil {
		iv.fail("cannot use the lease container: %v", cause(ctx, err))
		iv.answer(w, nil, nil)
		return
	}
	var mu sync.Mutex
	var results []triggerResult
	var failed []string
	var wg sync.WaitGroup
	for _, j := range h.jobs {
		if j.err != nil || j.s == nil {
			continue // its own ticks say why it cannot run
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, ok := h.trigger(ctx, client, j, iv)
			mu.Lock()
			defer mu.Unlock()
			if res.Status != "" {
				results = append(results, res)
			}
			if !ok {
				failed = append(failed, fmt.Sprintf("job %s: %s", j.name, res.Reason))
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		iv.fail("manual runs: %v", failed)
	}
	iv.answer(w, nil, map[string]any{"manual": results})
}

// trigger serves job j's manual run, if its lease document asks for one. ok is false when the document could not be
// read or the run failed here.
func (h *handler) trigger(ctx context.Context, client *cosmoslease.Client, j *job, iv *invocation) (triggerResult, bool) {
	s := j.s
	res := triggerResult{Job: j.name}
	st, err := client.Inspect(ctx, s.key)
	if err != nil {
		res.Status, res.Reason = "failed", fmt.Sprintf("cannot read the lease document: %v", cause(ctx, err))
		return res, false
	}
	t := st.Control.Trigger
	if t == nil {
		return triggerResult{}, true
	}
	rank, ranks := s.rank(client.AccountRegions())
	if err := s.checkGap(ranks); err != nil {
		res.Status, res.Reason = "failed", err.Error()
		return res, false
	}
	o := h.runOptions(ctx, client, s, h.now(), rank, ranks, false)
	res.Record = cosmoslease.ManualRunID(s.key, t.ID)
	iv.logf("job %s: manual run asked for by %s at %s (record %s); contending at rank %d", j.name, t.By, t.At.UTC().Format(time.RFC3339), res.Record, rank)
	out, err := client.RunTrigger(ctx, s.key, *t, o, func(ctx context.Context, run cosmoslease.Run) error {
		iv.logf("job %s: manual run: executing in %s on instance %s at epoch %d", j.name, run.Region, run.Instance, run.Epoch)
		return j.work(ctx, Run{Job: j.name, Key: run.Key, Occurrence: run.Occurrence, Region: run.Region, Instance: run.Instance, Epoch: run.Epoch,
			Manual: true, TriggeredBy: run.TriggeredBy, Logf: iv.logf, run: run})
	})
	res.Epoch, res.Reason = out.Epoch, out.Reason
	switch {
	case err == nil && out.Status == cosmoslease.RunSkipped:
		res.Status = "skipped"
		iv.logf("job %s: manual run: skipped, %s", j.name, out.Reason)
	case err == nil:
		res.Status = "executed"
		iv.logf("job %s: manual run: done", j.name)
	default:
		res.Status = "failed"
		if res.Reason == "" {
			res.Reason = cause(ctx, err).Error()
		}
		return res, false
	}
	return res, true
}
