// Package telemetry installs the OpenTelemetry SDK for one of this project's programs (the CLI's long-running
// commands, the Functions handler). The library, pkg/cosmoslease, only records through the OpenTelemetry API;
// this is the one place that exports:
//   - Prometheus text at http://HOST:PORT/metrics, when the program is given an address, through the
//     OpenTelemetry Prometheus exporter;
//   - OTLP over HTTP (http/protobuf), metrics and traces, when the standard variables name a collector:
//     OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / _TRACES_ENDPOINT for one signal.
//     The exporters read every other OTEL_EXPORTER_OTLP_* variable (headers, timeout, compression,
//     certificates) themselves, the SDK reads OTEL_METRIC_EXPORT_INTERVAL and OTEL_TRACES_SAMPLER, and the
//     resource takes OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. OTEL_METRICS_EXPORTER=none or
//     OTEL_TRACES_EXPORTER=none turns one signal off, OTEL_SDK_DISABLED=true both.
//
// Shutdown (or Flush, for a program that may be killed between two units of work) exports what is buffered.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config says what to export.
type Config struct {
	// Service is the resource's service.name, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES sets one.
	Service string
	// MetricsAddr, when not empty, is the HOST:PORT at which Prometheus text is served (path /metrics). Port 0
	// picks a free port: Telemetry.MetricsURL says which.
	MetricsAddr string
	// Getenv reads the variables that turn OTLP on; nil is os.Getenv. (The OTLP exporters read the process's
	// environment for their own settings.)
	Getenv func(string) string
	// Log receives export failures; nil discards them.
	Log *slog.Logger
}

// Telemetry is an installed SDK. Its providers are nil when nothing is exported: the program then passes nil
// on, and the library falls back to the global providers, which record nothing.
type Telemetry struct {
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// MetricsURL is where Prometheus text is served, empty when it is not.
	MetricsURL string

	mp  *sdkmetric.MeterProvider
	tp  *sdktrace.TracerProvider
	srv *http.Server
}

// ErrConfig is wrapped by errors about a setting the user must fix (the address, an OTEL_* variable).
var ErrConfig = errors.New("telemetry configuration")

// Start installs what cfg and the environment ask for. Nothing asked is no error: a Telemetry with nil
// providers, whose Flush and Shutdown do nothing.
func Start(ctx context.Context, cfg Config) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }
	disabled := strings.EqualFold(env("OTEL_SDK_DISABLED"), "true")
	otlpMetrics := !disabled && env("OTEL_METRICS_EXPORTER") != "none" &&
		(env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "")
	otlpTraces := !disabled && env("OTEL_TRACES_EXPORTER") != "none" &&
		(env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "")
	t := &Telemetry{}
	if cfg.MetricsAddr == "" && !otlpMetrics && !otlpTraces {
		return t, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if v := env(name); v != "" && v != "http/protobuf" && (otlpMetrics || otlpTraces) {
			return nil, fmt.Errorf("%w: %s=%s: this program exports OTLP over HTTP only; set it to http/protobuf (or unset it) and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port, usually 4318",
				ErrConfig, name, v)
		}
	}

	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", cfg.Service)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES: resource.New still returns what it could read.
		log.Warn("telemetry: OTEL_RESOURCE_ATTRIBUTES was partly ignored", "error", err)
	}
	if otlpMetrics || otlpTraces {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry export failed", "error", err) }))
	}

	mopts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	var ln net.Listener
	var reg *prometheus.Registry
	if cfg.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("%w: metrics address %q is not HOST:PORT (such as 127.0.0.1:9464, or :9464 for every interface)", ErrConfig, cfg.MetricsAddr)
		}
		reg = prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %v", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(exp))
		if ln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("%w: cannot serve metrics at %s: %v", ErrConfig, cfg.MetricsAddr, err)
		}
	}
	if otlpMetrics {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			closeListener(ln)
			return nil, fmt.Errorf("%w: OTLP metrics exporter (check OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_EXPORTER_OTLP_* variables): %v", ErrConfig, err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	if cfg.MetricsAddr != "" || otlpMetrics {
		t.mp = sdkmetric.NewMeterProvider(mopts...)
		t.MeterProvider = t.mp
	}
	if otlpTraces {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			closeListener(ln)
			_ = t.Shutdown(ctx)
			return nil, fmt.Errorf("%w: OTLP trace exporter (check OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_EXPORTER_OTLP_* variables): %v", ErrConfig, err)
		}
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.TracerProvider = t.tp
	}
	if ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		t.MetricsURL = "http://" + ln.Addr().String() + "/metrics"
		go func() {
			if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("metrics endpoint stopped", "error", err)
			}
		}()
	}
	return t, nil
}

func closeListener(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}

// Flush exports every metric and span recorded so far, within ctx.
func (t *Telemetry) Flush(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.ForceFlush(ctx))
	}
	if t.mp != nil {
		errs = append(errs, t.mp.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown exports what is buffered, stops the exporters and the metrics endpoint. Call it once, on exit.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.Shutdown(ctx))
	}
	if t.mp != nil {
		errs = append(errs, t.mp.Shutdown(ctx))
	}
	if t.srv != nil {
		errs = append(errs, t.srv.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
