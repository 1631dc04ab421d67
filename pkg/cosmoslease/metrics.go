package cosmoslease

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/cosmoslease/cosmoslease/internal/store"
)

// The library's OpenTelemetry metrics. The instrument names and attributes below are a contract (docs/operating.md,
// "Metrics"); the library only records through the API and never installs an SDK.

// scopeName is the instrumentation scope of the library's meter and tracer: the package's import path.
const scopeName = "github.com/cosmoslease/cosmoslease/pkg/cosmoslease"

// Attribute keys.
const (
	attrKey       = attribute.Key("cosmoslease.lease.key")
	attrOwner     = attribute.Key("cosmoslease.owner")
	attrRegion    = attribute.Key("cloud.region")
	attrReason    = attribute.Key("cosmoslease.loss.reason")
	attrOperation = attribute.Key("cosmoslease.operation")
	attrOutcome   = attribute.Key("cosmoslease.outcome")
	attrEpoch     = attribute.Key("cosmoslease.lease.epoch")
	attrStatus    = attribute.Key("cosmoslease.occurrence.status")
	// The OpenTelemetry database conventions, as the Cosmos DB ones use them.
	attrDBSystem     = attribute.Key("db.system.name")
	attrDBNamespace  = attribute.Key("db.namespace")
	attrDBCollection = attribute.Key("db.collection.name")
	attrDBOperation  = attribute.Key("db.operation.name")
)

// Why a lease was lost: the values of cosmoslease.loss.reason.
const (
	lossDeadline   = "deadline"   // no renewal confirmed within RenewDeadline
	lossSuperseded = "superseded" // another holder's document, or ours at a version none of our writes made
	lossDeleted    = "deleted"    // the document, or its container, was deleted
	lossInvalid    = "invalid"    // the document was overwritten with one that is not a lease
	lossStopped    = "stopped"    // an operator stopped the holding (Client.Pause with Stop)
)

// Bucket boundaries: seconds for latencies (OpenTelemetry's advice for request durations, up to the 10 s of
// the default RequestTimeout), request units for charges (the Cosmos DB conventions' advice), seconds for a
// failover delay. A failover's delay is rank × the failover delay people set (1, 5, 10 by default, 30 or 60 s) plus
// the claim's own time, so its bounds lie between those multiples, never on them: 10.2 s and 20.2 s fall in
// (7.5, 15] and (15, 25], apart; the first bounds tell a preferred region's claim time (a cold start) apart.
var (
	secondsBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	chargeBuckets  = []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000}
	delayBuckets   = []float64{0.5, 0.75, 1.5, 3.5, 7.5, 15, 25, 45, 75, 150, 300}
)

// instruments are one Client's instruments, created once when the Client is made. Recording on the renewal
// path allocates nothing: the attribute sets are computed once (per key, per operation and outcome) and the
// instruments are asked whether anything listens first.
type instruments struct {
	held         metric.Int64ObservableGauge // cosmoslease.lease.held
	epoch        metric.Int64ObservableGauge // cosmoslease.lease.epoch
	acquisitions metric.Int64Counter         // cosmoslease.lease.acquisitions
	losses       metric.Int64Counter         // cosmoslease.lease.losses
	renewal      metric.Float64Histogram     // cosmoslease.lease.renewal.duration
	operation    metric.Float64Histogram     // cosmoslease.operation.duration
	charge       metric.Float64Histogram     // azure.cosmosdb.client.operation.request_charge
	refusals     metric.Int64Counter         // cosmoslease.fence.refusals

	// The occurrence election's: runs by cosmoslease.occurrence.status (executed, skipped, failed, lost,
	// abandoned), occurrences due that ran nowhere, and the delay from an occurrence's time to the start of its
	// work. Recorded by occurrenceRan, occurrencesMissed and failedOver.
	occurrenceRuns   metric.Int64Counter     // cosmoslease.occurrence.runs
	occurrenceMissed metric.Int64Counter     // cosmoslease.occurrence.missed
	failoverDelay    metric.Float64Histogram // cosmoslease.occurrence.failover.delay
	// lastSuccess: when this process last finished an occurrence's work successfully, per key (Kubernetes
	// CronJob's lastSuccessfulTime): the gauge to alert on when a job has not succeeded for too long.
	lastSuccess metric.Float64ObservableGauge // cosmoslease.occurrence.last_success.timestamp
	// paused: 1 while the job's lease document, as this process last read it, says the job is paused (control.go).
	paused metric.Int64ObservableGauge // cosmoslease.job.paused
	now    func() time.Time

	base       []attribute.KeyValue // cosmoslease.owner, cloud.region
	db         []attribute.KeyValue // db.system.name, db.namespace, db.collection.name
	callback   metric.Registration  // the gauges' callback; nil if it could not be registered
	requests   [len(requestOps)][len(outcomes)]atomic.Pointer[requestOptions]
	mu         sync.Mutex
	keys       map[string]*keyMetrics // lease key → its series: every key this client contended for
	fenceCount fenceMetrics           // for Lease.Fence: the refusals counter
}

