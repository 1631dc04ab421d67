package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// counterType marks the counter item, beside the lease documents and run records of the lease container.
const counterType = "fence-counter"

// fenceCounter is `run --fence-counter`: an item in the lease container, in the lease's partition, that every
// work item increments through the lease's fence, so Cosmos DB refuses an increment from a superseded holder.
//
//	{"id": "orders-counter", "leaseKey": "critical-section-lock", "type": "fence-counter", "value": 17,
//	 "lastWrite": "{leaseId}#{item}", "fence": 4}
type fenceCounter struct {
	container *azcosmos.ContainerClient
	fence     *cosmoslease.Fence
	id        string
	pkProp    string
	pkValue   string
	leaseID   string // names this holding's writes in lastWrite
	// unfenced writes the counter with a plain read-modify-write on the ETag and no epoch: the chaos run's
	// build "without the fence", to show that its checker catches what the fence prevents.
	unfenced bool
}

// checkCounterID explains why id cannot name the counter item.
func checkCounterID(id string) error {
	switch {
	case id == "" || strings.TrimSpace(id) != id:
		return fmt.Errorf("--fence-counter: the counter id %q is empty or starts or ends with white space; pass a name such as orders-counter", id)
	case len(id) > 255:
		return fmt.Errorf("--fence-counter: the counter id is %d bytes long; Cosmos DB ids hold at most 255", len(id))
	case strings.HasPrefix(id, leasedoc.IDPrefix) || strings.HasPrefix(id, cosmoslease.RunPrefix):
		return fmt.Errorf("--fence-counter: %q starts with %q or %q, which lease documents and run records use; choose another id such as orders-counter", id, leasedoc.IDPrefix, cosmoslease.RunPrefix)
	}
	for _, r := range id {
		if r == '/' || r == '\\' || r == '?' || r == '#' || unicode.IsControl(r) {
			return fmt.Errorf("--fence-counter: %q contains %q, which Cosmos DB does not allow in ids; use letters, digits, '-', '_', '.' or ':'", id, r)
		}
	}
	return nil
}

func newFenceCounter(client *cosmoslease.Client, lease *cosmoslease.Lease, id string, unfenced bool) *fenceCounter {
	pkProp := strings.TrimPrefix(client.Options().PartitionKeyPath, "/")
	pkValue := lease.Key()
	if pkProp == "id" {
		pkValue = id
	}
	return &fenceCounter{container: client.Container(), fence: lease.Fence(client.Container()), id: id, pkProp: pkProp,
		pkValue: pkValue, leaseID: lease.State().LeaseID, unfenced: unfenced}
}

// increment adds one to the counter for work item n and returns the value it wrote. A *cosmoslease.FencedError
// means a later holder has written the counter: this one has been superseded.
func (c *fenceCounter) increment(ctx context.Context, item int) (int64, error) {
	write := c.leaseID + "#" + strconv.Itoa(item)
	var value int64
	update := func(current []byte) ([]byte, error) {
		doc := map[string]json.RawMessage{}
		if current != nil {
			if err := json.Unmarshal(current, &doc); err != nil {
				return nil, fmt.Errorf("the counter item %q is not a JSON object: %v", c.id, err)
			}
			if t := string(doc["type"]); t != `"`+counterType+`"` {
				return nil, fmt.Errorf("item %q is not a counter (type %s); choose another --fence-counter id", c.id, orDefault(t, "missing"))
			}
		}
		var v int64
		if raw, ok := doc["value"]; ok {
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, fmt.Errorf("the counter item %q holds value %s, not a whole number", c.id, raw)
			}
		}
		var last string
		_ = json.Unmarshal(doc["lastWrite"], &last)
		if last == write {
			// This very write was applied, though its answer was lost: do not count the item twice.
			value = v
			return nil, nil
		}
		value = v + 1
		for k := range doc {
			if strings.HasPrefix(k, "_") { // the system's properties; Cosmos DB sets them
				delete(doc, k)
			}
		}
		doc["id"], _ = json.Marshal(c.id)
		doc[c.pkProp], _ = json.Marshal(c.pkValue)
		doc["type"], _ = json.Marshal(counterType)
		doc["value"], _ = json.Marshal(value)
		doc["lastWrite"], _ = json.Marshal(write)
		return json.Marshal(doc)
	}
	pk := azcosmos.NewPartitionKeyString(c.pkValue)
	var err error
	if c.unfenced {
		err = c.unfencedUpdate(ctx, pk, update)
	} else {
		_, err = c.fence.UpdateItem(ctx, pk, c.id, update)
	}
	return value, err
}

// unfencedUpdate is UpdateItem without the epoch: read, compute, create or replace on the ETag read.
func (c *fenceCounter) unfencedUpdate(ctx context.Context, pk azcosmos.PartitionKey, update func([]byte) ([]byte, error)) error {
	var lastErr error
	for range 10 {
		var current []byte
		var etag azcore.ETag
		resp, err := c.container.ReadItem(ctx, pk, c.id, nil)
		switch {
		case status(err) == http.StatusNotFound:
		case err != nil:
			return err
		default:
			current, etag = resp.Value, resp.ETag
		}
		next, err := update(current)
		if err != nil || next == nil {
			return err
		}
		if current == nil {
			_, err = c.container.CreateItem(ctx, pk, next, nil)
		} else {
			_, err = c.container.ReplaceItem(ctx, pk, c.id, next, &azcosmos.ItemOptions{IfMatchEtag: &etag})
		}
		switch status(err) {
		case http.StatusConflict, http.StatusPreconditionFailed, http.StatusNotFound:
			lastErr = err
			continue
		}
		return err
	}
	return fmt.Errorf("the counter changed under every attempt: %w", lastErr)
}

// passing reports whether a failed counter write may succeed on the next work item: throttling, unavailability,
// timeouts, lost connections, or other writes coming between (409/412). Anything else — an item that is not a
// counter, a refused request — will fail again.
func passing(err error) bool {
	var ne net.Error
	switch s := status(err); {
	case s == 0:
		return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.As(err, &ne) ||
			errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	case s == 408, s == 409, s == 410, s == 412, s == 429, s == 449, s >= 500:
		return true
	}
	return false
}

func status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
