package cosmoslease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// telemetryBed is an SDK for the library to report to: metrics read on demand by a manual reader, spans kept
// by a recorder.
type telemetryBed struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newTelemetryBed(t *testing.T) *telemetryBed {
	tb := &telemetryBed{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tb.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tb.reader))
	tb.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tb.spans))
	t.Cleanup(func() { _ = tb.mp.Shutdown(context.Background()); _ = tb.tp.Shutdown(context.Background()) })
	return tb
}

func (tb *telemetryBed) options(o *Options) { o.MeterProvider, o.TracerProvider = tb.mp, tb.tp }

// point is one data point of an instrument: a gauge's or counter's value, or a histogram's count and sum.
type point struct {
	attrs attribute.Set
	value float64
	count uint64
}

func (p point) attr(k attribute.Key) string { v, _ := p.attrs.Value(k); return v.Emit() }

// collect reads every point of the instrument name whose attributes include all of match ("key=value").
func (tb *telemetryBed) collect(t *testing.T, name string, match ...string) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tb.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []point
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != scopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, scopeName)
		}
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					out = append(out, point{attrs: dp.Attributes, value: float64(dp.Value)})
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					out = append(out, point{attrs: dp.Attributes, value: dp.Value})
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out = append(out, point{attrs: dp.Attributes, value: float64(dp.Value)})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out = append(out, point{attrs: dp.Attributes, value: dp.Sum, count: dp.Count})
				}
			default:
				t.Fatalf("%s: unexpected data %T", name, m.Data)
			}
		}
	}
	var kept []point
next:
	for _, p := range out {
		for _, kv := range match {
			k, v, _ := strings.Cut(kv, "=")
			if p.attr(attribute.Key(k)) != v {
				continue next
			}
		}
		kept = append(kept, p)
	}
	return kept
}

// one is the single point matching, or fails.
func (tb *telemetryBed) one(t *testing.T, name string, match ...string) point {
	t.Helper()
	ps := tb.collect(t, name, match...)
	if len(ps) != 1 {
		t.Fatalf("%s %v: %d points, want 1: %+v", name, match, len(ps), ps)
	}
	return ps[0]
}

func (tb *telemetryBed) value(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	return tb.one(t, name, match...).value
}

func (tb *telemetryBed) absent(t *testing.T, name string, match ...string) {
	t.Helper()
	if ps := tb.collect(t, name, match...); len(ps) != 0 {
		t.Fatalf("%s %v: %+v, want none", name, match, ps)
	}
}

