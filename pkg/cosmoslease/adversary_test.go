package cosmoslease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Interleavings found by a second adversarial review, after the fixes for issue 10. Each test fails on the code
// it was written against and describes the interleaving step by step. They use the fixtures of safety_test.go:
// the shared in-memory container on a fake clock, and a scripted store per client.

// clientOn is fakeBed.client with a clock of the test's choosing for this one client.
func (b *fakeBed) clientOn(t *testing.T, owner string, clk clock.Clock, tweak func(*Options)) (*Client, *scripted) {
	t.Helper()
	sc := &scripted{Store: b.st}
	return newClient(sc, fakeClientOptions(t, owner, tweak), clk), sc
}

// stepWall steps the fake wall clock by d (forward or back) while the monotonic clock stands still, as a time
// synchronisation daemon does when it steps the clock.
func (b *fakeBed) stepWall(d time.Duration) { b.fc.StepWall(d) }

// gateClock is the fake clock with a trap: once armed with n, the n-th Stamp call after arming parks its caller
// until the test closes release. It lets a test stop a goroutine at a point where no store request is made.
type gateClock struct {
	*clock.Fake
	mu      sync.Mutex
	left    int
	parked  chan struct{}
	release chan struct{}
}

func newGateClock(fc *clock.Fake) *gateClock {
	return &gateClock{Fake: fc, parked: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateClock) arm(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left = n
}

func (g *gateClock) Stamp() clock.Stamp {
	g.mu.Lock()
	trap := false
	if g.left > 0 {
		g.left--
		trap = g.left == 0
	}
	g.mu.Unlock()
	if trap {
		close(g.parked)
		<-g.release
	}
	return g.Fake.Stamp()
}

// machineClock is one machine's view of the world's fake clock: its monotonic clock misses the time the machine
// spent suspended, its wall clock can be stepped, and its boot clock (CLOCK_BOOTTIME) counts everything and is
// never stepped. The store and the other clients read the world's clock.
type machineClock struct {
	world *clock.Fake
	mu    sync.Mutex
	slept time.Duration // world time spent suspended, which this machine's monotonic clock did not count
	step  time.Duration // net wall-clock step
}

func (m *machineClock) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.world.Now().Add(-m.slept)
}

func (m *machineClock) Stamp() clock.Stamp {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.world.Now()
	return clock.Stamp{Mono: now.Add(-m.slept), Wall: now.Add(m.step), Boot: time.Hour + now.Sub(t0)}
}

func (m *machineClock) After(d time.Duration) <-chan time.Time { return m.world.After(d) }

type acquired struct {
	l   *Lease
	err error
}

func waitAcquired(t *testing.T, ch <-chan acquired, who string) acquired {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: TryAcquire did not return", who)
		return acquired{}
	}
}

// Two holders: the "too old to hold, take it over at once" rule for our own unheard claim is decided on
// clock.Elapsed, which is not monotonic (it follows the wall clock, which can step back), and the decision is not
// atomic with the takeover. So one call on a client decides that its claim u is too old while the wall clock is
// ahead, and before it records its takeover claim, the answer to u arrives, after the wall clock stepped back:
// u is handed out as a Lease that is valid by both clocks, and the takeover is then applied and handed out too.
// Lease 10 s, deadline 8 s; no fake time passes at all.
//
//  1. Call 1 creates the document with claim u (epoch 1); the create is applied, its answer is slow.
//  2. The wall clock steps forward 9 s (a bad time source; or the machine slept 9 s, see below).
//  3. Call 2 reads the document: it carries u, an unheard claim of ours sent 9 s ago by the wall clock, more than
//     the 8 s deadline, so adopt says "too old: ours to take over". Call 2 prepares the takeover (epoch 2).
//  4. The wall clock steps back 9 s. Call 1's answer arrives: u is still among the claims, so Call 1 gets a Lease
//     at epoch 1, dated from u's send; elapsed is 0 by both clocks, so it is valid.
//  5. Call 2 records its claim and replaces u (still current: nobody renewed it) at epoch 2, and gets a Lease.
//
// A suspend has the same effect as the step forward in (2) if the machine's wall clock is then corrected back.
func TestAdversary_WallClockStepHandsOutOurClaimAndItsTakeover(t *testing.T) {
	b := newFakeBed()
	g := newGateClock(b.fc)
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	})
	a, sa := b.clientOn(t, "a", g, nil)
	ctx := context.Background()

	applied, answer := make(chan struct{}), make(chan struct{})
	sa.then("create", holdAnswer(applied, answer))
	call1 := make(chan acquired, 1)
	go func() { l, err := a.TryAcquire(ctx, "job"); call1 <- acquired{l, err} }()
	<-applied
	if _, err := a.Inspect(ctx, "job"); err != nil { // the client has seen u, so call 2 reads it again
		t.Fatal(err)
	}

	b.stepWall(9 * time.Second)
	// The first Stamp of call 2 is adopt's age check (under the client's mutex); the second reads the clock for
	// the takeover's send, before the takeover claim is recorded. Park call 2 there.
	g.arm(2)
	call2 := make(chan acquired, 1)
	go func() { l, err := a.TryAcquire(ctx, "job"); call2 <- acquired{l, err} }()
	var r2 acquired
	parked := false
	select {
	case <-g.parked:
		parked = true
	case r2 = <-call2: // the code no longer takes the claim over here; the rest still checks for two holders
	case <-time.After(10 * time.Second):
		t.Fatal("call 2 neither parked nor returned")
	}

	b.stepWall(-9 * time.Second)
	close(answer)
	r1 := waitAcquired(t, call1, "call 1")
	close(g.release)
	if parked {
		r2 = waitAcquired(t, call2, "call 2")
	}
	if r1.err == nil && r2.err == nil && r1.l.Err() == nil && r2.l.Err() == nil {
		t.Fatalf("two holders on one client at the same instant: call 1 at epoch %d, call 2 at epoch %d", r1.l.Epoch(), r2.l.Epoch())
	}
}

