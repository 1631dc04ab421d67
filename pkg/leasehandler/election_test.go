//go:build linux || darwin

package leasehandler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// The occurrence election as the host sees it, one defect of the handler before it per test: each of these
// failed on that handler. Records are read straight from the container.

// storedRun is a run record as stored.
type storedRun struct {
	ID         string `json:"id"`
	Occurrence string `json:"occurrence"`
	Status     string `json:"status"`
	Region     string `json:"region"`
	Epoch      int64  `json:"epoch"`
	Reason     string `json:"reason"`
}

func storedRuns(t *testing.T, container string) map[string]storedRun {
	t.Helper()
	out := map[string]storedRun{}
	pager := cosmostest.Get(t).Container(t, container).NewQueryItemsPager("SELECT * FROM c WHERE c.type = 'run'",
		azcosmos.NewPartitionKeyString("timer-singleton"), nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Items {
			var r storedRun
			_ = json.Unmarshal(b, &r)
			out[r.Occurrence[:19]+"Z"] = r
		}
	}
	return out
}

// transport is the handler's HTTP transport under the SDK, with a fault of the test's choosing.
type transport struct {
	mu sync.Mutex
	// retryRunCreate: the next create of a run record is applied and its answer lost, and the SDK's retry
	// gets 409, as when a connection drops after the server applied the write.
	retryRunCreate bool
	// dead: every request fails, as for a process that is gone.
	dead atomic.Bool
}