// ended are the spans ended so far whose name is name.
func (tb *telemetryBed) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tb.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestTelemetry_HeldAcquisitionsOperationsAndCharge: the instruments after real operations against the server.
func TestTelemetry_HeldAcquisitionsOperationsAndCharge(t *testing.T) {
	tb := newTelemetryBed(t)
	b := newServerBed(t, DefaultPartitionKeyPath)
	a, _ := b.client(t, "a", func(o *Options) { tb.options(o); o.ManualRenew = true })
	s, _ := b.client(t, "s", tb.options)
	ctx := context.Background()

	la := must[*Lease](t)(a.TryAcquire(ctx, "job"))
	_, err := s.TryAcquire(ctx, "job")
	heldErr(t, err) // s is a standby
	if got := tb.value(t, "cosmoslease.lease.held", "cosmoslease.lease.key=job", "cosmoslease.owner=a", "cloud.region=region-a"); got != 1 {
		t.Fatalf("held by the holder = %v, want 1", got)
	}
	if got := tb.value(t, "cosmoslease.lease.held", "cosmoslease.lease.key=job", "cosmoslease.owner=s"); got != 0 {
		t.Fatalf("held by the standby = %v, want 0", got)
	}
	if got := tb.value(t, "cosmoslease.lease.epoch", "cosmoslease.owner=a"); got != 1 {
		t.Fatalf("epoch = %v, want 1", got)
	}
	tb.absent(t, "cosmoslease.lease.epoch", "cosmoslease.owner=s")
	if got := tb.value(t, "cosmoslease.lease.acquisitions", "cosmoslease.lease.key=job", "cosmoslease.owner=a"); got != 1 {
		t.Fatalf("acquisitions = %v, want 1", got)
	}
	tb.absent(t, "cosmoslease.lease.acquisitions", "cosmoslease.owner=s")

	for range 3 {
		if err := la.Renew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	renewals := tb.one(t, "cosmoslease.lease.renewal.duration", "cosmoslease.owner=a", "cosmoslease.outcome=ok")
	if renewals.count != 3 || renewals.value <= 0 {
		t.Fatalf("renewal durations: %d recorded, sum %v s; want 3, more than 0", renewals.count, renewals.value)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tb.value(t, "cosmoslease.lease.held", "cosmoslease.owner=a"); got != 0 {
		t.Fatalf("held after Release = %v, want 0", got)
	}
	tb.absent(t, "cosmoslease.lease.epoch", "cosmoslease.owner=a")
	tb.absent(t, "cosmoslease.lease.losses")

	// Every request was measured, by operation and outcome: a's read (of no document) and create (acquire), 3 renewals and the
	// release (and Open's check); the standby's read. The server answers every request with a charge of 1 RU.
	want := map[string]uint64{"check/ok": 1, "read/not_found": 1, "acquire/ok": 1, "renew/ok": 3, "release/ok": 1}
	for k, n := range want {
		op, outcome, _ := strings.Cut(k, "/")
		d := tb.one(t, "cosmoslease.operation.duration", "cosmoslease.owner=a", "cosmoslease.operation="+op, "cosmoslease.outcome="+outcome)
		if d.count != n || d.value <= 0 {
			t.Errorf("operation.duration %s: %d recorded (sum %v s), want %d", k, d.count, d.value, n)
		}
		if op == "check" {
			continue // several requests, whose charges the check does not add up
		}
		c := tb.one(t, "azure.cosmosdb.client.operation.request_charge", "cosmoslease.owner=a", "cosmoslease.operation="+op,
			"db.system.name=azure.cosmosdb", "db.namespace="+b.srv.Database, "db.collection.name="+b.container)
		if c.count != n || c.value != float64(n) {
			t.Errorf("request_charge %s: %d recorded, %v RU in all; want %d, %d RU", k, c.count, c.value, n, n)
		}
	}
	if d := tb.one(t, "cosmoslease.operation.duration", "cosmoslease.owner=s", "cosmoslease.operation=read"); d.count != 1 {
		t.Errorf("the standby's read: %d recorded", d.count)
	}
	if ops := tb.collect(t, "cosmoslease.operation.duration", "cosmoslease.owner=a"); len(ops) != len(want) {
		t.Errorf("operation.duration series of a: %+v, want only %v", ops, want)
	}
	if charges := tb.collect(t, "azure.cosmosdb.client.operation.request_charge", "cosmoslease.owner=a"); len(charges) != len(want)-1 {
		t.Errorf("request_charge series of a: %+v, want those of %v but the check", charges, want)
	}
	wantUnits := map[string]string{"cosmoslease.lease.held": "{lease}", "cosmoslease.lease.acquisitions": "{acquisition}",
		"cosmoslease.lease.renewal.duration": "s", "cosmoslease.operation.duration": "s",
		"azure.cosmosdb.client.operation.request_charge": "{request_unit}"}
	if got := tb.units(t); !maps.Equal(got, wantUnits) {
		t.Errorf("units %v, want %v", got, wantUnits)
	}
}

// units are the UCUM units of the instruments that have data.
func (tb *telemetryBed) units(t *testing.T) map[string]string {
	var rm metricdata.ResourceMetrics
	if err := tb.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Unit
		}
	}
	return out
}

