package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/runs"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Functions maps each function folder to its route; the host calls /{FunctionName}.
const (
	fnTimer  = "LeaseTimer"
	fnStatus = "LeaseStatus"
)

// handler serves the Functions host. One handler process runs per instance of the app in a region.
type handler struct {
	s      *settings
	setErr error // a settings problem, reported on every invocation
	work   WorkFunc
	log    *slog.Logger // the process's own messages, on stdout
	out    *output      // where invocations write what the host must log (protocol.go)
	now    func() time.Time

	mu        sync.Mutex // one tick at a time; held while the work runs
	connMu    sync.Mutex // guards opening and closing the clients, so LeaseStatus never waits for a tick's work
	client    *cosmoslease.Client
	runs      *runs.Store
	closeRuns func()
	lease     *cosmoslease.Lease
	straggler *straggler // work that did not return after its context ended, if it still runs
}

// straggler is work left running past its deadline.
type straggler struct {
	occurrence string
	done       <-chan error
}

func newHandler(s *settings, setErr error, work WorkFunc, log *slog.Logger) *handler {
	return &handler{s: s, setErr: setErr, work: work, log: log, out: &output{stdout: os.Stdout, stderr: os.Stderr}, now: time.Now}
}

// routes lists the functions this handler serves; a test checks they match the function folders.
func (h *handler) routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{fnTimer: h.timer, fnStatus: h.status}
}

func (h *handler) mux() *http.ServeMux {
	mux := http.NewServeMux()
	for name, fn := range h.routes() {
		mux.HandleFunc("/"+name, fn)
	}
	return mux
}

