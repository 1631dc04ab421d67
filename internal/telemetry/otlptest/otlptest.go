// Package otlptest is an OTLP/HTTP collector for tests: it decodes the protobuf requests that exporters send to
// /v1/metrics and /v1/traces, and answers them as a collector does.
package otlptest

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"

	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Receiver collects what exporters send it.
type Receiver struct {
	// URL is the value for OTEL_EXPORTER_OTLP_ENDPOINT.
	URL string
	srv *httptest.Server

	mu      sync.Mutex
	metrics []*collmetrics.ExportMetricsServiceRequest
	traces  []*colltrace.ExportTraceServiceRequest
	refused []string
}

// Start listens on a local port; Close stops it.
func Start() *Receiver {
	rc := &Receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	rc.URL = rc.srv.URL
	return rc
}

func (rc *Receiver) Close() { rc.srv.Close() }

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			rc.refuse(w, r, err.Error())
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		rc.refuse(w, r, "not an OTLP/HTTP protobuf request")
		return
	}
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/metrics":
		m := &collmetrics.ExportMetricsServiceRequest{}
		if err := proto.Unmarshal(b, m); err != nil {
			rc.refuse(w, r, err.Error())
			return
		}
		rc.mu.Lock()
		rc.metrics = append(rc.metrics, m)
		rc.mu.Unlock()
		resp = &collmetrics.ExportMetricsServiceResponse{}
	case "/v1/traces":
		m := &colltrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, m); err != nil {
			rc.refuse(w, r, err.Error())
			return
		}
		rc.mu.Lock()
		rc.traces = append(rc.traces, m)
		rc.mu.Unlock()
		resp = &colltrace.ExportTraceServiceResponse{}
	default:
		rc.refuse(w, r, "no such path")
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rc *Receiver) refuse(w http.ResponseWriter, r *http.Request, why string) {
	rc.mu.Lock()
	rc.refused = append(rc.refused, r.Method+" "+r.URL.Path+": "+why)
	rc.mu.Unlock()
	http.Error(w, why, http.StatusBadRequest)
}

// Refused lists the requests that were not OTLP/HTTP protobuf exports.
func (rc *Receiver) Refused() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.refused...)
}

// Metric is one metric as last exported, with the resource's service.name.
type Metric struct {
	*metricspb.Metric
	Service string
}

// Metrics returns each metric, by name, as the latest export that carried it had it.
func (rc *Receiver) Metrics() map[string]Metric {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]Metric{}
	for _, req := range rc.metrics {
		for _, rm := range req.ResourceMetrics {
			service := Attr(rm.Resource.GetAttributes(), "service.name")
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					out[m.Name] = Metric{Metric: m, Service: service}
				}
			}
		}
	}
	return out
}

// Span is one exported span, with its scope's and its resource's names.
type Span struct {
	*tracepb.Span
	Scope, Service string
}

// Spans returns every span received, in the order received.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Span
	for _, req := range rc.traces {
		for _, rs := range req.ResourceSpans {
			service := Attr(rs.Resource.GetAttributes(), "service.name")
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, Span{Span: s, Scope: ss.Scope.GetName(), Service: service})
				}
			}
		}
	}
	return out
}

// Attr is the value of attribute key among kvs, as text; "" when there is none.
func Attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key != key {
			continue
		}
		switch v := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10)
		}
		return kv.Value.String()
	}
	return ""
}
