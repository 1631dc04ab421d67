package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Lease is a held lease. Its Context is cancelled when the lease is lost, when RenewDeadline passes without a
// confirmed renewal, or when the lease is released; do the work under it. (It keeps the values of the context
// passed to Acquire, not its cancellation: that context bounds the wait, not the holding.) Holding the lease until Release is never guaranteed: check Err before each unit of work, and pass Epoch to
// any downstream system that can reject writes from a superseded holder.
type Lease struct {
	c        *Client
	key, id  string
	previous *State

	ctx    context.Context
	cancel context.CancelCauseFunc
	poke   chan struct{}
	done   chan struct{} // closed when the keeper goroutine has returned

	mu  sync.Mutex
	doc *leasedoc.Doc // as last written by us; doc.ETag is the version we expect
	// confirmed is when the write that produced doc was sent, on our clock. Validity is counted from there.
	confirmed time.Time
	// pending is when the first write since confirmed was sent whose outcome we do not know; zero if none.
	pending  time.Time
	ended    error // ErrLeaseLost or ErrReleased, wrapped with the reason
	released bool
}

func (c *Client) newLease(ctx context.Context, key, id string, doc *leasedoc.Doc, sent time.Time, prev *State) *Lease {
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	l := &Lease{c: c, key: key, id: id, previous: prev, ctx: lctx, cancel: cancel, doc: doc, confirmed: sent,
		poke: make(chan struct{}, 1), done: make(chan struct{})}
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
	now := l.c.clock.Now()
	s := l.c.state(l.key, observation{doc: l.doc, etag: l.doc.ETag, firstSeen: l.confirmed, observedAt: now, serverAge: -1}, now)
	s.Held = l.validLocked(now) == nil
	if s.Held {
		s.ExpiresIn = l.confirmed.Add(l.c.opts.RenewDeadline).Sub(now)
	} else {
		s.ExpiresIn = 0
	}
	return s
}

// Previous is the holder this lease took over from, or nil when the lease was free or never held before.
func (l *Lease) Previous() *State { return l.previous }

// Err is nil while the lease is valid: not lost, not released, and within RenewDeadline of the last confirmed
// renewal by this process's clock. It reads the clock itself, so it is exact even if the keeper goroutine has
// not yet run.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validLocked(l.c.clock.Now())
}

// validLocked reports why the lease is no longer valid at now. Whoever first sees the deadline pass ends the
// lease, so Err and Context always agree.
func (l *Lease) validLocked(now time.Time) error {
	if l.ended != nil {
		return l.ended
	}
	if !now.Before(l.confirmed.Add(l.c.opts.RenewDeadline)) {
		l.endLocked(fmt.Errorf("%w: no renewal confirmed within RenewDeadline (%s)", ErrLeaseLost, l.c.opts.RenewDeadline))
		return l.ended
	}
	return nil
}

// end records why the lease ended and cancels its context. The first reason wins.
func (l *Lease) endLocked(reason error) {
	if l.ended == nil {
		l.ended = reason
		l.cancel(reason)
	}
}

func (l *Lease) lose(reason string) error {
	err := fmt.Errorf("%w: %s", ErrLeaseLost, reason)
	l.mu.Lock()
	first := l.ended == nil
	l.endLocked(err)
	err = l.ended
	l.mu.Unlock()
	if first && errors.Is(err, ErrLeaseLost) {
		l.c.log.Warn("lease lost", "lease", l.key, "reason", reason)
	}
	return err
}

// Renew extends the lease with exactly one conditional write on the cached ETag; no read comes first. With
// automatic renewal (the default) there is no need to call it.
func (l *Lease) Renew(ctx context.Context) error {
	err := l.write(ctx, false)
	if err == nil {
		select {
		case l.poke <- struct{}{}:
		default:
		}
	}
	return err
}

// write replaces the document with a renewal or a release. A 412 is not yet a loss: our own earlier write may
// have been applied without our hearing of it, so read the document; if it still carries our leaseId, adopt its
// ETag and, for a release, write again. Only a document that another holder wrote, or one that is gone, means
// the lease is lost.
func (l *Lease) write(ctx context.Context, release bool) error {
	for round := 0; ; round++ {
		l.mu.Lock()
		now := l.c.clock.Now()
		if l.released {
			l.mu.Unlock()
			if release {
				return nil
			}
			return ErrReleased
		}
		if err := l.validLocked(now); err != nil && !release {
			l.mu.Unlock()
			return err
		}
		next := *l.doc
		wall := now.UTC()
		if release {
			next.Released, next.ReleasedAt, next.ExpiresAt = true, wall, wall
		} else {
			next.Renewals++
			next.RenewedAt, next.ExpiresAt = wall, wall.Add(l.c.opts.LeaseDuration)
		}
		etag := l.doc.ETag
		if l.pending.IsZero() {
			l.pending = now
		}
		// One hung request must not use up the whole window: leave half of what is left for a retry.
		limit := now.Add(l.confirmed.Add(l.c.opts.RenewDeadline).Sub(now) / 2)
		l.mu.Unlock()

		body, err := leasedoc.Encode(&next, l.c.pkProp)
		if err != nil {
			return err
		}
		op := "renew"
		if release {
			op = "release"
			limit = time.Time{}
		}
		rctx, cancel := l.c.requestContext(ctx, limit)
		start := l.c.clock.Now()
		item, err := l.c.st.Replace(rctx, l.c.pk(l.key, l.id), l.id, body, etag)
		cancel()
		l.c.report(op, l.key, start, item, err)

		switch store.KindOf(err) {
		case store.NotFound:
			return l.gone(release)
		case store.Precondition:
			if round > 0 {
				return l.lose("the lease document keeps changing under us")
			}
			adopted, aerr := l.reconcile(ctx, release, limit)
			if aerr != nil || !adopted {
				return aerr
			}
			continue // write again on the adopted ETag
		}
		if err != nil {
			return err
		}
		next.ETag = item.ETag
		l.mu.Lock()
		l.doc, l.confirmed, l.pending = &next, start, time.Time{}
		l.mu.Unlock()
		l.c.remember(l.key, &next, start)
		if release {
			l.finishRelease()
		}
		return nil
	}
}

