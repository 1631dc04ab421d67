package cosmoslease

import (
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// Mixed fleets against the real server: contenders that follow the reference sample's protocol through the
// official JavaScript SDK (testdata/cosmos-sample/sample.js) beside contenders of this package. Every process
// runs on this machine, so their clocks agree, and the times they report can be compared directly.

// An abandoned sample document (a crashed .NET instance's) is taken over after its holder's expiresAt, never
// before, and within its lease + 5 s of its last write: expiresAt + 5 s. The sample's lease (10 s) is longer
// than ours (3 s), so expiresAt − _ts decides how long the standby waits.
func TestSampleServer_AbandonedLeaseIsTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a sample lease waited out on the real clock")
	}
	t.Parallel()
	b := newServerBed(t, DefaultPartitionKeyPath)
	sp := b.srv.StartSample(t, b.container, "dotnet-1", "--lease", "job", "--duration", "10000",
		"--renew-interval", "2000", "--work-interval", "200")
	sp.Wait(t, "acquired", 20*time.Second)

	standby, _ := b.client(t, "go-standby", nil)
	type result struct {
		l   *Lease
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := standby.Acquire(ctxTimeout(t, time.Minute), "job")
		got <- result{l, err}
	}()
	sp.Wait(t, "renewed", 10*time.Second)
	time.Sleep(2500 * time.Millisecond) // and renews once more while the standby watches
	sp.Kill()

	observer, _ := b.client(t, "observer", nil)
	left := must[State](t)(observer.Inspect(context.Background(), "job"))
	if !left.Sample || left.Owner != "dotnet-1" || left.Status() != "held" || left.Epoch != 0 {
		t.Fatalf("the crashed sample's document reads as %+v", left)
	}
	if n := len(sp.Events()); sp.Events()[n-1].Event != "work" && sp.Events()[n-1].Event != "renewed" {
		t.Fatalf("the sample was not holding when killed: %v", sp.Events()[n-1])
	}
	select {
	case r := <-got:
		t.Fatalf("the standby acquired while the sample renewed: %v %v", r.l, r.err)
	default:
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.l.Release(context.Background())
	at := r.l.State().AcquiredAt
	t.Logf("the sample's expiresAt %s; taken over %s after it", left.ExpiresAt.Format(time.RFC3339Nano), at.Sub(left.ExpiresAt))
	if !at.After(left.ExpiresAt) {
		t.Fatalf("taken over at %s, before %s, when the sample holder still believed it held the lease", at, left.ExpiresAt)
	}
	if at.After(left.ExpiresAt.Add(5 * time.Second)) {
		t.Fatalf("taken over at %s, more than 5 s after the sample's expiresAt %s", at, left.ExpiresAt)
	}
	if p := r.l.Previous(); r.l.Epoch() != 1 || p == nil || !p.Sample || p.Owner != "dotnet-1" {
		t.Fatalf("took over at epoch %d from %+v; want epoch 1 from the sample's dotnet-1", r.l.Epoch(), p)
	}
	if s := must[State](t)(observer.Inspect(context.Background(), "job")); s.Sample || s.Epoch != 1 || s.Owner != "go-standby" || s.Duration != 3*time.Second {
		t.Fatalf("the document after the takeover is not a full one at epoch 1: %+v", s)
	}
}

