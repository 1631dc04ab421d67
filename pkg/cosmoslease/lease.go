package cosmoslease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Lease is a held lease. Its Context is cancelled when the lease is lost, when RenewDeadline passes without a
// confirmed renewal, or when the lease is released; do the work under it. (It keeps the values of the context
// passed to Acquire, not its cancellation: that context bounds the wait, not the holding.) Holding the lease
// until Release is never guaranteed: check Err before each unit of work, and pass Epoch to any downstream system
// that can reject writes from a superseded holder.
type Lease struct {
	c        *Client
	key, id  string
	previous *State
	m        *keyMetrics       // this key's metric series (metrics.go)
	acquired trace.SpanContext // the span of the call that acquired it, linked from the automatic renewals

	ctx    context.Context
	cancel context.CancelCauseFunc
	poke   chan struct{}
	done   chan struct{} // closed when the keeper goroutine has returned

	// wmu admits one write at a time — Renew, the keeper, Release — held across the write and the read that
	// may follow it, so the lease's view of its document only ever moves forward. It is a channel of one slot, not
	// a sync.Mutex: it is held while a request waits on timers, and inside a testing/synctest bubble (the
	// simulator, internal/sim) a goroutine waiting for a mutex is not durably blocked, so virtual time would stop
	// for good; one waiting to send on a channel is.
	wmu chan struct{}

	mu  sync.Mutex
	doc *leasedoc.Doc // the newest version we know we wrote; doc.ETag is the version our next write expects
	// confirmed is when the write that produced doc was sent. Validity is counted from there.
	confirmed clock.Stamp
	// pending is when the first write since confirmed was sent; zero when none is. Every such write was built
	// on doc, so it can only have produced doc with one more renewal (a renewal) or marked released (a release);
	// a version like that is adopted, dated from pending.
	pending clock.Stamp
	ended   error // ErrLeaseLost or ErrReleased, wrapped with the reason
	// released: the document was marked released, or there was nothing left to release.
	released bool
	// superseded: we saw another holder's document, an invalid one, or none. A release has nothing to write.
	superseded bool
	// releaseJob, when set, is the job state the release writes (RunOnce: how the occurrence's run ended).
	releaseJob json.RawMessage
}

// document is a copy of the newest version of the document this holder knows it wrote.
func (l *Lease) document() *leasedoc.Doc {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := *l.doc
	return &d
}

// setReleaseJob makes the release write job as the document's job state.
func (l *Lease) setReleaseJob(job json.RawMessage) {
	l.mu.Lock()
	l.releaseJob = job
	l.mu.Unlock()
}

func (c *Client) newLease(ctx context.Context, key, id string, doc *leasedoc.Doc, sent clock.Stamp, prev *State) *Lease {
	ctx, acquiredBy := callerContext(ctx)
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	l := &Lease{c: c, key: key, id: id, previous: prev, ctx: lctx, cancel: cancel, doc: doc, confirmed: sent,
		poke: make(chan struct{}, 1), done: make(chan struct{}), wmu: make(chan struct{}, 1), m: c.m.keyed(key), acquired: acquiredBy}
	c.m.acquired(ctx, l)
	go l.keep()
	return l
}

// Key is the lease key.
func (l *Lease) Key() string { return l.key }

// Context is cancelled when the lease ends; context.Cause tells why (ErrLeaseLost or ErrReleased).
func (l *Lease) Context() context.Context { return l.ctx }

// Epoch is the fencing token of this holding: greater than that of every earlier holder.
func (l *Lease) Epoch() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doc.Epoch
}

// State is the lease as this holder last wrote it.
func (l *Lease) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.c.clock.Stamp()
	s := l.c.state(l.key, observation{doc: l.doc, etag: l.doc.ETag, firstSeen: l.confirmed.Mono, observedAt: now.Mono, serverAge: -1}, now.Mono)
	s.Held = l.validLocked(now) == nil
	s.ExpiresIn = 0
	if s.Held {
		s.ExpiresIn = l.c.opts.RenewDeadline - clock.Elapsed(l.confirmed, now)
	}
	return s
}

// Previous is the holder this lease took over from, or nil when the lease was free or never held before.
func (l *Lease) Previous() *State { return l.previous }

// Err is nil while the lease is valid: not lost, not released, and within RenewDeadline of the last confirmed
// renewal by this process's clocks (the larger of the monotonic and the wall-clock time elapsed, so a machine
// that slept is not fooled). It reads the clock itself, so it is exact even if the keeper goroutine has not yet
// run.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validLocked(l.c.clock.Stamp())
}

