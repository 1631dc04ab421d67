package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// counterState is the fenced counter item of a key as the run left it.
type counterState struct {
	Exists bool
	Value  int64 `json:"value"`
	Fence  int64 `json:"fence"`
}

// readCounter reads the counter item of key from the lease container, where `run --fence-counter` keeps it.
func readCounter(ctx context.Context, c *cosmoslease.Client, key string) (counterState, error) {
	resp, err := c.Container().ReadItem(ctx, azcosmos.NewPartitionKeyString(key), counterID(key), nil)
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return counterState{}, nil
	}
	if err != nil {
		return counterState{}, fmt.Errorf("read the counter of %s: %w", key, err)
	}
	s := counterState{Exists: true}
	if err := json.Unmarshal(resp.Value, &s); err != nil {
		return s, fmt.Errorf("the counter of %s: %w", key, err)
	}
	return s, nil
}

// counterVerdict is what checkCounter found.
type counterVerdict struct {
	writes, fenced int
	violations     []string
}

// checkCounter proves, from the work events, that the counter's history never accepted a write from a
// superseded epoch. Each work event carries the value its increment wrote and its epoch; the increments are
// read-modify-writes on the item's ETag, so the values are the order in which Cosmos DB applied them. So:
//   - no value is reported twice (two increments from one version: a lost update);
//   - in order of value, epochs never go down: a write of epoch e after one of e' > e is exactly what the fence
//     forbids;
//   - the item ends at or above every reported value, with a stored epoch at or above every reported one (the
//     stored epoch never goes back).
//
// Increments whose process died before it printed them leave gaps in the values; they are not seen, and the
// final read covers them.
func checkCounter(events []ev, final counterState) counterVerdict {
	var v counterVerdict
	var writes []ev
	for _, e := range events {
		switch {
		case e.Event == "work" && e.Counter != nil:
			writes = append(writes, e)
		case e.Event == "fenced":
			v.fenced++
		}
	}
	v.writes = len(writes)
	sort.SliceStable(writes, func(i, j int) bool { return *writes[i].Counter < *writes[j].Counter })
	var maxEpoch int64
	for i, w := range writes {
		maxEpoch = max(maxEpoch, w.Epoch)
		if i == 0 {
			continue
		}
		p := writes[i-1]
		switch {
		case *w.Counter == *p.Counter:
			v.violations = append(v.violations, fmt.Sprintf("counter value %d written twice: by %s at epoch %d and by %s at epoch %d (a lost update)",
				*w.Counter, p.proc, p.Epoch, w.proc, w.Epoch))
		case w.Epoch < p.Epoch:
			v.violations = append(v.violations, fmt.Sprintf("counter value %d was written by %s at epoch %d after value %d by %s at epoch %d: a superseded holder's write was accepted",
				*w.Counter, w.proc, w.Epoch, *p.Counter, p.proc, p.Epoch))
		}
	}
	if n := len(writes); n > 0 {
		last := writes[n-1]
		switch {
		case !final.Exists:
			v.violations = append(v.violations, fmt.Sprintf("the counter item is gone, though %d writes were reported", n))
		case final.Value < *last.Counter:
			v.violations = append(v.violations, fmt.Sprintf("the counter ends at %d, below the reported value %d: a write was lost", final.Value, *last.Counter))
		case final.Fence != 0 && final.Fence < maxEpoch:
			v.violations = append(v.violations, fmt.Sprintf("the counter's stored epoch ends at %d, below the reported epoch %d: it went back", final.Fence, maxEpoch))
		}
	}
	return v
}