// keyMetrics are the measurement options of one lease key's series, and the lease the gauges report.
type keyMetrics struct {
	key     string
	attrs   []attribute.KeyValue // key, owner, region
	add     []metric.AddOption
	record  []metric.RecordOption
	observe []metric.ObserveOption
	renewOK []metric.RecordOption // with cosmoslease.outcome ok
	lease   *Lease                // the newest lease of this client on the key; guarded by instruments.mu
	// lastSuccess is when this process last finished an occurrence of the key successfully; zero before.
	// Guarded by instruments.mu.
	lastSuccess time.Time
	// paused: the job was paused at this process's last read of its lease document (1), or not (0); -1 before it
	// read one as a job's. Guarded by instruments.mu.
	paused int64
}

// requestOptions are the attribute sets of one request kind and outcome.
type requestOptions struct{ duration, charge []metric.RecordOption }

// requestOps are the names Client.report is given, with the operation each is part of and its Cosmos DB name.
var requestOps = [...]struct{ name, operation, dbOperation string }{
	{"read", "read", "read_item"},
	{"create", "acquire", "create_item"},
	{"replace", "acquire", "replace_item"},
	{"renew", "renew", "replace_item"},
	{"release", "release", "replace_item"},
	{"list", "list", "query_items"},
	{"check", "check", ""}, // several requests whose charges Check does not report: no charge recorded
	// The occurrence election's run records.
	{"run-read", "read", "read_item"},
	{"run-create", "claim", "create_item"},
	{"run-replace", "record", "replace_item"},
	{"run-query", "history", "query_items"},
}

// outcomes are Operation.Outcome's values, the values of cosmoslease.outcome on requests: ok, then store.Kind's
// in snake_case (not_found, precondition_failed), as metric label values are written.
var outcomes = [...]string{"ok", outcomeOf(store.Unknown), outcomeOf(store.NotFound), outcomeOf(store.Conflict),
	outcomeOf(store.Precondition), outcomeOf(store.Throttled), outcomeOf(store.Unavailable), outcomeOf(store.Unauthorized),
	outcomeOf(store.Forbidden), outcomeOf(store.BadRequest), outcomeOf(store.Invalid)}

// outcomeOf is the outcome of a request that failed with kind k.
func outcomeOf(k store.Kind) string { return strings.ReplaceAll(k.String(), " ", "_") }