// validLocked reports why the lease is no longer valid at now. Whoever first sees the deadline pass ends the
// lease, so Err and Context always agree.
func (l *Lease) validLocked(now clock.Stamp) error {
	if l.ended != nil {
		return l.ended
	}
	if clock.Elapsed(l.confirmed, now) >= l.c.opts.RenewDeadline {
		l.loseLocked(lossDeadline, fmt.Errorf("%w: no renewal confirmed within RenewDeadline (%s)", ErrLeaseLost, l.c.opts.RenewDeadline))
		return l.ended
	}
	return nil
}

// endLocked records why the lease ended and cancels its context. The first reason wins.
func (l *Lease) endLocked(reason error) {
	if l.ended == nil {
		l.ended = reason
		l.cancel(reason)
	}
}

// loseLocked ends the lease as lost, and counts the loss under why (a loss* constant) if it had not ended.
func (l *Lease) loseLocked(why string, err error) {
	if l.ended == nil {
		l.endLocked(err)
		l.c.m.lost(l.m, why)
	}
}

func (l *Lease) lose(why, reason string) error {
	err := fmt.Errorf("%w: %s", ErrLeaseLost, reason)
	l.mu.Lock()
	first := l.ended == nil
	l.loseLocked(why, err)
	err = l.ended
	l.mu.Unlock()
	if first && errors.Is(err, ErrLeaseLost) {
		l.c.log.Warn("lease lost", "lease", l.key, "reason", reason)
	}
	return err
}

// supersede handles a document that is no longer ours: another holder's, an invalid one, or none. A renewal has
// lost the lease; a release has nothing left to do.
func (l *Lease) supersede(why, reason string, release bool) error {
	l.mu.Lock()
	l.superseded = true
	l.mu.Unlock()
	if release {
		l.finish(false)
		return nil
	}
	return l.lose(why, reason)
}

// Renew extends the lease with exactly one conditional write on the cached ETag; no read comes first. With
// automatic renewal (the default) there is no need to call it. Calls are serialized with the automatic renewal
// and with Release; nil means this call's renewal was confirmed.
func (l *Lease) Renew(ctx context.Context) error {
	err := l.renew(ctx, false)
	if err == nil {
		select {
		case l.poke <- struct{}{}:
		default:
		}
	}
	return err
}

// write replaces the document with a renewal or a release, conditional on the ETag of the newest version we
// know we wrote. A 412 is not yet a loss: one of our own writes may have been applied although we never heard
// back (a timeout, a reset, the SDK's own retry), so read the document (with our session token, so the answer is
// not older than our last confirmed write) and let reconcile judge it.
func (l *Lease) write(ctx context.Context, release bool) error {
	l.wmu <- struct{}{}
	defer func() { <-l.wmu }()
	op := "renew"
	if release {
		op = "release"
	}
	for round := 0; ; round++ {
		l.mu.Lock()
		now := l.c.clock.Stamp()
		switch {
		case l.released || l.superseded:
			l.mu.Unlock()
			if release {
				return nil
			}
			if l.released {
				return ErrReleased
			}
			return l.Err()
		case !release:
			if err := l.validLocked(now); err != nil {
				l.mu.Unlock()
				return err
			}
		}
		next := *l.doc
		wall := now.Wall.UTC()
		if release {
			next.Released, next.ReleasedAt, next.ExpiresAt = true, wall, wall
			if l.releaseJob != nil {
				next.Job = l.releaseJob
			}
		} else {
			next.Renewals++
			next.RenewedAt, next.ExpiresAt = wall, wall.Add(l.c.opts.LeaseDuration)
		}
		etag := l.doc.ETag
		if l.pending.IsZero() {
			l.pending = now
		}
		// A renewal must not use up the whole window on one hung request: leave half of what is left for a
		// retry. A release is bounded by its caller's context only.
		var limit time.Time
		if !release {
			limit = now.Mono.Add((l.c.opts.RenewDeadline - clock.Elapsed(l.confirmed, now)) / 2)
		}
		l.mu.Unlock()

		body, err := leasedoc.Encode(&next, l.c.pkProp)
		if err != nil {
			return err
		}
		rctx, cancel := l.c.requestContext(ctx, limit)
		item, err := l.c.st.Replace(rctx, l.c.pk(l.key, l.id), l.id, body, etag)
		cancel()
		if err == nil && item.ETag == "" {
			err = noETag(op)
		}
		l.c.report(op, l.key, now.Mono, item, err)

		switch store.KindOf(err) {
		case store.NotFound:
			return l.supersede(lossDeleted, "the lease document (or its container) was deleted", release)
		case store.Precondition:
			if round >= 2 {
				return &store.Error{Op: op, Kind: store.Unknown, Err: errors.New("the lease document changed under every write; will try again")}
			}
			adopted, aerr := l.reconcile(ctx, release, limit)
			if aerr != nil || !adopted {
				return aerr
			}
			continue // write again on the adopted version
		}
		if err != nil {
			return err
		}
		next.ETag = item.ETag
		l.mu.Lock()
		l.doc, l.confirmed, l.pending = &next, now, clock.Stamp{}
		ended := l.ended
		l.mu.Unlock()
		l.c.remember(l.key, &next, now.Mono, item.Session)
		if release {
			l.finish(true)
			return nil
		}
		if ended != nil {
			// Confirmed, but too late: the lease ended (its deadline passed) while the answer was on the way, and
			// an ended lease stays ended. Release frees the document.
			return ended
		}
		return nil
	}
}

