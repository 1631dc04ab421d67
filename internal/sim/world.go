package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

// world is one simulation: the in-memory container behind a fault layer, the processes, and what happened. Every
// request of every process goes through call, which draws its faults from the seed, waits its latency on the
// bubble's virtual clock, applies it to the container under one lock (so the container's history is a sequence)
// and records it.
type world struct {
	cfg   Config
	start time.Time // the bubble's start: virtual time 0
	mem   *memstore.Store
	procs []*proc
	// endpoint names this world's account to the SDK (each world has its own, so no SDK cache is shared between
	// bubbles).
	endpoint string

	mu   sync.Mutex // serialises applies, and guards everything below
	ops  []op
	log  []event
	viol []Violation
	rec  recorder // the checkers' state (check.go)
	// calls counts requests by outcome, for the summary.
	calls map[string]int
	// unknownLinear counts documents whose history porcupine could not decide in time.
	unknownLinear int
	seq           int // applied writes so far
	// judged counts what the job checks judged (occurrences, by check), for the summary.
	judged map[string]int
	// faults counts the faults that happened, by kind.
	faults map[string]int

	// restarts are processes to start again (a killed handler), picked up by the root goroutine, which wake
	// wakes.
	restarts []restartReq
	wake     chan struct{}

	// memo decodes the lease documents the clients read (memo.go).
	memo *decodeMemo

	dmu    sync.Mutex // guards the draw counts (rng)
	drawAt time.Duration
	draws  map[drawKey]uint32
}

// since is virtual time since the start of the run.
func (w *world) since() time.Duration { return time.Since(w.start) }

// proc is one simulated machine: its clock, its region, and its current incarnation (a crash starts a new one,
// with a new Client: nothing in memory survives).
type proc struct {
	w   *world
	id  int
	cfg ProcConfig
	clk *procClock

	mu     sync.Mutex
	inc    int           // current incarnation
	dead   bool          // crashed, not yet restarted
	resume chan struct{} // not nil while paused: closed when the pause (or the process) ends
	pauses int           // how many times it was paused
	ctx    context.Context
	cancel context.CancelFunc
}

// rng is a source of randomness for one decision of incarnation inc of p, about what, at the present virtual
// instant. It is drawn from the seed, the process, the decision and the instant (and how many times the same
// decision was drawn at the same instant), not from a stream that goroutines share: so the draws do not depend
// on the order in which the goroutines woken at one instant happen to run, and a seed replays.
func (w *world) rng(p *proc, inc int, what string) *rand.Rand {
	at := w.since()
	k := drawKey{proc: p.id, inc: inc, what: what}
	w.dmu.Lock()
	if at != w.drawAt {
		clear(w.draws)
		w.drawAt = at
	}
	n := w.draws[k]
	w.draws[k] = n + 1
	w.dmu.Unlock()
	h := fnv.New64a()
	h.Write([]byte(what))
	return rand.New(rand.NewPCG(mix(w.cfg.Seed^uint64(p.id)<<40^uint64(inc)<<20), mix(uint64(at)^h.Sum64()^uint64(n)<<56)))
}

type drawKey struct {
	proc, inc int
	what      string
}

// mix is splitmix64's finaliser.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// between draws a duration uniformly in [a, b].
func between(r *rand.Rand, a, b time.Duration) time.Duration {
	if b <= a {
		return a
	}
	return a + time.Duration(r.Int64N(int64(b-a)+1))
}

var errDead = errors.New("the process is dead")

// gate blocks while the process is paused, and fails once incarnation inc has died.
func (p *proc) gate(inc int) error {
	for {
		p.mu.Lock()
		if p.dead || p.inc != inc {
			p.mu.Unlock()
			return errDead
		}
		ch := p.resume
		p.mu.Unlock()
		if ch == nil {
			return nil
		}
		<-ch
	}
}

// alive reports whether incarnation inc is the live one (paused or not).
func (p *proc) alive(inc int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.dead && p.inc == inc
}

