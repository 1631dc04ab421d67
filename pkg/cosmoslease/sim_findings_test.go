package cosmoslease

import (
	"context"
	"testing"
	"time"
)

// Findings of the deterministic simulator (internal/sim), each made exact on the fake clock.

// Seed 2 of the simulator (3 h, lease 10 s): a contender's claim was applied, then its process was paused
// (SIGSTOP) for 25 s with the answer on its way; when it resumed, Acquire returned a Lease at epoch 45 whose
// RenewDeadline had long passed (its Err was already "lease lost"), 16 s after another contender had taken the
// lease over at epoch 46. Acquire must stand by until it holds the lease: a claim answered after its deadline is
// no holding (as a claim adopted too late is not, in adopt), so the caller never sees a Lease that was lost
// before it got it, nor an epoch below one already handed out.
func TestSimFinding_ClaimAnsweredAfterItsDeadlineIsNoLease(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	applied, release := make(chan struct{}), make(chan struct{})
	sa.then("create", holdAnswer(applied, release))
	type result struct {
		l   *Lease
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := a.TryAcquire(context.Background(), "job")
		done <- result{l, err}
	}()
	<-applied
	b.at(9 * time.Second) // past RenewDeadline (8 s) of the claim's send, with its answer still on the way
	close(release)
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("TryAcquire did not return")
	}
	if r.err == nil {
		if lerr := r.l.Err(); lerr != nil {
			t.Fatalf("TryAcquire returned a lease (epoch %d) that was already lost when it got it: %v", r.l.Epoch(), lerr)
		}
	}
}
