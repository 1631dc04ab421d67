package faultproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

func open(t *testing.T, base, container, owner string) *cosmoslease.Client {
	t.Helper()
	srv := cosmostest.Get(t)
	c, err := cosmoslease.Open(context.Background(), cosmoslease.Options{ConnectionString: emulator.ConnectionString(base),
		Database: srv.Database, Container: container, OwnerID: owner, ManualRenew: true,
		LeaseDuration: 3 * time.Second, RenewInterval: time.Second, RetryPeriod: 100 * time.Millisecond, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Every request of a client behind the proxy passes through it, the account's advertised endpoint included.
func TestProxyIsNotBypassed(t *testing.T) {
	srv := cosmostest.Get(t)
	container := srv.NewContainer(t, "/leaseKey")
	p, err := New(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base, err := p.Listen("a")
	if err != nil {
		t.Fatal(err)
	}
	c := open(t, base, container, "a")
	l, err := c.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := l.Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Release(context.Background())
	n := p.Counts()
	if n["account"] == 0 || n["documents"] != 2+5+1 {
		t.Fatalf("counts %v: want the account read and 8 document requests (read, create, 5 renewals, release) through the proxy", n)
	}
}

// Each fault reaches the library as it would from Azure.
func TestProxyFaults(t *testing.T) {
	srv := cosmostest.Get(t)
	container := srv.NewContainer(t, "/leaseKey")
	p, _ := New(srv.Endpoint)
	defer p.Close()
	base, _ := p.Listen("a")
	otherBase, _ := p.Listen("b")
	a := open(t, base, container, "a")
	b := open(t, otherBase, container, "b")
	l, err := a.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}

	// A renewal whose reply is lost after the server applied it is adopted on the next renewal.
	p.SetFaults(Faults{LostReply: 1})
	_ = l.Renew(context.Background())
	p.SetFaults(Faults{})
	if err := l.Renew(context.Background()); err != nil {
		t.Fatalf("renewal after a lost reply: %v", err)
	}
	if p.Counts()["lostReply"] == 0 {
		t.Fatal("no lost reply was injected")
	}

	// Throttling, 503 and 408 are passing: the lease stays held.
	for _, f := range []Faults{{Throttle: 1}, {Unavailable: 1}, {Timeout: 1}, {Drop: 1}} {
		p.SetFaults(f)
		_ = l.Renew(context.Background())
		p.SetFaults(Faults{})
		if err := l.Renew(context.Background()); err != nil {
			t.Fatalf("after %+v: %v", f, err)
		}
	}
	n := p.Counts()
	for _, k := range []string{"throttle", "unavailable", "timeout408", "drop"} {
		if n[k] == 0 {
			t.Fatalf("no %s injected: %v", k, n)
		}
	}

	// A partitioned holder cannot renew and loses the lease by its deadline; the other client takes over.
	p.Partition("a", true)
	deadline := time.Now().Add(10 * time.Second)
	for l.Err() == nil && time.Now().Before(deadline) {
		_ = l.Renew(context.Background())
	}
	if !errors.Is(l.Err(), cosmoslease.ErrLeaseLost) {
		t.Fatalf("partitioned holder still holds: %v", l.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lb, err := b.Acquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if lb.Epoch() != 2 || p.Counts()["partitioned"] == 0 {
		t.Fatalf("takeover at epoch %d, partitioned %d", lb.Epoch(), p.Counts()["partitioned"])
	}
	p.Partition("a", false)
	if err := l.Renew(context.Background()); err == nil || !strings.Contains(err.Error(), "lease lost") {
		t.Fatalf("healed holder renewed: %v", err)
	}
}

// A lagging replica serves the version before the newest write, and only to a read whose session token allows
// it, as a replica of a Session-consistency account does. Checked with the SDK itself.
func TestProxyLaggingReplicaHonoursSessionTokens(t *testing.T) {
	srv := cosmostest.Get(t)
	container := srv.NewContainer(t, "/pk")
	p, _ := New(srv.Endpoint)
	defer p.Close()
	base, _ := p.Listen("a")
	key, _ := azcosmos.NewKeyCredential(emulator.Key)
	client, err := azcosmos.NewClientWithKey(base, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := client.NewContainer(srv.Database, container)
	ctx, pk := context.Background(), azcosmos.NewPartitionKeyString("p")
	first, err := c.CreateItem(ctx, pk, []byte(`{"id":"d","pk":"p","v":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.ReplaceItem(ctx, pk, "d", []byte(`{"id":"d","pk":"p","v":2}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.SessionToken == nil || second.SessionToken == nil || *first.SessionToken == *second.SessionToken {
		t.Fatalf("writes got session tokens %v and %v, want two different ones", first.SessionToken, second.SessionToken)
	}
	p.SetFaults(Faults{StaleRead: 1})
	version := func(token *string) int {
		t.Helper()
		resp, err := c.ReadItem(ctx, pk, "d", &azcosmos.ItemOptions{SessionToken: token})
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ V int }
		_ = json.Unmarshal(resp.Value, &d)
		return d.V
	}
	if v := version(nil); v != 1 {
		t.Fatalf("a read without a token from a lagging replica saw version %d, want 1", v)
	}
	if v := version(first.SessionToken); v != 1 {
		t.Fatalf("a read with the first write's token from a lagging replica saw version %d, want 1", v)
	}
	if v := version(second.SessionToken); v != 2 {
		t.Fatalf("a read with the newest write's token saw version %d, want 2", v)
	}
	if p.Counts()["staleRead"] != 2 {
		t.Fatalf("stale reads %d, want 2", p.Counts()["staleRead"])
	}
}

// Observe sees each answered request with its client's name and status: a renewal is a replace answered 200, a
// renewal with a stale ETag a replace answered 412.
func TestProxyObserve(t *testing.T) {
	srv := cosmostest.Get(t)
	container := srv.NewContainer(t, "/leaseKey")
	p, err := New(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var mu sync.Mutex
	seen := map[string]int{}
	p.Observe(func(name string, r *http.Request, status int) {
		mu.Lock()
		seen[fmt.Sprintf("%s %s %d", name, cosmostest.Kind(r), status)]++
		mu.Unlock()
	})
	a, err := p.Listen("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Listen("b")
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := open(t, a, container, "a"), open(t, b, container, "b")
	l, err := ca.TryAcquire(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	var held *cosmoslease.HeldError
	if _, err := cb.TryAcquire(context.Background(), "job"); !errors.As(err, &held) {
		t.Fatalf("b: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["a replace 200"] != 1 || seen["b read 200"] != 1 || seen["a account 200"] == 0 || seen["b replace 200"] != 0 {
		t.Fatalf("observed %v", seen)
	}
}
