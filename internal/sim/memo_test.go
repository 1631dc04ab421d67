package sim

import (
	"reflect"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
)

// The memo answers what leasedoc.Decode answers, every time, and each caller's copy is its own.
func TestDecodeMemoAnswersAsDecode(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	doc := func(renewals int64, job string) []byte {
		d := &leasedoc.Doc{ID: "lease-k", LeaseKey: "k", LeaseID: "l1", OwnerID: "p0", Epoch: 3, Renewals: renewals,
			AcquiredAt: at, ExpiresAt: at.Add(time.Minute), RenewedAt: at.Add(time.Duration(renewals) * time.Second), Duration: time.Minute,
			Metadata: leasedoc.Metadata{InstanceID: "i", Region: "eastus", Hostname: "h", Extra: map[string]string{"occurrence": "x"}}}
		if job != "" {
			d.Job = []byte(job)
		}
		b, err := leasedoc.Encode(d, "")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bodies := [][]byte{doc(1, ""), doc(2, `{"cursor":"2026-12-07T10:00:00Z"}`), doc(1, ""), doc(3, ""), doc(2, `{"cursor":"2026-12-07T10:00:00Z"}`),
		[]byte(`{"id":"lease-k","leaseKey":"k"}`), doc(3, "")}
	m := newDecodeMemo()
	for round := range 3 {
		for i, b := range bodies {
			want, werr := leasedoc.Decode(b, "lease-k")
			got, gerr := m.decode(b, "lease-k")
			if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("round %d body %d: error %v, want %v", round, i, gerr, werr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d body %d: %+v, want %+v", round, i, got, want)
			}
			if got == nil {
				continue
			}
			// A caller changing its copy changes nothing for the next.
			got.ETag, got.Metadata.Extra["occurrence"] = "changed", "changed"
			if len(got.Job) > 0 {
				got.Job[0] = 'X'
			}
		}
	}
}
