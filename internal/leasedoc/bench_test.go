package leasedoc

import (
	"testing"
	"time"
)

func benchDoc() *Doc {
	at := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	return &Doc{ID: "lease-critical-section-lock", LeaseKey: "critical-section-lock", LeaseID: "0f8fad5b-d9cb-469f-a165-70867728950e",
		OwnerID: "us-east-1", AcquiredAt: at, RenewedAt: at, ExpiresAt: at.Add(time.Minute), Epoch: 42, Renewals: 7, Duration: time.Minute,
		Metadata: Metadata{InstanceID: "us-east-1", Region: "us-east", Hostname: "vm-1", StartTime: at}}
}

func BenchmarkEncode(b *testing.B) {
	d := benchDoc()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(d, "leaseKey"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	body, _ := Encode(benchDoc(), "leaseKey")
	body = append(body[:len(body)-1], []byte(`,"_etag":"\"0000abc1-0000-0000-0000-000000000000\"","_ts":1795673576}`)...)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Decode(body, "lease-critical-section-lock"); err != nil {
			b.Fatal(err)
		}
	}
}
