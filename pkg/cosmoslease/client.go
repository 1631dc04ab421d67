package cosmoslease

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
)

// Client contends for leases in one container on behalf of one owner. It is safe for concurrent use.
type Client struct {
	st     store.Store
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	pkProp string
	close  func()
	m      *instruments // metrics.go
	tr     tracer       // tracing.go
	// rand, when set, is the source of the jitter (the simulator's seeded one); nil uses math/rand/v2.
	rand func() float64
	// decode, when set, decodes the documents read in place of leasedoc.Decode (the simulator's memo of it).
	decode func([]byte, string) (*leasedoc.Doc, error)

	mu       sync.Mutex
	seen     map[string]*observation // lease key → what this client last saw
	released map[string]time.Time    // lease key → when this client last released it
	sessions map[string]string       // lease key → the newest session token this client has seen
	claims   map[string][]claim      // lease key → claims sent whose outcome this client never heard
	// stragglers: lease keys whose RunOnce work outlived its grace and still runs.
	stragglers map[string]bool
}

// claim is an acquisition this client sent without hearing that it was applied: a timeout, a lost answer, or a
// 409/412 that may be the SDK's own retry of a write that was applied. Its leaseId is known only to this client,
// and no Lease was handed out for it, so a document that carries it is this client's to take.
type claim struct {
	leaseID string
	sent    clock.Stamp
	prev    *State
	owner   any // the claimSpec's owner: the call that sent it, when only that call may adopt it
}

// observation is what a contender knows about a lease document: the version it saw and since when.
type observation struct {
	doc     *leasedoc.Doc // nil when the document did not exist
	etag    string
	invalid error // the document exists but is not a valid lease
	// firstSeen is when this client first saw this ETag, on its own clock.
	firstSeen time.Time
	// observedAt is when the newest read of this ETag returned; serverAge is the document's age on the
	// server's clock at that read (Date − _ts − 1 s for _ts's resolution), or -1 when unknown.
	observedAt time.Time
	serverAge  time.Duration
}

