package cosmoslease

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The library's OpenTelemetry spans: one for each TryAcquire, Acquire, Renew (the automatic renewals too) and
// Release, with the lease key, the epoch and the outcome. The SDK's own Cosmos DB spans (through azotel) and
// the HTTP spans under them are their children.

// unsetTracerProvider is the global TracerProvider as it is before any program installs one: it forwards to
// the one installed later, and until then records nothing.
var unsetTracerProvider = otel.GetTracerProvider()

// tracer starts the library's spans. When nothing would record them it starts none, so the renewal path
// allocates nothing for tracing unless an SDK is installed.
type tracer struct {
	t      trace.Tracer
	global bool // the provider is the global one as it was before any was installed
	off    bool // the provider is a no-op
	base   []attribute.KeyValue
}

func newTracer(o Options) tracer {
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	_, off := tp.(noop.TracerProvider)
	base := []attribute.KeyValue{attrOwner.String(o.OwnerID)}
	if o.Region != "" {
		base = append(base, attrRegion.String(o.Region))
	}
	return tracer{t: tp.Tracer(scopeName), global: tp == unsetTracerProvider, off: off, base: base}
}

// sdkSpans is the provider for the Cosmos DB SDK's own spans, or nil for none: none when nothing records them
// at Open (the global provider with no SDK installed yet, or a no-op one). The SDK builds its spans whenever it
// has a provider, and that costs about 50 allocations a request; a program that installs its SDK after Open
// gets the library's spans but not the SDK's.
func sdkSpans(o Options) trace.TracerProvider {
	if t := newTracer(o); !t.recording() {
		return nil
	}
	return o.TracerProvider
}

// recording reports whether spans started now could be recorded.
func (t tracer) recording() bool {
	if t.global {
		return otel.GetTracerProvider() != unsetTracerProvider
	}
	return !t.off
}

// callerKey holds, in the context of an acquisition's span, the caller's context: a Lease keeps the caller's
// values and span, not the span of the call that acquired it.
type callerKey struct{}

// span is a started span, or nothing (the zero span) when tracing is off.
type span struct{ s trace.Span }

// start begins the span name for key as a child of ctx's span; extra options (a new root, a link) are passed on.
func (t tracer) start(ctx context.Context, name, key string, opts ...trace.SpanStartOption) (context.Context, span) {
	if !t.recording() {
		return ctx, span{}
	}
	attrs := append([]attribute.KeyValue{attrKey.String(key)}, t.base...)
	opts = append(opts, trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	sctx, s := t.t.Start(ctx, name, opts...)
	return sctx, span{s}
}

// startAcquire is start for a call that may make a Lease: its context also keeps the caller's (callerContext).
func (t tracer) startAcquire(ctx context.Context, name, key string) (context.Context, span) {
	sctx, s := t.start(ctx, name, key)
	if s.s == nil {
		return ctx, s
	}
	return context.WithValue(sctx, callerKey{}, ctx), s
}

// callerContext strips an acquisition's span from ctx: it returns the caller's context, and the span context
// of the acquisition (invalid when tracing is off).
func callerContext(ctx context.Context) (context.Context, trace.SpanContext) {
	if caller, ok := ctx.Value(callerKey{}).(context.Context); ok {
		return caller, trace.SpanContextFromContext(ctx)
	}
	return ctx, trace.SpanContext{}
}

// end finishes the span with the lease's epoch (when known, not 0), the outcome, and the error that failed it.
func (s span) end(epoch int64, outcome string, err error) {
	if s.s == nil {
		return
	}
	attrs := []attribute.KeyValue{attrOutcome.String(outcome)}
	if epoch > 0 {
		attrs = append(attrs, attrEpoch.Int64(epoch))
	}
	s.s.SetAttributes(attrs...)
	if err != nil {
		s.s.RecordError(err)
		s.s.SetStatus(codes.Error, err.Error())
	}
	s.s.End()
}

// endAcquire finishes the span of TryAcquire or Acquire.
func (s span) endAcquire(l *Lease, err error) {
	if s.s == nil {
		return
	}
	var held *HeldError
	switch {
	case err == nil:
		s.end(l.Epoch(), "acquired", nil)
	case errors.As(err, &held):
		s.s.SetAttributes(attribute.String("cosmoslease.holder", held.Holder.Owner), attribute.Int64("cosmoslease.holder.epoch", held.Holder.Epoch))
		s.end(0, "held", nil)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		s.end(0, "cancelled", err)
	default:
		s.end(0, "failed", err)
	}
}

// endWrite finishes the span of a renewal or a release of l.
func (s span) endWrite(l *Lease, release bool, err error) {
	if s.s == nil {
		return
	}
	outcome := "renewed"
	if release {
		outcome = "released"
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost):
		outcome = "lost"
	case errors.Is(err, ErrReleased):
		outcome, err = "released", nil
	default:
		outcome = "failed"
	}
	s.end(l.Epoch(), outcome, err)
}
