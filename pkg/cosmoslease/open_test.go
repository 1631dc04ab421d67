package cosmoslease

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOpen_SetupProblemsAreExplained(t *testing.T) {
	b := newServerBed(t, DefaultPartitionKeyPath)
	wrongPK := b.srv.NewContainer(t, "/tenant")
	ttl := func(seconds int32) string {
		return b.srv.NewContainerWith(t, azcosmos.ContainerProperties{DefaultTimeToLive: &seconds,
			PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{DefaultPartitionKeyPath}}})
	}
	expiring, perItem := ttl(3600), ttl(-1)
	cases := []struct {
		name  string
		tweak func(*Options)
		want  []string
	}{
		{"missing container", func(o *Options) { o.Container = "no-such-container" },
			[]string{`container "no-such-container" does not exist`, "partition key /leaseKey"}},
		{"missing database", func(o *Options) { o.Database = "no-such-db" },
			[]string{`database "no-such-db" does not exist`}},
		{"wrong partition key", func(o *Options) { o.Container = wrongPK },
			[]string{"is partitioned on /tenant", "need /leaseKey"}},
		{"default time-to-live expires documents", func(o *Options) { o.Container = expiring },
			[]string{"expires items after 3600 s", "reset their epoch", "-1"}},
		{"bad key", func(o *Options) {
			o.Transport = &statusTransport{next: &http.Client{}, status: 401, code: "Unauthorized", match: "/colls/"}
		}, []string{"rejected our credentials (401)", "AccountKey"}},
		{"no data role", func(o *Options) {
			o.Transport = &statusTransport{next: &http.Client{}, status: 403, code: "Forbidden", match: "/colls/"}
		}, []string{"(403)", "Cosmos DB Built-in Data Contributor", "00000000-0000-0000-0000-000000000002"}},
		{"multiple write regions", func(o *Options) {
			o.Transport = &faultTransport{next: &http.Client{}, f: newFaults(), account: func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"enableMultipleWriteLocations":false`), []byte(`"enableMultipleWriteLocations":true`), 1)
			}}
		}, []string{"multiple regions", "two instances could both hold the lease"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := b.options("a")
			tc.tweak(&opts)
			_, err := Open(context.Background(), opts)
			if !errors.Is(err, ErrSetup) {
				t.Fatalf("Open = %v, want ErrSetup", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	t.Run("time-to-live only for items that carry one", func(t *testing.T) {
		opts := b.options("a")
		opts.Container = perItem
		c, err := Open(context.Background(), opts)
		if err != nil {
			t.Fatalf("Open on a container with default time-to-live -1 = %v", err)
		}
		c.Close()
	})
	t.Run("multiple write regions allowed explicitly", func(t *testing.T) {
		opts := b.options("a")
		opts.AllowMultipleWriteRegions = true
		opts.Transport = &faultTransport{next: &http.Client{}, f: newFaults(), account: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"enableMultipleWriteLocations":false`), []byte(`"enableMultipleWriteLocations":true`), 1)
		}}
		c, err := Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

func TestOpen_BadInputIsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Options)
		want  string
	}{
		{"no owner", func(o *Options) { o.OwnerID = " " }, "OwnerID is empty"},
		{"renew interval too long", func(o *Options) { o.RenewInterval = 3 * time.Second },
			"RenewInterval (3s) must be shorter than RenewDeadline (2s)"},
		{"deadline too close to duration", func(o *Options) { o.RenewDeadline = 2500 * time.Millisecond },
			"LeaseDuration (3s) must exceed RenewDeadline (2.5s) by at least 1s"},
		{"negative duration", func(o *Options) { o.LeaseDuration = -time.Second }, "LeaseDuration is negative"},
		{"retry period", func(o *Options) { o.RetryPeriod = 4 * time.Second }, "RetryPeriod (4s) must be shorter than LeaseDuration (3s)"},
		{"nested partition key", func(o *Options) { o.PartitionKeyPath = "/a/b" }, "must name one top-level property"},
		{"no account", func(o *Options) {}, "no Cosmos DB account configured"},
		{"endpoint not a URL", func(o *Options) { o.Endpoint = "myaccount" }, `"myaccount" is not a URL`},
		{"connection string without key", func(o *Options) { o.ConnectionString = "AccountEndpoint=https://x.documents.azure.com:443/" },
			"needs both AccountEndpoint"},
		{"key not base64", func(o *Options) {
			o.ConnectionString = "AccountEndpoint=https://x.documents.azure.com:443/;AccountKey=not*base64!;"
		}, "not valid base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions("a")
			tc.tweak(&opts)
			_, err := Open(context.Background(), opts)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want ErrInvalid saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "base64!") {
				t.Fatalf("error repeats the key: %v", err)
			}
		})
	}
}