// reconcile reads the document after a 412, within the same limit as the write, and reports whether it adopted
// a version one of our unconfirmed writes produced. Nothing else is adopted: an older version of ours is a
// lagging replica's answer (unknown, try again); another holder's document, or none, means the lease is gone.
func (l *Lease) reconcile(ctx context.Context, release bool, limit time.Time) (bool, error) {
	obs, err := l.c.observe(ctx, l.key, l.id, limit)
	switch {
	case err != nil:
		return false, err
	case obs.invalid != nil:
		return false, l.supersede(lossInvalid, "the lease document was overwritten with an invalid document", release)
	case obs.doc == nil:
		return false, l.supersede(lossDeleted, "the lease document (or its container) was deleted", release)
	}
	doc := obs.doc
	l.mu.Lock()
	mine := l.doc
	if doc.LeaseID != mine.LeaseID || doc.Epoch != mine.Epoch {
		l.mu.Unlock()
		return false, l.supersede(lossSuperseded, fmt.Sprintf("taken over by %s at epoch %d", doc.OwnerID, doc.Epoch), release)
	}
	renewed := doc.Renewals == mine.Renewals+1 && !doc.Released
	releasedByUs := doc.Renewals == mine.Renewals && doc.Released
	if !renewed && !releasedByUs && obs.etag != mine.ETag && operatorEdit(doc, mine) {
		// An operator's write (control.go) over our newest version: nothing of ours changed, only the control. It
		// becomes the version our next write expects; validity still counts from our last confirmed write.
		adopted := *doc
		adopted.ETag = obs.etag
		l.doc = &adopted
		l.mu.Unlock()
		return l.obeyStop(&adopted, release)
	}
	if !renewed && !releasedByUs {
		l.mu.Unlock()
		if doc.Renewals <= mine.Renewals {
			return false, &store.Error{Op: "read", Kind: store.Unknown,
				Err: errors.New("a replica answered with a version older than the one the write was refused for; will try again")}
		}
		return false, l.supersede(lossSuperseded, "the lease document carries our leaseId at a version none of our writes produced", release)
	}
	// One of our unconfirmed writes was applied: validity counts from the send of the first of them.
	adopted := *doc
	adopted.ETag = obs.etag
	confirmed := l.pending
	l.doc, l.confirmed, l.pending = &adopted, confirmed, clock.Stamp{}
	l.mu.Unlock()
	l.c.remember(l.key, &adopted, confirmed.Mono, "")
	l.c.log.Info("adopted our own write after an ambiguous response", "lease", l.key, "epoch", doc.Epoch, "renewals", doc.Renewals)
	if releasedByUs {
		l.finish(true)
		if release {
			return false, nil
		}
		return false, ErrReleased
	}
	return l.obeyStop(&adopted, release)
}

// obeyStop ends a renewing lease whose adopted document carries a stop order naming it (Client.Pause with Stop):
// lost, as on a takeover, so that its work stops; the release that follows is written on the adopted version.
// Otherwise the write goes on.
func (l *Lease) obeyStop(doc *leasedoc.Doc, release bool) (bool, error) {
	if release {
		return true, nil
	}
	if s := stopsHolding(doc, doc.LeaseID); s != nil {
		return false, l.lose(lossStopped, fmt.Sprintf("stopped by %s at %s (pause --stop)", dashIfEmpty(s.By), s.At.UTC().Format(time.RFC3339)))
	}
	return true, nil
}

// finish ends the lease as released. freed says we freed the document ourselves: then this client waits a
// little before it contends again, so standbys get the first chance.
func (l *Lease) finish(freed bool) {
	l.mu.Lock()
	l.released = true
	l.endLocked(ErrReleased)
	l.mu.Unlock()
	if freed {
		l.c.mu.Lock()
		l.c.released[l.key] = l.c.clock.Now()
		l.c.mu.Unlock()
	}
}

