package cosmoslease

import (
	"context"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

// BenchmarkRenew is the renewal path without the network: building and encoding the next document, one
// conditional replace on the in-memory store, bookkeeping. allocs/op is the library's cost per renewal.
func BenchmarkRenew(b *testing.B) {
	st := memstore.New(clock.Real{})
	opts, err := Options{OwnerID: "a", ManualRenew: true, LeaseDuration: time.Hour, RenewInterval: 10 * time.Minute}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	c := newClient(st, opts, clock.Real{})
	l, err := c.TryAcquire(context.Background(), "job")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Release(context.Background())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Renew(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
