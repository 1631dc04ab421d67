//go:build linux || darwin

package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/telemetry/otlptest"
)

// scrape reads Prometheus text from url and returns the value of the sample name whose labels include every
// one of labels (`key="value"`), and whether there is one.
func scrape(t *testing.T, url, name string, labels ...string) (float64, bool, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape %s: %s, %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		series, value, _ := strings.Cut(line, "} ")
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("sample %q", line)
		}
		return v, true, string(body)
	}
	return 0, false, string(body)
}

// eventually retries check until it returns "" or 20 s pass, then fails with its last complaint.
func eventually(t *testing.T, check func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// heldIs waits until url shows cosmoslease_lease_held for owner equal to want.
func heldIs(t *testing.T, url, owner string, want float64) {
	t.Helper()
	eventually(t, func() string {
		v, ok, body := scrape(t, url, "cosmoslease_lease_held", `cosmoslease_owner="`+owner+`"`, `cosmoslease_lease_key="critical-section-lock"`)
		if !ok || v != want {
			return fmt.Sprintf("%s: held of %s = %v (found %v), want %v; scrape:\n%s", url, owner, v, ok, want, body)
		}
		return ""
	})
}

func metricsURL(t *testing.T, p *proc) string {
	t.Helper()
	url, _ := p.waitEvent(t, "started")["metricsUrl"].(string)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("started event: metricsUrl %q", url)
	}
	return url
}

// TestMetricsEndpointsShowHolderAndStandbyAndSwapOnTakeover: two `run` processes, each serving its metrics.
// The holder shows held 1, the standby 0; the holder is killed, the standby takes over and shows 1 (and epoch
// 2), and the killed instance, started again as a supervisor would, stands by and shows 0.
func TestMetricsEndpointsShowHolderAndStandbyAndSwapOnTakeover(t *testing.T) {
	e := env(t)
	metrics := []string{"--metrics-addr", "127.0.0.1:0"}
	holder := start(t, e, append(append([]string{"run", "--instance", "us-east-1", "--region", "us-east"}, metrics...), fast...)...)
	holder.waitEvent(t, "work")
	hURL := metricsURL(t, holder)
	standby := start(t, e, append(append([]string{"run", "--instance", "eu-west-1", "--region", "eu-west", "--wait"}, metrics...), fast...)...)
	standby.waitEvent(t, "held")
	sURL := metricsURL(t, standby)

	heldIs(t, hURL, "us-east-1", 1)
	heldIs(t, sURL, "eu-west-1", 0)
	if v, ok, body := scrape(t, hURL, "cosmoslease_lease_epoch", `cosmoslease_owner="us-east-1"`, `cloud_region="us-east"`); !ok || v != 1 {
		t.Fatalf("holder's epoch %v (%v); scrape:\n%s", v, ok, body)
	}
	if _, ok, body := scrape(t, sURL, "cosmoslease_lease_epoch"); ok {
		t.Fatalf("the standby reports an epoch; scrape:\n%s", body)
	}
	eventually(t, func() string { // the first renewal comes a second after the acquisition
		if v, ok, body := scrape(t, hURL, "cosmoslease_lease_renewal_duration_seconds_count", `cosmoslease_outcome="ok"`); !ok || v < 1 {
			return fmt.Sprintf("holder's renewals %v (%v); scrape:\n%s", v, ok, body)
		}
		return ""
	})

	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.wait(t)
	standby.waitEvent(t, "acquired")
	heldIs(t, sURL, "eu-west-1", 1)
	if v, ok, body := scrape(t, sURL, "cosmoslease_lease_epoch", `cosmoslease_owner="eu-west-1"`); !ok || v != 2 {
		t.Fatalf("new holder's epoch %v (%v); scrape:\n%s", v, ok, body)
	}
	if v, ok, body := scrape(t, sURL, "cosmoslease_lease_acquisitions_total", `cosmoslease_owner="eu-west-1"`); !ok || v != 1 {
		t.Fatalf("new holder's acquisitions %v (%v); scrape:\n%s", v, ok, body)
	}

	again := start(t, e, append(append([]string{"run", "--instance", "us-east-1", "--region", "us-east", "--wait"}, metrics...), fast...)...)
	again.waitEvent(t, "held")
	heldIs(t, metricsURL(t, again), "us-east-1", 0)
	heldIs(t, sURL, "eu-west-1", 1)
}

