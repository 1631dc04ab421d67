package cosmoslease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// The fence is Cosmos DB's own conditions (a patch's filter predicate, an ETag, a create's uniqueness), so every
// test here runs the real SDK against the Cosmos-protocol server; there is no in-memory model of it.

// fenceBed is a lease container for the holders and, beside it, a container of application items partitioned
// on /pk: the fence works on any container, not only the lease's.
type fenceBed struct {
	leases *serverBed
	srv    *cosmostest.Server
	name   string                    // the items container
	items  *azcosmos.ContainerClient // through a plain client
}

func newFenceBed(t *testing.T) *fenceBed {
	t.Helper()
	srv := cosmostest.Get(t)
	name := srv.NewContainer(t, "/pk")
	return &fenceBed{leases: newServerBed(t, DefaultPartitionKeyPath), srv: srv, name: name, items: srv.Container(t, name)}
}

// itemsVia is the items container through a client of its own whose requests pass through tr.
func (b *fenceBed) itemsVia(t *testing.T, tr policy.Transporter) *azcosmos.ContainerClient {
	t.Helper()
	opts := &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: tr}}
	var client *azcosmos.Client
	var err error
	if b.srv.ConnectionString != "" {
		client, err = azcosmos.NewClientFromConnectionString(b.srv.ConnectionString, opts)
	} else {
		var cred *azidentity.DefaultAzureCredential
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err == nil {
			client, err = azcosmos.NewClient(b.srv.Endpoint, cred, opts)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewContainer(b.srv.Database, b.name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fenceTimings: a holder that stops renewing is taken over about 1.5 s after its last renewal.
func fenceTimings(o *Options) {
	o.LeaseDuration, o.RenewInterval, o.RenewDeadline, o.RetryPeriod = 1500*time.Millisecond, 300*time.Millisecond, 500*time.Millisecond, 100*time.Millisecond
}

// holder acquires key as owner. A holder with manual renewal that never renews stands for one paused past its
// lease: nothing of it runs, so nothing renews.
func (b *fenceBed) holder(t *testing.T, owner, key string, manual bool) *Lease {
	t.Helper()
	c, _ := b.leases.client(t, owner, func(o *Options) { fenceTimings(o); o.ManualRenew = manual })
	l, err := c.Acquire(ctxTimeout(t, 15*time.Second), key)
	if err != nil {
		t.Fatalf("%s: acquire %s: %v", owner, key, err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

var orders = azcosmos.NewPartitionKeyString("orders")

// order is an application item.
type order struct {
	ID     string `json:"id"`
	PK     string `json:"pk"`
	Status string `json:"status"`
	By     string `json:"by"`
	Total  int    `json:"total"`
	Fence  *int64 `json:"fence"`
}

func (b *fenceBed) read(t *testing.T, id string) order {
	t.Helper()
	resp, err := b.items.ReadItem(context.Background(), orders, id, nil)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	var o order
	if err := json.Unmarshal(resp.Value, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// setStatus is a whole-document update: the order with a new status and author, the rest kept.
func setStatus(id, status, by string) func([]byte) ([]byte, error) {
	return func(current []byte) ([]byte, error) {
		o := order{ID: id, PK: "orders", Total: 42}
		if current != nil {
			if err := json.Unmarshal(current, &o); err != nil {
				return nil, err
			}
		}
		o.Status, o.By, o.Fence = status, by, nil
		return json.Marshal(o)
	}
}

func patchStatus(status, by string) azcosmos.PatchOperations {
	var ops azcosmos.PatchOperations
	ops.AppendSet("/status", status)
	ops.AppendSet("/by", by)
	return ops
}

func fencedBy(t *testing.T, err error, epoch int64) {
	t.Helper()
	var fe *FencedError
	if !errors.Is(err, ErrFenced) || !errors.As(err, &fe) || fe.By != epoch {
		t.Fatalf("want a write fenced off by epoch %d, got %v", epoch, err)
	}
}

// A holder stops renewing (it is paused), a contender takes over and writes through the fence, then the old
// holder writes through the fence: every kind of write it makes is refused, and the items keep the contender's
// data and epoch.
func TestFence_SupersededHolderIsRefused(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	old := b.holder(t, "us-east-1", "orders-lock", true)
	oldFence := old.Fence(b.items)
	if _, err := oldFence.UpdateItem(ctx, orders, "order-1", setStatus("order-1", "placed", "us-east-1")); err != nil {
		t.Fatal(err)
	}

	newer := b.holder(t, "eu-west-1", "orders-lock", false)
	if newer.Epoch() != old.Epoch()+1 {
		t.Fatalf("takeover at epoch %d after %d", newer.Epoch(), old.Epoch())
	}
	newFence := newer.Fence(b.items)
	if _, err := newFence.PatchItem(ctx, orders, "order-1", patchStatus("shipped", "eu-west-1"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := newFence.UpdateItem(ctx, orders, "order-2", setStatus("order-2", "placed", "eu-west-1")); err != nil {
		t.Fatal(err)
	}

	// The old holder resumes. Its writes reach Cosmos DB, which refuses them: the fence does not ask the lease
	// (a fence made from the bare epoch, as a process that never learnt of the loss would have, is refused too).
	// The lease's fence starts from the version it wrote, so its replace reaches Cosmos DB, which answers 412.
	for name, f := range map[string]*Fence{"lease's fence": oldFence, "bare epoch": NewFence(b.items, old.Epoch())} {
		_, err := f.UpdateItem(ctx, orders, "order-1", setStatus("order-1", "cancelled", "us-east-1"))
		fencedBy(t, err, newer.Epoch())
		_, err = f.PatchItem(ctx, orders, "order-1", patchStatus("cancelled", "us-east-1"), nil)
		fencedBy(t, err, newer.Epoch())
		_, err = f.UpdateItem(ctx, orders, "order-2", setStatus("order-2", "cancelled", "us-east-1"))
		fencedBy(t, err, newer.Epoch())
		if !strings.Contains(err.Error(), fmt.Sprintf("epoch %d, after this holder's epoch %d", newer.Epoch(), old.Epoch())) {
			t.Fatalf("%s: the error does not name both epochs: %v", name, err)
		}
	}
	for _, id := range []string{"order-1", "order-2"} {
		o := b.read(t, id)
		if o.By != "eu-west-1" || o.Status == "cancelled" || o.Fence == nil || *o.Fence != newer.Epoch() || o.Total != 42 {
			t.Fatalf("%s after the old holder's writes: %+v; want eu-west-1's data at epoch %d", id, o, newer.Epoch())
		}
	}
}

// gate holds the first document write (create, replace or patch) that reaches it, once armed, until opened:
// a request in flight, or a process paused between its read and its write.
type gate struct {
	next  policy.Transporter
	armed atomic.Bool
	held  chan struct{} // closed when a write is being held
	open  chan struct{}
	once  sync.Once
}

func newGate() *gate {
	return &gate{next: &http.Client{}, held: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) Do(r *http.Request) (*http.Response, error) {
	write := strings.Contains(r.URL.Path, "/docs") && (r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/query+json") ||
		r.Method == http.MethodPut || r.Method == http.MethodPatch)
	if write && g.armed.Load() {
		first := false
		g.once.Do(func() { first = true; close(g.held) })
		if first {
			<-g.open
		}
	}
	return g.next.Do(r)
}

// The old holder's write is in flight when the contender takes over: sent (or, for a read-check-replace, its
// read done) while it held the lease, arriving after the contender's write, or before it. If it arrives after,
// Cosmos DB refuses it; if before, it is applied and the contender's write supersedes it. Either way the item
// ends with the contender's data and epoch.
func TestFence_WriteInFlightAtTakeover(t *testing.T) {
	b := newFenceBed(t)
	for _, tc := range []struct {
		name    string
		exists  bool // the item exists before (replace, patch) or not (create)
		patch   bool
		arrival string // "after" or "before" the contender's write
	}{
		{"patch arriving after", true, true, "after"},
		{"replace arriving after", true, false, "after"},
		{"create arriving after", false, false, "after"},
		{"patch arriving before", true, true, "before"},
		{"replace arriving before", true, false, "before"},
		{"create arriving before", false, false, "before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			key := "lock-" + strings.ReplaceAll(tc.name, " ", "-")
			id := "order-" + strings.ReplaceAll(tc.name, " ", "-")
			old := b.holder(t, "us-east-1", key, true)
			g := newGate()
			oldFence := old.Fence(b.itemsVia(t, g))
			if tc.exists {
				if _, err := oldFence.UpdateItem(ctx, orders, id, setStatus(id, "placed", "us-east-1")); err != nil {
					t.Fatal(err)
				}
			}
			g.armed.Store(true)
			result := make(chan error, 1)
			go func() {
				var err error
				if tc.patch {
					_, err = oldFence.PatchItem(ctx, orders, id, patchStatus("cancelled", "us-east-1"), nil)
				} else {
					_, err = oldFence.UpdateItem(ctx, orders, id, setStatus(id, "cancelled", "us-east-1"))
				}
				result <- err
			}()
			<-g.held // the old holder's write has left; it is held on the way

			newer := b.holder(t, "eu-west-1", key, false)
			newFence := newer.Fence(b.items)
			contenderWrites := func() {
				if _, err := newFence.UpdateItem(ctx, orders, id, setStatus(id, "shipped", "eu-west-1")); err != nil {
					t.Fatal(err)
				}
			}
			if tc.arrival == "after" {
				contenderWrites()
				close(g.open)
				fencedBy(t, <-result, newer.Epoch())
			} else {
				close(g.open)
				if err := <-result; err != nil {
					t.Fatalf("a write that arrives before any later epoch's write is applied; got %v", err)
				}
				contenderWrites()
			}
			o := b.read(t, id)
			if o.Status != "shipped" || o.By != "eu-west-1" || o.Fence == nil || *o.Fence != newer.Epoch() {
				t.Fatalf("item %+v; want eu-west-1's data at epoch %d", o, newer.Epoch())
			}
			// And from now on the old holder is refused, whatever it tries.
			_, err := oldFence.PatchItem(ctx, orders, id, patchStatus("cancelled", "us-east-1"), nil)
			fencedBy(t, err, newer.Epoch())
		})
	}
}

// Two epochs race on one item, many times, with patches and read-check-replaces, from an item that does not
// exist yet. Every applied write appends its epoch to the item's log in the same atomic write, so the log is the
// item's history of accepted writes: it must never go down (no write of epoch 1 applied after one of epoch 2),
// and it must hold exactly the writes reported applied (none lost, none applied twice).
func TestFence_RaceOfTwoEpochsNeverGoesDown(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	const rounds, writes = 150, 4
	fences := []*Fence{NewFence(b.items, 1), NewFence(b.items, 2)}
	var fencedOff int
	for r := range rounds {
		id := fmt.Sprintf("race-%d", r)
		var applied [2]atomic.Int32
		errs := make(chan error, 2*writes)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, f := range fences {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for w := range writes {
					var err error
					if w > 0 && rand.IntN(2) == 0 { // both start with a create: the item does not exist yet
						var ops azcosmos.PatchOperations
						ops.AppendAdd("/log/-", f.Epoch())
						_, err = f.PatchItem(ctx, orders, id, ops, nil)
					} else {
						_, err = f.UpdateItem(ctx, orders, id, appendLog(id, f.Epoch()))
					}
					if err == nil {
						applied[i].Add(1)
					} else {
						errs <- err
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			var fe *FencedError
			if !errors.As(err, &fe) || fe.Epoch != 1 || fe.By != 2 {
				t.Fatalf("round %d: %v; only epoch 1 may be refused, and only because of epoch 2", r, err)
			}
			fencedOff++
		}
		resp, err := b.items.ReadItem(ctx, orders, id, nil)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		var item struct {
			Log   []int64 `json:"log"`
			Fence int64   `json:"fence"`
		}
		if err := json.Unmarshal(resp.Value, &item); err != nil {
			t.Fatal(err)
		}
		count := map[int64]int32{}
		for i, e := range item.Log {
			count[e]++
			if i > 0 && e < item.Log[i-1] {
				t.Fatalf("round %d: the item's history %v goes down", r, item.Log)
			}
		}
		if count[1] != applied[0].Load() || count[2] != applied[1].Load() || item.Fence != item.Log[len(item.Log)-1] {
			t.Fatalf("round %d: history %v (fence %d), but epoch 1 had %d writes applied and epoch 2 %d", r, item.Log, item.Fence,
				applied[0].Load(), applied[1].Load())
		}
	}
	if fencedOff == 0 {
		t.Fatal("no write of epoch 1 was ever refused: the race never happened")
	}
	t.Logf("%d rounds, %d writes of epoch 1 fenced off", rounds, fencedOff)
}

func appendLog(id string, epoch int64) func([]byte) ([]byte, error) {
	return func(current []byte) ([]byte, error) {
		item := map[string]any{"id": id, "pk": "orders", "log": []any{}}
		if current != nil {
			if err := json.Unmarshal(current, &item); err != nil {
				return nil, err
			}
		}
		item["log"] = append(item["log"].([]any), epoch)
		return json.Marshal(item)
	}
}

// The fence writes its own property and nothing else: a patch leaves every other property as it was, and the
// property's name is configurable.
func TestFence_OnlyItsFieldIsAdded(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	body := `{"id":"doc","pk":"orders","total":42,"nested":{"a":[1,2]},"status":"placed","gone":1}`
	if _, err := b.items.CreateItem(ctx, orders, []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	f := NewFence(b.items, 7).WithField("owner_epoch")
	if f.Field() != "owner_epoch" || f.Epoch() != 7 {
		t.Fatalf("field %q epoch %d", f.Field(), f.Epoch())
	}
	var ops azcosmos.PatchOperations
	ops.AppendSet("/status", "shipped")
	ops.AppendRemove("/gone")
	ops.AppendAdd("/gone", "again") // remove, then add: the operations keep their order
	before, _ := ops.MarshalJSON()
	if _, err := f.PatchItem(ctx, orders, "doc", ops, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := ops.MarshalJSON(); string(after) != string(before) {
		t.Fatalf("the caller's operations changed from %s to %s", before, after)
	}
	resp, err := b.items.ReadItem(ctx, orders, "doc", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(resp.Value, &got)
	for k := range got {
		if strings.HasPrefix(k, "_") {
			delete(got, k)
		}
	}
	want := map[string]any{"id": "doc", "pk": "orders", "total": 42.0, "nested": map[string]any{"a": []any{1.0, 2.0}}, "status": "shipped",
		"gone": "again", "owner_epoch": 7.0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("item %v, want %v", got, want)
	}
	// The default field was not written, and a fence on it does not see the other one's epoch.
	if _, ok := got[DefaultFenceField]; ok {
		t.Fatal("the default field was written too")
	}
	_, err = NewFence(b.items, 6).WithField("owner_epoch").PatchItem(ctx, orders, "doc", patchStatus("x", "y"), nil)
	fencedBy(t, err, 7)
}

// A property the fence did not write is never overwritten: an item whose fence field holds something else is
// refused with an error saying so, and left as it was.
func TestFence_ForeignValueIsNotOverwritten(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	body := `{"id":"foreign","pk":"orders","fence":"blue"}`
	if _, err := b.items.CreateItem(ctx, orders, []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	f := NewFence(b.items, 3)
	_, perr := f.PatchItem(ctx, orders, "foreign", patchStatus("x", "y"), nil)
	_, uerr := f.UpdateItem(ctx, orders, "foreign", setStatus("foreign", "x", "y"))
	for _, err := range []error{perr, uerr} {
		if err == nil || errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "not an epoch") {
			t.Fatalf("want an error saying the field holds no epoch, got %v", err)
		}
	}
	resp, err := b.items.ReadItem(ctx, orders, "foreign", nil)
	if err != nil || strings.Contains(string(resp.Value), "status") {
		t.Fatalf("the item was written: %s %v", resp.Value, err)
	}
}

// Inputs that cannot work are refused before any request, naming what is wrong.
func TestFence_BadInputIsRefused(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	for _, name := range []string{"", "id", "ttl", "_fence", "a/b", "9lives", "with space", "a.b"} {
		_, err := NewFence(b.items, 1).WithField(name).PatchItem(ctx, orders, "x", patchStatus("a", "b"), nil)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("field %q: %v, want ErrInvalid", name, err)
		}
	}
	for _, epoch := range []int64{0, -1, 1<<53 + 1} {
		if _, err := NewFence(b.items, epoch).UpdateItem(ctx, orders, "x", setStatus("x", "a", "b")); !errors.Is(err, ErrInvalid) {
			t.Errorf("epoch %d: %v, want ErrInvalid", epoch, err)
		}
	}
	if _, err := NewFence(nil, 1).UpdateItem(ctx, orders, "x", setStatus("x", "a", "b")); !errors.Is(err, ErrInvalid) {
		t.Errorf("no container: %v, want ErrInvalid", err)
	}
	for _, path := range []string{"/fence", "/fence/x"} {
		var own azcosmos.PatchOperations
		own.AppendRemove(path)
		if _, err := NewFence(b.items, 1).PatchItem(ctx, orders, "x", own, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("a patch of %s: %v, want ErrInvalid", path, err)
		}
	}
	ops := patchStatus("a", "b")
	ops.SetCondition("from c where c.status = 'placed'")
	if _, err := NewFence(b.items, 1).PatchItem(ctx, orders, "x", ops, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "condition") {
		t.Errorf("a patch with its own condition: %v", err)
	}
	_, err := NewFence(b.items, 1).UpdateItem(ctx, orders, "x", setStatus("y", "a", "b"))
	if err == nil || !strings.Contains(err.Error(), `id "y"`) {
		t.Errorf("an update returning another id: %v", err)
	}
	_, err = NewFence(b.items, 1).UpdateItem(ctx, orders, "x", func([]byte) ([]byte, error) { return []byte(`[1]`), nil })
	if err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Errorf("an update returning an array: %v", err)
	}
}

// An update that returns nil writes nothing; an If-Match the caller puts on a patch still applies, and its 412
// is not reported as fenced.
func TestFence_NoWriteAndCallersIfMatch(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	f := NewFence(b.items, 2)
	created, err := f.UpdateItem(ctx, orders, "n", setStatus("n", "placed", "a"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.UpdateItem(ctx, orders, "n", func([]byte) ([]byte, error) { return nil, nil })
	if err != nil || resp.ETag != created.ETag {
		t.Fatalf("a nil update: %v, ETag %s, want the unchanged %s", err, resp.ETag, created.ETag)
	}
	if _, err := f.UpdateItem(ctx, orders, "missing", func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.items.ReadItem(ctx, orders, "missing", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("a nil update created the item: %v", err)
	}
	stale := azcore.ETag("not-the-etag")
	_, err = f.PatchItem(ctx, orders, "n", patchStatus("x", "y"), &azcosmos.ItemOptions{IfMatchEtag: &stale})
	if statusOf(err) != http.StatusPreconditionFailed || errors.Is(err, ErrFenced) {
		t.Fatalf("a patch on a stale If-Match: %v, want the 412 itself", err)
	}
}

// methodCounter counts document requests by method.
type methodCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *methodCounter) Do(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/docs") {
		c.mu.Lock()
		c.n[r.Method]++
		c.mu.Unlock()
	}
	return http.DefaultClient.Do(r)
}

// The cost the documentation states: a fenced patch is one request; an update is one conditional replace when
// the fence wrote the item last, a point read and a write otherwise; a refused write adds one point read to name
// the epoch. And a superseded holder's update that starts from its own last version reaches Cosmos DB, which
// refuses it.
func TestFence_RequestsPerWrite(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	counter := &methodCounter{n: map[string]int{}}
	items := b.itemsVia(t, counter)
	f := NewFence(items, 5)
	steps := []struct {
		name  string
		write func() error
		want  map[string]int
	}{
		{"create", func() error {
			_, err := f.UpdateItem(ctx, orders, "cost", setStatus("cost", "placed", "a"))
			return err
		},
			map[string]int{"GET": 1, "POST": 1}},
		{"update of the fence's own last version", func() error {
			_, err := f.UpdateItem(ctx, orders, "cost", setStatus("cost", "shipped", "a"))
			return err
		}, map[string]int{"PUT": 1}},
		{"patch", func() error {
			_, err := f.PatchItem(ctx, orders, "cost", patchStatus("delivered", "a"), nil)
			return err
		},
			map[string]int{"PATCH": 1}},
		{"update after a patch", func() error {
			_, err := f.UpdateItem(ctx, orders, "cost", setStatus("cost", "returned", "a"))
			return err
		}, map[string]int{"GET": 1, "PUT": 1}},
		{"refused patch", func() error {
			_, err := NewFence(items, 4).PatchItem(ctx, orders, "cost", patchStatus("x", "y"), nil)
			fencedBy(t, err, 5)
			return nil
		}, map[string]int{"PATCH": 1, "GET": 1}},
		{"a later epoch writes", func() error {
			_, err := NewFence(items, 6).UpdateItem(ctx, orders, "cost", setStatus("cost", "lost", "b"))
			return err
		}, map[string]int{"GET": 1, "PUT": 1}},
		{"the superseded fence's update, refused by Cosmos DB", func() error {
			_, err := f.UpdateItem(ctx, orders, "cost", setStatus("cost", "found", "a"))
			fencedBy(t, err, 6)
			return nil
		}, map[string]int{"PUT": 1, "GET": 1}},
	}
	for _, st := range steps {
		counter.n = map[string]int{}
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if fmt.Sprint(counter.n) != fmt.Sprint(st.want) {
			t.Fatalf("%s made requests %v, want %v", st.name, counter.n, st.want)
		}
	}
	if o := b.read(t, "cost"); o.Status != "lost" || *o.Fence != 6 {
		t.Fatalf("item %+v, want epoch 6's write", o)
	}
}

// The lease container's SDK client is there for items kept beside the leases.
func TestFence_ClientContainer(t *testing.T) {
	b := newFenceBed(t)
	c, _ := b.leases.client(t, "us-east-1", fenceTimings)
	if c.Container() == nil || c.Container().ID() != b.leases.container {
		t.Fatalf("Container() = %v, want the lease container %s", c.Container(), b.leases.container)
	}
}