// tickResult is the timer function's return value.
type tickResult struct {
	Status     string    `json:"status"` // executed, skipped, failed
	Occurrence time.Time `json:"occurrence,omitzero"`
	Region     string    `json:"region,omitempty"`
	Owner      string    `json:"owner,omitempty"`
	Instance   string    `json:"instance,omitempty"`
	Epoch      int64     `json:"epoch,omitempty"`
	Holder     string    `json:"holder,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

func readInvocation(r *http.Request) (invokeRequest, error) {
	var req invokeRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return req, err
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, fmt.Errorf("the invocation is not the host's JSON: %v", err)
	}
	return req, nil
}

// connect opens the clients once and returns them; a failure is retried on the next invocation.
func (h *handler) connect(ctx context.Context) (*cosmoslease.Client, *runs.Store, error) {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if h.client != nil {
		return h.client, h.runs, nil
	}
	opts := h.s.opts
	opts.Logger = h.log
	c, err := cosmoslease.Open(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	rs, closeRuns, err := runs.Open(opts, h.s.retention)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	h.client, h.runs, h.closeRuns = c, rs, closeRuns
	return c, rs, nil
}

// timer is one tick: hold the lease (renew, or acquire), claim this occurrence, run the work under the lease
// while renewing it, and record how the run ended, all within the invocation's deadline (timeout.go).
func (h *handler) timer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	iv := h.invocation(fnTimer, r)
	fail := func(format string, args ...any) {
		iv.fail(format, args...)
		iv.answer(w, nil, tickResult{Status: "failed", Reason: fmt.Sprintf(format, args...)})
	}
	if h.setErr != nil {
		fail("%v", h.setErr)
		return
	}
	req, err := readInvocation(r)
	if err != nil {
		fail("%v", err)
		return
	}
	info, sys, err := parseTimer(req)
	if err != nil {
		fail("%v", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ctx, cancel := h.s.budget.deadline(r.Context(), start)
	defer cancel()
	res := tickResult{Region: h.s.opts.Region, Owner: h.s.opts.OwnerID, Instance: h.s.instance}
	res.Occurrence = h.occurrence(info, sys)
	occ := res.Occurrence.Format(time.RFC3339)

	if _, _, err := h.connect(ctx); err != nil {
		fail("cannot use the lease container: %v", cause(ctx, err))
		return
	}
	lease, err := h.hold(ctx)
	var held *cosmoslease.HeldError
	switch {
	case errors.As(err, &held):
		res.Status, res.Holder, res.Epoch = "skipped", held.Holder.Owner, held.Holder.Epoch
		res.Reason = fmt.Sprintf("%s (region %s) holds the lease", held.Holder.Owner, held.Holder.Region)
		iv.logf("occurrence %s: skipped, %s", occ, res.Reason)
		iv.answer(w, nil, res)
		return
	case err != nil:
		fail("lease %q: %v", h.s.key, cause(ctx, err))
		return
	}
	res.Epoch = lease.Epoch()
	if p := lease.Previous(); p != nil && p.Owner == h.s.opts.OwnerID && p.Held {
		iv.logf("took the lease over at epoch %d from an earlier process of this app (instance %s, epoch %d), which ended without releasing it",
			res.Epoch, p.Hostname, p.Epoch)
	}
	// Work that ignored the end of its context may still run; no second one starts beside it. The lease was
	// renewed above, so the region keeps it meanwhile.
	if h.straggler != nil {
		select {
		case err := <-h.straggler.done:
			iv.logf("the work for %s, stopped at its deadline, has since returned (%v)", h.straggler.occurrence, err)
			h.straggler = nil
		default:
			fail("occurrence %s not run: the work for %s still runs although its context ended at its deadline; the work must return when its context ends",
				occ, h.straggler.occurrence)
			return
		}
	}

	rec := &runs.Record{LeaseKey: h.s.key, Occurrence: res.Occurrence, Region: res.Region, Owner: res.Owner, Instance: res.Instance,
		Epoch: res.Epoch, PastDue: info.IsPastDue, StartedAt: h.now().UTC()}
	var already *runs.AlreadyRunError
	if err := h.runs.Claim(ctx, rec); errors.As(err, &already) {
		res.Status, res.Reason = "skipped", already.Error()
		iv.logf("occurrence %s: skipped, %s", occ, res.Reason)
		iv.answer(w, nil, res)
		return
	} else if err != nil {
		fail("claim occurrence %s: %v", occ, cause(ctx, err))
		return
	}
	iv.logf("occurrence %s: executing in %s on instance %s at epoch %d", occ, res.Region, res.Instance, res.Epoch)

	workErr, returned := h.runUnderLease(ctx, lease, Run{Occurrence: res.Occurrence, Region: res.Region, Instance: res.Instance,
		Epoch: res.Epoch, PastDue: info.IsPastDue, Logf: iv.logf})
	status := runs.Completed
	switch {
	case lease.Err() != nil:
		status = runs.Lost
		workErr = fmt.Errorf("the lease was lost while the work ran: %v", lease.Err())
		h.lease = nil
	case returned && workErr == nil:
	case errors.Is(workErr, cosmoslease.ErrFenced):
		// A later holder has written through its fence: this region was superseded, though its lease object has
		// not heard of it yet (the next tick's renewal will).
		status = runs.Lost
		workErr = fmt.Errorf("a later holder of the lease has written, so Cosmos DB refused the work's write: %w", workErr)
	case errors.Is(context.Cause(ctx), errDeadline):
		status = runs.TimedOut
		workErr = context.Cause(ctx)
		if !returned {
			workErr = fmt.Errorf("%w; the work did not return within %s after its context ended and may still be running", workErr, h.s.budget.grace)
		}
	case workErr != nil:
		status = runs.Failed
	}
	finishing, cancelFinish := h.s.budget.finishing(ctx, start)
	defer cancelFinish()
	if err := h.runs.Finish(finishing, rec, status, h.now().UTC(), workErr); err != nil {
		iv.logf("could not record the end of the run: %v", err)
	}
	if workErr != nil {
		res.Status, res.Reason = "failed", workErr.Error()
		iv.fail("occurrence %s: %s: %v", occ, status, workErr)
	} else {
		res.Status = "executed"
		iv.logf("occurrence %s: done", occ)
	}
	iv.answer(w, nil, res)
}

// cause prefers the reason the invocation's context ended to the bare error of a request it cut short.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return err
}

// hold renews the lease this process holds, or tries once to acquire it.
func (h *handler) hold(ctx context.Context) (*cosmoslease.Lease, error) {
	if h.lease != nil {
		err := h.lease.Renew(ctx)
		if err == nil {
			return h.lease, nil
		}
		if !errors.Is(err, cosmoslease.ErrLeaseLost) && !errors.Is(err, cosmoslease.ErrReleased) {
			return nil, err // unknown outcome: keep the lease object, the next tick tries again
		}
		h.lease = nil
	}
	lease, err := h.client.TryAcquire(ctx, h.s.key)
	if err != nil {
		return nil, err
	}
	h.lease = lease
	return lease, nil
}

// runUnderLease runs the work with a context that ends when the lease is lost or the invocation's deadline
// passes, renewing the lease every RenewInterval meanwhile. Once the context has ended the work has the
// budget's grace to return; if it does not, runUnderLease returns anyway (returned false) and leaves the work
// behind as the straggler.
func (h *handler) runUnderLease(ctx context.Context, lease *cosmoslease.Lease, run Run) (err error, returned bool) {
	workCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(lease.Context(), func() { cancel(context.Cause(lease.Context())) })
	defer stop()
	renewing := make(chan struct{})
	defer close(renewing)
	go func() {
		t := time.NewTicker(h.s.opts.RenewInterval)
		defer t.Stop()
		for {
			select {
			case <-renewing:
				return
			case <-t.C:
				if err := lease.Renew(workCtx); err != nil {
					h.log.Warn("renewal during work failed", "error", err)
				}
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- h.work(workCtx, run) }()
	select {
	case err := <-done:
		return err, true
	case <-workCtx.Done():
	}
	grace := time.NewTimer(h.s.budget.grace)
	defer grace.Stop()
	select {
	case err := <-done:
		return err, true
	case <-grace.C:
		h.straggler = &straggler{occurrence: run.Occurrence.Format(time.RFC3339), done: done}
		return context.Cause(workCtx), false
	}
}

// occurrence names the schedule occurrence this tick is for, the same in every region. During a scheduled
// run, the host's ScheduleStatus.Next is the occurrence now firing (a missed one when IsPastDue): it is used
// when the schedule contains it and it is not in the future. Otherwise the host gave no status (useMonitor
// false, sub-minute schedules) or the one still to come (a manual run), and the occurrence is the latest one
// at or before UtcNow + 1 s, since the host can fire up to about a second early.
func (h *handler) occurrence(info timerInfo, sys sysMetadata) time.Time {
	now := sys.UtcNow.Time
	if now.IsZero() {
		now = h.now().UTC()
	}
	limit := now.Add(time.Second)
	if st := info.ScheduleStatus; st != nil && !st.Next.IsZero() && !st.Next.After(limit) && h.s.sched.contains(st.Next.Time) {
		return st.Next.UTC()
	}
	return h.s.sched.prev(limit)
}

// status is the HTTP function LeaseStatus: the lease and its newest runs. When it cannot read them the
// invocation fails (500), and the host answers the caller with 500.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	iv := h.invocation(fnStatus, r)
	fail := func(format string, args ...any) {
		iv.fail(format, args...)
		iv.answer(w, nil, nil)
	}
	if h.setErr != nil {
		fail("%v", h.setErr)
		return
	}
	if _, err := readInvocation(r); err != nil {
		fail("%v", err)
		return
	}
	ctx, cancel := h.s.budget.deadline(r.Context(), time.Now())
	defer cancel()
	client, rs, err := h.connect(ctx)
	if err != nil {
		fail("cannot use the lease container: %v", cause(ctx, err))
		return
	}
	s, err := client.Inspect(ctx, h.s.key)
	if err != nil {
		fail("read lease %q: %v", h.s.key, cause(ctx, err))
		return
	}
	recent, err := rs.Recent(ctx, h.s.key, runs.DefaultLimit)
	if err != nil {
		fail("%v", cause(ctx, err))
		return
	}
	b, _ := json.Marshal(statusBody{Lease: h.s.key, State: s.Status(), Owner: s.Owner, Region: s.Region, Instance: s.Hostname,
		Epoch: s.Epoch, ExpiresInMs: s.ExpiresIn.Milliseconds(), Renewals: s.Renewals, RecentRuns: recent})
	iv.answer(w, map[string]any{"res": httpOutput{StatusCode: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b)}}, nil)
}

// statusBody is LeaseStatus's answer: the lease as its document shows it, and the newest runs. On Flex
// Consumption HTTP functions run on instances of their own, never the timer's, so the answer says nothing
// about the process that serves it: whoever holds the lease is named by owner and region.
type statusBody struct {
	Lease string `json:"lease"`
	// State is held, expired, released, free or invalid; ExpiresInMs is the longest the holder may still hold it,
	// as far as this reader can tell.
	State string `json:"state"`
	// Owner is the holding region's app; Instance the process of it that last wrote the lease.
	Owner       string        `json:"owner"`
	Region      string        `json:"region"`
	Instance    string        `json:"instance"`
	Epoch       int64         `json:"epoch"`
	ExpiresInMs int64         `json:"expiresInMs"`
	Renewals    int64         `json:"renewals"`
	RecentRuns  []runs.Record `json:"recentRuns"`
}

// release gives the lease up when the process is asked to stop (SIGINT or SIGTERM: a person running it, or
// func start), so another region takes over at its next tick, and closes the clients. The Functions host never
// asks: it kills the handler, and the region's next process takes the lease over instead.
func (h *handler) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.lease.Release(ctx)
		h.lease = nil
	}
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if h.client != nil {
		h.client.Close()
		h.closeRuns()
		h.client, h.runs, h.closeRuns = nil, nil, nil
	}
}
