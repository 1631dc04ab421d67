package cosmoslease

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

// BenchmarkRenew is the renewal path without the network: building and encoding the next document, one
// conditional replace on the in-memory store, bookkeeping. allocs/op is the library's cost per renewal.
func BenchmarkRenew(b *testing.B) {
	benchRenew(b, Options{OwnerID: "a", ManualRenew: true, LeaseDuration: time.Hour, RenewInterval: 10 * time.Minute})
}

// benchRenew times Renew of a lease held in the in-memory store with opts.
func benchRenew(b *testing.B, opts Options) {
	opts, err := opts.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	c := newClient(memstore.New(clock.Real{}), opts, clock.Real{})
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

// BenchmarkRenewWithTelemetry is BenchmarkRenew with an OpenTelemetry SDK installed: metrics collected by a
// reader, every renewal traced (sampled, batched to an exporter that drops them). Beside BenchmarkRenew, where no
// SDK is installed, it is what the telemetry costs a renewal when a program turns it on.
func BenchmarkRenewWithTelemetry(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer mp.Shutdown(context.Background())
	defer tp.Shutdown(context.Background())
	benchRenew(b, Options{OwnerID: "a", ManualRenew: true, LeaseDuration: time.Hour, RenewInterval: 10 * time.Minute,
		MeterProvider: mp, TracerProvider: tp})
}

// BenchmarkRenewOverHTTP is the renewal path as it runs: the SDK over HTTP to the local Cosmos-protocol server,
// no OpenTelemetry SDK installed. Its allocations are the library's, the SDK's and net/http's.
func BenchmarkRenewOverHTTP(b *testing.B) {
	srv := cosmostest.Get(b)
	opts := Options{OwnerID: "a", ManualRenew: true, LeaseDuration: time.Hour, RenewInterval: 10 * time.Minute,
		ConnectionString: srv.ConnectionString, Endpoint: srv.Endpoint, Database: srv.Database,
		Container: srv.NewContainer(b, DefaultPartitionKeyPath)}
	c, err := Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
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
