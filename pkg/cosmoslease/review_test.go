package cosmoslease

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Findings of the third adversarial review outside the fence, each failing on the code before its fix.

// dotnetMaxValue is .NET's DateTime.MaxValue, which a sample written in .NET may store as expiresAt to mean
// "never expires".
var dotnetMaxValue = time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)

// Regression (third review, 2): sampleHold computed expiresAt − _ts, which saturates at the largest Duration;
// adding the margin then wrapped negative, which read as expired: a sample document that never expires was taken
// over at once.
func TestSample_ExpiresAtFarInTheFutureIsHeld(t *testing.T) {
	b := newFakeBed()
	b.st.Put("lease-job", []byte(sampleBody("job", "dotnet-1", "sample-lease", t0, dotnetMaxValue)))
	c, _ := b.client(t, "go-1", nil)
	for _, at := range []time.Duration{0, time.Second, time.Minute, 24 * time.Hour, 365 * 24 * time.Hour} {
		b.at(at)
		l, err := c.TryAcquire(context.Background(), "job")
		if l != nil {
			t.Fatalf("took over a sample lease that never expires, %s after its write", at)
		}
		if held := heldErr(t, err); !held.Holder.Sample || !held.Holder.Held || held.Holder.ExpiresIn < 100*365*24*time.Hour {
			t.Fatalf("at %s: %+v", at, held.Holder)
		}
	}
}

// The same against the server, with the document's _ts and the response's Date as Cosmos DB stamps them.
func TestSampleServer_ExpiresAtFarInTheFutureIsHeld(t *testing.T) {
	b := newServerBed(t, DefaultPartitionKeyPath)
	b.put(t, "job", sampleBody("job", "dotnet-1", "sample-lease", time.Now(), dotnetMaxValue))
	c, _ := b.client(t, "go-1", nil) // lease 3 s, deadline 2 s: an ordinary version is taken over after 4 s
	for _, wait := range []time.Duration{0, 4500 * time.Millisecond} {
		time.Sleep(wait)
		l, err := c.TryAcquire(context.Background(), "job")
		if l != nil {
			_ = l.Release(context.Background())
			t.Fatalf("took over a sample lease that never expires (after waiting %s)", wait)
		}
		if held := heldErr(t, err); !held.Holder.Sample || !held.Holder.Held {
			t.Fatalf("after %s: %+v", wait, held.Holder)
		}
	}
}

// Regression (third review, 8): Client.Options returned the client's own Metadata map, so editing it changed what
// renewals wrote (and raced with them).
func TestClient_OptionsMetadataIsACopy(t *testing.T) {
	b := newFakeBed()
	c, _ := b.client(t, "a", func(o *Options) { o.Metadata = map[string]string{"team": "payments"} })
	c.Options().Metadata["team"] = "edited"
	l := must[*Lease](t)(c.TryAcquire(context.Background(), "job"))
	noErr(t, l.Renew(context.Background()))
	if got := b.doc(t, "job").Metadata.Extra["team"]; got != "payments" {
		t.Fatalf("the renewal wrote team=%q after the map from Options() was edited; want payments", got)
	}
	if c.Options().Metadata["team"] != "payments" {
		t.Fatal("Options() does not show the metadata in force")
	}
}

// Regression (third review, 9): a PartitionKeyPath naming a field of the lease document was accepted; Encode then
// wrote that field twice (the second time with the lease key), and adoption, renewal and inspection read the
// wrong value.
func TestOptions_PartitionKeyPathOnALeaseField(t *testing.T) {
	for _, path := range []string{"/leaseId", "/ownerId", "/epoch", "/renewals", "/released", "/leaseDurationMs", "/metadata",
		"/acquiredAt", "/expiresAt", "/renewedAt", "/releasedAt", "/LeaseId", "/EPOCH", "/Id", "/_etag", "/_ts", "/ttl"} {
		_, err := Options{OwnerID: "a", PartitionKeyPath: path}.withDefaults()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path) {
			t.Errorf("PartitionKeyPath %s: %v; want ErrInvalid naming it", path, err)
		}
	}
	for _, path := range []string{"/leaseKey", "/id", "/pk", "/partitionKey", "/tenant"} {
		if _, err := (Options{OwnerID: "a", PartitionKeyPath: path}).withDefaults(); err != nil {
			t.Errorf("PartitionKeyPath %s: %v; want it accepted", path, err)
		}
	}
}

// Regression (third review, 5): Inspect took any 404 on its read for "no document", so a lease in a deleted
// container was reported free; List gave a bare 404. Both are ErrSetup now, with the words the create path uses.
func TestConformance_ReadsInADeletedContainerAreASetupError(t *testing.T) {
	beds(t, func(t *testing.T, b bed) {
		a, _ := b.client(t, "a", nil)
		l := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
		defer l.Release(context.Background())
		if s := must[State](t)(a.Inspect(context.Background(), "never-acquired")); s.Status() != "free" {
			t.Fatalf("a key never acquired, in a container that exists: %+v", s)
		}
		b.dropContainer(t)
		_, createErr := a.TryAcquire(context.Background(), "other")
		if !errors.Is(createErr, ErrSetup) {
			t.Fatalf("the create path: %v", createErr)
		}
		_, explanation, _ := strings.Cut(createErr.Error(), "(HTTP 404): ")
		s, err := a.Inspect(context.Background(), "job")
		if !errors.Is(err, ErrSetup) || !strings.HasSuffix(err.Error(), explanation) {
			t.Fatalf("Inspect in a deleted container = %+v, %v; want ErrSetup saying %q", s, err, explanation)
		}
		states, err := a.List(context.Background())
		if !errors.Is(err, ErrSetup) || !strings.HasSuffix(err.Error(), explanation) {
			t.Fatalf("List in a deleted container = %+v, %v; want ErrSetup saying %q", states, err, explanation)
		}
	})
}