// The other direction: a sample contender takes our abandoned lease by its own clock against our expiresAt,
// after our holder stopped (the clocks agree here; see the package comment for the limit). Our holder learns
// it from its next write and names the sample's instance. The sample then releases by deleting the document,
// so the epoch starts again at 1.
func TestSampleServer_SampleContenderTakesOurAbandonedLease(t *testing.T) {
	t.Parallel()
	b := newServerBed(t, DefaultPartitionKeyPath)
	a, _ := b.client(t, "go-1", func(o *Options) { o.ManualRenew = true })
	first := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	noErr(t, first.Release(context.Background()))
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	if la.Epoch() != 2 {
		t.Fatalf("epoch %d, want 2", la.Epoch())
	}
	deadline := la.State().AcquiredAt.Add(a.Options().RenewDeadline)

	sp := b.srv.StartSample(t, b.container, "dotnet-1", "--lease", "job", "--duration", "3000", "--renew-interval", "1000",
		"--work-interval", "100", "--retry", "100", "--hold-for", "1500")
	ev := sp.Wait(t, "acquired", 20*time.Second)
	if la.Err() == nil || !ev.AcquiredAt.After(deadline) {
		t.Fatalf("the sample acquired at %s; our holder's deadline was %s (its error now: %v)", ev.AcquiredAt, deadline, la.Err())
	}
	if err := la.Renew(context.Background()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewal after the sample's takeover = %v, want ErrLeaseLost", err)
	}
	s := must[State](t)(a.Inspect(context.Background(), "job"))
	if !s.Sample || s.Owner != "dotnet-1" || s.Status() != "held" {
		t.Fatalf("inspect while the sample holds: %+v", s)
	}
	var held *HeldError
	if _, err := a.TryAcquire(context.Background(), "job"); !errors.As(err, &held) || !strings.Contains(err.Error(), "dotnet-1") ||
		!strings.Contains(err.Error(), "reference sample") {
		t.Fatalf("TryAcquire while the sample holds = %v", err)
	}
	sp.Wait(t, "released", 10*time.Second)
	if code := sp.Exited(t, 10*time.Second); code != 0 {
		t.Fatalf("sample exited %d", code)
	}
	again := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	defer again.Release(context.Background())
	if again.Epoch() != 1 || again.Previous() != nil {
		t.Fatalf("after the sample deleted the document: epoch %d, previous %+v; want epoch 1 afresh", again.Epoch(), again.Previous())
	}
}

// holding is one acquisition in a mixed run: who, its leaseId, and when the acquiring write was built (the
// document's acquiredAt, set before the write is sent).
type holding struct {
	owner, leaseID string
	sample         bool
	at             time.Time
}

// work is one unit of work: started at at, by the holding with leaseID, which was still valid after at.
type work struct {
	leaseID string
	at      time.Time
}

// mutualExclusion returns the violations in a history: a unit of work of one holding that started at or after
// the acquisition of a later holding. This is the chaos checker's rule, with holdings ordered by their
// acquisition time instead of their epoch, since the sample's documents have none and its release resets it.
func mutualExclusion(holdings []holding, works []work) []string {
	sort.Slice(holdings, func(i, j int) bool { return holdings[i].at.Before(holdings[j].at) })
	index := map[string]int{}
	for i, h := range holdings {
		index[h.leaseID] = i
	}
	var violations []string
	for _, w := range works {
		i, ok := index[w.leaseID]
		if !ok {
			violations = append(violations, "work by a holding that never acquired: "+w.leaseID)
			continue
		}
		if i+1 < len(holdings) && !w.at.Before(holdings[i+1].at) {
			h, next := holdings[i], holdings[i+1]
			violations = append(violations, h.owner+" worked at "+w.at.Format(time.RFC3339Nano)+" under "+h.leaseID+
				", after "+next.owner+" acquired at "+next.at.Format(time.RFC3339Nano))
		}
	}
	return violations
}

func TestMutualExclusionChecker(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	hs := []holding{{owner: "b", leaseID: "2", at: at(1000)}, {owner: "a", leaseID: "1", at: at(0)}}
	if v := mutualExclusion(hs, []work{{"1", at(999)}, {"2", at(1000)}, {"2", at(5000)}}); len(v) != 0 {
		t.Fatalf("clean history flagged: %v", v)
	}
	if v := mutualExclusion(hs, []work{{"1", at(1000)}}); len(v) != 1 {
		t.Fatalf("work at the next acquisition not flagged: %v", v)
	}
	if v := mutualExclusion(hs, []work{{"3", at(10)}}); len(v) != 1 {
		t.Fatalf("work of an unknown holding not flagged: %v", v)
	}
}