// opKind is what a request does.
type opKind uint8

const (
	opRead opKind = iota
	opCreate
	opReplace
	opPatch
	opQuery
)

var opNames = [...]string{"read", "create", "replace", "patch", "query"}

// op is one request as the container's history records it, for the linearizability check and the readable
// history.
type op struct {
	doc       string
	proc, inc int16
	kind      opKind
	call, ret time.Duration // ret: when the world was done with it (answered, or dropped)
	cond      string        // a replace's or patch's If-Match ("" for none)
	fence     int64         // the fence value the write stores (-1: none)
	limit     int64         // a patch: the epoch its condition allows at most (-1: no condition)
	status    int           // the answer the caller got; 0 when it got none (outcome unknown to it)
	applied   bool          // whether it was applied (what the world knows; the checker does not use it)
	lagged    bool          // a read answered by a replica behind
	etag      string        // the version read or written
	note      string
	// job is, for a write of a job's lease document, what the job state it writes says (nil otherwise); seq numbers
	// the applied writes in the order the container applied them.
	job *jobWriteInfo
	seq int
}

// event is something a process did or saw, for the readable history.
type event struct {
	at   time.Duration
	proc int16
	inc  int16
	key  string
	text string
}

// logf records an event of incarnation inc of p about key.
func (w *world) logf(p *proc, inc int, key, format string, args ...any) {
	e := event{at: w.since(), proc: int16(p.id), inc: int16(inc), key: key, text: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	w.log = append(w.log, e)
	w.mu.Unlock()
}

// request is one call into the container.
type request struct {
	kind    opKind
	doc     string // the document id ("" for a query)
	cond    string
	fence   int64 // the fence value a write stores (-1: none)
	limit   int64 // a patch's condition: the stored epoch at most this (-1: none)
	session string
	// job: a write of a job's lease document, what it writes (nil: not one).
	job *jobWriteInfo
	// apply runs under the world's lock and returns the answer's status (200, 201, 404, 409, 412, or 400 for a
	// request the container refuses) and the version it produced or read.
	apply func(lagDepth int) (status int, etag string)
}

// answer is what a request's caller learns.
type answer struct {
	status     int // 0: no answer (err says why)
	etag       string
	retryAfter time.Duration
	err        error // the caller's error when no answer came: a timeout, a reset, the caller's context
	substatus  string
}

// fault is the fate drawn for one request.
type fault struct {
	lostBefore, lostAnswer, slow bool
	hang                         bool // a lost request or answer hangs until the caller gives up (else: a reset)
	spell                        int  // a synthetic status, 0 for none
	lagDepth                     int
	cut                          bool
	held                         bool // held in the network (SlowRequests)
	toServer, toClient           time.Duration
}

// draw decides the fate of a request of p issued now.
func (w *world) draw(p *proc, inc int, kind opKind, doc string) fault {
	now := w.since()
	r := w.rng(p, inc, opNames[kind]+" "+doc)
	var f fault
	lat := func() time.Duration {
		l := w.cfg.Latency
		if r.Float64() < l.Tail {
			return time.Duration(r.Int64N(int64(l.TailMax)) + 1)
		}
		return time.Duration(float64(l.Median) * math.Exp(0.5*r.NormFloat64()))
	}
	f.toServer, f.toClient = lat()/2, lat()/2
	f.hang = r.IntN(2) == 0
	calm := true
	for _, s := range w.cfg.Storms {
		if now < s.Start || now >= s.End {
			continue
		}
		calm = false
		f.lostBefore = r.Float64() < s.LostBefore
		if r.Float64() < s.SlowRequests {
			// Held in the network well past its caller's patience, then delivered.
			f.toServer, f.held = time.Duration(r.Int64N(int64(w.cfg.LeaseDuration))), true
		}
		f.lostAnswer = r.Float64() < s.LostAnswer
		f.slow = r.Float64() < s.SlowAnswer
		if kind == opRead && r.Float64() < s.LaggedReads {
			f.lagDepth = 1 + r.IntN(3)
		}
		for _, sp := range s.Spells {
			if sp.Docs != "" && (kind == opRead || kind == opQuery || !strings.HasPrefix(doc, sp.Docs)) {
				continue
			}
			if now >= sp.Start && now < sp.End && (sp.Region == "" || sp.Region == p.cfg.Region) && r.Float64() < sp.Prob {
				switch {
				case sp.Status == 404 && kind == opRead,
					sp.Status == 409 && kind == opCreate,
					sp.Status == 412 && (kind == opReplace || kind == opPatch),
					sp.Status == 429, sp.Status == 503:
					f.spell = sp.Status
				}
			}
		}
		for _, c := range s.Cuts {
			if now >= c.Start && now < c.End && c.Region == p.cfg.Region {
				f.cut = true
			}
			if now >= c.Start-c.Degrade && now < c.Start && c.Region == p.cfg.Region {
				f.toClient = c.SlowTo/2 + time.Duration(r.Int64N(int64(c.SlowTo/2)+1))
			}
		}
	}
	if calm {
		// In calm weather the request is applied as it is sent and the whole latency is the answer's: one timer
		// instead of two (the simulation's main cost is waking goroutines), and no fault can tell the difference.
		f.toServer, f.toClient = 0, f.toServer+f.toClient
	}
	return f
}

// cutNow reports whether p's region is cut off from Cosmos DB now.
func (w *world) cutNow(p *proc) bool {
	now := w.since()
	for _, s := range w.cfg.Storms {
		for _, c := range s.Cuts {
			if now >= c.Start && now < c.End && c.Region == p.cfg.Region {
				return true
			}
		}
	}
	return false
}

// hangLimit bounds a request that gets no answer and whose caller set no deadline: a connection timeout.
const hangLimit = 20 * time.Second

// wait sleeps d of true virtual time, or until ctx ends.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// noAnswer is what a caller whose request or answer was lost gets: a reset after a moment, or, when it hangs,
// nothing until its context ends (or a connection timeout).
func noAnswer(ctx context.Context, f fault, what string) answer {
	if f.hang {
		wait(ctx, hangLimit)
		if ctx.Err() != nil {
			return answer{err: context.Cause(ctx)}
		}
		return answer{err: fmt.Errorf("%s: connection timed out", what)}
	}
	wait(ctx, f.toClient)
	return answer{err: fmt.Errorf("%s: connection reset", what)}
}

// call carries one request of incarnation inc of p to the container and its answer back, with the faults the
// seed decides, and records it.
func (w *world) call(ctx context.Context, p *proc, inc int, req request) answer {
	if err := p.gate(inc); err != nil {
		return answer{err: err}
	}
	o := op{doc: req.doc, proc: int16(p.id), inc: int16(inc), kind: req.kind, call: w.since(), cond: req.cond, fence: req.fence,
		limit: req.limit, job: req.job}
	f := w.draw(p, inc, req.kind, req.doc)
	w.countFaults(f, req.kind)
	finish := func(a answer) answer {
		o.ret = w.since()
		o.status = a.status
		if a.err != nil && o.note == "" {
			o.note = a.err.Error()
		}
		w.record(o)
		return a
	}
	switch {
	case f.cut:
		o.note = "region " + p.cfg.Region + " cut off: never arrived"
		f.hang = true
		return finish(noAnswer(ctx, f, "cut off"))
	case f.lostBefore:
		o.note = "lost before it arrived"
		return finish(noAnswer(ctx, f, "request lost"))
	}
	if !wait(ctx, f.toServer) {
		// The caller gave up, but the request is on its way all the same: it arrives, and is applied, when it
		// was going to (a server does not know its client has stopped waiting).
		arrive := o.call + f.toServer
		go func() {
			time.Sleep(arrive - w.since())
			w.mu.Lock()
			status, etag := req.apply(f.lagDepth)
			late := o
			late.applied = status == 200 || status == 201
			late.etag, late.note = etag, fmt.Sprintf("arrived after its caller gave up; applied: %v", late.applied)
			if late.applied && req.kind != opRead && req.kind != opQuery {
				w.seq++
				late.seq = w.seq
				w.rec.applied(w, late)
			}
			w.mu.Unlock()
			late.ret = w.since()
			w.record(late)
		}()
		return answer{err: context.Cause(ctx)}
	}
	if f.spell == 429 || f.spell == 503 || f.spell == 404 {
		a := answer{status: f.spell}
		switch f.spell {
		case 429:
			a.retryAfter = time.Duration(1+w.rng(p, inc, "retry-after").IntN(2000)) * time.Millisecond
			o.note = fmt.Sprintf("throttled, retry after %s", a.retryAfter)
		case 503:
			o.note = "unavailable"
		case 404:
			a.substatus = "1002"
			o.note = "read session not available (404/1002)"
		}
		wait(ctx, f.toClient)
		if ctx.Err() != nil {
			return finish(answer{err: context.Cause(ctx)})
		}
		return finish(a)
	}

	w.mu.Lock()
	status, etag := req.apply(f.lagDepth)
	o.applied = status == 200 || status == 201
	o.etag, o.lagged = etag, f.lagDepth > 0 && req.kind == opRead
	if o.applied && req.kind != opRead && req.kind != opQuery {
		w.seq++
		o.seq = w.seq
		w.rec.applied(w, o)
	}
	w.mu.Unlock()

	a := answer{status: status, etag: etag}
	switch {
	case o.applied && (f.spell == 409 || f.spell == 412) && req.kind != opRead:
		// The first answer was lost, and the SDK's retry of the write found it already applied. Recorded as two
		// requests: the applied one, whose answer the caller never got, and the retry, answered truthfully.
		f2 := o
		f2.status, f2.note = 0, "applied; its answer was lost and the SDK retried it"
		f2.ret = w.since()
		w.record(f2)
		retry := o
		retry.call, retry.applied, retry.etag = w.since(), false, ""
		a = answer{status: f.spell}
		o = retry
		o.note = "the SDK's retry of an applied write"
	case f.lostAnswer:
		o.note = "applied? " + fmt.Sprint(o.applied) + "; the answer was lost"
		return finish(noAnswer(ctx, f, "answer lost"))
	case f.slow:
		o.note = "answer held back until after the caller gave up"
		wait(ctx, hangLimit)
		return finish(answer{err: fmt.Errorf("no answer in time: %w", context.Cause(ctx))})
	}
	if !wait(ctx, f.toClient) {
		o.note = "the answer landed after the caller gave up"
		return finish(answer{err: context.Cause(ctx)})
	}
	if w.cutNow(p) {
		o.note = "region " + p.cfg.Region + " cut off while the answer was on its way"
		f.hang = true
		return finish(noAnswer(ctx, f, "cut off"))
	}
	if err := p.gate(inc); err != nil {
		o.note = "the answer reached a dead process"
		return finish(answer{err: err})
	}
	return finish(a)
}

// countFaults counts the faults drawn for a request, by kind, for the run's figures.
func (w *world) countFaults(f fault, kind opKind) {
	var kinds []string
	switch {
	case f.cut:
		kinds = append(kinds, "request cut off (region)")
	case f.lostBefore:
		kinds = append(kinds, "request lost before it arrived")
	default:
		if f.held {
			kinds = append(kinds, "request held in the network")
		}
		switch f.spell {
		case 0:
		case 409, 412:
			kinds = append(kinds, fmt.Sprintf("write applied, answer lost, SDK retry answered %d", f.spell))
		default:
			kinds = append(kinds, fmt.Sprintf("answered %d", f.spell))
		}
		if f.spell != 429 && f.spell != 503 && f.spell != 404 {
			if f.lostAnswer {
				kinds = append(kinds, "answer lost")
			} else if f.slow {
				kinds = append(kinds, "answer held back past the caller's patience")
			}
		}
		if f.lagDepth > 0 && kind == opRead {
			kinds = append(kinds, "read from a replica behind")
		}
	}
	if len(kinds) == 0 {
		return
	}
	w.mu.Lock()
	for _, k := range kinds {
		w.faults[k]++
	}
	w.mu.Unlock()
}

// fault counts a process-level fault, for the run's figures.
func (w *world) fault(kind string) {
	w.mu.Lock()
	w.faults[kind]++
	w.mu.Unlock()
}

func (w *world) record(o op) {
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.calls[outcomeName(o)]++
	w.mu.Unlock()
}

func outcomeName(o op) string {
	if o.status == 0 {
		return "no answer"
	}
	return fmt.Sprint(o.status)
}

// fenceOf reads the fence field of a stored item body: -1 when it has none.
func fenceOf(body []byte) int64 {
	var d struct {
		Fence *float64 `json:"fence"`
	}
	if json.Unmarshal(body, &d) != nil || d.Fence == nil {
		return -1
	}
	return int64(*d.Fence)
}

// jobWriteInfo is what a write of a job's lease document says: its missed count, whether it releases the lease,
// and the cursor's run.
type jobWriteInfo struct {
	record    bool  // a run record (runStatus, epoch), not the lease document
	epoch     int64 // a run record's epoch, or the lease document's
	missed    int64
	released  bool
	runOcc    time.Time
	runStatus string
	runClaim  string
}

// jobWriteOf reads what a write of a job's lease document or run record says; nil for any other document.
func jobWriteOf(id string, body []byte) *jobWriteInfo {
	if strings.HasPrefix(id, "run-job") {
		var r struct {
			Status string `json:"status"`
			Epoch  int64  `json:"epoch"`
		}
		_ = json.Unmarshal(body, &r)
		return &jobWriteInfo{record: true, runStatus: r.Status, epoch: r.Epoch}
	}
	if !strings.HasPrefix(id, "lease-job") {
		return nil
	}
	var d struct {
		Released bool  `json:"released"`
		Epoch    int64 `json:"epoch"`
		Job      *struct {
			Missed int64 `json:"missed"`
			Run    *struct {
				Occurrence time.Time `json:"occurrence"`
				Status     string    `json:"status"`
				ClaimID    string    `json:"claimId"`
			} `json:"run"`
		} `json:"job"`
	}
	if json.Unmarshal(body, &d) != nil {
		return &jobWriteInfo{}
	}
	info := &jobWriteInfo{released: d.Released, epoch: d.Epoch}
	if d.Job != nil {
		info.missed = d.Job.Missed
		if r := d.Job.Run; r != nil {
			info.runOcc, info.runStatus, info.runClaim = r.Occurrence, r.Status, r.ClaimID
		}
	}
	return info
}

// isItem tells the shared fenced items from lease documents and run records.
func isItem(id string) bool { return strings.HasPrefix(id, itemPrefix) }

const itemPrefix = "item-"

// procStore is one incarnation's view of the container: store.Store, through the fault layer.
type procStore struct {
	w   *world
	p   *proc
	inc int
}

var _ store.Store = (*procStore)(nil)

func (s *procStore) fail(op string, a answer) error {
	if a.err != nil {
		return &store.Error{Op: op, Kind: store.Unknown, Err: a.err}
	}
	e := &store.Error{Op: op, Status: a.status, Kind: store.KindForStatus(a.status), RetryAfter: a.retryAfter}
	if a.substatus == "1002" {
		e.Kind = store.Unknown
	}
	return e
}

var bg = context.Background()

func (s *procStore) Read(ctx context.Context, pk, id, session string) (store.Item, error) {
	var it store.Item
	a := s.w.call(ctx, s.p, s.inc, request{kind: opRead, doc: id, session: session, fence: -1, apply: func(lag int) (int, string) {
		if lag > 0 {
			s.w.mem.LagReads(1, lag)
		}
		var err error
		it, err = s.w.mem.Read(bg, pk, id, session)
		s.w.mem.LagReads(0, 0)
		if err != nil {
			return 404, ""
		}
		return 200, it.ETag
	}})
	if a.status != 200 {
		return store.Item{}, s.fail("read", a)
	}
	return it, nil
}

func (s *procStore) Create(ctx context.Context, pk string, body []byte) (store.Item, error) {
	var id struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &id)
	var it store.Item
	fence := int64(-1)
	if isItem(id.ID) {
		fence = fenceOf(body)
	}
	a := s.w.call(ctx, s.p, s.inc, request{kind: opCreate, doc: id.ID, fence: fence, job: jobWriteOf(id.ID, body), apply: func(int) (int, string) {
		var err error
		it, err = s.w.mem.Create(bg, pk, body)
		if err != nil {
			return statusOf(err), ""
		}
		return 201, it.ETag
	}})
	if a.status != 201 {
		return store.Item{}, s.fail("create", a)
	}
	return it, nil
}