func TestDefaultsFollowTheSample(t *testing.T) {
	o, err := Options{OwnerID: "a"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.LeaseDuration != 60*time.Second || o.RenewInterval != 40*time.Second || o.RenewDeadline != 50*time.Second ||
		o.RetryPeriod != 5*time.Second || o.Database != "DistributedLeasing" || o.Container != "Leases" || o.PartitionKeyPath != "/leaseKey" {
		t.Fatalf("defaults: %+v", o)
	}
	// A shorter duration alone still gives a consistent set.
	if _, err := (Options{OwnerID: "a", LeaseDuration: 10 * time.Second}).withDefaults(); err != nil {
		t.Fatalf("duration 10s alone: %v", err)
	}
}

func TestServer_CustomPartitionKeyPaths(t *testing.T) {
	for _, pk := range []string{"/pk", "/id"} {
		t.Run(pk, func(t *testing.T) {
			b := newServerBed(t, pk)
			a, fa := b.client(t, "a", func(o *Options) { o.ManualRenew = true })
			bc, _ := b.client(t, "b", nil)
			la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
			if err := la.Renew(context.Background()); err != nil {
				t.Fatal(err)
			}
			if fa.count("replace") != 1 {
				t.Fatalf("replaces = %d", fa.count("replace"))
			}
			heldErr(t, func() error { _, err := bc.TryAcquire(context.Background(), "job"); return err }())
			if err := la.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
			lb := must[*Lease](t)(bc.TryAcquire(context.Background(), "job"))
			defer lb.Release(context.Background())
			if lb.Epoch() != 2 {
				t.Fatalf("epoch = %d", lb.Epoch())
			}
			if states := must[[]State](t)(bc.List(context.Background())); len(states) != 1 || states[0].Owner != "b" {
				t.Fatalf("List = %+v", states)
			}
		})
	}
}

func TestServer_OperationsAreReported(t *testing.T) {
	b := newServerBed(t, DefaultPartitionKeyPath)
	var mu sync.Mutex
	var ops []Operation
	a, _ := b.client(t, "a", func(o *Options) {
		o.ManualRenew = true
		o.OnOperation = func(op Operation) { mu.Lock(); ops = append(ops, op); mu.Unlock() }
	})
	mu.Lock()
	ops = nil
	mu.Unlock()
	la := must[*Lease](t)(a.TryAcquire(context.Background(), "job"))
	if err := la.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = la.Release(context.Background())
	taken := func() []Operation {
		mu.Lock()
		defer mu.Unlock()
		out := ops
		ops = nil
		return out
	}
	var names []string
	for _, op := range taken() {
		names = append(names, op.Name+":"+op.Outcome)
		if op.Charge <= 0 || op.Latency <= 0 || op.Key != "job" {
			t.Errorf("operation without charge, latency or key: %+v", op)
		}
	}
	if got := strings.Join(names, " "); got != "read:not_found create:ok renew:ok release:ok" {
		t.Fatalf("operations = %s", got)
	}

	// A list is one query: its charge is the query's, not the page's charge once per document.
	for _, k := range []string{"x", "y"} {
		if _, err := a.TryAcquire(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	taken()
	if _, err := a.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := taken(); len(got) != 1 || got[0].Name != "list" || got[0].Charge != 1 {
		t.Fatalf("list operations %+v, want one with charge 1 (the server charges 1 per request)", got)
	}
}

// statusTransport answers requests whose path contains match with a fixed error status, as Azure would.
type statusTransport struct {
	next   policy.Transporter
	status int
	code   string
	match  string
}

func (s *statusTransport) Do(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, s.match) {
		return synth(r, s.status, s.code, nil), nil
	}
	return s.next.Do(r)
}