// gone handles a lease document that no longer exists: a release is done; a renewal has lost the lease.
func (l *Lease) gone(release bool) error {
	if release {
		l.finishRelease()
		return nil
	}
	return l.lose("the lease document (or its container) was deleted")
}

// reconcile reads the document after a 412, within the same limit as the write. It reports whether the
// document is still ours (and adopts it).
func (l *Lease) reconcile(ctx context.Context, release bool, limit time.Time) (bool, error) {
	_, doc, err := l.c.read(ctx, l.key, l.id, limit)
	var invalid *leasedoc.Error
	switch {
	case errors.As(err, &invalid):
		return false, l.lose("the lease document was overwritten with an invalid document")
	case err != nil:
		return false, err
	case doc == nil:
		return false, l.gone(release)
	}
	l.mu.Lock()
	ours := doc.LeaseID == l.doc.LeaseID && doc.Epoch == l.doc.Epoch
	if ours && doc.Released {
		l.mu.Unlock()
		l.finishRelease()
		return false, nil
	}
	if !ours {
		l.mu.Unlock()
		if release {
			l.finishRelease()
			return false, nil
		}
		return false, l.lose(fmt.Sprintf("taken over by %s at epoch %d", doc.OwnerID, doc.Epoch))
	}
	// One of our unconfirmed writes was applied: validity counts from the earliest of them.
	confirmed := l.pending
	l.doc, l.confirmed, l.pending = doc, confirmed, time.Time{}
	l.mu.Unlock()
	l.c.remember(l.key, doc, confirmed)
	l.c.log.Info("adopted our own write after an ambiguous response", "lease", l.key, "epoch", doc.Epoch)
	return true, nil
}

func (l *Lease) finishRelease() {
	l.mu.Lock()
	l.released = true
	l.endLocked(ErrReleased)
	l.mu.Unlock()
	l.c.mu.Lock()
	l.c.released[l.key] = l.c.clock.Now()
	l.c.mu.Unlock()
}

// Release gives the lease up with one conditional write that marks the document released and keeps it, with
// its epoch, so the next holder continues the count. It is idempotent, and a lease that was already lost
// releases without error. Requests that fail for a passing reason are retried until ctx ends or the lease would
// have expired anyway.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	if l.ended != nil && errors.Is(l.ended, ErrLeaseLost) {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	// Stop working under the lease before the write, so no work overlaps the release.
	l.endLocked(ErrReleased)
	giveUp := l.confirmed.Add(l.c.opts.LeaseDuration)
	l.mu.Unlock()
	<-l.done
	for {
		err := l.write(ctx, true)
		if err == nil || !store.Retryable(err) || ctx.Err() != nil {
			return err
		}
		wait := l.c.opts.RetryPeriod / 4
		if left := giveUp.Sub(l.c.clock.Now()); left <= wait {
			return fmt.Errorf("release not confirmed; the lease expires on its own: %w", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-l.c.clock.After(wait):
		}
	}
}

// keep is the lease's one goroutine: it renews every RenewInterval (unless ManualRenew), retries failed
// renewals until RenewDeadline, and ends the lease when the deadline passes.
func (l *Lease) keep() {
	defer close(l.done)
	o := l.c.opts
	retryAt := time.Time{}
	for {
		l.mu.Lock()
		if l.ended != nil {
			l.mu.Unlock()
			return
		}
		deadline := l.confirmed.Add(o.RenewDeadline)
		due := l.confirmed.Add(o.RenewInterval)
		l.mu.Unlock()
		if retryAt.After(due) {
			due = retryAt
		}
		now := l.c.clock.Now()
		if !now.Before(deadline) {
			l.lose(fmt.Sprintf("no renewal confirmed within RenewDeadline (%s)", o.RenewDeadline))
			return
		}
		if !o.ManualRenew && !now.Before(due) {
			err := l.write(l.ctx, false)
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
				} else if left := deadline.Sub(l.c.clock.Now()) / 4; left < wait {
					wait = max(left, 50*time.Millisecond)
				}
				retryAt = l.c.clock.Now().Add(wait)
				l.c.log.Warn("renewal failed, will retry before the deadline", "lease", l.key, "error", err, "retryIn", wait)
			}
			continue
		}
		wake := deadline
		if !o.ManualRenew && due.Before(wake) {
			wake = due
		}
		select {
		case <-l.c.clock.After(wake.Sub(now)):
		case <-l.poke:
		case <-l.ctx.Done():
			return
		}
	}
}