// Replace is conditional on etag; an empty etag is no condition at all, as a replace without If-Match is to
// Cosmos DB (the library never sends one: a mutant does).
func (s *procStore) Replace(ctx context.Context, pk, id string, body []byte, etag string) (store.Item, error) {
	var it store.Item
	fence := int64(-1)
	if isItem(id) {
		fence = fenceOf(body)
	}
	a := s.w.call(ctx, s.p, s.inc, request{kind: opReplace, doc: id, cond: etag, fence: fence, job: jobWriteOf(id, body), apply: func(int) (int, string) {
		var err error
		it, err = s.w.replace(pk, id, body, etag)
		if err != nil {
			return statusOf(err), ""
		}
		return 200, it.ETag
	}})
	if a.status != 200 {
		return store.Item{}, s.fail("replace", a)
	}
	it.ETag = a.etag
	return it, nil
}

// replace applies a replace under the world's lock: on etag, or unconditionally when etag is empty.
func (w *world) replace(pk, id string, body []byte, etag string) (store.Item, error) {
	if etag == "" {
		cur, err := w.mem.Read(bg, pk, id, "")
		if err != nil {
			return store.Item{}, err
		}
		etag = cur.ETag
	}
	return w.mem.Replace(bg, pk, id, body, etag)
}

func statusOf(err error) int {
	var se *store.Error
	if errors.As(err, &se) && se.Status != 0 {
		return se.Status
	}
	return 400
}

