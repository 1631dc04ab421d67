package leasehandler

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/cosmoslease/cosmoslease/internal/telemetry"
)

// flushTimeout bounds the export after each invocation. The invocation has been answered by then; a collector
// that does not answer in time loses that invocation's figures, and the next invocation sends them again
// (metrics are cumulative).
const flushTimeout = 5 * time.Second

// startTelemetry exports the library's metrics and spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or a
// signal's own endpoint) is set, through the global providers, which the library and its fences use by
// default. A bad OTEL_* setting is reported and leaves telemetry off: the timer's work matters more.
func startTelemetry(log *slog.Logger) *telemetry.Telemetry {
	tel, err := telemetry.Start(context.Background(), telemetry.Config{Service: "leasehandler", Getenv: os.Getenv, Log: log})
	if err != nil {
		log.Error("telemetry is off", "error", err)
		return &telemetry.Telemetry{}
	}
	if tel.MeterProvider != nil {
		otel.SetMeterProvider(tel.MeterProvider)
	}
	if tel.TracerProvider != nil {
		otel.SetTracerProvider(tel.TracerProvider)
	}
	return tel
}

// flushEach answers each invocation in full, then exports what it recorded before the request ends. The host
// stops a handler with SIGKILL, never SIGTERM, so nothing may wait for an exit; and the answer is not delayed,
// because it is sent, with its length, before the export starts.
func flushEach(next http.Handler, tel *telemetry.Telemetry, log *slog.Logger) http.Handler {
	if tel.MeterProvider == nil && tel.TracerProvider == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans := &bufferedAnswer{header: w.Header()}
		next.ServeHTTP(ans, r)
		w.Header().Set("Content-Length", strconv.Itoa(ans.body.Len()))
		w.WriteHeader(ans.status())
		_, _ = w.Write(ans.body.Bytes())
		_ = http.NewResponseController(w).Flush()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flushTimeout)
		defer cancel()
		if err := tel.Flush(ctx); err != nil {
			log.Warn("telemetry of this invocation not exported", "error", err)
		}
	})
}

// bufferedAnswer keeps an answer until it is complete, so it can be sent with its length.
type bufferedAnswer struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedAnswer) Header() http.Header { return b.header }

func (b *bufferedAnswer) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedAnswer) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedAnswer) status() int {
	if b.code == 0 {
		return http.StatusOK
	}
	return b.code
}