func (tr *transport) Do(r *http.Request) (*http.Response, error) {
	if tr.dead.Load() {
		return nil, errors.New("connection refused (the test's dead process)")
	}
	if r.Method == http.MethodPost && cosmostest.Kind(r) == "create" && r.Body != nil {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		tr.mu.Lock()
		retry := tr.retryRunCreate && bytes.Contains(body, []byte(`"id":"run-`))
		tr.retryRunCreate = tr.retryRunCreate && !retry
		tr.mu.Unlock()
		if retry {
			if resp, err := http.DefaultTransport.RoundTrip(r); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Item 4: the run record's create was applied, its answer lost, and the SDK's retry answered 409. The claim is
// recognised as this process's own and the occurrence runs (it used to be reported as another's claim, naming
// this very process, and never run).
func TestElection_AmbiguousClaimIsOurs(t *testing.T) {
	var ran atomic.Int32
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error { ran.Add(1); return nil })
	tr := &transport{retryRunCreate: true}
	h.app.opts.Transport = tr
	occ := dueNow()
	r := postTimer(t, ts, occ)
	if r.Status != "executed" || ran.Load() != 1 {
		t.Fatalf("tick: %+v, work ran %d times; want executed once", r, ran.Load())
	}
	if tr.retryRunCreate {
		t.Fatal("the fault was never injected")
	}
	if rec := storedRuns(t, container)[occ.Format(time.RFC3339)]; rec.Status != "completed" {
		t.Fatalf("record %+v", rec)
	}
}

// Item 5: a duplicate tick of the same occurrence (an admin's manual run, a scale-out, an instance overlapping a
// recycle) on another instance of the same region's app skips, and the running occurrence goes on undisturbed
// (it used to take the lease over first, which cancelled the running work and recorded it lost).
func TestElection_DuplicateTickNeverDisturbsTheRunningOccurrence(t *testing.T) {
	started, finish := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var workErr atomic.Value
	work := func(ctx context.Context, run Run) error {
		once.Do(func() { close(started) })
		select {
		case <-finish:
		case <-ctx.Done():
			workErr.Store(context.Cause(ctx))
		}
		return ctx.Err()
	}
	first, _, container := inProcess(t, work)
	dup, _, _ := inProcess(t, work, map[string]string{"CosmosLeasing__ContainerName": container, "WEBSITE_POD_NAME": "eastus-pod-2"})
	occ := dueNow()
	done := make(chan tickResult, 1)
	go func() { done <- postTimer(t, first, occ) }()
	<-started
	for range 2 { // at once, and again after the running one has renewed the lease
		if r := postTimer(t, dup, occ); r.Status != "skipped" {
			t.Fatalf("duplicate tick: %+v; want skipped", r)
		}
		time.Sleep(4500 * time.Millisecond)
	}
	close(finish)
	if r := <-done; r.Status != "executed" || workErr.Load() != nil {
		t.Fatalf("the running occurrence: %+v (work context ended: %v); want executed, undisturbed", r, workErr.Load())
	}
}

// Item 6: occurrence t+1 fires in another region while t's work still runs. It never runs beside it: it waits
// for the lease and runs when t's work has ended (it used to be skipped as "held by" the region running t, and
// so never ran anywhere).
func TestElection_NextOccurrenceWaitsForTheRunningOne(t *testing.T) {
	var mu sync.Mutex
	var spans [][2]time.Time
	work := func(d time.Duration) WorkFunc {
		return func(ctx context.Context, run Run) error {
			start := time.Now()
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			mu.Lock()
			spans = append(spans, [2]time.Time{start, time.Now()})
			mu.Unlock()
			return ctx.Err()
		}
	}
	east, _, container := inProcess(t, work(2*time.Second))
	west, _, _ := inProcess(t, work(0), map[string]string{"CosmosLeasing__ContainerName": container, "REGION_NAME": "westeurope", "WEBSITE_POD_NAME": "westeurope-pod-1"})
	occ := dueNow()
	done := make(chan tickResult, 1)
	go func() { done <- postTimer(t, east, occ) }()
	time.Sleep(500 * time.Millisecond)
	next := postTimer(t, west, occ.Add(2*time.Second))
	if r := <-done; r.Status != "executed" || next.Status != "executed" || next.Region != "westeurope" {
		t.Fatalf("t: %+v; t+1: %+v; want both executed", r, next)
	}
	if len(spans) != 2 || spans[1][0].Before(spans[0][1]) {
		t.Fatalf("the work of t and t+1 overlapped: %v", spans)
	}
	recs := storedRuns(t, container)
	if recs[occ.Format(time.RFC3339)].Status != "completed" || recs[occ.Add(2*time.Second).Format(time.RFC3339)].Region != "westeurope" {
		t.Fatalf("records %+v", recs)
	}
}

// Item 7: a region dies mid-work. Its record stays "started" while its lease runs out; the next tick, in
// another region, marks it abandoned (it used to stay started for ever). With LeaseTimerRetryAbandoned the
// occurrence runs once more there, at the next epoch, before the current one.
func TestElection_AbandonedOccurrence(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: handler processes waiting out real leases")
	}
	for _, retry := range []string{"false", "true"} {
		t.Run("retry="+retry, func(t *testing.T) {
			var mu sync.Mutex
			ranIn := map[string][]string{}
			tr := &transport{}
			work := func(region string) WorkFunc {
				return func(ctx context.Context, run Run) error {
					mu.Lock()
					ranIn[run.Occurrence.Format(time.RFC3339)] = append(ranIn[run.Occurrence.Format(time.RFC3339)], region)
					mu.Unlock()
					if region == "eastus" {
						tr.dead.Store(true) // the process is gone: nothing it sends arrives any more
						<-ctx.Done()
					}
					return ctx.Err()
				}
			}
			// A short functionTimeout gives the work a grace of 1 s, so westeurope need not wait for the dead region's
			// work to stop (workStopMs) and has time, within its occurrence's turn, to re-run the abandoned one first.
			env := map[string]string{"LeaseTimerRetryAbandoned": retry, "AzureFunctionsJobHost__functionTimeout": "00:00:20"}
			east, h, container := inProcess(t, work("eastus"), env)
			h.app.opts.Transport = tr
			west, _, _ := inProcess(t, work("westeurope"), env, map[string]string{"CosmosLeasing__ContainerName": container,
				"REGION_NAME": "westeurope", "WEBSITE_POD_NAME": "westeurope-pod-1"})
			occ := dueNow()
			if r := postTimer(t, east, occ); r.Status != "failed" {
				t.Fatalf("the dying region's tick: %+v", r)
			}
			if rec, ok := storedRuns(t, container)[occ.Format(time.RFC3339)]; ok {
				t.Fatalf("the dead claimer's record: %+v; want none yet (the lease document names the run started)", rec)
			}
			// The next occurrence after the dying region's tick has failed (its lease of 6 s has run out by then).
			next := time.Now().UTC().Truncate(2 * time.Second).Add(2 * time.Second)
			time.Sleep(time.Until(next))
			r := postTimer(t, west, next)
			if r.Status != "executed" || r.Region != "westeurope" {
				t.Fatalf("next tick in westeurope: %+v", r)
			}
			rec := storedRuns(t, container)[occ.Format(time.RFC3339)]
			o := occ.Format(time.RFC3339)
			switch retry {
			case "false":
				if rec.Status != "abandoned" || !strings.Contains(rec.Reason, "stopped before the run finished") || len(ranIn[o]) != 1 {
					t.Fatalf("the dead claimer's record: %+v, ran in %v; want abandoned, not run again", rec, ranIn[o])
				}
			case "true":
				// The re-run is a holding of its own, before westeurope's own occurrence's.
				if rec.Status != "completed" || rec.Region != "westeurope" || rec.Epoch != r.Epoch-1 || !strings.Contains(rec.Reason, "re-run") ||
					strings.Join(ranIn[o], ",") != "eastus,westeurope" {
					t.Fatalf("the dead claimer's record: %+v, ran in %v; want run again in westeurope at epoch %d", rec, ranIn[o], r.Epoch-1)
				}
			}
		})
	}
}

// With no LeaseTimerPreferredRegions the order is the Cosmos DB account's: the local server's account has one
// region, South Central US, which ranks first; a region the account does not list ranks after it.
func TestElection_AccountOrderWithoutTheSetting(t *testing.T) {
	for region, rank := range map[string]int{"South Central US": 0, "eastus": 1} {
		ts, _, _ := inProcess(t, func(ctx context.Context, run Run) error { return nil }, map[string]string{"LeaseTimerPreferredRegions": "", "REGION_NAME": region})
		occ := dueNow()
		if r := postTimer(t, ts, occ); r.Status != "executed" || r.Rank != rank {
			t.Fatalf("%s: %+v; want executed at rank %d", region, r, rank)
		}
	}
}
