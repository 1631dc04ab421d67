//go:build linux || darwin

package leasehandler

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// The work's writes go through run.Fence: they carry the run's epoch, and once a later holder of the lease has
// written the item, Cosmos DB refuses the work's write, the tick fails and the run is recorded as lost.
func TestWorkWritesThroughTheFence(t *testing.T) {
	var items *azcosmos.ContainerClient
	pk := azcosmos.NewPartitionKeyString("totals")
	total := func(ctx context.Context, run Run) error {
		_, err := run.Fence(items).UpdateItem(ctx, pk, "daily-total", func(cur []byte) ([]byte, error) {
			item := map[string]any{"id": "daily-total", "leaseKey": "totals", "runs": 0.0}
			if cur != nil {
				if err := json.Unmarshal(cur, &item); err != nil {
					return nil, err
				}
			}
			item["runs"] = item["runs"].(float64) + 1
			item["region"] = run.Region
			return json.Marshal(item)
		})
		return err
	}
	ts, h, container := inProcess(t, total)
	items = cosmostest.Get(t).Container(t, container)
	read := func() (runs, fence float64) {
		resp, err := items.ReadItem(context.Background(), pk, "daily-total", nil)
		if err != nil {
			t.Fatal(err)
		}
		var item map[string]any
		_ = json.Unmarshal(resp.Value, &item)
		return item["runs"].(float64), item[cosmoslease.DefaultFenceField].(float64)
	}

	occ := dueNow()
	if r := postTimer(t, ts, occ); r.Status != "executed" || r.Epoch != 1 {
		t.Fatalf("first tick: %+v", r)
	}
	if n, fence := read(); n != 1 || fence != 1 {
		t.Fatalf("after the first run: runs %v at epoch %v, want 1 at epoch 1", n, fence)
	}

	// A later holder (a newer process of this region, say) writes the item through its own fence.
	later := cosmoslease.NewFence(items, 7)
	if _, err := later.UpdateItem(context.Background(), pk, "daily-total", func(cur []byte) ([]byte, error) {
		var item map[string]any
		if err := json.Unmarshal(cur, &item); err != nil {
			return nil, err
		}
		item["runs"], item["region"] = 100, "westeurope"
		return json.Marshal(item)
	}); err != nil {
		t.Fatal(err)
	}
	r := postTimer(t, ts, occ.Add(2*time.Second))
	if r.Status != "failed" || !strings.Contains(r.Reason, "a later holder of the lease has written") || !strings.Contains(r.Reason, "epoch 7") {
		t.Fatalf("tick after a later epoch wrote: %+v", r)
	}
	if n, fence := read(); n != 100 || fence != 7 {
		t.Fatalf("the item after the refused run: runs %v at epoch %v, want the later holder's 100 at epoch 7", n, fence)
	}
	recs := runRecords(t, container, h.jobs[0].s.key)
	if len(recs) != 2 || recs[0].Status != cosmoslease.RunLost || !strings.Contains(recs[0].Error, "fenced off") {
		t.Fatalf("run records %+v; want the second lost, fenced off", recs)
	}
}
