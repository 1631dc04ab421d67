package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// counterItem reads the --fence-counter item of the default lease.
func (h *harness) counterItem(id string) (value, fence int64) {
	h.t.Helper()
	resp, err := h.srv.Container(h.t, h.ctr).ReadItem(context.Background(), azcosmos.NewPartitionKeyString(DefaultLease), id, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	var item struct {
		Type  string `json:"type"`
		Value int64  `json:"value"`
		Fence int64  `json:"fence"`
	}
	if err := json.Unmarshal(resp.Value, &item); err != nil || item.Type != counterType {
		h.t.Fatalf("counter item %s: %v", resp.Value, err)
	}
	return item.Value, item.Fence
}

// Every work item increments the counter through the fence and its event carries the value; the next holder
// continues the count at its own epoch.
func TestRunFenceCounter(t *testing.T) {
	h := newHarness(t).withServer()
	var want int64
	for i, instance := range []string{"us-east-1", "eu-west-1"} {
		r := h.run(append([]string{"run", "--emulator", "--instance", instance, "--hold-for", "900ms", "--json", "--fence-counter", "orders"}, fast...)...)
		r.expect(t, ExitOK)
		works := 0
		for _, e := range events(t, r.stdout) {
			if e["event"] != "work" {
				continue
			}
			want++
			works++
			if e["counter"] != float64(want) || e["epoch"] != float64(i+1) {
				t.Fatalf("%s: work event %v, want counter %d at epoch %d", instance, e, want, i+1)
			}
		}
		if works == 0 {
			t.Fatalf("%s did no work in 900 ms with a 200 ms interval: %s", instance, r.stdout)
		}
		if value, fence := h.counterItem("orders"); value != want || fence != int64(i+1) {
			t.Fatalf("counter item value %d fence %d, want %d at epoch %d", value, fence, want, i+1)
		}
	}
	// The text report shows the counter too.
	r := h.run(append([]string{"run", "--emulator", "--instance", "ap-south-1", "--hold-for", "500ms", "--fence-counter", "orders"}, fast...)...)
	r.expect(t, ExitOK)
	if !strings.Contains(r.stdout, "| Counter: ") || !strings.Contains(r.stdout, "(epoch 3)") {
		t.Fatalf("text report without the counter:\n%s", r.stdout)
	}
}

// A holder whose counter was written by a later epoch is fenced off by Cosmos DB: it says so and exits 4,
// and the counter keeps the later write.
func TestRunFencedOffExits4(t *testing.T) {
	h := newHarness(t).withServer()
	_, done := h.holdingWith(context.Background(), "--fence-counter", "orders")
	later := cosmoslease.NewFence(h.srv.Container(t, h.ctr), 9)
	_, err := later.UpdateItem(context.Background(), azcosmos.NewPartitionKeyString(DefaultLease), "orders", func(cur []byte) ([]byte, error) {
		var item map[string]any
		if err := json.Unmarshal(cur, &item); err != nil {
			return nil, err
		}
		item["value"], item["lastWrite"] = 1000, "epoch-9"
		return json.Marshal(item)
	})
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	r.expect(t, ExitLost, "stopped work", "Cosmos DB refused the write", "written at epoch 9, after this holder's epoch 1")
	evs := events(t, r.stdout)
	last := evs[len(evs)-1]
	if last["event"] != "fenced" || last["fencedBy"] != float64(9) || last["epoch"] != float64(1) {
		t.Fatalf("events end with %v, want fenced by epoch 9: %s", last, names(evs))
	}
	if value, fence := h.counterItem("orders"); value != 1000 || fence != 9 {
		t.Fatalf("counter %d at epoch %d after the refused write, want 1000 at epoch 9", value, fence)
	}
}

// holdingWith is holding with more run flags.
func (h *harness) holdingWith(ctx context.Context, flags ...string) (*cosmoslease.Client, <-chan result) {
	h.t.Helper()
	watcher := h.lib("watcher")
	done := make(chan result, 1)
	go func() {
		done <- h.runCtx(ctx, append(append([]string{"run", "--emulator", "--instance", "us-east-1", "--json"}, fast...), flags...)...)
	}()
	waitFor(h.t, h.heldBy(watcher, "us-east-1"))
	waitFor(h.t, func() bool {
		_, err := h.srv.Container(h.t, h.ctr).ReadItem(context.Background(), azcosmos.NewPartitionKeyString(DefaultLease), "orders", nil)
		return err == nil
	})
	return watcher, done
}

// A counter id that cannot work is refused before anything is written.
func TestRunFenceCounterBadInput(t *testing.T) {
	h := newHarness(t).withServer()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fence-counter", ""}, "empty"},
		{[]string{"--fence-counter", "lease-x"}, "lease documents and run records"},
		{[]string{"--fence-counter", "run-x"}, "lease documents and run records"},
		{[]string{"--fence-counter", "a/b"}, "does not allow"},
		{[]string{"--fence-counter", strings.Repeat("x", 256)}, "at most 255"},
		{[]string{"--unfenced-counter"}, "needs --fence-counter"},
	} {
		r := h.run(append([]string{"run", "--emulator", "--instance", "us-east-1"}, tc.args...)...)
		r.expect(t, ExitUsage, tc.want)
	}
	// An existing item that is not a counter stops the run (exit 1) instead of being overwritten.
	if _, err := h.lib("x").Container().CreateItem(context.Background(), azcosmos.NewPartitionKeyString(DefaultLease),
		[]byte(`{"id":"orders","leaseKey":"critical-section-lock","type":"invoice"}`), nil); err != nil {
		t.Fatal(err)
	}
	r := h.run(append([]string{"run", "--emulator", "--instance", "us-east-1", "--fence-counter", "orders", "--hold-for", "2s"}, fast...)...)
	r.expect(t, ExitError, "is not a counter")
}
