package cli

import (
	"net"
	"testing"
)

// TestTelemetrySettingsAreUsageErrors: a metrics address or an OTEL_* setting that cannot work stops run before
// it contends, with one line naming the setting and what to write instead.
func TestTelemetrySettingsAreUsageErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"not HOST:PORT", nil, []string{"--metrics-addr", "9464"}, []string{`metrics address "9464" is not HOST:PORT`, "127.0.0.1:9464"}},
		{"empty", nil, []string{"--metrics-addr", ""}, []string{"--metrics-addr is empty"}},
		{"address in use", nil, []string{"--metrics-addr", busy.Addr().String()}, []string{"cannot serve metrics at " + busy.Addr().String()}},
		{"OTLP over gRPC", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, nil,
			[]string{"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "http/protobuf", "4318"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t).withServer()
			for k, v := range tc.env {
				h.env[k] = v
			}
			r := h.run(append([]string{"run", "--instance", "a", "--emulator", "--json"}, tc.args...)...)
			r.expect(t, ExitUsage, tc.want...)
			if r.stdout != "" {
				t.Fatalf("run started anyway: %s", r.stdout)
			}
		})
	}
}
