package cosmoslease

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

// Interleavings found by an adversarial review of the protocol, made exact with the fake clock: the in-memory
// store is shared, and each client reaches it through a scripted wrapper of its own, so a test can delay, lose
// or refuse one client's requests at a chosen moment. Each test is named after what went wrong.

// fakeBed is a shared in-memory container on a fake clock.
type fakeBed struct {
	fc *clock.Fake
	st *memstore.Store
}

func newFakeBed() *fakeBed {
	fc := clock.NewFake(t0)
	return &fakeBed{fc: fc, st: memstore.New(fc)}
}

// fakeOptions: lease 10 s, renewal every 5 s, deadline 8 s; renewal is manual unless a test turns it on.
func fakeOptions(owner string) Options {
	return Options{OwnerID: owner, Region: "region-" + owner, LeaseDuration: 10 * time.Second,
		RenewInterval: 5 * time.Second, RenewDeadline: 8 * time.Second, RetryPeriod: time.Second,
		RequestTimeout: 2 * time.Second, ManualRenew: true}
}

func (b *fakeBed) client(t *testing.T, owner string, tweak func(*Options)) (*Client, *scripted) {
	t.Helper()
	sc := &scripted{Store: b.st}
	return newClient(sc, fakeClientOptions(t, owner, tweak), b.fc), sc
}