func newInstruments(o Options, now func() time.Time) *instruments {
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scopeName)
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	ins := &instruments{keys: map[string]*keyMetrics{}, now: now}
	var err error
	ins.held, err = m.Int64ObservableGauge("cosmoslease.lease.held", metric.WithUnit("{lease}"),
		metric.WithDescription("1 while this process holds the lease, 0 while it contends for it without holding it"))
	check(err)
	ins.epoch, err = m.Int64ObservableGauge("cosmoslease.lease.epoch", metric.WithUnit("{epoch}"),
		metric.WithDescription("The epoch (fencing token) of the lease this process holds; absent while it holds none"))
	check(err)
	ins.acquisitions, err = m.Int64Counter("cosmoslease.lease.acquisitions", metric.WithUnit("{acquisition}"),
		metric.WithDescription("Leases this process acquired"))
	check(err)
	ins.losses, err = m.Int64Counter("cosmoslease.lease.losses", metric.WithUnit("{loss}"),
		metric.WithDescription("Leases this process lost while holding them, by cosmoslease.loss.reason"))
	check(err)
	ins.renewal, err = m.Float64Histogram("cosmoslease.lease.renewal.duration", metric.WithUnit("s"),
		metric.WithDescription("How long each renewal took, with its outcome"), metric.WithExplicitBucketBoundaries(secondsBuckets...))
	check(err)
	ins.operation, err = m.Float64Histogram("cosmoslease.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("How long each request to Cosmos DB took, by cosmoslease.operation and cosmoslease.outcome"),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	check(err)
	ins.charge, err = m.Float64Histogram("azure.cosmosdb.client.operation.request_charge", metric.WithUnit("{request_unit}"),
		metric.WithDescription("Request units each request to Cosmos DB consumed"), metric.WithExplicitBucketBoundaries(chargeBuckets...))
	check(err)
	ins.refusals, err = m.Int64Counter("cosmoslease.fence.refusals", metric.WithUnit("{refusal}"),
		metric.WithDescription("Fenced writes that Cosmos DB refused because a later epoch had written the item"))
	check(err)
	ins.occurrenceRuns, err = m.Int64Counter("cosmoslease.occurrence.runs", metric.WithUnit("{run}"),
		metric.WithDescription("Occurrences this process ran or passed, by cosmoslease.occurrence.status"))
	check(err)
	ins.occurrenceMissed, err = m.Int64Counter("cosmoslease.occurrence.missed", metric.WithUnit("{occurrence}"),
		metric.WithDescription("Occurrences the schedule made due that ran in no region"))
	check(err)
	ins.failoverDelay, err = m.Float64Histogram("cosmoslease.occurrence.failover.delay", metric.WithUnit("s"),
		metric.WithDescription("From an occurrence's scheduled time to the start of its work"), metric.WithExplicitBucketBoundaries(delayBuckets...))
	check(err)
	ins.fillNil()

	ins.base = []attribute.KeyValue{attrOwner.String(o.OwnerID)}
	if o.Region != "" {
		ins.base = append(ins.base, attrRegion.String(o.Region))
	}
	ins.db = []attribute.KeyValue{attrDBSystem.String("azure.cosmosdb"), attrDBNamespace.String(o.Database),
		attrDBCollection.String(o.Container)}
	ins.fenceCount = fenceMetrics{refusals: ins.refusals, attrs: ins.base}
	ins.lastSuccess, err = m.Float64ObservableGauge("cosmoslease.occurrence.last_success.timestamp", metric.WithUnit("s"),
		metric.WithDescription("When this process last finished an occurrence's work successfully (Unix time), as Kubernetes CronJob's lastSuccessfulTime; absent before"))
	check(err)
	ins.paused, err = m.Int64ObservableGauge("cosmoslease.job.paused", metric.WithUnit("{job}"),
		metric.WithDescription("1 while the job is paused (cosmoslease pause), 0 while it is not, as this process last read its lease document; absent before it read it"))
	check(err)
	reg, err := m.RegisterCallback(ins.observe, ins.held, ins.epoch, ins.lastSuccess, ins.paused)
	check(err)
	ins.callback = reg
	if len(errs) > 0 {
		otel.Handle(errors.Join(errs...))
	}
	return ins
}