// Two holders: clock.Elapsed takes the larger of the monotonic and the wall-clock time so that a suspend (which
// Go's monotonic clock does not count) is not missed, but a wall-clock step back of the same size during the
// lease cancels the suspend out: the holder counts neither, while the rest of the world, and the server's clock,
// moved on.
//
//  1. a acquires at t=0 (lease 10 s, deadline 8 s, manual renewal).
//  2. At t=1 time synchronisation steps a's wall clock back 60 s (it was ahead).
//  3. a's machine sleeps from t=1 to t=61: its monotonic clock stands still, its wall clock moves 60 s.
//  4. At t=61 a's elapsed time is 1 s by both of its clocks, so Err says it holds the lease. A contender reads
//     the document, 61 s old by the server's clock, and takes over at epoch 2.
//
// A clock that counts suspended time and never steps (CLOCK_BOOTTIME on Linux) is not fooled; where there is
// none, this stays a limit (documented in package clock and in the package comment).
func TestAdversary_WallClockStepBackHidesASuspend(t *testing.T) {
	b := newFakeBed()
	m := &machineClock{world: b.fc}
	a, _ := b.clientOn(t, "a", m, nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))

	b.at(time.Second)
	m.mu.Lock()
	m.step -= 60 * time.Second
	m.slept += 60 * time.Second
	m.mu.Unlock()
	b.at(61 * time.Second)

	lc := b.takeOver(t, "job")
	if la.Err() == nil {
		t.Fatalf("two holders at t=61: a, which slept 60 s, still believes it holds epoch %d; the contender holds epoch %d", la.Epoch(), lc.Epoch())
	}
}

// A Lease adopted from a claim whose answer was lost carries no session token: the read that found the claim
// applied had one, but adopt keeps it nowhere, and the client has never confirmed a write of this key. The next
// read after a 412 may then come from a replica older than our own claim, and reconcile takes the previous
// holder's document (a lower epoch) for a takeover: the holder gives up a lease whose document is ours, and
// Release, believing someone else holds it, returns nil without writing. The document stays held (renewed,
// not released), so every contender waits a full LeaseDuration.
//
//  1. p acquires (epoch 1) and releases.
//  2. a claims the released document at epoch 2; the replace is applied, its answer lost. a reads the document
//     (the newest replica), finds its claim, and adopts it.
//  3. a renews: the replace is applied and the SDK's retry of it is answered 412 (the "retried" fault).
//  4. reconcile reads without a session token; a replica two writes behind answers with p's released epoch 1.
//  5. reconcile: "taken over by p at epoch 1"; Renew returns ErrLeaseLost. Release writes nothing.
func TestAdversary_AdoptedClaimKeepsNoSessionTokenAndReleaseWritesNothing(t *testing.T) {
	b := newFakeBed()
	ctx := context.Background()
	p, _ := b.client(t, "p", nil)
	lp := must[*Lease](t)(p.TryAcquire(ctx, "job"))
	noErr(t, lp.Release(ctx))

	a, sa := b.client(t, "a", nil)
	sa.then("replace", lostAnswer)
	la := must[*Lease](t)(a.TryAcquire(ctx, "job"))
	if la.Epoch() != 2 {
		t.Fatalf("a holds epoch %d, want 2", la.Epoch())
	}

	retried := func(call func() (store.Item, error)) (store.Item, error) {
		_, _ = call() // applied
		return call() // the SDK's retry: 412
	}
	sa.then("replace", retried)
	b.st.LagReads(1, 2)
	renewErr := la.Renew(ctx)

	if err := la.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	d := b.doc(t, "job")
	if d.LeaseID == la.State().LeaseID && !d.Released {
		t.Fatalf("Release returned nil but our document (epoch %d, renewals %d) is not released, so it blocks every contender for a LeaseDuration; Renew had said %v although nobody else wrote after our claim",
			d.Epoch, d.Renewals, renewErr)
	}
	if errors.Is(renewErr, ErrLeaseLost) {
		t.Fatalf("Renew = %v: a read older than our own claim was taken for a takeover", renewErr)
	}
}

