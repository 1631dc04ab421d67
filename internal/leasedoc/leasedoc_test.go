package leasedoc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestID(t *testing.T) {
	for _, tc := range []struct {
		key, want, err string
	}{
		{"critical-section-lock", "lease-critical-section-lock", ""},
		{"Job", "lease-Job", ""},
		{"job:eu.west_1", "lease-job:eu.west_1", ""},
		{"ünïcode", "lease-ünïcode", ""},
		{"", "", "empty"},
		{"a/b", "", `contains '/'`},
		{`a\b`, "", `contains '\\'`},
		{"a?b", "", `contains '?'`},
		{"a#b", "", `contains '#'`},
		{"a\nb", "", "control character"},
		{" a", "", "white space"},
		{strings.Repeat("x", 249), "lease-" + strings.Repeat("x", 249), ""},
		{strings.Repeat("x", 250), "", "at most 249 bytes"},
		{"\xff", "", "UTF-8"},
	} {
		id, err := ID(tc.key)
		if tc.err == "" {
			if err != nil || id != tc.want {
				t.Errorf("ID(%q) = %q, %v; want %q", tc.key, id, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ID(%q) error = %v, want one saying %q", tc.key, err, tc.err)
		}
	}
}

func TestRoundTripKeepsTheSampleFields(t *testing.T) {
	at := time.Date(2025, 12, 25, 12, 0, 0, 0, time.UTC)
	d := &Doc{ID: "lease-k", LeaseKey: "k", LeaseID: "abc", OwnerID: "us-east-1", AcquiredAt: at, RenewedAt: at,
		ExpiresAt: at.Add(time.Minute), Epoch: 7, Renewals: 3, Duration: time.Minute,
		Metadata: Metadata{InstanceID: "us-east-1", Region: "us-east", Hostname: "h", StartTime: at, Extra: map[string]string{"team": "x", "region": "ignored"}}}
	b, err := Encode(d, "leaseKey")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"id": "lease-k", "leaseKey": "k", "leaseId": "abc", "ownerId": "us-east-1",
		"acquiredAt": "2025-12-25T12:00:00Z", "expiresAt": "2025-12-25T12:01:00Z", "epoch": 7.0, "renewals": 3.0,
		"released": false, "leaseDurationMs": 60000.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	meta := m["metadata"].(map[string]any)
	if meta["region"] != "us-east" || meta["team"] != "x" || meta["startTime"] != "2025-12-25T12:00:00Z" {
		t.Errorf("metadata = %v", meta)
	}
	back, err := Decode(b, "lease-k")
	if err != nil {
		t.Fatal(err)
	}
	if back.Epoch != 7 || back.Duration != time.Minute || !back.ExpiresAt.Equal(d.ExpiresAt) || back.Metadata.Extra["team"] != "x" {
		t.Fatalf("decoded %+v", back)
	}
}

func TestEncodeAddsOtherPartitionKeyProperty(t *testing.T) {
	b, err := Encode(&Doc{ID: "lease-k", LeaseKey: "k", Epoch: 1}, "tenant")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if m["tenant"] != "k" {
		t.Fatalf("tenant = %v in %s", m["tenant"], b)
	}
}

func TestDecodeRefusesWhatIsNotALease(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`not json`, "invalid character"},
		{`[1,2]`, "cannot unmarshal array"},
		{`{"id":"lease-k","leaseKey":"k","epoch":"seven","ownerId":"o","leaseId":"l"}`, "field epoch holds a JSON string"},
		{`{"id":"lease-k","leaseKey":"k","ownerId":"o","leaseId":"l","leaseDurationMs":60000}`, "epoch is missing"},
		{`{"id":"lease-k","leaseKey":"k","ownerId":"o","leaseId":"l","released":false,"expiresAt":"2025-12-25T12:01:00Z"}`, "epoch is missing"},
		{`{"id":"lease-k","leaseKey":"k","ownerId":"o","leaseId":"l"}`, "lacks the sample's ownerId, leaseId or expiresAt"},
		{`{"id":"lease-k","leaseKey":"k","leaseId":"l","expiresAt":"2025-12-25T12:01:00Z"}`, "lacks the sample's ownerId"},
		{`{"id":"lease-k","leaseKey":"other","epoch":1,"ownerId":"o","leaseId":"l"}`, "does not match the id"},
		{`{"id":"lease-k","leaseKey":"k","epoch":-1,"ownerId":"o","leaseId":"l"}`, "must not be negative"},
		{`{"id":"lease-k","leaseKey":"k","epoch":1}`, "no ownerId or leaseId"},
		{`{"id":"lease-k","leaseKey":"k","epoch":1,"ownerId":"o","leaseId":"l","expiresAt":"tomorrow"}`, `expiresAt is "tomorrow"`},
		{`{"id":"lease-k","leaseKey":"k","epoch":1,"ownerId":"o","leaseId":"l","metadata":5}`, "metadata must be a JSON object"},
	} {
		_, err := Decode([]byte(tc.body), "lease-k")
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want an *Error saying %q", tc.body, err, tc.want)
		}
	}
}