// Open connects to the container, checks that it can hold leases, and returns a Client.
func Open(ctx context.Context, opts Options) (*Client, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := cosmosstore.Open(cosmosstore.Config{
		ConnectionString: opts.ConnectionString, Endpoint: opts.Endpoint, Credential: opts.Credential,
		Database: opts.Database, Container: opts.Container, Transport: opts.Transport, TracerProvider: sdkSpans(opts),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c := newClient(st, opts, clock.Real{})
	c.close = st.Close
	start := c.clock.Now()
	err = st.Check(ctx, opts.PartitionKeyPath, opts.AllowMultipleWriteRegions)
	c.report("check", "", start, store.Item{}, err)
	if err != nil {
		st.Close()
		if _, ok := err.(*store.Error); ok {
			return nil, fmt.Errorf("cannot reach the lease container %s/%s: %w", opts.Database, opts.Container, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrSetup, err)
	}
	return c, nil
}

// newClient assembles a Client over any store; opts must have been through withDefaults.
func newClient(st store.Store, opts Options, clk clock.Clock) *Client {
	return &Client{st: st, opts: opts, clock: clk, log: opts.Logger, pkProp: strings.TrimPrefix(opts.PartitionKeyPath, "/"),
		seen: map[string]*observation{}, released: map[string]time.Time{}, sessions: map[string]string{},
		claims: map[string][]claim{}, m: newInstruments(opts, clk.Now), tr: newTracer(opts)}
}

// Close releases the SDK client. Leases still held are not released; call Lease.Release first.
func (c *Client) Close() {
	c.m.close()
	if c.close != nil {
		c.close()
	}
}

// AccountRegions are the Cosmos DB account's regions, the write region first, then the read regions in the
// order the account lists them (Azure's SDKs take it as the failover order), as read when the client opened.
// Nil when unknown.
func (c *Client) AccountRegions() []string {
	if r, ok := c.st.(interface{ Regions() []string }); ok {
		return r.Regions()
	}
	return nil
}

// Options returns the options in force, defaults filled in. Its Metadata is a copy: editing it changes nothing.
func (c *Client) Options() Options {
	o := c.opts
	o.Metadata = maps.Clone(o.Metadata)
	return o
}

func (c *Client) pk(key, id string) string {
	if c.pkProp == "id" {
		return id
	}
	return key
}

// report tells the caller's hook and the debug log about one request.
func (c *Client) report(op, key string, start time.Time, item store.Item, err error) {
	o := Operation{Name: op, Key: key, Outcome: "ok", Latency: c.clock.Now().Sub(start), Charge: item.Charge, Err: err}
	var se *store.Error
	if errors.As(err, &se) {
		o.Status, o.Outcome, o.Charge = se.Status, outcomeOf(se.Kind), se.Charge
	} else if err != nil {
		o.Outcome = "unknown"
	}
	c.m.request(op, o.Outcome, o.Latency, o.Charge, err == nil || o.Status != 0)
	if c.opts.OnOperation != nil {
		c.opts.OnOperation(o)
	}
	if c.log.Enabled(context.Background(), slog.LevelDebug) { // this runs on every renewal: format only when asked
		c.log.Debug("cosmos request", "op", op, "lease", key, "outcome", o.Outcome, "status", o.Status,
			"latency", o.Latency, "ru", o.Charge)
	}
}

// requestContext bounds one request by RequestTimeout and by limit, when limit is not zero.
func (c *Client) requestContext(ctx context.Context, limit time.Time) (context.Context, context.CancelFunc) {
	d := c.opts.RequestTimeout
	if !limit.IsZero() {
		if left := limit.Sub(c.clock.Now()); left < d {
			d = left
		}
	}
	if d <= 0 {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		return ctx, cancel
	}
	return context.WithTimeout(ctx, d)
}

// read fetches a lease document; a missing document is (zero Item, nil doc, nil error). It passes the newest
// session token this client has for the key, so it never sees a version older than one it wrote or read.
func (c *Client) read(ctx context.Context, key, id string, limit time.Time) (store.Item, *leasedoc.Doc, error) {
	rctx, cancel := c.requestContext(ctx, limit)
	defer cancel()
	c.mu.Lock()
	session := c.sessions[key]
	c.mu.Unlock()
	start := c.clock.Now()
	item, err := c.st.Read(rctx, c.pk(key, id), id, session)
	c.report("read", key, start, item, err)
	if store.KindOf(err) == store.NotFound {
		return store.Item{}, nil, nil
	}
	if err != nil {
		return store.Item{}, nil, err
	}
	decode := leasedoc.Decode
	if c.decode != nil {
		decode = c.decode
	}
	doc, derr := decode(item.Body, id)
	if derr != nil {
		return item, nil, derr
	}
	if doc.ETag == "" {
		doc.ETag = item.ETag
	}
	return item, doc, nil
}

// observe reads a lease and records what this client saw. The returned observation is a copy. limit, when not
// zero, bounds the request.
func (c *Client) observe(ctx context.Context, key, id string, limit time.Time) (observation, error) {
	item, doc, err := c.read(ctx, key, id, limit)
	var invalid *leasedoc.Error
	if err != nil && !errors.As(err, &invalid) {
		return observation{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recordLocked(key, item, doc, err, c.clock.Now()), nil
}

// recordLocked notes a document read at now. The clock for a version starts when this client first saw it.
func (c *Client) recordLocked(key string, item store.Item, doc *leasedoc.Doc, invalid error, now time.Time) observation {
	etag := item.ETag
	if doc != nil && doc.ETag != "" {
		etag = doc.ETag
	}
	age := time.Duration(-1)
	if doc != nil && doc.TS > 0 && !item.ServerTime.IsZero() {
		age = item.ServerTime.Sub(time.Unix(doc.TS, 0)) - time.Second
	}
	obs := &observation{doc: doc, etag: etag, invalid: invalid, firstSeen: now, observedAt: now, serverAge: age}
	if prev := c.seen[key]; prev != nil && etag != "" {
		switch {
		case prev.etag == etag:
			obs.firstSeen = prev.firstSeen
		case doc != nil && prev.doc != nil && operatorEdit(doc, prev.doc):
			// Only the control changed (an operator's write, control.go): the holder's lease counts from its own
			// last write, which the operator's does not renew, so neither does this client's count restart.
			// Otherwise a script that pauses and resumes in a loop would keep a dead holder's lease alive for good.
			obs.firstSeen = prev.firstSeen
		}
	}
	c.seen[key] = obs
	c.keepSessionLocked(key, item.Session)
	return *obs
}

// remember records the document this client itself just wrote, and the write's session token.
func (c *Client) remember(key string, doc *leasedoc.Doc, at time.Time, session string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := *doc
	c.seen[key] = &observation{doc: &d, etag: doc.ETag, firstSeen: at, observedAt: at, serverAge: -1}
	c.keepSessionLocked(key, session)
}

// keepSessionLocked keeps the newest session token seen for a key, from a write or a read, so that no later read
// is answered from a replica older than anything this client has already seen (Session consistency's
// monotonic reads; the SDK passes a token only when given one).
func (c *Client) keepSessionLocked(key, token string) {
	if token != "" && store.NewerSession(token, c.sessions[key]) {
		c.sessions[key] = token
	}
}

func (c *Client) cached(key string) (observation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.seen[key]; o != nil {
		return *o, true
	}
	return observation{}, false
}

// remaining is how much longer the observed holder may hold the lease as far as this client can tell, judged
// only by clocks that need no synchronisation: this client's own, since it first saw this version, and the
// server's, from the document's _ts to the response's Date. A released or missing lease has none left.
func (c *Client) remaining(o observation, now time.Time) time.Duration {
	if o.doc == nil || o.doc.Released {
		return 0
	}
	d := o.doc.Duration
	switch {
	case o.doc.Sample:
		d = c.sampleHold(o.doc)
	case d <= 0:
		d = c.opts.LeaseDuration
	}
	elapsed := now.Sub(o.firstSeen)
	if o.serverAge >= 0 {
		if s := o.serverAge + now.Sub(o.observedAt); s > elapsed {
			elapsed = s
		}
	}
	if elapsed >= d {
		return 0
	}
	return d - elapsed
}

func (c *Client) state(key string, o observation, now time.Time) State {
	left := c.remaining(o, now)
	s := State{Key: key, ETag: o.etag, Held: left > 0, ExpiresIn: left}
	if o.invalid != nil {
		s.Problem = o.invalid.Error()
		s.Held = false
		s.ExpiresIn = 0
	}
	if d := o.doc; d != nil {
		s.ID, s.LeaseID, s.Owner, s.Region, s.Hostname = d.ID, d.LeaseID, d.OwnerID, d.Metadata.Region, d.Metadata.Hostname
		s.InstanceID = d.Metadata.InstanceID
		s.Epoch, s.Renewals, s.Released, s.Duration, s.Sample = d.Epoch, d.Renewals, d.Released, d.Duration, d.Sample
		s.AcquiredAt, s.RenewedAt, s.ExpiresAt, s.ReleasedAt = d.AcquiredAt, d.RenewedAt, d.ExpiresAt, d.ReleasedAt
		s.Metadata = maps.Clone(d.Metadata.Extra) // the caller may edit it; documents are shared with renewals
		if ctl, err := decodeControl(d); err != nil && s.Problem == "" {
			s.Problem = err.Error()
		} else {
			s.Control = ctl
		}
	}
	return s
}

// free reports whether a contender may write itself in over the observed document: it is missing, released or
// expired, or, with TakeOverSameOwner, held under this client's own OwnerID.
func (c *Client) free(o observation, now time.Time) bool {
	if c.remaining(o, now) <= 0 {
		return true
	}
	return c.opts.TakeOverSameOwner && o.doc != nil && o.doc.OwnerID == c.opts.OwnerID
}

// TryAcquire makes one attempt to take the lease. It returns the held lease, or a *HeldError naming the holder
// when another instance holds it. Uncontended it makes at most two requests: a read, then a create (missing
// document) or a conditional replace (released or expired document). With a recent observation that shows the
// lease free, it skips the read.
func (c *Client) TryAcquire(ctx context.Context, key string) (*Lease, error) {
	id, err := leasedoc.ID(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.m.keyed(key)
	ctx, sp := c.tr.startAcquire(ctx, "cosmoslease.TryAcquire", key)
	lease, err := c.attempt(ctx, key, id, nil)
	sp.endAcquire(lease, err)
	return lease, err
}

// attempt is the protocol's one step for contenders:
//  1. Use the last observation if it already shows the lease free; otherwise read the document.
//  2. If it is held (not released, and not yet seen unchanged for its duration), report the holder.
//  3. Write the new holder: create when missing (409: another contender won), otherwise replace on the
//     observed ETag (412: another contender won, or the holder renewed).
//  4. On losing the race, read once more: name the winner, or, if the lease is free again, try once more.
//
// spec, when not nil, shapes the document this attempt writes (RunOnce names its occurrence and the job's state).
func (c *Client) attempt(ctx context.Context, key, id string, spec *claimSpec) (*Lease, error) {
	obs, ok := c.cached(key)
	if !ok || obs.invalid != nil || !c.free(obs, c.clock.Now()) {
		var err error
		if obs, err = c.observe(ctx, key, id, time.Time{}); err != nil {
			return nil, err
		}
	}
	for round := 0; ; round++ {
		lease, fresh, err := c.claim(ctx, key, id, obs, spec)
		if err != nil || lease != nil {
			return lease, err
		}
		// Lost the race. If the fresh view shows the lease free again (the winner already released, or the
		// document was deleted), try once more on it; otherwise name the holder.
		now := c.clock.Now()
		if round > 0 || c.heldByOther(key, fresh, now, spec) {
			return nil, &HeldError{Holder: c.state(key, fresh, now), Race: true}
		}
		obs = fresh
	}
}

// claimSpec shapes the document a claim writes.
type claimSpec struct {
	// extra adds metadata pairs; only a document that carries them is recognised as this claim's after an
	// ambiguous answer.
	extra map[string]string
	// prepare, when set, completes the document that would make this client the holder, from the document it
	// replaces (nil when there is none), just before it is sent; an error stops the claim and is returned.
	prepare func(prev, next *leasedoc.Doc) error
	// owner, when set, is the call this claim is for (RunOnce's election, which alone knows what its claim
	// decided): only a claim sent with the same owner is adopted after an unheard answer.
	owner any
}

func (s *claimSpec) ownerOf() any {
	if s == nil {
		return nil
	}
	return s.owner
}

func (s *claimSpec) metadata() map[string]string {
	if s == nil {
		return nil
	}
	return s.extra
}

// claim makes this client the holder if obs shows the lease free (steps 2–4 of attempt). On a lost race it
// returns no lease, no error, and the fresh observation.
func (c *Client) claim(ctx context.Context, key, id string, obs observation, spec *claimSpec) (*Lease, observation, error) {
	if obs.invalid != nil {
		return nil, obs, obs.invalid
	}
	// A document that one of our unheard claims wrote is ours: hold it while it is recent enough, or else take
	// it over at the next epoch (nobody renews it, and no Lease here holds it).
	if u, ok := c.ours(key, obs.doc, spec); ok {
		l, mine := c.adopt(ctx, key, id, obs, u)
		if l != nil {
			return l, obs, nil
		}
		if !mine {
			return nil, obs, &HeldError{Holder: c.state(key, obs, c.clock.Now()), Race: true}
		}
	} else if now := c.clock.Now(); !c.free(obs, now) {
		return nil, obs, &HeldError{Holder: c.state(key, obs, now)}
	}

	next := c.newHolderDoc(key, id, obs.doc, spec.metadata())
	if spec != nil && spec.prepare != nil {
		if err := spec.prepare(obs.doc, next); err != nil {
			return nil, obs, err
		}
	}
	body, err := leasedoc.Encode(next, c.pkProp)
	if err != nil {
		return nil, obs, err
	}
	var prev *State
	if obs.doc != nil {
		p := c.state(key, obs, c.clock.Now())
		prev = &p
	}
	sent := c.clock.Stamp()
	c.addClaim(key, claim{leaseID: next.LeaseID, sent: sent, prev: prev, owner: spec.ownerOf()})
	rctx, cancel := c.requestContext(ctx, time.Time{})
	var item store.Item
	op := "create"
	if obs.doc == nil {
		item, err = c.st.Create(rctx, c.pk(key, id), body)
	} else {
		op = "replace"
		item, err = c.st.Replace(rctx, c.pk(key, id), id, body, obs.etag)
	}
	cancel()
	if err == nil && item.ETag == "" {
		err = noETag(op)
	}
	c.report(op, key, sent.Mono, item, err)
	kind := store.KindOf(err)
	switch {
	case err == nil:
		if !c.takeClaims(key, next.LeaseID) {
			// Another call on this client read the document first and made this claim its lease.
			return nil, obs, &HeldError{Holder: c.state(key, observation{doc: next, etag: item.ETag, firstSeen: sent.Mono, serverAge: -1}, c.clock.Now()), Race: true}
		}
		next.ETag = item.ETag
		c.remember(key, next, sent.Mono, item.Session)
		if clock.Elapsed(sent, c.clock.Stamp()) >= c.opts.RenewDeadline {
			// Applied, but answered after the claim's deadline (the process was paused, the answer delayed): no
			// Lease of it could be valid, and another contender may hold the lease by now. Like a claim adopted too
			// late (adopt), it is no holding; the document, ours and renewed by nobody, is taken over once free.
			c.log.Warn("lease claim applied but answered after its deadline; not holding it", "lease", key, "epoch", next.Epoch)
			return nil, obs, &HeldError{Holder: c.state(key, observation{doc: next, etag: item.ETag, firstSeen: sent.Mono, serverAge: -1}, c.clock.Now()), Race: true}
		}
		c.log.Info("lease acquired", "lease", key, "epoch", next.Epoch, "leaseId", next.LeaseID)
		return c.newLease(ctx, key, id, next, sent, prev), obs, nil
	case kind == store.NotFound && op == "create":
		// A create cannot find a document missing: the container, or its database, is.
		c.takeClaims(key, next.LeaseID)
		return nil, obs, fmt.Errorf("%w: %v", ErrSetup, err)
	case kind != store.Unknown && kind != store.Conflict && kind != store.Precondition && kind != store.NotFound:
		// Refused (throttled, unavailable, forbidden, …): not applied.
		c.dropClaim(key, next.LeaseID)
		return nil, obs, err
	}
	// Lost the race, or the outcome is unknown. Either way the write may have been applied: the SDK retries a
	// write whose answer was lost, and the retry then finds the document changed. Read once; if the document
	// carries our leaseId, it is ours, dated from the send.
	fresh, rerr := c.observe(ctx, key, id, time.Time{})
	if rerr == nil && fresh.invalid == nil {
		if u, ok := c.ours(key, fresh.doc, spec); ok {
			l, mine := c.adopt(ctx, key, id, fresh, u)
			switch {
			case l != nil:
				return l, fresh, nil
			case !mine:
				return nil, fresh, &HeldError{Holder: c.state(key, fresh, c.clock.Now()), Race: true}
			}
			return nil, fresh, nil // ours, too old to hold: attempt takes it over
		}
	}
	switch {
	case kind == store.Unknown:
		return nil, obs, err
	case rerr != nil:
		return nil, obs, rerr
	case fresh.invalid != nil:
		return nil, fresh, fresh.invalid
	}
	return nil, fresh, nil
}

// heldByOther reports whether o shows a holder that this client may not write over: not free, and not an
// unheard claim of ours.
func (c *Client) heldByOther(key string, o observation, now time.Time, spec *claimSpec) bool {
	if _, ok := c.ours(key, o.doc, spec); ok {
		return false
	}
	return !c.free(o, now)
}

// adopt turns a claim of ours that the document shows applied into a held lease, valid from the claim's send.
// It returns (nil, true) when that is already past RenewDeadline (the document is still ours to take over), and
// (nil, false) when another call on this client has adopted or given up the claim.
func (c *Client) adopt(ctx context.Context, key, id string, obs observation, u claim) (*Lease, bool) {
	c.mu.Lock()
	if !slices.ContainsFunc(c.claims[key], func(x claim) bool { return x.leaseID == u.leaseID }) {
		c.mu.Unlock()
		return nil, false
	}
	if clock.Elapsed(u.sent, c.clock.Stamp()) >= c.opts.RenewDeadline {
		// Too old to hold. Forget the claim under the same lock that decided it, so that its answer, if still on
		// the way, can no longer become a Lease (clocks can step back): the caller takes the document over.
		c.dropClaimLocked(key, u.leaseID)
		c.mu.Unlock()
		return nil, true
	}
	// Once one claim is known applied, the others, conditional on older versions, never can be.
	delete(c.claims, key)
	c.mu.Unlock()
	doc := *obs.doc
	doc.ETag = obs.etag
	c.log.Info("lease acquired (the answer to our write was lost; the document shows it applied)", "lease", key,
		"epoch", doc.Epoch, "leaseId", doc.LeaseID)
	return c.newLease(ctx, key, id, &doc, u.sent, u.prev), true
}

func noETag(op string) error {
	return &store.Error{Op: op, Kind: store.Unknown, Err: errors.New("the answer carried no ETag, so the next write could not be conditional")}
}

// addClaim notes a claim about to be sent. Claims older than twice the lease duration, of every key, are
// dropped: a document they produced has expired by the ordinary rules by then.
func (c *Client) addClaim(key string, u claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Stamp()
	for k, cs := range c.claims {
		if cs = slices.DeleteFunc(cs, func(old claim) bool { return clock.Elapsed(old.sent, now) >= 2*c.opts.LeaseDuration }); len(cs) == 0 {
			delete(c.claims, k)
		} else {
			c.claims[k] = cs
		}
	}
	c.claims[key] = append(c.claims[key], u)
}

// ours returns the unheard claim of this client that wrote doc, if doc is exactly what that claim wrote. With
// spec's extra pairs (RunOnce's metadata naming its occurrence), only a claim that wrote those pairs is ours:
// another call's claim for another occurrence is that call's to adopt, and a holding whose document names the
// wrong occurrence would have the next holder settle the wrong run record. With spec's owner, only a claim of that
// owner is ours: another RunOnce call's claim, even for the same occurrence, carries a plan only that call knows.
func (c *Client) ours(key string, doc *leasedoc.Doc, spec *claimSpec) (claim, bool) {
	if doc == nil || doc.OwnerID != c.opts.OwnerID || doc.Renewals != 0 || doc.Released {
		return claim{}, false
	}
	owner := spec.ownerOf()
	for k, v := range spec.metadata() {
		if doc.Metadata.Extra[k] != v {
			return claim{}, false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.claims[key] {
		if u.leaseID == doc.LeaseID && (owner == nil || u.owner == owner) {
			return u, true
		}
	}
	return claim{}, false
}

// takeClaims forgets every claim of key once the one with leaseID is known applied, and reports whether it was
// still there (no other call took it).
func (c *Client) takeClaims(key, leaseID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	found := slices.ContainsFunc(c.claims[key], func(x claim) bool { return x.leaseID == leaseID })
	if found {
		delete(c.claims, key)
	}
	return found
}

func (c *Client) dropClaim(key, leaseID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropClaimLocked(key, leaseID)
}

func (c *Client) dropClaimLocked(key, leaseID string) {
	if cs := slices.DeleteFunc(c.claims[key], func(x claim) bool { return x.leaseID == leaseID }); len(cs) > 0 {
		c.claims[key] = cs
	} else {
		delete(c.claims, key)
	}
}

// newHolderDoc is the document that makes this client the holder, with the epoch one above the previous one.
// extra adds metadata pairs to the client's own (Options.Metadata).
func (c *Client) newHolderDoc(key, id string, prev *leasedoc.Doc, extra map[string]string) *leasedoc.Doc {
	now := c.clock.Now().UTC()
	epoch := int64(1)
	if prev != nil {
		epoch = prev.Epoch + 1
	}
	return &leasedoc.Doc{
		ID: id, LeaseKey: key, LeaseID: newLeaseID(), OwnerID: c.opts.OwnerID,
		AcquiredAt: now, RenewedAt: now, ExpiresAt: now.Add(c.opts.LeaseDuration),
		Metadata: leasedoc.Metadata{InstanceID: c.opts.OwnerID, Region: c.opts.Region, Hostname: c.opts.Hostname,
			StartTime: now, Extra: withExtra(c.opts.Metadata, extra)},
		Epoch: epoch, Duration: c.opts.LeaseDuration,
		Control: carriedControl(prev), // the operator's word stays; a stop order named an earlier holding
	}
}

// withExtra is the client's metadata with extra's pairs added; the client's map is never written.
func withExtra(base, extra map[string]string) map[string]string {
	if len(extra) == 0 {
		return base
	}
	m := maps.Clone(base)
	if m == nil {
		m = make(map[string]string, len(extra))
	}
	maps.Copy(m, extra)
	return m
}

// Acquire stands by until it holds the lease or ctx ends. It polls every RetryPeriod (±10 %), sooner when the
// observed holder's time is about to run out, and keeps going through throttling, unavailability and timeouts.
// Right after this client released the lease it first waits 1.2 RetryPeriods, so it does not take the lease
// back ahead of the standbys.
// A standby that has been watching takes over within LeaseDuration + RetryPeriod of the holder's last renewal,
// and within about one RetryPeriod of a release.
func (c *Client) Acquire(ctx context.Context, key string) (*Lease, error) {
	id, err := leasedoc.ID(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.m.keyed(key)
	ctx, sp := c.tr.startAcquire(ctx, "cosmoslease.Acquire", key)
	lease, err := c.acquire(ctx, key, id)
	sp.endAcquire(lease, err)
	return lease, err
}

func (c *Client) acquire(ctx context.Context, key, id string) (*Lease, error) {
	// Fairness: a client that has just released the lease knows it is free before anyone else does. Give the
	// standbys, who poll every RetryPeriod (±10 %), the first chance at it.
	c.mu.Lock()
	wait := c.released[key].Add(c.opts.RetryPeriod * 12 / 10).Sub(c.clock.Now())
	c.mu.Unlock()
	if wait > 0 {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-c.clock.After(wait):
		}
	}
	for {
		lease, err := c.attempt(ctx, key, id, nil)
		if err == nil {
			return lease, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		var held *HeldError
		wait := c.jitter(c.opts.RetryPeriod)
		switch {
		case errors.As(err, &held):
			if left := held.Holder.ExpiresIn; left > 0 && left < wait {
				wait = left + 10*time.Millisecond
			}
		case store.Retryable(err):
			var se *store.Error
			if errors.As(err, &se) && se.RetryAfter > wait {
				wait = se.RetryAfter
			}
			c.log.Warn("standby: request failed, will retry", "lease", key, "error", err, "retryIn", wait)
		default:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-c.clock.After(wait):
		}
	}
}

// Inspect reads one lease. A missing document is reported as a State with no owner and epoch 0; a missing
// container (or database) is ErrSetup, found with one more request after the 404.
func (c *Client) Inspect(ctx context.Context, key string) (State, error) {
	id, err := leasedoc.ID(key)
	if err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	obs, err := c.observe(ctx, key, id, time.Time{})
	if err != nil {
		return State{}, err
	}
	if obs.doc == nil && obs.invalid == nil {
		// A 404: no document, or no container. A lease in a container that is gone is not free.
		if err := c.exists(ctx, "read"); err != nil {
			return State{}, err
		}
	}
	s := c.state(key, obs, c.clock.Now())
	if s.ID == "" {
		s.ID = id
	}
	return s, nil
}

// List reads every lease in the container, sorted by key. Documents that are not valid leases are listed with
// Problem set. A missing container (or database) is ErrSetup.
func (c *Client) List(ctx context.Context) ([]State, error) {
	rctx, cancel := c.requestContext(ctx, time.Time{})
	defer cancel()
	start := c.clock.Now()
	items, charge, err := c.st.List(rctx, leasedoc.IDPrefix)
	c.report("list", "", start, store.Item{Charge: charge}, err)
	if store.KindOf(err) == store.NotFound {
		if cerr := c.exists(ctx, "list"); cerr != nil {
			return nil, cerr
		}
	}
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	out := make([]State, 0, len(items))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		doc, derr := leasedoc.Decode(it.Body, "")
		var key string
		if derr != nil {
			var e *leasedoc.Error
			errors.As(derr, &e)
			key = strings.TrimPrefix(e.ID, leasedoc.IDPrefix)
			doc = nil
		} else {
			key = doc.LeaseKey
		}
		s := c.state(key, c.recordLocked(key, it, doc, derr, now), now)
		if s.ID == "" {
			s.ID = leasedoc.IDPrefix + key
		}
		out = append(out, s)
	}
	sortStates(out)
	return out, nil
}

// exists checks, after a 404 on op, that the container is still there: ErrSetup, in the words a create's 404
// gets, when it or its database is gone (one more request, made only after a 404).
func (c *Client) exists(ctx context.Context, op string) error {
	rctx, cancel := c.requestContext(ctx, time.Time{})
	defer cancel()
	start := c.clock.Now()
	err := c.st.Exists(rctx, op)
	c.report("check", "", start, store.Item{}, err)
	if store.KindOf(err) == store.NotFound {
		return fmt.Errorf("%w: %v", ErrSetup, err)
	}
	return err
}

// jitter is d ± 10 %.
func (c *Client) jitter(d time.Duration) time.Duration {
	r := mrand.Float64
	if c.rand != nil {
		r = c.rand
	}
	return time.Duration(float64(d) * (0.9 + 0.2*r()))
}

// newLeaseID returns a random UUID (version 4) as text.
func newLeaseID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