// TestRunExportsMetricsAndSpansOverOTLP: `run --hold-for` with OTEL_EXPORTER_OTLP_ENDPOINT pointed at a
// receiver in the test. At exit the process has sent both signals, and they carry what it did.
func TestRunExportsMetricsAndSpansOverOTLP(t *testing.T) {
	rc := otlptest.Start()
	defer rc.Close()
	e := append(env(t), "OTEL_EXPORTER_OTLP_ENDPOINT="+rc.URL, "OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=",
		"OTEL_EXPORTER_OTLP_PROTOCOL=", "OTEL_METRICS_EXPORTER=", "OTEL_TRACES_EXPORTER=", "OTEL_SDK_DISABLED=")
	p := start(t, e, append([]string{"run", "--instance", "us-east-1", "--region", "us-east", "--hold-for", "2500ms"}, fast...)...)
	if code := p.wait(t); code != 0 {
		t.Fatalf("run exit %d: %s", code, p.stderr.String())
	}
	if r := rc.Refused(); len(r) > 0 {
		t.Fatalf("requests that were not OTLP exports: %v", r)
	}
	// The export interval is a minute: all of this was sent by the flush at exit.
	metrics := rc.Metrics()
	held := metrics["cosmoslease.lease.held"]
	if held.Metric == nil || len(held.GetGauge().GetDataPoints()) != 1 {
		t.Fatalf("cosmoslease.lease.held: %v; metrics: %v", held.Metric, keys(metrics))
	}
	dp := held.GetGauge().GetDataPoints()[0]
	if dp.GetAsInt() != 0 || otlptest.Attr(dp.Attributes, "cosmoslease.lease.key") != "critical-section-lock" ||
		otlptest.Attr(dp.Attributes, "cosmoslease.owner") != "us-east-1" || otlptest.Attr(dp.Attributes, "cloud.region") != "us-east" {
		t.Errorf("held at exit, after the release: %v; want 0 for us-east-1", dp)
	}
	if held.Service != "cosmoslease" {
		t.Errorf("service.name %q, want cosmoslease", held.Service)
	}
	if m := metrics["cosmoslease.lease.acquisitions"]; m.Metric == nil || m.GetSum().GetDataPoints()[0].GetAsInt() != 1 {
		t.Errorf("acquisitions: %v", m.Metric)
	}
	if m := metrics["cosmoslease.lease.renewal.duration"]; m.Metric == nil || m.Unit != "s" || m.GetHistogram().GetDataPoints()[0].GetCount() < 1 {
		t.Errorf("renewal.duration: %v", m.Metric)
	}
	if m := metrics["azure.cosmosdb.client.operation.request_charge"]; m.Metric == nil || m.GetHistogram().GetDataPoints()[0].GetSum() <= 0 {
		t.Errorf("request_charge: %v", m.Metric)
	}
	ops := map[string]bool{}
	for _, dp := range metrics["cosmoslease.operation.duration"].GetHistogram().GetDataPoints() {
		ops[otlptest.Attr(dp.Attributes, "cosmoslease.operation")] = true
	}
	for _, op := range []string{"check", "read", "acquire", "renew", "release"} {
		if !ops[op] {
			t.Errorf("operation.duration has no %s: %v", op, ops)
		}
	}

	spans := rc.Spans()
	byName := map[string][]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	t.Logf("spans: %v", keys(byName))
	for _, name := range []string{"cosmoslease.TryAcquire", "cosmoslease.Renew", "cosmoslease.Release"} {
		if len(byName[name]) == 0 {
			t.Fatalf("no %s span among %d spans: %v", name, len(spans), keys(byName))
		}
	}
	acq := byName["cosmoslease.TryAcquire"][0]
	if otlptest.Attr(acq.Attributes, "cosmoslease.outcome") != "acquired" || otlptest.Attr(acq.Attributes, "cosmoslease.lease.key") != "critical-section-lock" ||
		otlptest.Attr(acq.Attributes, "cosmoslease.lease.epoch") != "1" {
		t.Errorf("TryAcquire span attributes: %v", acq.Attributes)
	}
	var children []string
	for _, s := range spans {
		if string(s.ParentSpanId) == string(acq.SpanId) {
			children = append(children, s.Name)
		}
	}
	if len(children) < 2 {
		t.Errorf("TryAcquire's children: %v, want the SDK's read and create", children)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestInspectWatchExportsOverOTLP: inspect --watch, interrupted, has exported its requests' metrics.
func TestInspectWatchExportsOverOTLP(t *testing.T) {
	rc := otlptest.Start()
	defer rc.Close()
	e := append(env(t), "OTEL_EXPORTER_OTLP_ENDPOINT="+rc.URL, "OTEL_SERVICE_NAME=", "OTEL_RESOURCE_ATTRIBUTES=",
		"OTEL_EXPORTER_OTLP_PROTOCOL=", "OTEL_METRICS_EXPORTER=", "OTEL_TRACES_EXPORTER=", "OTEL_SDK_DISABLED=")
	p := start(t, e, "inspect", "--watch", "--emulator")
	time.Sleep(2500 * time.Millisecond) // a redraw every 2 s
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 130 {
		t.Fatalf("inspect --watch exit %d after SIGINT, want 130: %s", code, p.stderr.String())
	}
	ops := map[string]uint64{}
	for _, dp := range rc.Metrics()["cosmoslease.operation.duration"].GetHistogram().GetDataPoints() {
		ops[otlptest.Attr(dp.Attributes, "cosmoslease.operation")] += dp.GetCount()
	}
	if ops["check"] != 1 || ops["list"] < 1 {
		t.Fatalf("requests exported: %v, want Open's check and at least one list", ops)
	}
}

// TestCronServesMetrics: cron --metrics-addr serves the library's instruments, occurrence after occurrence.
func TestCronServesMetrics(t *testing.T) {
	e := env(t)
	if code := start(t, e, "inspect", "--emulator").wait(t); code != 0 {
		t.Fatalf("inspect exit %d", code)
	}
	p := start(t, e, "cron", "--emulator", "--json", "--schedule", "*/2 * * * * *", "--region", "eastus", "--instance", "eastus-vm",
		"--preferred-regions", "eastus", "--lease", "cron-metrics", "--metrics-addr", "127.0.0.1:0", "--", "true")
	url := metricsURL(t, p)
	eventually(t, func() string {
		v, ok, body := scrape(t, url, "cosmoslease_lease_acquisitions_total", `cosmoslease_lease_key="cron-metrics"`, `cosmoslease_owner="eastus-vm"`, `cloud_region="eastus"`)
		if !ok || v < 2 {
			p.mu.Lock()
			evs := fmt.Sprint(p.events)
			p.mu.Unlock()
			return fmt.Sprintf("acquisitions %v (%v), want two occurrences' at least; events %s; scrape:\n%s", v, ok, evs, body)
		}
		if _, ok, _ := scrape(t, url, "cosmoslease_lease_held", `cosmoslease_lease_key="cron-metrics"`); !ok {
			return "no held gauge for the cron's lease; scrape:\n" + body
		}
		// The job's last success, a Unix time within the last minute, under the name operators alert on.
		if v, ok, _ := scrape(t, url, "cosmoslease_occurrence_last_success_timestamp_seconds", `cosmoslease_lease_key="cron-metrics"`); !ok ||
			time.Since(time.Unix(int64(v), 0)) > time.Minute {
			return fmt.Sprintf("last success %v (%v); scrape:\n%s", v, ok, body)
		}
		return ""
	})
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 130 {
		t.Fatalf("cron exit %d after SIGINT, want 130: %s", code, p.stderr.String())
	}
}