// fakeClientOptions are fakeOptions, adjusted by tweak, with the defaults filled in.
func fakeClientOptions(t *testing.T, owner string, tweak func(*Options)) Options {
	t.Helper()
	opts := fakeOptions(owner)
	if tweak != nil {
		tweak(&opts)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// at moves the fake clock to t0 + d.
func (b *fakeBed) at(d time.Duration) {
	if left := t0.Add(d).Sub(b.fc.Now()); left > 0 {
		b.fc.Advance(left)
	}
}

func (b *fakeBed) doc(t *testing.T, key string) *leasedoc.Doc {
	t.Helper()
	it, err := b.st.Read(context.Background(), key, leasedoc.IDPrefix+key, "")
	if err != nil {
		t.Fatal(err)
	}
	d, err := leasedoc.Decode(it.Body, leasedoc.IDPrefix+key)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// action stands in for one request: call sends it to the store.
type action func(call func() (store.Item, error)) (store.Item, error)

// scripted passes requests to the store, except that the next request of an operation takes the next queued
// action for it. It records the session token of every read and the If-Match of every replace.
type scripted struct {
	store.Store
	mu       sync.Mutex
	queue    map[string][]action
	sessions []string
	ifMatch  []string
}

func (s *scripted) then(op string, a ...action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue == nil {
		s.queue = map[string][]action{}
	}
	s.queue[op] = append(s.queue[op], a...)
}

func (s *scripted) run(op string, call func() (store.Item, error)) (store.Item, error) {
	s.mu.Lock()
	var a action
	if q := s.queue[op]; len(q) > 0 {
		a, s.queue[op] = q[0], q[1:]
	}
	s.mu.Unlock()
	if a == nil {
		return call()
	}
	return a(call)
}

func (s *scripted) Read(ctx context.Context, pk, id, session string) (store.Item, error) {
	s.mu.Lock()
	s.sessions = append(s.sessions, session)
	s.mu.Unlock()
	return s.run("read", func() (store.Item, error) { return s.Store.Read(ctx, pk, id, session) })
}

func (s *scripted) Create(ctx context.Context, pk string, body []byte) (store.Item, error) {
	return s.run("create", func() (store.Item, error) { return s.Store.Create(ctx, pk, body) })
}

func (s *scripted) Replace(ctx context.Context, pk, id string, body []byte, etag string) (store.Item, error) {
	s.mu.Lock()
	s.ifMatch = append(s.ifMatch, etag)
	s.mu.Unlock()
	return s.run("replace", func() (store.Item, error) { return s.Store.Replace(ctx, pk, id, body, etag) })
}

// Actions.
var (
	pass = func(call func() (store.Item, error)) (store.Item, error) { return call() }
	// lostAnswer: applied by the server, but the answer never arrives.
	lostAnswer = func(call func() (store.Item, error)) (store.Item, error) {
		_, _ = call()
		return store.Item{}, &store.Error{Op: "test", Kind: store.Unknown, Err: errors.New("connection reset")}
	}
	unavailable = func(call func() (store.Item, error)) (store.Item, error) {
		return store.Item{}, &store.Error{Op: "test", Status: 503, Kind: store.Unavailable}
	}
)

// holdAnswer applies the request, signals applied, and keeps the answer until release is closed.
func holdAnswer(applied, release chan struct{}) action {
	return func(call func() (store.Item, error)) (store.Item, error) {
		it, err := call()
		close(applied)
		<-release
		return it, err
	}
}

func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("call did not return")
		return nil
	}
}

// takeOver has a new contender take the lease at the current fake time; the test fails if it cannot.
func (b *fakeBed) takeOver(t *testing.T, key string) *Lease {
	t.Helper()
	c, _ := b.client(t, "contender", nil)
	l, err := c.TryAcquire(context.Background(), key)
	if err != nil {
		t.Fatalf("the contender could not take over at %s: %v", b.fc.Now().Sub(t0), err)
	}
	return l
}

// Regression: Renew and the keeper wrote at the same time; a slow success arriving after a newer write moved the
// lease's view back to an old version, and a later 412 adopted the newest version dated from its own send.
// Lease 10 s, deadline 8 s.
func TestSafety_ConcurrentRenewalsNeverMoveTheViewBack(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))

	b.at(time.Second)
	// Renewal A is applied at t=1, but its answer is slow.
	appliedA, answerA := make(chan struct{}), make(chan struct{})
	sa.then("replace", holdAnswer(appliedA, answerA))
	errA := make(chan error, 1)
	go func() { errA <- la.Renew(context.Background()) }()
	<-appliedA
	// Renewal B starts while A's answer is on its way.
	errB := make(chan error, 1)
	go func() { errB <- la.Renew(context.Background()) }()
	select {
	case err := <-errB: // B did not wait for A
		errB <- err
	case <-time.After(300 * time.Millisecond):
	}
	close(answerA)
	if err := waitErr(t, errA); err != nil {
		t.Fatalf("renewal A: %v", err)
	}
	if err := waitErr(t, errB); err != nil {
		t.Fatalf("renewal B: %v", err)
	}

	// At t=7 the region is in trouble: every write on the newest version is refused with 503.
	b.at(7 * time.Second)
	newest := b.doc(t, "job").ETag
	refuseNewest := func(call func() (store.Item, error)) (store.Item, error) {
		sa.mu.Lock()
		etag := sa.ifMatch[len(sa.ifMatch)-1]
		sa.mu.Unlock()
		if etag == newest {
			return unavailable(call)
		}
		return call()
	}
	sa.then("replace", refuseNewest, refuseNewest, refuseNewest)
	_ = la.Renew(context.Background())

	// The newest version was written at t=1; at t=12 it is 11 s old on the server's clock.
	b.at(12 * time.Second)
	lc := b.takeOver(t, "job")
	if la.Err() == nil {
		t.Fatalf("two holders at t=12: a at epoch %d still believes it holds the lease, the contender holds epoch %d", la.Epoch(), lc.Epoch())
	}
}

// Regression: with no concurrency at all, a read after a 412 answered by a replica behind our own write
// returned an older version of our document; it was adopted, and the renewal it had superseded was adopted
// later dated from a later send.
func TestSafety_StaleReadIsNeverAdopted(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))

	b.at(time.Second)
	sa.then("replace", lostAnswer) // applied at t=1; we never hear of it
	_ = la.Renew(context.Background())

	b.at(5 * time.Second)
	b.st.LagReads(1, 1)                   // the read after the 412 comes from a replica one write behind
	sa.then("replace", pass, unavailable) // 412 (natural), then the write after the read gets 503
	_ = la.Renew(context.Background())

	b.at(8500 * time.Millisecond)
	sa.then("replace", pass, unavailable) // 412, a fresh read, then 503
	_ = la.Renew(context.Background())

	b.at(12 * time.Second)
	lc := b.takeOver(t, "job")
	if la.Err() == nil {
		t.Fatalf("two holders at t=12: a at epoch %d still believes it holds the lease, the contender holds epoch %d", la.Epoch(), lc.Epoch())
	}
}

