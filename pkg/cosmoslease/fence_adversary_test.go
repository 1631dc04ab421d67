package cosmoslease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/faultproxy"
)

// An adversarial review of the fence after the third safety review: each test is an attack on what the Fence
// doc comment promises, against the real SDK and the Cosmos-protocol server.

// staleItems is the items container through a client whose point reads can be answered by a replica one write
// behind (faultproxy.Replicas, shared by every client made with the same model), when a "stale" fault is queued
// for "read".
func (b *fenceBed) staleItems(t *testing.T, replicas *faultproxy.Replicas) (*azcosmos.ContainerClient, *faults) {
	t.Helper()
	f := newFaults()
	return b.itemsVia(t, &faultTransport{next: &http.Client{}, f: f, replicas: replicas}), f
}

// The limit the adversarial review found, as the doc now states it: a no-op UpdateItem is a read at the
// account's consistency. Under Session consistency a replica behind a later epoch's write may answer it, and the
// superseded holder gets its own version back with no error; a write of the same holder, though, is judged by
// Cosmos DB against the current version and refused.
func TestFenceLimit_NoOpIsAReadAtTheAccountsConsistency(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	replicas := faultproxy.NewReplicas()
	noop := func([]byte) ([]byte, error) { return nil, nil }
	oldItems, oldFaults := b.staleItems(t, replicas)
	newItems, _ := b.staleItems(t, replicas)
	old := NewFence(oldItems, 1)
	if _, err := old.UpdateItem(ctx, orders, "noop-lag-1", setStatus("noop-lag-1", "placed", "old")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFence(newItems, 2).UpdateItem(ctx, orders, "noop-lag-1", setStatus("noop-lag-1", "shipped", "new")); err != nil {
		t.Fatal(err)
	}
	oldFaults.inject("read", faultStale, 1) // the no-op's read: a replica that has old's write, not new's
	resp, err := old.UpdateItem(ctx, orders, "noop-lag-1", noop)
	if oldFaults.count("read") == 0 || err != nil || statusIn(t, resp.Value) != "placed" {
		t.Fatalf("the no-op answered %s, %v; the stated limit is its own version from the lagging replica", resp.Value, err)
	}
	// The same holder's write, from the same remembered version and with the same lagging replica: refused.
	oldFaults.inject("read", faultStale, 1)
	_, err = old.UpdateItem(ctx, orders, "noop-lag-1", setStatus("noop-lag-1", "cancelled", "old"))
	var fenced *FencedError
	if !errors.As(err, &fenced) || fenced.By != 2 {
		t.Fatalf("epoch 1's write after epoch 2's: %v, want refused by epoch 2", err)
	}
}

// Attack: the version a fence remembers is the very slice it hands out — as UpdateItem's answer, and as update's
// current. A caller that reuses or edits that slice (as callers may with a byte slice they were given) edits the
// fence's memory: the next update is computed from bytes that are no version of the item, and a no-op answers
// with them as "the current item".
func TestFenceAdversary_RememberedVersionIsNotTheCallersSlice(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	f := NewFence(b.items, 1)

	t.Run("the answer", func(t *testing.T) {
		resp, err := f.UpdateItem(ctx, orders, "alias-1", setStatus("alias-1", "placed", "a"))
		if err != nil {
			t.Fatal(err)
		}
		// The caller reuses the answer's buffer.
		i := strings.Index(string(resp.Value), `"placed"`)
		copy(resp.Value[i:], `"PLACED"`)
		var seen string
		got, err := f.UpdateItem(ctx, orders, "alias-1", func(current []byte) ([]byte, error) {
			seen = statusIn(t, current)
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seen != "placed" || statusIn(t, got.Value) != "placed" {
			t.Fatalf("the item is %q, but update saw %q and the no-op answered %q: the caller's edit of an answer changed the fence's memory",
				b.read(t, "alias-1").Status, seen, statusIn(t, got.Value))
		}
	})

	t.Run("update's current", func(t *testing.T) {
		if _, err := f.UpdateItem(ctx, orders, "alias-2", setStatus("alias-2", "placed", "a")); err != nil {
			t.Fatal(err)
		}
		// An update that edits current in place, then decides not to write.
		if _, err := f.UpdateItem(ctx, orders, "alias-2", func(current []byte) ([]byte, error) {
			i := strings.Index(string(current), `"placed"`)
			copy(current[i:], `"PLACED"`)
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		var seen string
		if _, err := f.UpdateItem(ctx, orders, "alias-2", func(current []byte) ([]byte, error) {
			seen = statusIn(t, current)
			return setStatus("alias-2", seen, "a")(current)
		}); err != nil {
			t.Fatal(err)
		}
		if o := b.read(t, "alias-2"); seen != "placed" || o.Status != "placed" {
			t.Fatalf("update saw %q and wrote %q; the item was %q: an earlier call's scratch edit was taken for the stored item", seen, o.Status, "placed")
		}
	})
}

// sessionUnavailable answers every point read, once armed, as Cosmos DB does when no replica it can reach has
// caught up with the read's session token: 404 with substatus 1002 (ReadSessionNotAvailable). The item exists.
type sessionUnavailable struct {
	armed atomic.Bool
	reads atomic.Int32
}

func (s *sessionUnavailable) Do(r *http.Request) (*http.Response, error) {
	if s.armed.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/docs/") {
		s.reads.Add(1)
		return synth(r, http.StatusNotFound, "NotFound", map[string]string{"x-ms-substatus": "1002"}), nil
	}
	return http.DefaultClient.Do(r)
}

// Attack: the fence's read takes every 404 for "the item does not exist". A 404 with substatus 1002
// (ReadSessionNotAvailable) says the opposite: the item's newest state is not known to the replica that answered
// (the lease code classifies it as an unknown outcome, not as a missing document). The fence must not be weaker:
// a no-op must not report an existing item as absent, and a refused patch must not be explained as "deleted".
func TestFenceAdversary_SessionNotAvailableIsNotAbsence(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	if _, err := NewFence(b.items, 2).UpdateItem(ctx, orders, "session-1002", setStatus("session-1002", "placed", "two")); err != nil {
		t.Fatal(err)
	}
	tr := &sessionUnavailable{}
	tr.armed.Store(true)
	items := b.itemsVia(t, tr)

	t.Run("a no-op", func(t *testing.T) {
		var sawNil bool
		resp, err := NewFence(items, 2).UpdateItem(ctx, orders, "session-1002", func(current []byte) ([]byte, error) {
			sawNil = current == nil
			return nil, nil
		})
		if err == nil && (sawNil || len(resp.Value) == 0) {
			t.Fatalf("the item exists, but the no-op was told it does not (update saw nil: %v; answer %q, no error)", sawNil, resp.Value)
		}
	})

	t.Run("a refused patch", func(t *testing.T) {
		_, err := NewFence(items, 1).PatchItem(ctx, orders, "session-1002", patchStatus("cancelled", "one"), nil)
		if err == nil || strings.Contains(err.Error(), "deleted") {
			t.Fatalf("got %v; the item was not deleted: the read that would tell why could not be answered", err)
		}
	})
	if tr.reads.Load() == 0 {
		t.Fatal("no read was answered 404/1002: the test tested nothing")
	}
}

// Attack: UpdateItem takes a 404 on its read for "no item" and creates; when the container itself does not exist
// (deleted, or a wrong name), the create gets 404 too, which UpdateItem takes for "another write came between".
// It then reads and creates ten times and reports that the item "changed between the read and the write 10
// times; try again" — an item that never existed, in a container that does not exist, and trying again cannot
// help. A create is never refused 404 because of its item.
func TestFenceAdversary_MissingContainerIsNotAConflict(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	counter := &methodCounter{n: map[string]int{}}
	items := b.itemsVia(t, counter)
	if _, err := b.items.Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_, err := NewFence(items, 1).UpdateItem(ctx, orders, "no-container", setStatus("no-container", "placed", "a"))
	if err == nil {
		t.Fatal("a write into a deleted container succeeded")
	}
	if statusOf(err) != http.StatusNotFound || strings.Contains(err.Error(), "changed between") || counter.n["POST"] > 1 {
		t.Fatalf("a write into a deleted container: %v, after requests %v; want the 404 as the SDK returns it, after one create", err, counter.n)
	}
}

// Attack: the doc gives the cost of a no-op as one point read. From a remembered version that another writer has
// changed since, UpdateItem reads, forgets, and reads the same item again before it judges it.
func TestFenceAdversary_NoOpAfterAChangeIsOneRead(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	counter := &methodCounter{n: map[string]int{}}
	mine := NewFence(b.itemsVia(t, counter), 3)
	if _, err := mine.UpdateItem(ctx, orders, "noop-cost", setStatus("noop-cost", "placed", "mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFence(b.items, 3).UpdateItem(ctx, orders, "noop-cost", setStatus("noop-cost", "shipped", "other")); err != nil {
		t.Fatal(err)
	}
	counter.n = map[string]int{}
	resp, err := mine.UpdateItem(ctx, orders, "noop-cost", func([]byte) ([]byte, error) { return nil, nil })
	if err != nil || statusIn(t, resp.Value) != "shipped" {
		t.Fatalf("no-op: %v, %s", err, resp.Value)
	}
	if fmt.Sprint(counter.n) != fmt.Sprint(map[string]int{"GET": 1}) {
		t.Fatalf("a no-op after another writer's change made %v, want one point read", counter.n)
	}
	// A superseded holder's no-op: one read, then the refusal.
	if _, err := mine.UpdateItem(ctx, orders, "noop-cost", setStatus("noop-cost", "returned", "mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFence(b.items, 4).UpdateItem(ctx, orders, "noop-cost", setStatus("noop-cost", "lost", "four")); err != nil {
		t.Fatal(err)
	}
	counter.n = map[string]int{}
	_, err = mine.UpdateItem(ctx, orders, "noop-cost", func([]byte) ([]byte, error) { return nil, nil })
	fencedBy(t, err, 4)
	if fmt.Sprint(counter.n) != fmt.Sprint(map[string]int{"GET": 1}) {
		t.Fatalf("a superseded no-op made %v, want one point read", counter.n)
	}
}

// Held: one Fence is shared by several goroutines, over several items, while a fence of a later epoch, itself
// shared, writes the same items; patches and read-check-replaces mixed. Every applied write appends its epoch in
// the same atomic write, so each item's log is its history: it never goes down, it holds exactly the writes
// reported applied, and epoch 1 is refused only by epoch 2. Run with -race: the remembered versions and the
// session token are shared state.
func TestFenceAdversary_OneFenceManyGoroutines(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	const items, goroutines, writes = 4, 3, 6
	fences := []*Fence{NewFence(b.items, 1), NewFence(b.items, 2)}
	var applied [2][items]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*goroutines*writes)
	start := make(chan struct{})
	for fi, f := range fences {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for w := range writes {
					n := (g + w) % items
					id := fmt.Sprintf("shared-%d", n)
					var err error
					if w%3 == 2 {
						var ops azcosmos.PatchOperations
						ops.AppendAdd("/log/-", f.Epoch())
						_, err = f.PatchItem(ctx, orders, id, ops, nil)
						if statusOf(err) == http.StatusNotFound {
							continue // not created yet: nothing applied
						}
					} else {
						_, err = f.UpdateItem(ctx, orders, id, appendLog(id, f.Epoch()))
					}
					if err == nil {
						applied[fi][n].Add(1)
					} else {
						errs <- err
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	fencedOff := 0
	for err := range errs {
		var fe *FencedError
		if errors.As(err, &fe) {
			fencedOff++
		}
		if strings.Contains(err.Error(), "changed between the read and the write") {
			continue // ten rounds lost to the others' writes: documented, and nothing applied
		}
		if !errors.As(err, &fe) || fe.Epoch != 1 || fe.By != 2 {
			t.Fatalf("%v; only epoch 1 may be refused, and only because of epoch 2", err)
		}
	}
	for n := range items {
		resp, err := b.items.ReadItem(ctx, orders, fmt.Sprintf("shared-%d", n), nil)
		if err != nil {
			t.Fatal(err)
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
				t.Fatalf("item %d: history %v goes down", n, item.Log)
			}
		}
		if count[1] != applied[0][n].Load() || count[2] != applied[1][n].Load() || item.Fence != item.Log[len(item.Log)-1] {
			t.Fatalf("item %d: history %v (fence %d), but %d writes of epoch 1 and %d of epoch 2 were reported applied", n, item.Log, item.Fence,
				applied[0][n].Load(), applied[1][n].Load())
		}
	}
	if fencedOff == 0 {
		t.Fatal("no write of epoch 1 was refused: the goroutines never raced")
	}
	t.Logf("%d writes of epoch 1 fenced off", fencedOff)
}

// Attack: a patch with the caller's own If-Match, refused by the fence's condition (a later epoch wrote the item,
// and the If-Match names that very version), whose read afterwards is answered by a replica behind the later
// epoch's write. The doc lists "the 412 itself" for a failed If-Match and the wrapped "try again" error for a
// read from a replica behind; here the If-Match did not fail, yet the caller gets the bare 412, which says its
// If-Match failed.
func TestFenceAdversary_CallersIfMatchAndAReplicaBehind(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	replicas := faultproxy.NewReplicas()
	writer, _ := b.staleItems(t, replicas)
	items, faults := b.staleItems(t, replicas)
	if _, err := NewFence(writer, 1).UpdateItem(ctx, orders, "ifmatch-lag", setStatus("ifmatch-lag", "placed", "one")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFence(writer, 2).UpdateItem(ctx, orders, "ifmatch-lag", setStatus("ifmatch-lag", "shipped", "two")); err != nil {
		t.Fatal(err)
	}
	current, err := b.items.ReadItem(ctx, orders, "ifmatch-lag", nil) // the caller's If-Match: the current version
	if err != nil {
		t.Fatal(err)
	}
	faults.inject("read", faultStale, 1) // the fence's read after the 412: a replica behind epoch 2's write
	_, err = NewFence(items, 1).PatchItem(ctx, orders, "ifmatch-lag", patchStatus("cancelled", "one"), &azcosmos.ItemOptions{IfMatchEtag: &current.ETag})
	if faults.count("read") == 0 {
		t.Fatal("the fence made no read")
	}
	if _, bare := err.(*azcore.ResponseError); bare || err == nil {
		t.Fatalf("the If-Match named the current version, the fence refused the patch, and a replica behind answered the read; got %v, "+
			"the bare 412 that the doc reserves for a failed If-Match", err)
	}
	if !errors.Is(err, ErrFenced) && (statusOf(err) != http.StatusPreconditionFailed || !strings.Contains(err.Error(), "try again")) {
		t.Fatalf("got %v; want a *FencedError or the 412 wrapped with 'try again'", err)
	}
}

// Attack: a container with a unique key refuses a create with 409 when another item holds the key. UpdateItem
// takes every 409 on its create for "a later epoch created the item meanwhile": it reads (no such item), calls
// update again and creates again, ten times, and then reports that the item "changed between the read and the
// write 10 times; try again" — an item that never existed, and trying again cannot help.
func TestFenceAdversary_UniqueKeyConflictIsNotAChange(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	name := b.srv.NewContainerWith(t, azcosmos.ContainerProperties{
		PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{"/pk"}},
		UniqueKeyPolicy:        &azcosmos.UniqueKeyPolicy{UniqueKeys: []azcosmos.UniqueKey{{Paths: []string{"/email"}}}},
	})
	b.name = name
	counter := &methodCounter{n: map[string]int{}}
	items := b.itemsVia(t, counter)
	if _, err := b.srv.Container(t, name).CreateItem(ctx, orders, []byte(`{"id":"first","pk":"orders","email":"a@example.org"}`), nil); err != nil {
		t.Fatal(err)
	}
	_, err := NewFence(items, 1).UpdateItem(ctx, orders, "second", func([]byte) ([]byte, error) {
		return []byte(`{"id":"second","pk":"orders","email":"a@example.org"}`), nil
	})
	if statusOf(err) != http.StatusConflict {
		t.Fatalf("a create refused by a unique key: %v; want the 409", err)
	}
	if strings.Contains(err.Error(), "changed between") || counter.n["POST"] > 1 {
		t.Fatalf("a create refused by a unique key made %v and reported %v: the item never changed", counter.n, err)
	}

	// And a replace refused 409 by a unique key (a replace that another write came between gets 412).
	f := NewFence(items, 1)
	if _, err := f.UpdateItem(ctx, orders, "third", func([]byte) ([]byte, error) {
		return []byte(`{"id":"third","pk":"orders","email":"c@example.org"}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	counter.n = map[string]int{}
	_, err = f.UpdateItem(ctx, orders, "third", func([]byte) ([]byte, error) {
		return []byte(`{"id":"third","pk":"orders","email":"a@example.org"}`), nil
	})
	if statusOf(err) != http.StatusConflict || strings.Contains(err.Error(), "changed between") || counter.n["PUT"] > 1 {
		t.Fatalf("a replace refused by a unique key made %v and reported %v; want the 409, after one replace", counter.n, err)
	}
}

// Held: epochs at the top of the range (2^53 - 1 and 2^53, the largest a fence accepts) are told apart by the
// patch predicate and by UpdateItem's check, on the server as written in JSON.
func TestFenceAdversary_EpochsAtTheTopOfTheRange(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	lower, upper := NewFence(b.items, maxSafeEpoch-1), NewFence(b.items, maxSafeEpoch)
	if _, err := upper.UpdateItem(ctx, orders, "top", setStatus("top", "placed", "upper")); err != nil {
		t.Fatal(err)
	}
	_, err := lower.PatchItem(ctx, orders, "top", patchStatus("cancelled", "lower"), nil)
	fencedBy(t, err, maxSafeEpoch)
	_, err = lower.UpdateItem(ctx, orders, "top", setStatus("top", "cancelled", "lower"))
	fencedBy(t, err, maxSafeEpoch)
	if _, err := upper.PatchItem(ctx, orders, "top", patchStatus("shipped", "upper"), nil); err != nil {
		t.Fatal(err)
	}
	if o := b.read(t, "top"); o.Status != "shipped" || *o.Fence != maxSafeEpoch {
		t.Fatalf("item %+v", o)
	}
}

// Held: ambiguous answers to the fence's own writes. A write applied whose answer was lost and whose retry is
// refused (409 for the create, 412 for the replace) is the fence's own: UpdateItem reads, finds its own epoch,
// and computes again from its own result (as its doc says) — never a *FencedError, never a lower epoch. A write
// whose answer was lost and not retried is an error as the SDK returns it; the next call, whose read a replica
// from before that write may answer (the lost answer carried the session token), still ends at this epoch.
func TestFenceAdversary_OwnWriteAnswerLost(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	replicas := faultproxy.NewReplicas()
	items, faults := b.staleItems(t, replicas)
	f := NewFence(items, 3)
	var calls atomic.Int32
	bump := func(id string) func([]byte) ([]byte, error) {
		return func(current []byte) ([]byte, error) {
			calls.Add(1)
			o := order{ID: id, PK: "orders"}
			if current != nil {
				if err := json.Unmarshal(current, &o); err != nil {
					return nil, err
				}
			}
			o.Total++
			o.Fence = nil
			return json.Marshal(o)
		}
	}
	for _, op := range []string{"create", "replace"} {
		id := "own-" + op
		if op == "replace" {
			if _, err := f.UpdateItem(ctx, orders, id, bump(id)); err != nil {
				t.Fatal(err)
			}
		}
		calls.Store(0)
		faults.inject(op, faultRetried, 1)
		if _, err := f.UpdateItem(ctx, orders, id, bump(id)); err != nil {
			t.Fatalf("%s applied, answer lost, retry refused: %v; want the fence to recognise its own epoch", op, err)
		}
		o := b.read(t, id)
		if *o.Fence != 3 || calls.Load() != 2 {
			t.Fatalf("%s: item %+v after %d calls of update; want epoch 3, update called again from its own result", op, o, calls.Load())
		}
	}

	// Lost, not retried: the SDK's error. The next call reads from a replica before the lost write.
	faults.inject("replace", faultLostReply, 1)
	if _, err := f.UpdateItem(ctx, orders, "own-replace", bump("own-replace")); err == nil {
		t.Fatal("a write whose answer was lost reported success")
	}
	faults.inject("read", faultStale, 1)
	calls.Store(0)
	if _, err := f.UpdateItem(ctx, orders, "own-replace", bump("own-replace")); err != nil {
		t.Fatalf("the call after a lost answer: %v", err)
	}
	if o := b.read(t, "own-replace"); *o.Fence != 3 || calls.Load() != 2 {
		t.Fatalf("item %+v after %d calls of update; want epoch 3, the first call from the lagging replica's version", o, calls.Load())
	}
}