func (s *procStore) List(ctx context.Context, prefix string) ([]store.Item, float64, error) {
	var items []store.Item
	a := s.w.call(ctx, s.p, s.inc, request{kind: opQuery, fence: -1, apply: func(int) (int, string) {
		items, _, _ = s.w.mem.List(bg, prefix)
		return 200, ""
	}})
	if a.status != 200 {
		return nil, 0, s.fail("list", a)
	}
	return items, 1, nil
}

func (s *procStore) Recent(ctx context.Context, pk, prefix string, limit int, session string) ([]store.Item, float64, error) {
	var items []store.Item
	a := s.w.call(ctx, s.p, s.inc, request{kind: opQuery, fence: -1, apply: func(int) (int, string) {
		items, _, _ = s.w.mem.Recent(bg, pk, prefix, limit, session)
		return 200, ""
	}})
	if a.status != 200 {
		return nil, 0, s.fail("query", a)
	}
	return items, 1, nil
}

func (s *procStore) Check(ctx context.Context, partitionKeyPath string, allowMultiWrite bool) error {
	return s.w.mem.Check(ctx, partitionKeyPath, allowMultiWrite)
}

func (s *procStore) Exists(ctx context.Context, op string) error { return s.w.mem.Exists(ctx, op) }

// trueClock is the container's clock: the bubble's virtual time, read without the host's boot clock.
type trueClock struct{}

func (trueClock) Now() time.Time { return time.Now() }
func (trueClock) Stamp() clock.Stamp {
	t := time.Now()
	return clock.Stamp{Mono: t, Wall: t.Round(0)}
}
func (trueClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
