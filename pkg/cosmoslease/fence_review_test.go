package cosmoslease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
)

// The fence's findings of the third adversarial review, each against the real SDK and the Cosmos-protocol
// server, each failing on the code before its fix.

// stripETag passes requests to the server and, once armed, removes the ETag header from the answers to document
// requests: an answer that carries no ETag, which the lease code refuses (noETag).
type stripETag struct {
	armed    atomic.Bool
	stripped atomic.Int32
}

func (s *stripETag) Do(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultClient.Do(r)
	if err == nil && s.armed.Load() && strings.Contains(r.URL.Path, "/docs") && resp.Header.Get("Etag") != "" {
		resp.Header.Del("Etag")
		s.stripped.Add(1)
	}
	return resp, err
}

func statusIn(t *testing.T, body []byte) string {
	t.Helper()
	var o order
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatalf("not an order: %s", body)
	}
	return o.Status
}

// Regression (third review, 1): UpdateItem remembered the version it wrote with the answer's ETag header, and a
// later call replaced on it without reading. An answer without the header left an empty ETag, and If-Match ""
// is no condition at all: epoch 1's write was applied after epoch 2's, and the stored epoch went from 2 back to
// 1. A read answered without the header did the same.
func TestFence_AnswerWithoutETagIsNeverACondition(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	strip := &stripETag{}
	strip.armed.Store(true)
	stripped := b.itemsVia(t, strip)

	t.Run("the version remembered from a write", func(t *testing.T) {
		old := NewFence(stripped, 1)
		created, err := old.UpdateItem(ctx, orders, "etag-write", setStatus("etag-write", "placed", "old"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewFence(b.items, 2).UpdateItem(ctx, orders, "etag-write", setStatus("etag-write", "shipped", "new")); err != nil {
			t.Fatal(err)
		}
		_, err = old.UpdateItem(ctx, orders, "etag-write", setStatus("etag-write", "cancelled", "old"))
		fencedBy(t, err, 2)
		if o := b.read(t, "etag-write"); o.Status != "shipped" || *o.Fence != 2 {
			t.Fatalf("item %+v; want epoch 2's write kept", o)
		}
		if created.ETag == "" {
			t.Fatal("the write's answer lost its ETag header and UpdateItem returned no ETag; the stored item's _etag has it")
		}
	})

	t.Run("the version read", func(t *testing.T) {
		if _, err := NewFence(b.items, 1).UpdateItem(ctx, orders, "etag-read", setStatus("etag-read", "placed", "old")); err != nil {
			t.Fatal(err)
		}
		old, newer := NewFence(stripped, 1), NewFence(b.items, 2)
		calls := 0
		_, err := old.UpdateItem(ctx, orders, "etag-read", func(current []byte) ([]byte, error) {
			if calls++; calls == 1 { // epoch 2 writes between epoch 1's read and its write
				if _, err := newer.UpdateItem(ctx, orders, "etag-read", setStatus("etag-read", "shipped", "new")); err != nil {
					return nil, err
				}
			}
			return setStatus("etag-read", "cancelled", "old")(current)
		})
		fencedBy(t, err, 2)
		if o := b.read(t, "etag-read"); o.Status != "shipped" || *o.Fence != 2 {
			t.Fatalf("item %+v; want epoch 2's write kept", o)
		}
	})
	if strip.stripped.Load() == 0 {
		t.Fatal("no answer lost its ETag: the test tested nothing")
	}
}

// Regression (third review, 4): an update that returned nil from the version this fence remembered writing sent
// nothing and returned that version with a nil error, although a later epoch had written the item since: a
// superseded holder was told its own stale version was the current item.
func TestFence_NoOpUpdateJudgesTheCurrentItem(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	noop := func(seen *[]string) func([]byte) ([]byte, error) {
		return func(current []byte) ([]byte, error) {
			*seen = append(*seen, statusIn(t, current))
			return nil, nil
		}
	}

	// Superseded: refused, naming the later epoch.
	old := NewFence(b.items, 1)
	if _, err := old.UpdateItem(ctx, orders, "noop-1", setStatus("noop-1", "placed", "old")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFence(b.items, 2).UpdateItem(ctx, orders, "noop-1", setStatus("noop-1", "shipped", "new")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	resp, err := old.UpdateItem(ctx, orders, "noop-1", noop(&seen))
	if err == nil {
		t.Fatalf("a superseded holder's no-op returned %s with no error", resp.Value)
	}
	fencedBy(t, err, 2)

	// Written since by another writer of the same epoch: the answer is the current item, and update saw it.
	mine, other := NewFence(b.items, 3), NewFence(b.items, 3)
	if _, err := mine.UpdateItem(ctx, orders, "noop-2", setStatus("noop-2", "placed", "mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := other.UpdateItem(ctx, orders, "noop-2", setStatus("noop-2", "shipped", "other")); err != nil {
		t.Fatal(err)
	}
	seen = nil
	resp, err = mine.UpdateItem(ctx, orders, "noop-2", noop(&seen))
	if err != nil || statusIn(t, resp.Value) != "shipped" || seen[len(seen)-1] != "shipped" {
		t.Fatalf("no-op after another write: %v, item %s, update saw %v; want the current item", err, resp.Value, seen)
	}

	// Unchanged since this fence wrote it: one point read, and the fence keeps its version (the next write is
	// one replace).
	counter := &methodCounter{n: map[string]int{}}
	f := NewFence(b.itemsVia(t, counter), 4)
	if _, err := f.UpdateItem(ctx, orders, "noop-3", setStatus("noop-3", "placed", "f")); err != nil {
		t.Fatal(err)
	}
	counter.n = map[string]int{}
	seen = nil
	if resp, err = f.UpdateItem(ctx, orders, "noop-3", noop(&seen)); err != nil || statusIn(t, resp.Value) != "placed" || len(seen) != 1 {
		t.Fatalf("no-op on an unchanged item: %v, %s, update called with %v", err, resp.Value, seen)
	}
	if fmt.Sprint(counter.n) != fmt.Sprint(map[string]int{"GET": 1}) {
		t.Fatalf("no-op on an unchanged item made %v, want one point read", counter.n)
	}
	counter.n = map[string]int{}
	if _, err := f.UpdateItem(ctx, orders, "noop-3", setStatus("noop-3", "shipped", "f")); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(counter.n) != fmt.Sprint(map[string]int{"PUT": 1}) {
		t.Fatalf("the write after a no-op made %v, want one replace", counter.n)
	}
}

// Regression (third review, 6): a fence field holding null was read by UpdateItem as "no epoch" and overwritten,
// and refused by PatchItem with a bare 412; one holding a fraction or a negative number was overwritten by
// PatchItem. Every present value that is not a whole number is "not an epoch", on both paths.
func TestFence_NullOrFractionIsNotAnEpoch(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	for i, value := range []string{"null", "1.5", "-1"} {
		for _, op := range []string{"patch", "update"} {
			id := fmt.Sprintf("not-epoch-%d-%s", i, op)
			body := fmt.Sprintf(`{"id":%q,"pk":"orders","fence":%s}`, id, value)
			if _, err := b.items.CreateItem(ctx, orders, []byte(body), nil); err != nil {
				t.Fatal(err)
			}
			f := NewFence(b.items, 3)
			var err error
			if op == "patch" {
				_, err = f.PatchItem(ctx, orders, id, patchStatus("x", "y"), nil)
			} else {
				_, err = f.UpdateItem(ctx, orders, id, setStatus(id, "x", "y"))
			}
			if err == nil || errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "not an epoch") {
				t.Errorf("fence %s, %s: %v; want the error saying the field holds no epoch", value, op, err)
			}
			resp, err := b.items.ReadItem(ctx, orders, id, nil)
			if err != nil || strings.Contains(string(resp.Value), "status") {
				t.Errorf("fence %s, %s: the item was written: %s %v", value, op, resp.Value, err)
			}
		}
	}
}

// Regression (third review, 7): the patch's predicate named the field as c.<name>, so a field named like a
// keyword of Cosmos DB's query language made every fenced patch fail with 400. The predicate now quotes it.
func TestFence_KeywordAsField(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	names := []string{"value", "order", "top", "in", "between", "null", "true", "false", "not", "and", "or", "from", "where", "like", "exists"}
	if !b.srv.Local {
		// The local server takes any patch condition that contains "select" for a whole query of its own.
		names = append(names, "select")
	}
	for _, name := range names {
		id := "keyword-" + name
		if _, err := b.items.CreateItem(ctx, orders, []byte(fmt.Sprintf(`{"id":%q,"pk":"orders"}`, id)), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := NewFence(b.items, 3).WithField(name).PatchItem(ctx, orders, id, patchStatus("shipped", "new"), nil); err != nil {
			t.Errorf("field %q: a fenced patch failed: %v", name, err)
			continue
		}
		_, err := NewFence(b.items, 2).WithField(name).PatchItem(ctx, orders, id, patchStatus("cancelled", "old"), nil)
		var fe *FencedError
		if !errors.As(err, &fe) || fe.By != 3 {
			t.Errorf("field %q: an earlier epoch's patch = %v, want it fenced off by epoch 3", name, err)
		}
	}
}

// Regression (third review, 10): the fence remembered versions under fmt.Sprint(pk) and the id, which is the same
// for the partition key string "1" and the number 1: the update of an item in one partition started from the
// version of the item with the same id in the other.
func TestFence_PartitionsOfOneIDAreKeptApart(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	f := NewFence(b.items, 1)
	if _, err := f.UpdateItem(ctx, azcosmos.NewPartitionKeyString("1"), "same-id", func([]byte) ([]byte, error) {
		return []byte(`{"id":"same-id","pk":"1","status":"in the string partition"}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	var seen []byte
	if _, err := f.UpdateItem(ctx, azcosmos.NewPartitionKeyNumber(1), "same-id", func(current []byte) ([]byte, error) {
		seen = current
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != nil {
		t.Fatalf("the update in partition 1 (a number) started from %s, the item of partition \"1\" (a string)", seen)
	}
}

func TestFence_ItemKeysKeepPartitionKeyTypes(t *testing.T) {
	pairs := [][2]azcosmos.PartitionKey{
		{azcosmos.NewPartitionKeyString("1"), azcosmos.NewPartitionKeyNumber(1)},
		{azcosmos.NewPartitionKeyString("a b"), azcosmos.NewPartitionKeyString("a").AppendString("b")},
		{azcosmos.NewPartitionKeyString("true"), azcosmos.NewPartitionKeyBool(true)},
		{azcosmos.NewPartitionKeyString("<nil>"), azcosmos.NullPartitionKey},
		{azcosmos.NewPartitionKeyString(`a", "b`), azcosmos.NewPartitionKeyString("a").AppendString("b")},
	}
	for _, p := range pairs {
		if itemKey(p[0], "x") == itemKey(p[1], "x") {
			t.Errorf("%#v and %#v share the key %q", p[0], p[1], itemKey(p[0], "x"))
		}
	}
	if itemKey(azcosmos.NewPartitionKeyString("a"), "b\x00c") == itemKey(azcosmos.NewPartitionKeyString("a\x00b"), "c") {
		t.Error("a NUL in the id or the key makes keys collide")
	}
}

// readAnswer passes requests to the server; once armed, it answers the point reads itself.
type readAnswer struct {
	armed  atomic.Bool
	answer func(r *http.Request) *http.Response
}

func (a *readAnswer) Do(r *http.Request) (*http.Response, error) {
	if a.armed.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/docs/") {
		return a.answer(r), nil
	}
	return http.DefaultClient.Do(r)
}

// Regression (third review, 11): a fenced patch refused with 412 whose read afterwards could not say why — the read
// failed, found the item gone, or was answered by a replica behind the write that refused the patch — returned
// the bare 412, which reads as the caller's own If-Match failing. It now says what happened and to try again,
// still wrapping the 412.
func TestFence_UnexplainedRefusalSaysSo(t *testing.T) {
	b := newFenceBed(t)
	ctx := context.Background()
	if _, err := NewFence(b.items, 1).UpdateItem(ctx, orders, "unexplained", setStatus("unexplained", "placed", "old")); err != nil {
		t.Fatal(err)
	}
	before, err := b.items.ReadItem(ctx, orders, "unexplained", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewFence(b.items, 2).UpdateItem(ctx, orders, "unexplained", setStatus("unexplained", "shipped", "new")); err != nil {
		t.Fatal(err)
	}
	answers := map[string]func(r *http.Request) *http.Response{
		"the read fails": func(r *http.Request) *http.Response { return synth(r, http.StatusForbidden, "Forbidden", nil) },
		"the item is gone": func(r *http.Request) *http.Response {
			return synth(r, http.StatusNotFound, "NotFound", nil)
		},
		"a lagging replica answers": func(r *http.Request) *http.Response {
			resp := synth(r, http.StatusOK, "", map[string]string{"Etag": string(before.ETag)})
			resp.Body, resp.ContentLength = io.NopCloser(strings.NewReader(string(before.Value))), int64(len(before.Value))
			return resp
		},
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			tr := &readAnswer{answer: answer}
			tr.armed.Store(true)
			_, err := NewFence(b.itemsVia(t, tr), 1).PatchItem(ctx, orders, "unexplained", patchStatus("cancelled", "old"), nil)
			if err == nil || errors.Is(err, ErrFenced) || statusOf(err) != http.StatusPreconditionFailed || !strings.Contains(err.Error(), "try again") {
				t.Fatalf("got %v; want the 412, wrapped with what happened and 'try again'", err)
			}
			t.Log(err)
		})
	}
	if o := b.read(t, "unexplained"); o.Status != "shipped" || *o.Fence != 2 {
		t.Fatalf("item %+v; want epoch 2's write kept", o)
	}
}