// TestTelemetry_LossesAreCountedWithTheirReason: deleted, superseded, invalid and deadline, each from a real
// renewal against the server; a release is no loss.
func TestTelemetry_LossesAreCountedWithTheirReason(t *testing.T) {
	tb := newTelemetryBed(t)
	b := newServerBed(t, DefaultPartitionKeyPath)
	a, _ := b.client(t, "a", func(o *Options) { tb.options(o); o.ManualRenew = true })
	ctx := context.Background()
	items := b.srv.Container(t, b.container)

	// deleted
	l1 := must[*Lease](t)(a.TryAcquire(ctx, "deleted"))
	b.del(t, "deleted")
	if err := l1.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew of a deleted lease = %v", err)
	}
	// superseded: another holder's document, one epoch up
	l2 := must[*Lease](t)(a.TryAcquire(ctx, "superseded"))
	resp, err := items.ReadItem(ctx, b.pkValue("superseded"), "lease-superseded", nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(resp.Value, &doc); err != nil {
		t.Fatal(err)
	}
	doc["leaseId"], doc["ownerId"], doc["epoch"] = "another-holders-lease", "x", 2
	body, _ := json.Marshal(doc)
	b.put(t, "superseded", string(body))
	if err := l2.Renew(ctx); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "taken over by x") {
		t.Fatalf("renew of a lease taken over = %v", err)
	}
	// invalid
	l3 := must[*Lease](t)(a.TryAcquire(ctx, "invalid"))
	b.put(t, "invalid", `{"id":"lease-invalid","leaseKey":"invalid","epoch":"seven","ownerId":"x","leaseId":"y"}`)
	if err := l3.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew of an overwritten lease = %v", err)
	}
	// deadline: no renewal (ManualRenew), so the keeper ends it at RenewDeadline
	l4 := must[*Lease](t)(a.TryAcquire(ctx, "deadline"))
	select {
	case <-l4.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease outlived its RenewDeadline")
	}
	// released: not a loss
	l5 := must[*Lease](t)(a.TryAcquire(ctx, "released"))
	if err := l5.Release(ctx); err != nil {
		t.Fatal(err)
	}

	for key, reason := range map[string]string{"deleted": lossDeleted, "superseded": lossSuperseded, "invalid": lossInvalid, "deadline": lossDeadline} {
		if got := tb.value(t, "cosmoslease.lease.losses", "cosmoslease.lease.key="+key, "cosmoslease.loss.reason="+reason, "cosmoslease.owner=a"); got != 1 {
			t.Errorf("losses of %s for %s = %v, want 1", key, reason, got)
		}
		if got := tb.value(t, "cosmoslease.lease.held", "cosmoslease.lease.key="+key); got != 0 {
			t.Errorf("held %s after its loss = %v", key, got)
		}
	}
	if all := tb.collect(t, "cosmoslease.lease.losses"); len(all) != 4 {
		t.Errorf("losses: %+v, want the four above", all)
	}
	// Renewals that lost the lease are measured as such.
	if lost := tb.collect(t, "cosmoslease.lease.renewal.duration", "cosmoslease.outcome=lost"); len(lost) != 3 {
		t.Errorf("renewals that lost: %+v, want one series for each of deleted, superseded, invalid", lost)
	}
	if got := tb.value(t, "cosmoslease.lease.acquisitions", "cosmoslease.lease.key=released"); got != 1 {
		t.Errorf("acquisitions of released = %v", got)
	}
}

// TestTelemetry_FenceRefusalsAreCounted: a write through the fence of a superseded epoch, refused by the server.
func TestTelemetry_FenceRefusalsAreCounted(t *testing.T) {
	tb := newTelemetryBed(t)
	b := newServerBed(t, DefaultPartitionKeyPath)
	a, _ := b.client(t, "a", tb.options)
	ctx := context.Background()
	la := must[*Lease](t)(a.TryAcquire(ctx, "job"))
	defer la.Release(ctx)
	items := a.Container()
	pk := azcosmos.NewPartitionKeyString("orders")
	// A later epoch (7) has written the item.
	if _, err := items.UpsertItem(ctx, pk, []byte(`{"id":"order-1","leaseKey":"orders","fence":7}`), nil); err != nil {
		t.Fatal(err)
	}
	fence := la.Fence(items)
	for range 2 {
		_, err := fence.UpdateItem(ctx, pk, "order-1", func(cur []byte) ([]byte, error) { return cur, nil })
		if !errors.Is(err, ErrFenced) {
			t.Fatalf("fenced write = %v, want ErrFenced", err)
		}
	}
	ops := azcosmos.PatchOperations{}
	ops.AppendSet("/status", "shipped")
	if _, err := fence.PatchItem(ctx, pk, "order-1", ops, nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("fenced patch = %v, want ErrFenced", err)
	}
	if got := tb.value(t, "cosmoslease.fence.refusals", "cosmoslease.lease.key=job", "cosmoslease.owner=a", "db.collection.name="+b.container); got != 3 {
		t.Fatalf("refusals = %v, want 3", got)
	}
	// An accepted write is no refusal.
	if _, err := fence.UpdateItem(ctx, pk, "order-2", func([]byte) ([]byte, error) { return []byte(`{"id":"order-2","leaseKey":"orders"}`), nil }); err != nil {
		t.Fatal(err)
	}
	if got := tb.value(t, "cosmoslease.fence.refusals"); got != 3 {
		t.Fatalf("refusals after an accepted write = %v, want 3", got)
	}
}