// fillNil puts no-op instruments where a MeterProvider returned none with its error.
func (ins *instruments) fillNil() {
	var n noop.Meter
	if ins.held == nil {
		ins.held, _ = n.Int64ObservableGauge("")
	}
	if ins.epoch == nil {
		ins.epoch, _ = n.Int64ObservableGauge("")
	}
	if ins.lastSuccess == nil {
		ins.lastSuccess, _ = n.Float64ObservableGauge("")
	}
	if ins.paused == nil {
		ins.paused, _ = n.Int64ObservableGauge("")
	}
	for _, c := range []*metric.Int64Counter{&ins.acquisitions, &ins.losses, &ins.refusals, &ins.occurrenceRuns, &ins.occurrenceMissed} {
		if *c == nil {
			*c, _ = n.Int64Counter("")
		}
	}
	for _, h := range []*metric.Float64Histogram{&ins.renewal, &ins.operation, &ins.charge, &ins.failoverDelay} {
		if *h == nil {
			*h, _ = n.Float64Histogram("")
		}
	}
}

// close unregisters the gauges' callback: a closed Client reports nothing.
func (ins *instruments) close() {
	if ins.callback != nil {
		_ = ins.callback.Unregister()
	}
}

// keyed returns the series of key, creating them: from now on the gauges report the key (held 0 until this
// client holds it).
func (ins *instruments) keyed(key string) *keyMetrics {
	ins.mu.Lock()
	defer ins.mu.Unlock()
	if m := ins.keys[key]; m != nil {
		return m
	}
	attrs := append([]attribute.KeyValue{attrKey.String(key)}, ins.base...)
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	ok := metric.WithAttributeSet(attribute.NewSet(append(slices.Clone(attrs), attrOutcome.String("ok"))...))
	m := &keyMetrics{key: key, attrs: attrs, add: []metric.AddOption{opt}, record: []metric.RecordOption{opt},
		observe: []metric.ObserveOption{opt}, renewOK: []metric.RecordOption{ok}, paused: -1}
	ins.keys[key] = m
	return m
}

// acquired notes a lease this client now holds: the gauges report it, and it counts as an acquisition.
func (ins *instruments) acquired(ctx context.Context, l *Lease) {
	ins.mu.Lock()
	l.m.lease = l
	ins.mu.Unlock()
	ins.acquisitions.Add(ctx, 1, l.m.add...)
}

// lost counts a lease lost for reason (one of the loss* constants).
func (ins *instruments) lost(m *keyMetrics, reason string) {
	ins.losses.Add(context.Background(), 1, metric.WithAttributes(append(slices.Clone(m.attrs), attrReason.String(reason))...))
}

// renewed records how long a renewal took and how it ended. It allocates nothing for a successful renewal.
func (ins *instruments) renewed(ctx context.Context, m *keyMetrics, took time.Duration, err error) {
	if errors.Is(err, ErrReleased) || !ins.renewal.Enabled(ctx) {
		return
	}
	if err == nil {
		ins.renewal.Record(ctx, took.Seconds(), m.renewOK...)
		return
	}
	outcome := "failed"
	if errors.Is(err, ErrLeaseLost) {
		outcome = "lost"
	}
	ins.renewal.Record(ctx, took.Seconds(), metric.WithAttributes(append(slices.Clone(m.attrs), attrOutcome.String(outcome))...))
}

// request records one request to Cosmos DB: its duration, and its charge when an answer came.
func (ins *instruments) request(name, outcome string, latency time.Duration, charge float64, answered bool) {
	ctx := context.Background()
	if !ins.operation.Enabled(ctx) && !ins.charge.Enabled(ctx) {
		return
	}
	op, oc := -1, slices.Index(outcomes[:], outcome)
	for i := range requestOps {
		if requestOps[i].name == name {
			op = i
		}
	}
	if op < 0 || oc < 0 {
		return // a request this table does not know: a new one must be added to requestOps
	}
	o := ins.requests[op][oc].Load()
	if o == nil {
		r := requestOps[op]
		attrs := append([]attribute.KeyValue{attrOperation.String(r.operation), attrOutcome.String(outcome)}, ins.base...)
		dur := metric.WithAttributeSet(attribute.NewSet(attrs...))
		chg := metric.WithAttributeSet(attribute.NewSet(append(append(slices.Clone(attrs), attrDBOperation.String(r.dbOperation)), ins.db...)...))
		o = &requestOptions{duration: []metric.RecordOption{dur}, charge: []metric.RecordOption{chg}}
		ins.requests[op][oc].Store(o)
	}
	ins.operation.Record(ctx, latency.Seconds(), o.duration...)
	if answered && requestOps[op].dbOperation != "" {
		ins.charge.Record(ctx, charge, o.charge...)
	}
}

