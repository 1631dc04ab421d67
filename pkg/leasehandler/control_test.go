package leasehandler

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// The operator controls through the host's protocol: a paused job's ticks skip, recorded paused; LeaseTrigger's
// tick runs a manual run once, in the preferred region; LeaseStatus shows both.

// operator opens a library client on the handler's container, as cosmoslease pause and trigger do.
func operator(t *testing.T, container string) *cosmoslease.Client {
	t.Helper()
	srv := cosmostest.Get(t)
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(srv.Endpoint),
		Database: srv.Database, Container: container, OwnerID: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// triggerTick posts one LeaseTrigger tick as the host does (a timer's invocation, every minute) and returns the HTTP
// status and the manual runs it answers.
func triggerTick(t *testing.T, ts *httptest.Server, at time.Time) (int, []triggerResult) {
	t.Helper()
	resp, err := http.Post(ts.URL+"/"+triggerFunction, "application/json", bytes.NewReader(monitoredTick(at.Add(-time.Minute), at, fired(at), false)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ReturnValue struct{ Manual []triggerResult }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out.ReturnValue.Manual
}

func TestPausedJobSkipsAndLeaseStatusShowsIt(t *testing.T) {
	var ran atomic.Int32
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error { ran.Add(1); return nil })
	occ := time.Now().UTC().Truncate(2 * time.Second)
	if r := postTimer(t, ts, occ); r.Status != "executed" {
		t.Fatalf("first tick: %+v", r)
	}
	op := operator(t, container)
	if _, err := op.Pause(context.Background(), h.jobs[0].s.key, cosmoslease.PauseOptions{By: "alice", Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	next := occ.Add(2 * time.Second)
	time.Sleep(time.Until(next))
	if r := postTimer(t, ts, next); r.Status != "skipped" || !strings.Contains(r.Reason, "paused by alice") || !strings.Contains(r.Reason, "maintenance") {
		t.Fatalf("tick while paused: %+v; want skipped, paused by alice", r)
	}
	if ran.Load() != 1 {
		t.Fatalf("the work ran %d times; want once, before the pause", ran.Load())
	}
	body := leaseStatus(t, ts)
	var paused cosmoslease.Pause
	var recent []cosmoslease.RunRecord
	if err := json.Unmarshal(body["paused"], &paused); err != nil || paused.By != "alice" || paused.Reason != "maintenance" {
		t.Fatalf("LeaseStatus paused: %s (%v)", body["paused"], err)
	}
	if err := json.Unmarshal(body["recentRuns"], &recent); err != nil || len(recent) == 0 || recent[0].Cause != "paused" || recent[0].Status != cosmoslease.RunSkipped {
		t.Fatalf("LeaseStatus recentRuns: %s", body["recentRuns"])
	}
	if string(body["missedTotal"]) != "0" {
		t.Fatalf("missedTotal %s while paused; want 0", body["missedTotal"])
	}
	if _, err := op.Resume(context.Background(), h.jobs[0].s.key); err != nil {
		t.Fatal(err)
	}
	next = next.Add(2 * time.Second)
	time.Sleep(time.Until(next))
	if r := postTimer(t, ts, next); r.Status != "executed" || ran.Load() != 2 {
		t.Fatalf("tick after resume: %+v, ran %d", r, ran.Load())
	}
}

// Two regions' handlers get the same LeaseTrigger tick at once: the manual run runs once, in the preferred region
// (eastus), recorded manual, and LeaseStatus lists it so; a tick with no trigger does nothing.
func TestLeaseTriggerRunsTheManualRunOnceInThePreferredRegion(t *testing.T) {
	type ranIn struct {
		region string
		manual bool
		by     string
	}
	var mu sync.Mutex
	var runs []ranIn
	work := func(ctx context.Context, run Run) error {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, ranIn{run.Region, run.Manual, run.TriggeredBy})
		return nil
	}
	env := testEnv(t)
	east, h, container := serveJobs(t, env, LeaseTimer(work))
	westEnv := merge(env, map[string]string{"REGION_NAME": "westeurope", "WEBSITE_POD_NAME": "westeurope-pod-1"})
	west, _, _ := serveJobs(t, westEnv, LeaseTimer(work))
	key := h.jobs[0].s.key
	occ := time.Now().UTC().Truncate(2 * time.Second)
	if r := postTimer(t, east, occ); r.Status != "executed" {
		t.Fatalf("first tick: %+v", r)
	}
	op := operator(t, container)
	minute := time.Now().UTC().Truncate(time.Minute)
	if code, res := triggerTick(t, east, minute); code != 200 || len(res) != 0 {
		t.Fatalf("LeaseTrigger with nothing asked: %d %+v", code, res)
	}
	if _, err := op.Pause(context.Background(), key, cosmoslease.PauseOptions{By: "alice"}); err != nil {
		t.Fatal(err)
	}
	trig, err := op.Trigger(context.Background(), key, "bob")
	if err != nil {
		t.Fatal(err)
	}
	body := leaseStatus(t, east)
	if !strings.Contains(string(body["trigger"]), `"by":"bob"`) {
		t.Fatalf("LeaseStatus trigger: %s", body["trigger"])
	}
	results := make([][]triggerResult, 2)
	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i, ts := range []*httptest.Server{east, west} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], results[i] = triggerTick(t, ts, minute)
		}()
	}
	wg.Wait()
	// westeurope either read the document after eastus claimed the trigger (nothing to do) or waited its rank's
	// delay and found it claimed (skipped).
	if codes[0] != 200 || codes[1] != 200 || len(results[0]) != 1 || results[0][0].Status != "executed" ||
		len(results[1]) > 1 || len(results[1]) == 1 && results[1][0].Status != "skipped" {
		t.Fatalf("LeaseTrigger ticks: east %d %+v, west %d %+v; want executed in eastus, not in westeurope", codes[0], results[0], codes[1], results[1])
	}
	mu.Lock()
	if len(runs) != 2 || runs[1] != (ranIn{"eastus", true, "bob"}) {
		t.Fatalf("runs %+v; want the scheduled one, then the manual one in eastus", runs)
	}
	mu.Unlock()
	rec, err := op.WaitRun(context.Background(), key, cosmoslease.ManualRunID(key, trig.ID), 100*time.Millisecond)
	if err != nil || rec.Status != cosmoslease.RunCompleted || !rec.Manual || rec.TriggeredBy != "bob" || rec.Region != "eastus" {
		t.Fatalf("manual run record %+v, %v", rec, err)
	}
	body = leaseStatus(t, west)
	var recent []cosmoslease.RunRecord
	if err := json.Unmarshal(body["recentRuns"], &recent); err != nil || len(recent) == 0 || !recent[0].Manual || body["trigger"] != nil || body["paused"] == nil {
		t.Fatalf("LeaseStatus after the manual run: recentRuns %s, trigger %s, paused %s", body["recentRuns"], body["trigger"], body["paused"])
	}
	// eastus is down: westeurope's tick runs the next trigger, one failover delay after it saw it.
	if _, err := op.Trigger(context.Background(), key, "bob"); err != nil {
		t.Fatal(err)
	}
	if code, res := triggerTick(t, west, minute.Add(time.Minute)); code != 200 || len(res) != 1 || res[0].Status != "executed" {
		t.Fatalf("LeaseTrigger in westeurope alone: %d %+v", code, res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 3 || runs[2] != (ranIn{"westeurope", true, "bob"}) {
		t.Fatalf("runs %+v; want the second manual run in westeurope", runs)
	}
}

// pause --stop through the host's protocol: the running tick's holder loses its lease at its next renewal, its work's
// context ends, and the tick fails (500) with the run recorded lost, stopped by the operator; the next tick skips
// for the pause.
func TestPauseStopEndsTheRunningTick(t *testing.T) {
	started := make(chan struct{})
	var first sync.Once
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error {
		long := false
		first.Do(func() { long = true; close(started) })
		if !long {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(40 * time.Second):
			return nil
		}
	})
	key := h.jobs[0].s.key
	occ := time.Now().UTC().Truncate(2 * time.Second)
	done := make(chan tickResult, 1)
	go func() { done <- postTimer(t, ts, occ) }()
	<-started
	op := operator(t, container)
	p, err := op.Pause(context.Background(), key, cosmoslease.PauseOptions{By: "alice", Stop: true})
	if err != nil || p.Running == nil || p.Stopped == nil {
		t.Fatalf("pause --stop: %+v, %v", p, err)
	}
	r := <-done
	if r.Status != "failed" || !strings.Contains(r.Reason, "lost") || !strings.Contains(r.Reason, "stopped by alice") {
		t.Fatalf("the stopped tick: %+v; want failed, lost, stopped by alice", r)
	}
	recs := runRecords(t, container, key)
	if len(recs) == 0 || recs[0].Status != cosmoslease.RunLost || !strings.Contains(recs[0].Error, "pause --stop") {
		t.Fatalf("run records %+v; want the run lost (pause --stop)", recs)
	}
	next := time.Now().UTC().Truncate(2 * time.Second).Add(2 * time.Second)
	time.Sleep(time.Until(next))
	if r := postTimer(t, ts, next); r.Status != "skipped" || !strings.Contains(r.Reason, "paused by alice") {
		t.Fatalf("the tick after the stop: %+v; want skipped for the pause", r)
	}
}