// Every read made after our own write carries that write's session token, so a lagging replica cannot answer it
// with a version older than the write.
func TestSafety_ReadsAfterOurWriteCarryItsSessionToken(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	b.at(time.Second)
	var token string
	sa.then("replace", func(call func() (store.Item, error)) (store.Item, error) {
		it, err := call()
		token = it.Session
		return it, err
	})
	noErr(t, la.Renew(context.Background()))
	if token == "" {
		t.Fatal("the store gave no session token")
	}
	// Someone else's write makes our next renewal fail with 412; the read after it goes to a lagging replica,
	// which without a token could answer with the document as it was before our renewal.
	b.st.Put(leasedoc.IDPrefix+"job", []byte(`{"id":"lease-job","leaseKey":"job","leaseId":"other","ownerId":"z","epoch":2,"leaseDurationMs":10000,"metadata":{}}`))
	b.st.LagReads(1, 2)
	sa.mu.Lock()
	sa.sessions = nil
	sa.mu.Unlock()
	err := la.Renew(context.Background())
	sa.mu.Lock()
	sessions := sa.sessions
	sa.mu.Unlock()
	if len(sessions) != 1 || sessions[0] != token {
		t.Fatalf("the read after our renewal passed session tokens %q, want the renewal's %q", sessions, token)
	}
	// The replica is at our renewal, not before it: our own newest version, which is no reason to adopt or to
	// give up. The next read, from an up-to-date replica, shows z.
	if !store.Retryable(err) || la.Err() != nil {
		t.Fatalf("renewal answered by a replica at our own write = %v (lease err %v), want a retryable error and the lease kept", err, la.Err())
	}
	if err := la.Renew(context.Background()); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "taken over by z") {
		t.Fatalf("renewal after a takeover = %v, want ErrLeaseLost naming z", err)
	}
}

// Regression: Renew racing Release returned nil although nothing was renewed and the document was released.
func TestSafety_RenewRacingReleaseNeverClaimsARenewal(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	renewSent, releaseApplied := make(chan struct{}), make(chan struct{})
	// The renewal is on the wire when Release starts; it arrives after the release was applied (or, when
	// writes are serialized, after a while).
	sa.then("replace", func(call func() (store.Item, error)) (store.Item, error) {
		close(renewSent)
		select {
		case <-releaseApplied:
		case <-time.After(300 * time.Millisecond):
		}
		return call()
	}, func(call func() (store.Item, error)) (store.Item, error) {
		it, err := call()
		close(releaseApplied)
		return it, err
	})
	renewErr := make(chan error, 1)
	go func() { renewErr <- la.Renew(context.Background()) }()
	<-renewSent
	if err := la.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := waitErr(t, renewErr)
	d := b.doc(t, "job")
	switch {
	case err == nil && d.Renewals != 1:
		t.Fatalf("Renew returned nil, but the document shows %d renewals (released %v)", d.Renewals, d.Released)
	case err != nil && !errors.Is(err, ErrReleased):
		t.Fatalf("Renew racing Release = %v, want nil (renewed) or ErrReleased", err)
	}
	if !d.Released {
		t.Fatal("the lease is not released")
	}
}

// Regression: a write whose answer carried no ETag left the lease with an empty ETag, and the next write was sent
// with If-Match "", which is no condition at all.
func TestSafety_AnswerWithoutETagIsNeverUsedAsACondition(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	noTag := func(call func() (store.Item, error)) (store.Item, error) {
		it, err := call()
		it.ETag = ""
		return it, err
	}
	sa.then("create", noTag)
	la, err := a.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatalf("TryAcquire after an answer without ETag = %v; the document shows our claim, want the lease", err)
	}
	sa.then("replace", noTag)
	_ = la.Renew(context.Background())
	_ = la.Renew(context.Background())
	sa.mu.Lock()
	defer sa.mu.Unlock()
	for i, etag := range sa.ifMatch {
		if etag == "" {
			t.Fatalf("write #%d was sent with an empty If-Match (all: %q)", i+1, sa.ifMatch)
		}
	}
}

