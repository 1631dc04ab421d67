package cosmoslease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// Production code reads a lease document with point reads (GET …/docs/{id}: 1 RU in Azure), never with a
// query (about 2.3–3 RU): a holder that acquires, renews and releases, and a standby that polls the whole
// time, each counted at its own HTTP transport under the real SDK.
func TestReadsArePointReads(t *testing.T) {
	b := newServerBed(t, DefaultPartitionKeyPath)
	hc, sc := cosmostest.NewCounter(nil), cosmostest.NewCounter(nil)
	holder, _ := b.client(t, "holder", func(o *Options) { o.Transport = hc })
	standby, _ := b.client(t, "standby", func(o *Options) { o.Transport = sc })
	hc.Reset() // Open's account and container reads are not reads of a lease
	sc.Reset()

	l := must[*Lease](t)(holder.TryAcquire(context.Background(), "job"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := standby.Acquire(ctx, "job"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("standby = %v, want it still waiting when its context ends", err)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("the holder lost the lease: %v", err)
	}
	noErr(t, l.Release(context.Background()))
	lb := must[*Lease](t)(standby.Acquire(ctxTimeout(t, 10*time.Second), "job"))
	noErr(t, lb.Release(context.Background()))

	for _, c := range []struct {
		name      string
		n         *cosmostest.Counter
		min       map[string]int
		wantReads int
	}{
		// 3 s at a 1 s renewal interval: the holder read once to acquire, then only wrote.
		{"holder", hc, map[string]int{"read": 1, "create": 1, "replace": 3}, 1},
		// polls every RetryPeriod (200 ms) for 3 s, then takes over with a read and a replace.
		{"standby", sc, map[string]int{"read": 10, "replace": 2}, 0},
	} {
		if q := c.n.Count("query"); q != 0 {
			t.Errorf("%s sent %d queries; every read of a lease must be a point read", c.name, q)
		}
		for kind, least := range c.min {
			if got := c.n.Count(kind); got < least {
				t.Errorf("%s: %d requests of kind %s, want at least %d", c.name, got, kind, least)
			}
		}
		// One read more is allowed: a renewal whose answer a loaded machine delayed past its timeout is settled by a
		// read. A read before each write would make as many reads as replaces.
		if r := c.n.Count("read"); c.wantReads > 0 && (r > c.wantReads+1 || r >= c.n.Count("replace")) {
			t.Errorf("%s made %d point reads and %d replaces, want %d read (one more at most): renewals and the release are writes on the cached ETag",
				c.name, r, c.n.Count("replace"), c.wantReads)
		}
		t.Logf("%s: %d point reads, %d queries, %d creates, %d replaces", c.name, c.n.Count("read"), c.n.Count("query"),
			c.n.Count("create"), c.n.Count("replace"))
	}
}
