package cosmoslease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// The contender's judgement, on clocks that need no synchronisation.
func TestRemaining(t *testing.T) {
	opts, _ := testOptions("x").withDefaults() // 3 s duration
	c := newClient(nil, opts, clock.NewFake(t0))
	held := &leasedoc.Doc{LeaseID: "l", OwnerID: "o", Duration: 10 * time.Second}
	for _, tc := range []struct {
		name string
		obs  observation
		now  time.Time
		want time.Duration
	}{
		{"missing document is free", observation{}, t0, 0},
		{"released is free", observation{doc: &leasedoc.Doc{Released: true}, firstSeen: t0, serverAge: -1}, t0, 0},
		{"just seen, no server time: the whole promised duration", observation{doc: held, firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 10 * time.Second},
		{"watched for 4 s", observation{doc: held, firstSeen: t0, observedAt: t0, serverAge: -1}, t0.Add(4 * time.Second), 6 * time.Second},
		{"watched for the duration: expired", observation{doc: held, firstSeen: t0, observedAt: t0, serverAge: -1}, t0.Add(10 * time.Second), 0},
		{"server says 7 s old at first sight", observation{doc: held, firstSeen: t0, observedAt: t0, serverAge: 7 * time.Second}, t0, 3 * time.Second},
		{"server age keeps growing after the read", observation{doc: held, firstSeen: t0, observedAt: t0, serverAge: 7 * time.Second}, t0.Add(2 * time.Second), time.Second},
		{"server age older than the duration", observation{doc: held, firstSeen: t0, observedAt: t0, serverAge: 11 * time.Second}, t0, 0},
		{"local clock ahead of server age wins", observation{doc: held, firstSeen: t0, observedAt: t0.Add(5 * time.Second), serverAge: time.Second}, t0.Add(5 * time.Second), 5 * time.Second},
		{"no promised duration: use ours", observation{doc: &leasedoc.Doc{LeaseID: "l", OwnerID: "o"}, firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.remaining(tc.obs, tc.now); got != tc.want {
				t.Fatalf("remaining = %s, want %s", got, tc.want)
			}
		})
	}
}

// A holder that cannot renew stops at RenewDeadline by its own clock, before any contender may take over.
func TestHolderStopsAtRenewDeadline(t *testing.T) {
	fc := clock.NewFake(t0)
	st := memstore.New(fc)
	opts, _ := testOptions("a").withDefaults()
	opts.ManualRenew = true
	a := newClient(st, opts, fc)
	la, err := a.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	<-fc.Waiting() // the keeper is parked until the deadline
	fc.Advance(opts.RenewDeadline - time.Millisecond)
	if err := la.Err(); err != nil {
		t.Fatalf("lost before the deadline: %v", err)
	}
	fc.Advance(time.Millisecond)
	if err := la.Err(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Err at the deadline = %v, want ErrLeaseLost", err)
	}
	select {
	case <-la.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled at the deadline")
	}
	// A contender that saw the document when it was written may not take over until LeaseDuration.
	bOpts, _ := testOptions("b").withDefaults()
	b := newClient(st, bOpts, fc)
	if _, err := b.TryAcquire(context.Background(), "job"); err == nil {
		t.Fatal("contender took over at the holder's deadline, before LeaseDuration")
	}
}

// Auto-renewal happens every RenewInterval, with no read.
func TestAutoRenewSchedule(t *testing.T) {
	fc := clock.NewFake(t0)
	st := memstore.New(fc)
	opts, _ := testOptions("a").withDefaults()
	a := newClient(st, opts, fc)
	la, err := a.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Release(context.Background())
	reads := st.Calls("read")
	for i := 1; i <= 5; i++ {
		<-fc.Waiting()
		fc.Advance(opts.RenewInterval)
		deadline := time.Now().Add(5 * time.Second)
		for la.State().Renewals < int64(i) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := la.State().Renewals; got != int64(i) {
			t.Fatalf("after %d intervals: %d renewals", i, got)
		}
	}
	if st.Calls("read") != reads || st.Calls("replace") != 5 {
		t.Fatalf("5 renewals made %d reads and %d replaces", st.Calls("read")-reads, st.Calls("replace"))
	}
	if err := la.Err(); err != nil {
		t.Fatal(err)
	}
}
