package sim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// holdLoop is one key of `cosmoslease run --wait` (internal/cli/run.go) in one incarnation of a process: stand
// by until it holds the lease, work under it (checking Lease.Err before each unit of work, and writing the key's
// shared item through the lease's fence), release it, and after a break contend again. It stops when its
// incarnation dies.
func (w *world) holdLoop(ctx context.Context, p *proc, inc int, c *cosmoslease.Client, cont *azcosmos.ContainerClient, key string) {
	l := w.cfg.LeaseDuration
	for p.alive(inc) {
		lease, err := c.Acquire(ctx, key)
		if !p.alive(inc) {
			return
		}
		if err != nil {
			w.logf(p, inc, key, "Acquire failed: %v", err)
			if !sleep(ctx, p, l/12) {
				return
			}
			continue
		}
		h := &holding{key: key, p: p, inc: inc, lease: lease, epoch: lease.Epoch(), from: w.since(), to: -1}
		w.logf(p, inc, key, "acquired the lease at epoch %d", h.epoch)
		w.acquired(h)
		go func() {
			<-lease.Context().Done()
			if !p.cfg.Careless {
				w.ended(h)
			}
			w.logf(p, inc, key, "epoch %d: the lease's context ended: %v", h.epoch, context.Cause(lease.Context()))
		}()
		w.work(ctx, p, inc, h, cont)
		// A careless process works on as if it held the key: for the liveness check the key is in use until it
		// stops (it does not contend meanwhile, and with every other contender down nobody would).
		w.ended(h)
		if !p.alive(inc) {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = lease.Release(rctx)
		cancel()
		w.logf(p, inc, key, "epoch %d: released (%v)", h.epoch, errText(err))
		if !sleep(ctx, p, between(w.rng(p, inc, "break "+key), 0, l/4)) {
			return
		}
	}
}

// work is what run does while it holds the lease: a unit of work every so often, for a while.
func (w *world) work(ctx context.Context, p *proc, inc int, h *holding, cont *azcosmos.ContainerClient) {
	l := w.cfg.LeaseDuration
	r := w.rng(p, inc, "work "+h.key)
	var hold time.Duration
	switch x := r.IntN(10); {
	case x < 7:
		hold = between(r, l/2, 3*l)
	case x < 9:
		hold = between(r, 3*l, 20*l)
	default:
		hold = w.cfg.Duration // until the process dies
	}
	every := between(r, l/5, l/2)
	until := w.since() + hold
	fence := h.lease.Fence(cont)
	for step := 0; ; step++ {
		if !sleep(ctx, p, every) || p.gate(h.inc) != nil {
			return
		}
		if !p.cfg.Careless {
			if err := h.lease.Err(); err != nil {
				w.logf(p, inc, h.key, "epoch %d: stopped work: %v", h.epoch, err)
				return
			}
			w.believes(h, "checked before a unit of work")
		}
		if p.cfg.RenewByHand && step%3 == 1 {
			err := h.lease.Renew(ctx)
			w.logf(p, inc, h.key, "epoch %d: Renew by hand: %s", h.epoch, errText(err))
			if err == nil {
				w.believes(h, "renewed by hand")
			}
		}
		// A moment between the check and the write, in which the process may be paused.
		if !sleep(ctx, p, between(r, 0, every/4)) || p.gate(h.inc) != nil {
			return
		}
		err := w.fencedWrite(ctx, p, h, fence, step)
		var fenced *cosmoslease.FencedError
		switch {
		case errors.As(err, &fenced):
			w.logf(p, inc, h.key, "epoch %d: fenced off: %v", h.epoch, err)
			return
		case err != nil:
			w.logf(p, inc, h.key, "epoch %d: fenced write failed: %v", h.epoch, err)
		}
		if w.since() >= until {
			return
		}
	}
}

// fencedWrite writes the key's shared item through the fence: a patch when this process patches and the item
// exists, otherwise a read–check–replace (or create) that counts the writes.
func (w *world) fencedWrite(ctx context.Context, p *proc, h *holding, f *cosmoslease.Fence, step int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*min(10*time.Second, renewDeadline(w.cfg.LeaseDuration)/2))
	defer cancel()
	id := itemPrefix + h.key
	pk := azcosmos.NewPartitionKeyString(h.key)
	who := p.cfg.Name + "@" + itoa(h.epoch)
	if p.cfg.Patch && step > 0 {
		var ops azcosmos.PatchOperations
		ops.AppendSet("/last", who)
		_, err := f.PatchItem(ctx, pk, id, ops, nil)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
			return err
		}
		// No item yet: create it through the read–check–replace path.
	}
	_, err := f.UpdateItem(ctx, pk, id, func(cur []byte) ([]byte, error) {
		m := map[string]any{}
		if cur != nil {
			if err := json.Unmarshal(cur, &m); err != nil {
				return nil, err
			}
		}
		for k := range m {
			if strings.HasPrefix(k, "_") {
				delete(m, k)
			}
		}
		n, _ := m["n"].(float64)
		m["id"], m["leaseKey"], m["n"], m["last"] = id, h.key, n+1, who
		return json.Marshal(m)
	})
	return err
}

// sleep waits d on p's clock, or until ctx ends.
func sleep(ctx context.Context, p *proc, d time.Duration) bool {
	select {
	case <-p.clk.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