// Memory: the claims map keeps state for every key this client ever sent a claim for and did not win. A refused
// claim is dropped but leaves its key behind with an empty list; a claim whose outcome stayed unknown is purged
// only when the same key is claimed again, more than 2×LeaseDuration later, which for a key that is never
// claimed again is never. A long-lived client contending for many keys (one per job, per day, …) grows without
// bound. (seen, sessions and released also keep an entry per key for ever; they are not checked here.)
//
//  1. a sends one claim for each of 100 keys: half refused with 503, half never answered and never applied.
//  2. 2×LeaseDuration passes: none of those claims can matter any more.
//  3. a acquires one more key. Its claims map still has an entry for each of the 100 keys.
func TestAdversary_ClaimsOfKeysNeverClaimedAgainAreKeptForEver(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	ctx := context.Background()
	noAnswer := func(call func() (store.Item, error)) (store.Item, error) {
		return store.Item{}, &store.Error{Op: "test", Kind: store.Unknown, Err: context.DeadlineExceeded}
	}
	const keys = 100
	for i := range keys {
		if i%2 == 0 {
			sa.then("create", unavailable)
		} else {
			sa.then("create", noAnswer)
		}
		if _, err := a.TryAcquire(ctx, fmt.Sprintf("job-%d", i)); err == nil {
			t.Fatalf("claim %d was scripted to fail, but TryAcquire succeeded", i)
		}
	}
	b.at(2*a.opts.LeaseDuration + time.Second)
	must[*Lease](t)(a.TryAcquire(ctx, "another"))
	a.mu.Lock()
	entries, claims := len(a.claims), 0
	for _, cs := range a.claims {
		claims += len(cs)
	}
	a.mu.Unlock()
	if entries > 0 {
		t.Fatalf("2×LeaseDuration after one failed claim on each of %d keys, the client still keeps %d claims entries (%d claims)", keys, entries, claims)
	}
}

// Renew reports a renewal of a lease that has already ended: the write was sent before RenewDeadline, the
// deadline passed while its answer was on the way (a slow answer, a paused process), and Err ended the lease.
// The late success then returns nil from Renew, while Err keeps saying ErrLeaseLost and the context stays
// cancelled: a caller that trusts Renew's nil works on without a lease, and the renewed document keeps every
// contender waiting a LeaseDuration for a holder that has stopped.
//
//  1. a acquires at t=0 (lease 10 s, deadline 8 s, manual renewal) and calls Renew at t=7.5.
//  2. The replace is applied at once; its answer arrives at t=8.5.
//  3. At t=8.5, before the answer, Err reports the loss (as the keeper would).
//  4. Renew returns nil.
func TestAdversary_RenewReportsARenewalOfALeaseThatHasEnded(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	b.at(7500 * time.Millisecond)
	applied, answer := make(chan struct{}), make(chan struct{})
	sa.then("replace", holdAnswer(applied, answer))
	renewErr := make(chan error, 1)
	go func() { renewErr <- la.Renew(context.Background()) }()
	<-applied
	b.at(8500 * time.Millisecond)
	if !errors.Is(la.Err(), ErrLeaseLost) {
		t.Fatalf("Err at t=8.5 with no confirmed renewal = %v, want ErrLeaseLost", la.Err())
	}
	close(answer)
	if err := waitErr(t, renewErr); err == nil {
		t.Fatalf("Renew returned nil, but the lease had ended before its answer arrived (Err = %v)", la.Err())
	}
}