// occurrenceRan counts one run of an occurrence of m's key by this process, with its status (executed,
// skipped, failed, lost, abandoned).
func (ins *instruments) occurrenceRan(ctx context.Context, m *keyMetrics, status string) {
	ins.occurrenceRuns.Add(ctx, 1, metric.WithAttributes(append(slices.Clone(m.attrs), attrStatus.String(status))...))
	if status == RunExecuted {
		ins.mu.Lock()
		m.lastSuccess = ins.now()
		ins.mu.Unlock()
	}
}

// occurrencesMissed counts n occurrences of m's key that the schedule made due and that ran in no region.
func (ins *instruments) occurrencesMissed(ctx context.Context, m *keyMetrics, n int64) {
	if n > 0 {
		ins.occurrenceMissed.Add(ctx, n, m.add...)
	}
}

// failedOver records how long after its scheduled time an occurrence of m's key started its work here.
func (ins *instruments) failedOver(ctx context.Context, m *keyMetrics, delay time.Duration) {
	ins.failoverDelay.Record(ctx, delay.Seconds(), m.record...)
}

// sawControl notes whether the job of m's key was paused at this process's latest read of its lease document.
func (ins *instruments) sawControl(m *keyMetrics, ctl Control) {
	v := int64(0)
	if ctl.Paused != nil {
		v = 1
	}
	ins.mu.Lock()
	m.paused = v
	ins.mu.Unlock()
}

// observe reports the gauges: for every key this client contended for, whether it holds it now (judged by the
// lease's deadline at this moment, not by the last renewal's outcome), the epoch it holds, and when it last
// finished an occurrence successfully.
func (ins *instruments) observe(_ context.Context, o metric.Observer) error {
	ins.mu.Lock()
	type entry struct {
		m       *keyMetrics
		l       *Lease
		success time.Time
		paused  int64
	}
	entries := make([]entry, 0, len(ins.keys))
	for _, m := range ins.keys {
		entries = append(entries, entry{m, m.lease, m.lastSuccess, m.paused})
	}
	ins.mu.Unlock()
	for _, e := range entries {
		if e.paused >= 0 {
			o.ObserveInt64(ins.paused, e.paused, e.m.observe...)
		}
		if !e.success.IsZero() {
			o.ObserveFloat64(ins.lastSuccess, float64(e.success.UnixNano())/1e9, e.m.observe...)
		}
		held := e.l != nil && e.l.Err() == nil
		if !held {
			o.ObserveInt64(ins.held, 0, e.m.observe...)
			continue
		}
		o.ObserveInt64(ins.held, 1, e.m.observe...)
		o.ObserveInt64(ins.epoch, e.l.Epoch(), e.m.observe...)
	}
	return nil
}

// fenceMetrics is what a Fence counts its refusals with.
type fenceMetrics struct {
	refusals metric.Int64Counter
	attrs    []attribute.KeyValue
}

// globalFenceMetrics counts the refusals of fences made with NewFence, through the global MeterProvider.
var globalFenceMetrics = sync.OnceValue(func() fenceMetrics {
	c, err := otel.GetMeterProvider().Meter(scopeName).Int64Counter("cosmoslease.fence.refusals", metric.WithUnit("{refusal}"),
		metric.WithDescription("Fenced writes that Cosmos DB refused because a later epoch had written the item"))
	if err != nil {
		otel.Handle(err)
	}
	if c == nil {
		c, _ = noop.Meter{}.Int64Counter("")
	}
	return fenceMetrics{refusals: c}
})

// refused counts one refused write to an item of container.
func (fm fenceMetrics) refused(ctx context.Context, container string) {
	if fm.refusals == nil || !fm.refusals.Enabled(ctx) {
		return
	}
	fm.refusals.Add(ctx, 1, metric.WithAttributes(append(slices.Clone(fm.attrs), attrDBCollection.String(container))...))
}