// Regression: Release after a loss caused only by the deadline sent nothing, so the lease stayed blocked for the
// rest of its duration.
func TestSafety_ReleaseAfterTheDeadlineStillReleases(t *testing.T) {
	b := newFakeBed()
	a, sa := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	b.at(9 * time.Second) // past the 8 s deadline, before anyone may take over
	if !errors.Is(la.Err(), ErrLeaseLost) {
		t.Fatalf("Err past the deadline = %v", la.Err())
	}
	if err := la.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := b.doc(t, "job"); !d.Released || d.LeaseID != la.State().LeaseID {
		t.Fatalf("after Release: released %v, leaseId %s", d.Released, d.LeaseID)
	}
	if len(sa.ifMatch) != 1 {
		t.Fatalf("release made %d writes, want 1", len(sa.ifMatch))
	}
	if !errors.Is(context.Cause(la.Context()), ErrLeaseLost) {
		t.Fatalf("cause = %v, want the loss to stay the reason", context.Cause(la.Context()))
	}
}

// Regression: a release that found another holder made this client wait before its next Acquire, as if it had
// freed the lease itself.
func TestSafety_ReleaseThatFoundAnotherHolderDoesNotDelayAcquire(t *testing.T) {
	b := newFakeBed()
	a, _ := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	b.st.Put(leasedoc.IDPrefix+"job", []byte(`{"id":"lease-job","leaseKey":"job","leaseId":"other","ownerId":"z","epoch":2,"leaseDurationMs":10000,"metadata":{}}`))
	if err := la.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := b.doc(t, "job"); d.OwnerID != "z" || d.Released {
		t.Fatalf("release touched z's document: %+v", d)
	}
	b.st.Put(leasedoc.IDPrefix+"job", []byte(`{"id":"lease-job","leaseKey":"job","leaseId":"other","ownerId":"z","epoch":2,"released":true,"leaseDurationMs":10000,"metadata":{}}`))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := a.Acquire(ctx, "job") // the fake clock does not move: any wait would never end
	if err != nil {
		t.Fatalf("Acquire after a release that freed nothing = %v, want the lease at once", err)
	}
	if l.Epoch() != 3 {
		t.Fatalf("epoch %d, want 3", l.Epoch())
	}
}

// Regression: Go's monotonic clock stops while the machine sleeps; after resuming, Err said the lease was valid
// long past its deadline.
func TestSafety_SuspendedMachineDoesNotKeepTheLease(t *testing.T) {
	b := newFakeBed()
	a, _ := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	b.at(time.Second)
	b.fc.Suspend(time.Minute) // the wall clock moves on; the monotonic clock does not
	if err := la.Err(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Err after a minute asleep = %v, want ErrLeaseLost", err)
	}
	if s := la.State(); s.Held || s.ExpiresIn != 0 {
		t.Fatalf("State after a minute asleep: held %v, expires in %s", s.Held, s.ExpiresIn)
	}
	if err := la.Renew(context.Background()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Renew after a minute asleep = %v, want ErrLeaseLost", err)
	}
}

// After resuming, the keeper ends the context within RetryPeriod, without anyone calling Err.
func TestSafety_SuspendEndsTheContextPromptly(t *testing.T) {
	b := newFakeBed()
	a, _ := b.client(t, "a", nil)
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	<-b.fc.Waiting() // the keeper is asleep
	b.fc.Suspend(time.Minute)
	b.fc.Advance(a.opts.RetryPeriod)
	select {
	case <-la.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the lease's context was not cancelled within RetryPeriod of resuming")
	}
}

// Regression: Options.Metadata was shared with every document and with State().Metadata, so the caller's edits
// changed what renewals wrote, and raced with them.
func TestSafety_MetadataIsCopied(t *testing.T) {
	b := newFakeBed()
	meta := map[string]string{"team": "payments"}
	a, _ := b.client(t, "a", func(o *Options) { o.Metadata = meta })
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	meta["team"] = "edited by the caller"
	s := la.State()
	s.Metadata["team"] = "edited through State"
	noErr(t, la.Renew(context.Background()))
	if got := b.doc(t, "job").Metadata.Extra; !maps.Equal(got, map[string]string{"team": "payments"}) {
		t.Fatalf("renewal wrote metadata %v, want what Options said at the start", got)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
