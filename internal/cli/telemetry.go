package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/telemetry"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// metricsAddrFlag is --metrics-addr, for the commands that run until they are stopped (run, cron).
func metricsAddrFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics (:9464 for every interface; port 0 picks a free one)", EnvVars: []string{"COSMOSLEASE_METRICS_ADDR"}}
}

// commandTelemetry is the OpenTelemetry SDK of one command.
type commandTelemetry struct {
	tel *telemetry.Telemetry
	ctx context.Context
	log *slog.Logger
}

// startTelemetry installs the OpenTelemetry SDK for a long-running command and points opts at it: Prometheus
// text at --metrics-addr when the command has that flag and it is set, OTLP over HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT (or a signal's own endpoint) is set. Use it as
//
//	tel, err := a.startTelemetry(c, log, &opts) // before opening the client
//	defer tel.stop()
//	client, err := a.open(ctx, c, s, opts)
//	defer client.Close()
//	defer tel.flush() // the last figures (held 0 after a release) while the client still reports them
func (a *App) startTelemetry(c *ucli.Context, log *slog.Logger, opts *cosmoslease.Options) (*commandTelemetry, error) {
	addr := ""
	if c.IsSet("metrics-addr") || c.String("metrics-addr") != "" {
		if addr = c.String("metrics-addr"); addr == "" {
			return nil, usagef("--metrics-addr is empty: give HOST:PORT, such as 127.0.0.1:9464")
		}
	}
	tel, err := telemetry.Start(c.Context, telemetry.Config{Service: "cosmoslease", MetricsAddr: addr, Getenv: a.Getenv, Log: log})
	if errors.Is(err, telemetry.ErrConfig) {
		return nil, withCode(ExitUsage, err)
	}
	if err != nil {
		return nil, err
	}
	if tel.MetricsURL != "" {
		fmt.Fprintf(a.Stderr, "cosmoslease: serving Prometheus metrics at %s\n", tel.MetricsURL)
	}
	opts.MeterProvider, opts.TracerProvider = tel.MeterProvider, tel.TracerProvider
	return &commandTelemetry{tel: tel, ctx: context.WithoutCancel(c.Context), log: log}, nil
}

// metricsURL is where the metrics are served, empty when they are not.
func (t *commandTelemetry) metricsURL() string { return t.tel.MetricsURL }

// flush exports what has been recorded (OTLP; Prometheus is scraped).
func (t *commandTelemetry) flush() {
	ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	if err := t.tel.Flush(ctx); err != nil {
		t.log.Warn("telemetry not exported", "error", err)
	}
}

// stop exports what is left and stops the exporters and the metrics endpoint.
func (t *commandTelemetry) stop() {
	ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	if err := t.tel.Shutdown(ctx); err != nil {
		t.log.Warn("telemetry not all exported at exit", "error", err)
	}
}
