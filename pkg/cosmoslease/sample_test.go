package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
)

// sampleBody is a document as the reference sample writes it (no epoch, leaseDurationMs, renewals, released).
func sampleBody(key, owner, leaseID string, acquired, expires time.Time) string {
	return fmt.Sprintf(`{"id":"lease-%s","leaseKey":"%s","leaseId":"%s","ownerId":"%s","acquiredAt":"%s","expiresAt":"%s",`+
		`"metadata":{"instanceId":"%s","region":"sample-region","hostname":"sample-host","startTime":"%s"}}`,
		key, key, leaseID, owner, leasedoc.FormatTime(acquired), leasedoc.FormatTime(expires), owner, leasedoc.FormatTime(acquired))
}

// How long a contender sees a sample document held: max(LeaseDuration, expiresAt − _ts) plus the clock budget
// LeaseDuration − RenewDeadline, counted like any other version (own clock, or server age).
func TestRemaining_SampleDocument(t *testing.T) {
	opts, _ := testOptions("x").withDefaults() // lease 3 s, deadline 2 s: budget 1 s
	c := newClient(nil, opts, clock.NewFake(t0))
	ts := t0.Unix()
	sample := func(expiresIn time.Duration, ts int64) *leasedoc.Doc {
		return &leasedoc.Doc{LeaseID: "l", OwnerID: "o", Sample: true, ExpiresAt: t0.Add(expiresIn), TS: ts}
	}
	for _, tc := range []struct {
		name string
		obs  observation
		now  time.Time
		want time.Duration
	}{
		{"expiresAt 10 s after _ts: 10 s + budget", observation{doc: sample(10*time.Second, ts), firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 11 * time.Second},
		{"watched 10.5 s", observation{doc: sample(10*time.Second, ts), firstSeen: t0, observedAt: t0, serverAge: -1}, t0.Add(10500 * time.Millisecond), 500 * time.Millisecond},
		{"watched 11 s: expired", observation{doc: sample(10*time.Second, ts), firstSeen: t0, observedAt: t0, serverAge: -1}, t0.Add(11 * time.Second), 0},
		{"server says 7 s old", observation{doc: sample(10*time.Second, ts), firstSeen: t0, observedAt: t0, serverAge: 7 * time.Second}, t0, 4 * time.Second},
		{"sample lease shorter than ours: ours + budget", observation{doc: sample(time.Second, ts), firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 4 * time.Second},
		{"expiresAt before _ts (holder clock far behind): ours + budget", observation{doc: sample(-time.Minute, ts), firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 4 * time.Second},
		{"no _ts: ours + budget", observation{doc: sample(10*time.Second, 0), firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 4 * time.Second},
		// _ts counts whole seconds: a write applied at .9 s still gives expiresAt − _ts from the second before.
		{"_ts truncated", observation{doc: &leasedoc.Doc{LeaseID: "l", OwnerID: "o", Sample: true, ExpiresAt: t0.Add(10900 * time.Millisecond), TS: ts}, firstSeen: t0, observedAt: t0, serverAge: -1}, t0, 11900 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.remaining(tc.obs, tc.now); got != tc.want {
				t.Fatalf("remaining = %s, want %s", got, tc.want)
			}
		})
	}
}

// A sample holder that renews is never taken over; once it stops, the lease is taken over exactly when the
// rule allows (lease 10 s, deadline 8 s: budget 2 s; the sample promises 15 s), at epoch 1, with a full document.
func TestSample_HolderRenewsThenIsAbandoned(t *testing.T) {
	b := newFakeBed()
	put := func(leaseID string) {
		now := b.fc.Now()
		b.st.Put("lease-job", []byte(sampleBody("job", "dotnet-1", leaseID, t0, now.Add(15*time.Second))))
	}
	put("sample-lease")
	c, _ := b.client(t, "go-1", nil)

	try := func() (*Lease, *HeldError) {
		t.Helper()
		l, err := c.TryAcquire(context.Background(), "job")
		var held *HeldError
		if err != nil && !errors.As(err, &held) {
			t.Fatalf("TryAcquire = %v", err)
		}
		return l, held
	}
	_, held := try()
	if held == nil || !held.Holder.Sample || held.Holder.Owner != "dotnet-1" || held.Holder.Region != "sample-region" ||
		held.Holder.ExpiresIn != 17*time.Second || held.Holder.Status() != "held" {
		t.Fatalf("first look: %+v", held)
	}
	// The sample holder renews every 10 s for a minute: every renewal is a new version, and the wait restarts.
	for at := 10 * time.Second; at <= time.Minute; at += 10 * time.Second {
		b.at(at - time.Millisecond)
		if l, _ := try(); l != nil {
			t.Fatalf("took over a renewing sample holder at %s", at)
		}
		b.at(at)
		put("sample-lease")
		if l, _ := try(); l != nil {
			t.Fatalf("took over a renewing sample holder at %s", at)
		}
	}
	// Abandoned at 60 s with expiresAt = 75 s: held until 77 s, taken over then.
	b.at(77*time.Second - time.Millisecond)
	if l, held := try(); l != nil || held.Holder.ExpiresIn != time.Millisecond {
		t.Fatalf("at 76.999 s: lease %v, held %+v", l, held)
	}
	b.at(77 * time.Second)
	l, held := try()
	if l == nil {
		t.Fatalf("not taken over at 77 s: %v", held)
	}
	defer l.Release(context.Background())
	if l.Epoch() != 1 || l.Previous() == nil || !l.Previous().Sample || l.Previous().Owner != "dotnet-1" {
		t.Fatalf("took over at epoch %d from %+v", l.Epoch(), l.Previous())
	}
	d := b.doc(t, "job")
	if d.Sample || d.Epoch != 1 || d.Duration != 10*time.Second || d.OwnerID != "go-1" || d.Released || d.LeaseID == "sample-lease" {
		t.Fatalf("document after the takeover: %+v", d)
	}
}

// Our holder learns from its next renewal that a sample contender took the lease, and names it.
func TestSample_ContenderTakesOurLease(t *testing.T) {
	b := newFakeBed()
	a, _ := b.client(t, "go-1", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	b.st.Put("lease-job", []byte(sampleBody("job", "dotnet-1", "sample-lease", t0, t0.Add(time.Minute))))
	if err := la.Renew(context.Background()); !errors.Is(err, ErrLeaseLost) || la.Err() == nil {
		t.Fatalf("renewal after a sample contender wrote = %v", err)
	}
	s := must[State](t)(a.Inspect(context.Background(), "job"))
	if !s.Sample || s.Owner != "dotnet-1" || s.Epoch != 0 || s.Status() != "held" || s.Problem != "" {
		t.Fatalf("inspect: %+v", s)
	}
}