// TestTelemetry_Spans: a span for each TryAcquire, Acquire, Renew and Release, with key, epoch and outcome; the
// SDK's Cosmos DB spans beneath them; automatic renewals as roots linked to the acquisition; and a Lease whose
// context carries the caller's span, not the library's.
func TestTelemetry_Spans(t *testing.T) {
	tb := newTelemetryBed(t)
	b := newServerBed(t, DefaultPartitionKeyPath)
	a, _ := b.client(t, "a", tb.options)
	s, _ := b.client(t, "s", tb.options)
	caller, parent := tb.tp.Tracer("test").Start(context.Background(), "caller")
	la := must[*Lease](t)(a.TryAcquire(caller, "job"))
	if got := trace.SpanContextFromContext(la.Context()); got.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("the lease's context carries span %v, want the caller's %v", got.SpanID(), parent.SpanContext().SpanID())
	}
	if _, err := s.TryAcquire(caller, "job"); err == nil {
		t.Fatal("the standby acquired")
	}
	if err := la.Renew(caller); err != nil {
		t.Fatal(err)
	}
	// One automatic renewal (RenewInterval is 1 s).
	deadline := time.Now().Add(10 * time.Second)
	var auto sdktrace.ReadOnlySpan
	for auto == nil && time.Now().Before(deadline) {
		for _, sp := range tb.ended("cosmoslease.Renew") {
			if !sp.Parent().IsValid() {
				auto = sp
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := la.Release(caller); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(caller, 300*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	parent.End()

	check := func(name, outcome, epoch, owner string) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, sp := range tb.ended(name) {
			if spanAttr(sp, "cosmoslease.owner") != owner || spanAttr(sp, "cosmoslease.outcome") != outcome || !sp.Parent().IsValid() {
				continue
			}
			if sp.Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("%s: parent %v, want the caller's span", name, sp.Parent().SpanID())
			}
			if spanAttr(sp, "cosmoslease.lease.epoch") != epoch || spanAttr(sp, "cosmoslease.lease.key") == "" {
				t.Errorf("%s %s: attributes %v", name, outcome, sp.Attributes())
			}
			return sp
		}
		t.Fatalf("no %s span of %s with outcome %s; spans: %v", name, owner, outcome, names(tb.spans.Ended()))
		return nil
	}
	acq := check("cosmoslease.TryAcquire", "acquired", "1", "a")
	held := check("cosmoslease.TryAcquire", "held", "", "s")
	if spanAttr(held, "cosmoslease.holder") != "a" {
		t.Errorf("held span: %v", held.Attributes())
	}
	check("cosmoslease.Renew", "renewed", "1", "a")
	check("cosmoslease.Release", "released", "1", "a")
	check("cosmoslease.Acquire", "acquired", "1", "s")

	// The SDK's spans are children of the library's: the acquisition's read and create.
	var children []string
	for _, sp := range tb.spans.Ended() {
		if sp.Parent().SpanID() == acq.SpanContext().SpanID() {
			children = append(children, sp.Name())
		}
	}
	if len(children) < 2 {
		t.Errorf("children of TryAcquire: %v, want the SDK's spans of its read and its create", children)
	}
	if auto == nil {
		t.Fatalf("no automatic renewal span; spans: %v", names(tb.spans.Ended()))
	}
	if links := auto.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != acq.SpanContext().SpanID() {
		t.Errorf("the automatic renewal's links: %+v, want the acquisition", links)
	}
	if spanAttr(auto, "cosmoslease.outcome") != "renewed" {
		t.Errorf("automatic renewal: %v", auto.Attributes())
	}
}

func names(spans []sdktrace.ReadOnlySpan) string {
	var out []string
	for _, s := range spans {
		out = append(out, fmt.Sprintf("%s(parent %v)", s.Name(), s.Parent().SpanID()))
	}
	return strings.Join(out, ", ")
}

// TestTelemetry_OccurrenceInstruments: the occurrence election's instruments, recorded through their helpers,
// under their names, units and attributes. (The election itself calls them.)
func TestTelemetry_OccurrenceInstruments(t *testing.T) {
	tb := newTelemetryBed(t)
	opts, err := Options{OwnerID: "app@eastus", Region: "eastus", MeterProvider: tb.mp, TracerProvider: tb.tp}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 4, 25, 0, 500_000_000, time.UTC)
	ins := newInstruments(opts, func() time.Time { return now })
	defer ins.close()
	m := ins.keyed("timer-singleton")
	ctx := context.Background()
	tb.absent(t, "cosmoslease.occurrence.last_success.timestamp") // no success yet: no value, not 0 (1970)
	ins.occurrenceRan(ctx, m, "executed")
	now = now.Add(time.Minute)
	ins.occurrenceRan(ctx, m, "executed")
	ins.occurrenceRan(ctx, m, "skipped")
	ins.occurrencesMissed(ctx, m, 2)
	ins.occurrencesMissed(ctx, m, 0)
	ins.failedOver(ctx, m, 10*time.Second)
	if got := tb.value(t, "cosmoslease.occurrence.runs", "cosmoslease.lease.key=timer-singleton", "cosmoslease.owner=app@eastus",
		"cloud.region=eastus", "cosmoslease.occurrence.status=executed"); got != 2 {
		t.Errorf("runs executed = %v, want 2", got)
	}
	if got := tb.value(t, "cosmoslease.occurrence.runs", "cosmoslease.occurrence.status=skipped"); got != 1 {
		t.Errorf("runs skipped = %v, want 1", got)
	}
	if got := tb.value(t, "cosmoslease.occurrence.missed", "cosmoslease.lease.key=timer-singleton"); got != 2 {
		t.Errorf("missed = %v, want 2", got)
	}
	if d := tb.one(t, "cosmoslease.occurrence.failover.delay", "cosmoslease.lease.key=timer-singleton"); d.count != 1 || d.value != 10 {
		t.Errorf("failover delay: %d recorded, sum %v s; want 1, 10 s", d.count, d.value)
	}
	// The last success, per key, in Unix seconds: the second run's end (a skip is no success).
	if got := tb.value(t, "cosmoslease.occurrence.last_success.timestamp", "cosmoslease.lease.key=timer-singleton"); got != float64(now.UnixNano())/1e9 {
		t.Errorf("last success = %v, want %v", got, float64(now.UnixNano())/1e9)
	}
	// The gauges report the key as contended and not held.
	if got := tb.value(t, "cosmoslease.lease.held", "cosmoslease.lease.key=timer-singleton"); got != 0 {
		t.Errorf("held = %v, want 0", got)
	}
}