// Two contenders of this package (lease 3 s) and two of the sample (lease 5 s) contend for one lease for 25 s:
// each holds for a random while, then releases, or abandons the lease (stops working and renewing without
// releasing, as a crash would) and comes back one lease duration later. Some sample holdings get no renewal
// through and work on until their expiresAt. No unit of work may start once a later holder has acquired,
// whichever protocol either follows.
func TestSampleServer_MixedFleetMutualExclusion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 25 s mixed-fleet run")
	}
	t.Parallel()
	const run = 25 * time.Second
	b := newServerBed(t, DefaultPartitionKeyPath)
	stop := time.Now().Add(run)
	samples := []*cosmostest.SampleProcess{}
	for _, name := range []string{"dotnet-1", "dotnet-2"} {
		samples = append(samples, b.srv.StartSample(t, b.container, name, "--lease", "job", "--duration", "5000",
			"--renew-interval", "1000", "--work-interval", "50", "--retry", "200", "--hold-for", "200-1000",
			"--abandon", "0.2", "--stall", "0.2", "--run-for", strconv.FormatInt(run.Milliseconds(), 10)))
	}
	var (
		mu       sync.Mutex
		holdings []holding
		works    []work
		tookOver int // takeovers of a sample document by this package
		wg       sync.WaitGroup
	)
	for _, name := range []string{"go-1", "go-2"} {
		c, _ := b.client(t, name, func(o *Options) { o.ManualRenew = true })
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithDeadline(context.Background(), stop)
			defer cancel()
			for ctx.Err() == nil {
				l, err := c.Acquire(ctx, "job")
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("%s: %v", name, err)
					}
					return
				}
				s := l.State()
				mu.Lock()
				holdings = append(holdings, holding{owner: name, leaseID: s.LeaseID, at: s.AcquiredAt})
				if p := l.Previous(); p != nil && p.Sample {
					tookOver++
				}
				mu.Unlock()
				end := time.Now().Add(200*time.Millisecond + rand.N(800*time.Millisecond))
				renewAt := time.Now().Add(c.Options().RenewInterval)
				lost := false
				for !lost && time.Now().Before(end) {
					if time.Now().After(renewAt) {
						lost = l.Renew(context.Background()) != nil
						renewAt = time.Now().Add(c.Options().RenewInterval)
						continue
					}
					at := time.Now()
					if lost = l.Err() != nil; !lost {
						mu.Lock()
						works = append(works, work{leaseID: s.LeaseID, at: at})
						mu.Unlock()
						time.Sleep(50 * time.Millisecond)
					}
				}
				switch {
				case lost:
				case rand.Float64() < 0.2: // abandon: stop as a crash would, come back later
					select {
					case <-ctx.Done():
					case <-time.After(c.Options().LeaseDuration):
					}
				default:
					_ = l.Release(context.Background())
				}
			}
		}()
	}
	wg.Wait()
	for _, sp := range samples {
		sp.Exited(t, 20*time.Second)
		for _, ev := range sp.Events() {
			switch ev.Event {
			case "acquired":
				holdings = append(holdings, holding{owner: ev.Instance, leaseID: ev.LeaseID, sample: true, at: ev.AcquiredAt})
			case "work":
				works = append(works, work{leaseID: ev.LeaseID, at: ev.Time})
			}
		}
	}
	if v := mutualExclusion(holdings, works); len(v) > 0 {
		t.Errorf("%d units of work broke mutual exclusion; the first: %s", len(v), strings.Join(v[:min(len(v), 5)], "; "))
	}
	// The run must have mixed the protocols, or it proved nothing.
	handoffs := map[string]int{}
	for i := 1; i < len(holdings); i++ {
		kind := func(h holding) string {
			if h.sample {
				return "sample"
			}
			return "go"
		}
		handoffs[kind(holdings[i-1])+"→"+kind(holdings[i])]++
	}
	t.Logf("%d holdings, %d units of work, handoffs %v, sample documents taken over by this package: %d",
		len(holdings), len(works), handoffs, tookOver)
	if handoffs["go→sample"] == 0 || handoffs["sample→go"] == 0 || len(works) < 100 {
		t.Fatalf("the run did not mix the protocols: handoffs %v, %d units of work", handoffs, len(works))
	}
}
