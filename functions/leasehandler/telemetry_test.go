//go:build linux || darwin

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/telemetry/otlptest"
)

// TestTelemetryIsExportedAfterEachInvocation: with OTEL_EXPORTER_OTLP_ENDPOINT set, what one invocation recorded
// reaches the collector while the handler keeps running (the host never stops it with a signal it could
// handle), and the invocation's answer is the same as without telemetry.
func TestTelemetryIsExportedAfterEachInvocation(t *testing.T) {
	rc := otlptest.Start()
	defer rc.Close()
	env := merge(handlerEnv(t), map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rc.URL})
	in := startHandler(t, "eastus", "eastus-pod-1", env)
	rs := tick(t, []*instance{in}, time.Now().UTC().Truncate(3*time.Second))
	if ex := executed(t, rs); len(ex) != 1 {
		t.Fatalf("the only region did not execute: %+v", rs)
	}
	deadline := time.Now().Add(10 * time.Second) // the handler exports within 5 s of each invocation
	for {
		m := rc.Metrics()["cosmoslease.lease.acquisitions"]
		var spans []string
		for _, s := range rc.Spans() {
			if strings.HasPrefix(s.Name, "cosmoslease.") {
				spans = append(spans, s.Name)
			}
		}
		if m.Metric != nil && len(spans) > 0 {
			if m.Service != "leasehandler" || m.GetSum().GetDataPoints()[0].GetAsInt() != 1 {
				t.Fatalf("acquisitions: %v from %q", m.Metric, m.Service)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing exported after the invocation: acquisitions %v, spans %v; refused %v; handler: %s%s",
				m.Metric, spans, rc.Refused(), in.stdout.String(), in.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := rc.Refused(); len(r) > 0 {
		t.Fatalf("requests that were not OTLP exports: %v", r)
	}
}