// The occurrence election's instruments, through real RunOnce calls against the server: a run counted as
// executed with its failover delay, a standby's skip, a claimer's loss, the marking of its record as abandoned,
// and the occurrences nobody claimed, once; a RunOnce span with the run's epoch and outcome.
func TestTelemetry_RunOnceRecordsTheOccurrenceInstruments(t *testing.T) {
	tb := newTelemetryBed(t)
	b := newServerBed(t, DefaultPartitionKeyPath)
	east, fe := b.client(t, "app@eastus", tb.options)
	west, _ := b.client(t, "app@westeurope", tb.options)
	every := func(t time.Time) time.Time { return t.Truncate(time.Second).Add(time.Second) }
	o := runOpts(0)
	o.Next = every
	base := occurrenceNow().Add(-time.Minute)
	ok := func(context.Context, Run) error { return nil }
	ctx := ctxTimeout(t, 30*time.Second)
	if res, err := east.RunOnce(ctx, "job", base, o, ok); err != nil || res.Status != RunExecuted {
		t.Fatalf("%+v, %v", res, err)
	}
	if res, err := west.RunOnce(ctx, "job", base, runOpts(1), ok); err != nil || res.Status != RunSkipped {
		t.Fatalf("%+v, %v", res, err)
	}
	// east runs base+1 s and "dies" mid-work: none of its writes get through from then on.
	res, _ := east.RunOnce(ctx, "job", base.Add(time.Second), o, func(ctx context.Context, r Run) error {
		fe.inject("replace", faultUnavailable, 10_000)
		fe.inject("create", faultUnavailable, 10_000)
		<-ctx.Done()
		return ctx.Err()
	})
	if res.Status != RunLost {
		t.Fatalf("dying claimer: %+v", res)
	}
	// west runs base+4 s: it marks base+1 s abandoned and finds base+2 s and base+3 s claimed by nobody.
	ow := runOpts(0)
	ow.Next = every
	if res, err := west.RunOnce(ctx, "job", base.Add(4*time.Second), ow, ok); err != nil || res.Status != RunExecuted || len(res.Missed) != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
	runs := func(owner, status string) float64 {
		return tb.value(t, "cosmoslease.occurrence.runs", "cosmoslease.owner="+owner, "cosmoslease.occurrence.status="+status)
	}
	if runs("app@eastus", "executed") != 1 || runs("app@eastus", "lost") != 1 || runs("app@westeurope", "skipped") != 1 ||
		runs("app@westeurope", "abandoned") != 1 || runs("app@westeurope", "executed") != 1 {
		t.Errorf("runs: east executed %v lost %v; west skipped %v abandoned %v executed %v; want 1 each", runs("app@eastus", "executed"),
			runs("app@eastus", "lost"), runs("app@westeurope", "skipped"), runs("app@westeurope", "abandoned"), runs("app@westeurope", "executed"))
	}
	if got := tb.value(t, "cosmoslease.occurrence.missed", "cosmoslease.owner=app@westeurope"); got != 2 {
		t.Errorf("missed = %v, want 2", got)
	}
	if d := tb.one(t, "cosmoslease.occurrence.failover.delay", "cosmoslease.owner=app@westeurope"); d.count != 1 || d.value < 4 {
		t.Errorf("west's failover delay: %d recorded, sum %v s; want 1, at least 4 s (it ran base+4 s a minute late)", d.count, d.value)
	}
	spans := tb.ended("cosmoslease.RunOnce")
	if len(spans) != 4 {
		t.Fatalf("%d RunOnce spans, want 4", len(spans))
	}
	if s := spans[len(spans)-1]; spanAttr(s, attrKey) != "job" || spanAttr(s, attrEpoch) == "" {
		t.Errorf("the last RunOnce span: %v", s.Attributes())
	}
}