// The reference sample's document, exactly as its README shows it (with the _ts Cosmos DB adds), is a lease in
// sample form: its holder named, epoch 0, no promised duration, not released.
func TestDecodeReadsTheSampleDocument(t *testing.T) {
	body := `{
  "id": "lease-critical-section-lock",
  "leaseKey": "critical-section-lock",
  "leaseId": "abc123-def456-ghi789",
  "ownerId": "us-east-1",
  "acquiredAt": "2025-12-25T12:00:00Z",
  "expiresAt": "2025-12-25T12:01:00.1234567Z",
  "metadata": {
    "instanceId": "us-east-1",
    "region": "us-east",
    "hostname": "MACHINE-NAME",
    "startTime": "2025-12-25T12:00:00Z"
  },
  "_etag": "\"0000abc1-0000-0000-0000-000000000000\"",
  "_ts": 1766664000
}`
	d, err := Decode([]byte(body), "lease-critical-section-lock")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 12, 25, 12, 1, 0, 123456700, time.UTC)
	if !d.Sample || d.Epoch != 0 || d.Duration != 0 || d.Released || d.Renewals != 0 || d.OwnerID != "us-east-1" ||
		d.LeaseID != "abc123-def456-ghi789" || d.Metadata.Region != "us-east" || !d.ExpiresAt.Equal(want) || d.TS != 1766664000 ||
		d.ETag != `"0000abc1-0000-0000-0000-000000000000"` {
		t.Fatalf("decoded %+v", d)
	}
	// Our own documents are never read as the sample's, even at epoch 0.
	ours, err := Decode([]byte(`{"id":"lease-k","leaseKey":"k","leaseId":"l","ownerId":"o","epoch":0,"leaseDurationMs":1000,"expiresAt":"2025-12-25T12:01:00Z"}`), "lease-k")
	if err != nil || ours.Sample {
		t.Fatalf("our document read as %+v, %v", ours, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"lease-k","leaseKey":"k","leaseId":"l","ownerId":"o","epoch":1,"leaseDurationMs":60000}`))
	f.Add([]byte(`{"id":"lease-k","leaseKey":"k","epoch":2,"released":true,"metadata":{"a":1}}`))
	f.Add([]byte(`{"epoch":null}`))
	f.Add([]byte(`{"id":"lease-k","leaseKey":"k","leaseId":"l","ownerId":"o","expiresAt":"2025-12-25T12:01:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b, "")
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same lease.
		again, err := Encode(d, "leaseKey")
		if err != nil {
			t.Fatal(err)
		}
		d2, err := Decode(again, d.ID)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
		if d2.Epoch != d.Epoch || d2.LeaseID != d.LeaseID || d2.Released != d.Released || d2.Duration != d.Duration {
			t.Fatalf("round trip changed the lease: %+v → %+v", d, d2)
		}
	})
}

// The operator's control (pkg/cosmoslease's control.go) is a property of its own, kept as written through a
// round trip, and absent from a document that has none; it is one of the document's own properties.
func TestControlRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	d := &Doc{ID: "lease-job", LeaseKey: "job", LeaseID: "l1", OwnerID: "a", Epoch: 3, AcquiredAt: at,
		Control: json.RawMessage(`{"paused":{"by":"alice","at":"2026-12-07T20:00:00Z","id":"x"}}`)}
	b, err := Encode(d, "leaseKey")
	if err != nil || !strings.Contains(string(b), `"control":{"paused":{"by":"alice"`) {
		t.Fatalf("encoded %s, %v", b, err)
	}
	back, err := Decode(b, "lease-job")
	if err != nil || string(back.Control) != string(d.Control) {
		t.Fatalf("decoded control %s, %v", back.Control, err)
	}
	d.Control = nil
	if b, _ := Encode(d, "leaseKey"); strings.Contains(string(b), "control") {
		t.Fatalf("a document without control encodes %s", b)
	}
	if !OwnProperty("control") || !OwnProperty("Control") {
		t.Fatal("control is not an own property")
	}
}
