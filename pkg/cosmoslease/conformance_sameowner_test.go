package cosmoslease

import (
	"context"
	"errors"
	"testing"
)

// TakeOverSameOwner: a new process of the same owner takes the lease at once, at the next epoch, from an
// earlier incarnation that never released it; without the option, or for another owner, the lease stays held.
func TestConformance_TakeOverSameOwner(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		sameOwner := func(o *Options) { o.TakeOverSameOwner = true; o.ManualRenew = true }
		old, _ := b.client(t, "app-eastus", sameOwner)
		lo := must[*Lease](t)(old.TryAcquire(context.Background(), "job"))
		// old is now abandoned, as a process killed before it released would leave it.

		plain, _ := b.client(t, "app-eastus", nil)
		if h := heldErr(t, func() error { _, err := plain.TryAcquire(context.Background(), "job"); return err }()); h.Holder.Owner != "app-eastus" || h.Holder.Epoch != 1 {
			t.Fatalf("without the option: held error names %+v, want app-eastus at epoch 1", h.Holder)
		}
		rival, _ := b.client(t, "app-westus", sameOwner)
		heldErr(t, func() error { _, err := rival.TryAcquire(context.Background(), "job"); return err }())

		next, fn := b.client(t, "app-eastus", sameOwner)
		fn.reset()
		ln := must[*Lease](t)(next.TryAcquire(context.Background(), "job"))
		defer ln.Release(context.Background())
		if ln.Epoch() != 2 {
			t.Fatalf("epoch after the same owner's takeover = %d, want 2", ln.Epoch())
		}
		if p := ln.Previous(); p == nil || p.Owner != "app-eastus" || p.Epoch != 1 || p.LeaseID == ln.State().LeaseID {
			t.Fatalf("previous holder = %+v, want the earlier incarnation of app-eastus at epoch 1", p)
		}
		if got := fn.count("read") + fn.count("replace") + fn.count("create"); got != 2 {
			t.Errorf("takeover took %d requests, want 2 (read, replace)", got)
		}
		// The earlier incarnation, were it still alive, learns of the loss on its next write.
		if err := lo.Renew(context.Background()); !errors.Is(err, ErrLeaseLost) || lo.Err() == nil {
			t.Fatalf("the superseded lease renewed: %v", err)
		}
		// Other owners still see the lease held, now at epoch 2.
		if h := heldErr(t, func() error { _, err := rival.TryAcquire(context.Background(), "job"); return err }()); h.Holder.Epoch != 2 {
			t.Fatalf("rival sees %+v, want epoch 2", h.Holder)
		}
	})
}