// Issue 28, item 5: the failover-delay histogram's bounds sit between the delays people set, not on them. A
// failover lands at rank × delay plus the time the claim takes; with bounds at 10 and 20 s, every default
// failover (10 s) fell in (10, 20] with the second rank's. Each rank × delay, and up to a second after it, must
// fall in one bucket, apart from the next rank's.
func TestFailoverDelayBucketsSurroundTheDelaysPeopleSet(t *testing.T) {
	bucket := func(v float64) int {
		for i, b := range delayBuckets {
			if v <= b {
				return i
			}
		}
		return len(delayBuckets)
	}
	for _, d := range []float64{1, 5, 10, 30, 60} { // seconds: the range LeaseTimerFailoverDelay's users pick from
		for r := 1.0; r <= 2; r++ {
			at, late := bucket(r*d), bucket(r*d+min(1, d/4))
			if at != late {
				t.Errorf("delay %gs, rank %g: %gs and %gs fall in different buckets (bounds %v)", d, r, r*d, r*d+min(1, d/4), delayBuckets)
			}
			if r == 2 && bucket(d) == at {
				t.Errorf("delay %gs: ranks 1 and 2 (%gs, %gs) fall in one bucket (bounds %v)", d, d, 2*d, delayBuckets)
			}
		}
	}
}