// Release gives the lease up with one conditional write that marks the document released and keeps it, with
// its epoch, so the next holder continues the count. It is idempotent. A lease lost to its deadline is still
// released (the write is conditional on our version, so it cannot touch a newer holder's document, and it frees
// the lease sooner); a lease that another holder took over releases without a request. Requests that fail for
// a passing reason are retried until ctx ends or the lease would have expired anyway.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released || l.superseded {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	// Stop working under the lease before the write, so no work overlaps the release.
	l.endLocked(ErrReleased)
	l.mu.Unlock()
	<-l.done
	ctx, sp := l.c.tr.start(ctx, "cosmoslease.Release", l.key)
	err := l.release(ctx)
	sp.endWrite(l, true, err)
	return err
}

// release writes the release, retrying failures that pass.
func (l *Lease) release(ctx context.Context) error {
	for {
		err := l.write(ctx, true)
		if err == nil || !store.Retryable(err) || ctx.Err() != nil {
			return err
		}
		wait := l.c.opts.RetryPeriod / 4
		l.mu.Lock()
		left := l.c.opts.LeaseDuration - clock.Elapsed(l.confirmed, l.c.clock.Stamp())
		l.mu.Unlock()
		if left <= wait {
			return fmt.Errorf("release not confirmed; the lease expires on its own: %w", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-l.c.clock.After(wait):
		}
	}
}

// renew is one renewal, measured and traced: Renew's, or the automatic one's (auto), whose span is a root
// linked to the acquisition's rather than a child of the context the lease was acquired under.
func (l *Lease) renew(ctx context.Context, auto bool) error {
	var opts []trace.SpanStartOption
	if auto && l.c.tr.recording() {
		opts = []trace.SpanStartOption{trace.WithNewRoot()}
		if l.acquired.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: l.acquired}))
		}
	}
	ctx, sp := l.c.tr.start(ctx, "cosmoslease.Renew", l.key, opts...)
	var start time.Time
	timed := l.c.m.renewal.Enabled(ctx)
	if timed {
		start = l.c.clock.Now()
	}
	err := l.write(ctx, false)
	if timed {
		l.c.m.renewed(ctx, l.m, l.c.clock.Now().Sub(start), err)
	}
	sp.endWrite(l, false, err)
	return err
}

// keep is the lease's one goroutine: it renews every RenewInterval (unless ManualRenew), retries failed
// renewals until RenewDeadline, and ends the lease when the deadline passes. It wakes at least every RetryPeriod
// so that a deadline passed while the machine slept (which timers do not count) ends the context promptly.
func (l *Lease) keep() {
	defer close(l.done)
	o := l.c.opts
	var retryAt time.Time // monotonic
	for {
		l.mu.Lock()
		if l.ended != nil {
			l.mu.Unlock()
			return
		}
		now := l.c.clock.Stamp()
		elapsed := clock.Elapsed(l.confirmed, now)
		l.mu.Unlock()
		if elapsed >= o.RenewDeadline {
			l.lose(lossDeadline, fmt.Sprintf("no renewal confirmed within RenewDeadline (%s)", o.RenewDeadline))
			return
		}
		untilDue := o.RenewInterval - elapsed
		if !retryAt.IsZero() {
			untilDue = max(untilDue, retryAt.Sub(now.Mono))
		}
		if !o.ManualRenew && untilDue <= 0 {
			err := l.renew(l.ctx, true)
			switch {
			case err == nil:
				retryAt = time.Time{}
			case errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrReleased) || l.ctx.Err() != nil:
				return
			default:
				wait := o.RetryPeriod
				var se *store.Error
				if errors.As(err, &se) && se.RetryAfter > 0 {
					wait = se.RetryAfter
				}
				// Throttled or not, leave time for more tries before the deadline: a lease not renewed is lost.
				wait = max(min(wait, (o.RenewDeadline-elapsed)/4), 50*time.Millisecond)
				retryAt = l.c.clock.Now().Add(wait)
				l.c.log.Warn("renewal failed, will retry before the deadline", "lease", l.key, "error", err, "retryIn", wait)
			}
			continue
		}
		sleep := min(o.RenewDeadline-elapsed, o.RetryPeriod)
		if !o.ManualRenew {
			sleep = min(sleep, untilDue)
		}
		select {
		case <-l.c.clock.After(sleep):
		case <-l.poke:
		case <-l.ctx.Done():
			return
		}
	}
}
