package cosmoslease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
)

// DefaultFenceField is the item property in which a fenced write stores its epoch. Fence.WithField chooses
// another.
const DefaultFenceField = "fence"

// ErrFenced is wrapped by every *FencedError: Cosmos DB refused a write because a later epoch has written the
// item. Test with errors.Is(err, ErrFenced); errors.As gives the epochs.
var ErrFenced = errors.New("fenced off by a later epoch")

// FencedError reports a fenced write that was refused: item ID carries epoch By, written by a later holder
// than this write's Epoch. The holder that gets it has been superseded; it should stop.
type FencedError struct {
	ID    string
	Epoch int64 // this write's epoch
	By    int64 // the epoch stored in the item, greater than Epoch
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("fenced off: item %q was written at epoch %d, after this holder's epoch %d", e.ID, e.By, e.Epoch)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// Fence is a view of a container whose writes carry a lease's epoch, and which Cosmos DB itself applies only
// while no later epoch has written the same item. Get one from the lease (Lease.Fence), or with NewFence for an
// epoch handed over from elsewhere (the Functions handler's Run.Epoch).
//
// # What it guarantees
//
// Every write through a fence stores its epoch in the item (property DefaultFenceField, or the one given to
// WithField) and is applied only if the item's stored epoch is absent or a whole number at most its own. So,
// among writes through fences, the stored epoch never goes down, and a write of epoch e is never applied after
// any write of a later epoch e' > e has been applied, whatever the timing — a process paused between its check
// and its write, a request delayed in the network, the SDK retrying it. That holds because the fence sends no
// write without a condition that Cosmos DB judges, atomically, against the item's current version:
//   - PatchItem sends one conditional patch whose filter predicate is "the stored epoch is absent, or a whole
//     number ≤ e" and which also sets it to e;
//   - UpdateItem replaces the item on the ETag of a version whose stored epoch is at most e (one it read and
//     checked, or one it wrote itself). Every version written after e' carries an epoch ≥ e' > e, so once e'
//     has written, that version is no longer the current one, and Cosmos DB answers the replace 412. The ETag
//     is the answer's ETag header or, when an answer lacks it, the _etag of the item in its body; with neither,
//     the fence remembers nothing, and a read gives an error instead of a replace (an empty If-Match would be
//     no condition at all). An item
//     that does not exist is created; if a later epoch has created it meanwhile, the create gets 409. Either
//     way UpdateItem reads the item again and refuses.
//
// # What a refused or failed write returns
//
//   - A *FencedError (ErrFenced) naming the item's epoch, when the item read after the refusal carries a later
//     epoch than this fence's (or, for UpdateItem, before the write: it is not sent).
//   - An error saying the fence field holds something that is not an epoch (null, a fraction, a negative
//     number, a string, …), not ErrFenced: the fence never overwrites a value it did not write.
//   - From PatchItem, otherwise, the 412 (errors.As finds the *azcore.ResponseError) wrapped in an error that
//     says what happened and to try again: the caller's own If-Match failed, or the read after the 412 cannot
//     tell why — the read failed, the item was deleted since, or a replica behind the write that refused the
//     patch answered (an earlier epoch than the one that refused it). With an If-Match, a failed If-Match and
//     such a read look the same. Sending the patch again is safe: it is judged again.
//   - From UpdateItem, after 10 rounds in which the item changed between its read and its write (or reads kept
//     coming from a replica behind the write that refused it), an error that says so and wraps the last 409, 412
//     or 404; calling it again is safe. When its create was refused 409 and the item read afterwards does not
//     exist (another item holds the same value of a unique key of the container, or a replica behind a create
//     that came between answered), an error that says so and wraps the 409. When the item it read has no ETag
//     (no header, no _etag), an error that says so: it sends no replace.
//   - Any other failure of a request, as the SDK returns it: among them a create's 404 (the container or its
//     database does not exist), a replace's 409 (a unique key), and a read's 404 with substatus 1002 (no
//     replica reached has caught up with the session), which says nothing about whether the item exists.
//
// # Its limits
//
//   - It covers the items written through a fence, by holders of one lease key (epochs of different leases are
//     unrelated). A write outside the fence can lower or remove the stored epoch; deleting an item forgets it
//     (so does its ttl expiring), so a superseded holder could create it again: mark items deleted instead.
//   - It is as good as the epoch. Epochs of a lease only go up, except when a person deletes the lease
//     document (the count restarts at 1: the new holders are refused and a superseded one is not), while
//     instances of the reference sample share the lease container (the sample deletes the document when it
//     releases, with the same effect), or when a regional failover of a Session-consistency account loses
//     acknowledged writes (an epoch can then be handed out twice, and the item's own latest writes can be
//     lost). Strong consistency prevents the last.
//     The item's account must have a single write region: conditions do not hold across write regions.
//   - It orders holders, not the writes of one holder: two writes of the same epoch are both accepted (use
//     UpdateItem's ETag for a read-modify-write).
//   - The fence does not consult the lease. Pass lease.Context() as ctx to also stop writing as soon as this
//     process knows the lease is lost; the fence is what still holds when it does not know yet.
//
// # Cost
//
// PatchItem is one request, as an unfenced patch would be; Cosmos DB bills a patch about as a replace of the
// item (the predicate is evaluated on the one item). UpdateItem is one conditional replace when this fence
// wrote the item last, and a point read (1 RU for an item up to 1 KB) before it otherwise, as any computed
// write needs; an update that computes no change is one point read. A refused write costs one more point read,
// to name the epoch that refused it.
//
// A Fence is safe for concurrent use.
type Fence struct {
	container *azcosmos.ContainerClient
	epoch     int64
	field     string
	err       error        // a bad epoch or field name, returned by every write
	metrics   fenceMetrics // counts refusals (metrics.go)

	mu      sync.Mutex
	session string             // the session token of this fence's newest write, passed on its reads
	written map[string]version // pk and id → the version this fence last wrote, if it wrote it last
}

// Fence returns a view of container whose writes are fenced by this holding's epoch. The container may be in
// any database (or account, with its own client), and the items in any partition. Keep the fence for the
// holding: it remembers the version of each item it wrote last, so its next write to it needs no read.
func (l *Lease) Fence(container *azcosmos.ContainerClient) *Fence {
	f := NewFence(container, l.Epoch())
	f.metrics = fenceMetrics{refusals: l.c.m.refusals, attrs: l.m.attrs}
	return f
}

// NewFence returns a view of container whose writes are fenced by epoch, a lease's fencing token (at least 1).
func NewFence(container *azcosmos.ContainerClient, epoch int64) *Fence {
	f := &Fence{container: container, epoch: epoch, field: DefaultFenceField, metrics: globalFenceMetrics()}
	switch {
	case container == nil:
		f.err = invalid("the fence has no container")
	case epoch < 1 || epoch > maxSafeEpoch:
		f.err = invalid("epoch %d is not a lease's epoch (1 to %d)", epoch, int64(maxSafeEpoch))
	}
	return f
}

// maxSafeEpoch is the largest integer every JSON reader keeps exactly (2^53), Cosmos DB included.
const maxSafeEpoch = 1 << 53

// fieldName is a top-level property that a patch path can name without escaping, and that the patch predicate
// names as c['name'].
var fieldName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,254}$`)

// WithField returns a fence that stores the epoch in property name (a top-level property: a letter, then
// letters, digits or '_'; not id or ttl). Every fence writing an item must use the same name. A keyword of the
// query language (value, order, in, …) is a name like any other. (Azure matches the name exactly; the local
// test server this project uses lowercases patch conditions, so against it only all-lowercase names are fenced
// correctly, which is why the default is lowercase, and it takes a condition containing "select" for a whole
// query.)
func (f *Fence) WithField(name string) *Fence {
	g := &Fence{container: f.container, epoch: f.epoch, field: name, err: f.err, metrics: f.metrics}
	if g.err == nil && (!fieldName.MatchString(name) || name == "id" || name == "ttl") {
		g.err = invalid("fence field %q must be a top-level property named by a letter, then letters, digits or '_' (and not id or ttl)", name)
	}
	return g
}

// Epoch is the epoch this fence writes.
func (f *Fence) Epoch() int64 { return f.epoch }

// Field is the property that holds the epoch in fenced items.
func (f *Fence) Field() string { return f.field }

// condition is the patch's filter predicate: the item has never been fenced, or its field holds a whole number
// no greater than this epoch (null, a fraction or a negative number is no epoch, and is refused as on the
// UpdateItem path). The field is named with the quoted property operator, c['name'], so that a name that is a
// keyword of the query language (value, order, top, in, between, null, true, …) is still a property. Single
// quotes: azcosmos v1.5.0 writes the condition into the request's JSON without escaping it.
func (f *Fence) condition() string {
	p := "c['" + f.field + "']"
	return fmt.Sprintf("from c where NOT IS_DEFINED(%[1]s) OR (%[1]s >= 0 AND %[1]s <= %[2]d AND FLOOR(%[1]s) = %[1]s)", p, f.epoch)
}

// PatchItem patches an existing item as ContainerClient.PatchItem does, applied only if no later epoch has
// written it: it sends ops with the fence's filter predicate and one more operation, which sets the fence field
// to this epoch (so ops may hold up to nine operations, none on the fence field, and no condition of its own;
// ops itself is not changed). The item's other properties are left as they are. o is passed on (an If-Match in
// it still applies). A missing item is an error (404), as for any patch: create it with UpdateItem. A patch
// whose answer was lost may have been applied; sent again, it is judged again and, with no later epoch, applied
// again (an add to an array adds twice): give it an If-Match, or record a write id, when that matters.
func (f *Fence) PatchItem(ctx context.Context, pk azcosmos.PartitionKey, id string, ops azcosmos.PatchOperations, o *azcosmos.ItemOptions) (azcosmos.ItemResponse, error) {
	if f.err != nil {
		return azcosmos.ItemResponse{}, f.err
	}
	ops, err := f.fenced(ops)
	if err != nil {
		return azcosmos.ItemResponse{}, err
	}
	f.forget(itemKey(pk, id)) // the patch makes a version this fence has not seen whole
	resp, err := f.container.PatchItem(ctx, pk, id, ops, o)
	if err == nil {
		f.noteSession(resp)
		return resp, nil
	}
	if statusOf(err) != http.StatusPreconditionFailed {
		return resp, err
	}
	// Refused: by the fence, or by the caller's If-Match. Read the item to tell which, and to name the epoch.
	cur, rerr := f.read(ctx, pk, id)
	switch {
	case rerr != nil:
		return resp, fmt.Errorf("item %q: the fenced patch was refused (412), and the read that would tell why failed (%v); try again: %w", id, rerr, err)
	case cur == nil:
		return resp, fmt.Errorf("item %q: the fenced patch was refused (412), and the item was deleted since; try again: %w", id, err)
	}
	stored, perr := f.stored(id, cur.Value)
	switch {
	case perr != nil:
		return resp, perr
	case stored > f.epoch:
		return resp, f.refused(ctx, &FencedError{ID: id, Epoch: f.epoch, By: stored})
	case o == nil || o.IfMatchEtag == nil:
		// Only the fence's condition can have refused it, yet the item read shows no later epoch: the read was
		// answered by a replica behind the write that refused the patch (or a write outside the fence has
		// changed the field since).
		return resp, fmt.Errorf("item %q: the fenced patch was refused (412), but the item read afterwards carries epoch %d, not a later one than %d: a replica behind the write that refused it answered; try again: %w", id, stored, f.epoch, err)
	}
	// The caller's If-Match failed, or the fence's condition did and the read was answered by a replica behind
	// the write that refused it: from here the two look the same.
	return resp, fmt.Errorf("item %q: the fenced patch was refused (412), and the item read afterwards carries epoch %d, not a later one than %d: the If-Match given does not name the current version, or a replica behind the write that refused the patch answered the read; read the item and try again: %w", id, stored, f.epoch, err)
}

// fenced copies the caller's operations (their slice may be shared with other calls), adds the fence's
// condition and the operation that sets the fence field.
func (f *Fence) fenced(ops azcosmos.PatchOperations) (azcosmos.PatchOperations, error) {
	b, err := ops.MarshalJSON()
	if err != nil {
		return ops, err
	}
	if bytes.HasPrefix(b, []byte(`{"condition":`)) {
		return ops, invalid("the patch has a condition of its own; the fence sets the condition (the stored epoch), so express yours with an If-Match or an UpdateItem")
	}
	var spec struct {
		Operations []struct {
			Op    string          `json:"op"`
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		} `json:"operations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return ops, err
	}
	var out azcosmos.PatchOperations
	for _, op := range spec.Operations {
		if op.Path == "/"+f.field || strings.HasPrefix(op.Path, "/"+f.field+"/") {
			return ops, invalid("the patch writes %s, the fence's own field", op.Path)
		}
		switch op.Op {
		case "add":
			out.AppendAdd(op.Path, op.Value)
		case "replace":
			out.AppendReplace(op.Path, op.Value)
		case "set":
			out.AppendSet(op.Path, op.Value)
		case "remove":
			out.AppendRemove(op.Path)
		case "incr":
			var n int64
			if err := json.Unmarshal(op.Value, &n); err != nil {
				return ops, fmt.Errorf("increment of %s by %s: %v", op.Path, op.Value, err)
			}
			out.AppendIncrement(op.Path, n)
		default:
			return ops, fmt.Errorf("patch operation %q is not one the fence knows", op.Op)
		}
	}
	out.SetCondition(f.condition())
	out.AppendSet("/"+f.field, f.epoch)
	return out, nil
}

// maxUpdateAttempts bounds how often UpdateItem starts over when another write comes between its read and its
// write. Each time it does, that other write was applied, so the item moved on.
const maxUpdateAttempts = 10

// UpdateItem writes the item that update computes from the current one, unless a later epoch has written it.
//
// It starts from the version this fence last wrote, when it wrote the item last (a holder that keeps writing
// its items makes one request per write, as it makes one per renewal); otherwise it reads the item, and refuses
// with a *FencedError if the stored epoch is above this fence's. It calls update with that version (nil when
// the item does not exist), sets the fence field in the JSON object update returns, and writes it: a replace
// conditional on the version's ETag, or a create when there was no item. When another write has come between
// (412 — which is how a superseded holder's write is refused by Cosmos DB — or 409 for the create), it reads the
// item and judges it again: refuses, or calls update again. So update may be called more than once, and should
// compute from current only. update returning nil writes nothing; the result then carries the item as read:
// when update was given the version this fence remembered, UpdateItem first reads the item (one point read) and
// answers with that version only if the read shows it unchanged; otherwise it judges the item afresh — refuses
// it, or calls update again with it. A no-op is a read, not a write, so it is judged at the account's
// consistency, not against the current version: under Session consistency a replica behind a later epoch's
// write may answer, and a superseded holder then gets its own version back with no error (Strong consistency
// prevents that). Only a write is judged by Cosmos DB against the current version; a superseded holder's next
// write is refused. The object's id must be id (it is added when missing); its partition key property must match
// pk.
//
// A write whose answer was lost and which the SDK retried may have been applied although UpdateItem reports a
// conflict and starts over: update then sees its own result. Record a write id in the item when applying the
// same change twice would matter.
func (f *Fence) UpdateItem(ctx context.Context, pk azcosmos.PartitionKey, id string, update func(current []byte) ([]byte, error)) (azcosmos.ItemResponse, error) {
	if f.err != nil {
		return azcosmos.ItemResponse{}, f.err
	}
	key := itemKey(pk, id)
	var lastErr error
	createRefused := false // the last round's create was refused 409
	var judged *azcosmos.ItemResponse
	haveRead := false // judged holds a read made since the last round began (nil: no item): start from it
	for range maxUpdateAttempts {
		var cur version
		remembered := false
		if !haveRead {
			cur, remembered = f.lastWritten(key)
		}
		if !remembered {
			read := judged
			if !haveRead {
				var err error
				if read, err = f.read(ctx, pk, id); err != nil {
					return azcosmos.ItemResponse{}, err
				}
			}
			judged, haveRead = nil, false
			if read == nil && createRefused {
				// No item came between: the 409 was for another item's unique key (or this read was answered by a
				// replica behind the create that came between, and a new call will see it).
				return azcosmos.ItemResponse{}, fmt.Errorf("item %q: its create was refused (409), but no item %q exists: another item holds the same value of one of the container's unique keys (or the read was answered by a replica behind a create that came between; then try again): %w", id, id, lastErr)
			}
			createRefused = false
			if read != nil {
				cur = version{body: read.Value, etag: etagOf(*read)}
				stored, err := f.stored(id, cur.body)
				if err != nil {
					return azcosmos.ItemResponse{}, err
				}
				if stored > f.epoch {
					return azcosmos.ItemResponse{}, f.refused(ctx, &FencedError{ID: id, Epoch: f.epoch, By: stored})
				}
			}
		}
		next, err := update(bytes.Clone(cur.body)) // update may edit its copy; the remembered version stays as stored
		if err != nil {
			return azcosmos.ItemResponse{}, err
		}
		if next == nil {
			if remembered {
				// A later epoch's write does not tell this fence: read the item, and answer with the remembered
				// version only while it is still the current one. Otherwise judge the item afresh.
				read, err := f.read(ctx, pk, id)
				if err != nil {
					return azcosmos.ItemResponse{}, err
				}
				if read == nil || etagOf(*read) != cur.etag {
					f.forget(key)
					judged, haveRead = read, true // judge what was read, without reading again
					continue
				}
				cur.body = read.Value
			}
			var resp azcosmos.ItemResponse
			resp.Value, resp.ETag = cur.body, cur.etag
			return resp, nil
		}
		body, err := f.stamp(id, next)
		if err != nil {
			return azcosmos.ItemResponse{}, err
		}
		// The stored item comes back with the answer, so the next write can start from it without a read.
		o := &azcosmos.ItemOptions{EnableContentResponseOnWrite: true}
		var resp azcosmos.ItemResponse
		if cur.body == nil {
			resp, err = f.container.CreateItem(ctx, pk, body, o)
		} else {
			if cur.etag == "" {
				// An empty If-Match is no condition at all.
				return azcosmos.ItemResponse{}, fmt.Errorf("item %q was read without an ETag (no header, no _etag), so the write could not be conditional", id)
			}
			o.IfMatchEtag = &cur.etag
			resp, err = f.container.ReplaceItem(ctx, pk, id, body, o)
		}
		if err == nil {
			f.noteSession(resp)
			resp.ETag = etagOf(resp) // from the stored item when the answer lacks the header
			if len(resp.Value) == 0 {
				resp.Value = body
			}
			if resp.ETag != "" {
				f.remember(key, version{body: resp.Value, etag: resp.ETag})
			} else {
				f.forget(key) // the next write reads the item first
			}
			return resp, nil
		}
		f.forget(key)
		switch {
		case cur.body == nil && statusOf(err) == http.StatusNotFound:
			// A create is refused 404 only when the container (or its database) does not exist: no other write
			// came between, and trying again cannot help.
			return resp, err
		case cur.body != nil && statusOf(err) == http.StatusConflict:
			// A replace that another write came between gets 412; a 409 is another item's unique key.
			return resp, err
		}
		switch statusOf(err) {
		case http.StatusConflict, http.StatusPreconditionFailed, http.StatusNotFound:
			// Another write came between (a create, a replace, a delete): judge the item again.
			lastErr = err
			createRefused = cur.body == nil && statusOf(err) == http.StatusConflict
			continue
		}
		return resp, err
	}
	return azcosmos.ItemResponse{}, fmt.Errorf("item %q changed between the read and the write %d times; try again: %w", id, maxUpdateAttempts, lastErr)
}

// refused counts a refused write (cosmoslease.fence.refusals) and returns its error.
func (f *Fence) refused(ctx context.Context, err *FencedError) error {
	f.metrics.refused(ctx, f.container.ID())
	return err
}

// version is an item as this fence last wrote it.
type version struct {
	body []byte
	etag azcore.ETag
}

// itemKey names an item in the fence's memory: its partition key printed with the type of each value (the
// string "1" and the number 1 are different partitions, as are "a b" and the hierarchical key "a", "b"), then
// its id.
func itemKey(pk azcosmos.PartitionKey, id string) string {
	return fmt.Sprintf("%#v", pk) + "\x00" + id
}

// etagOf is the ETag of the version an answer carries: its ETag header, or else the _etag of the item in its
// body (never "", as long as either is there).
func etagOf(resp azcosmos.ItemResponse) azcore.ETag {
	if resp.ETag != "" {
		return resp.ETag
	}
	return azcore.ETag(store.ETagOf(resp.Value))
}

// maxRemembered bounds the versions a fence keeps; past it, it forgets them all and reads again.
const maxRemembered = 1024

func (f *Fence) lastWritten(key string) (version, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.written[key]
	return v, ok
}

func (f *Fence) remember(key string, v version) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.written == nil || len(f.written) >= maxRemembered {
		f.written = map[string]version{}
	}
	v.body = bytes.Clone(v.body) // never the answer's slice, which the caller may edit or reuse
	f.written[key] = v
}

func (f *Fence) forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.written, key)
}

// read point-reads the item with this fence's session token; nil when it does not exist. A 404 with substatus
// 1002 (ReadSessionNotAvailable: the replica has not caught up with the session token) says nothing about the
// item: it is an error, as the lease's own reads classify it.
func (f *Fence) read(ctx context.Context, pk azcosmos.PartitionKey, id string) (*azcosmos.ItemResponse, error) {
	var o *azcosmos.ItemOptions
	f.mu.Lock()
	if f.session != "" {
		s := f.session
		o = &azcosmos.ItemOptions{SessionToken: &s}
	}
	f.mu.Unlock()
	resp, err := f.container.ReadItem(ctx, pk, id, o)
	if statusOf(err) == http.StatusNotFound && substatusOf(err) != "1002" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

func (f *Fence) noteSession(resp azcosmos.ItemResponse) {
	if resp.SessionToken == nil || *resp.SessionToken == "" {
		return
	}
	f.mu.Lock()
	f.session = *resp.SessionToken
	f.mu.Unlock()
}

// stored is the epoch an item carries in the fence field: 0 when it has none. Anything but a whole number is an
// error: the fence does not overwrite a property it did not write.
func (f *Fence) stored(id string, body []byte) (int64, error) {
	var props map[string]json.RawMessage
	if err := json.Unmarshal(body, &props); err != nil {
		return 0, fmt.Errorf("item %q is not a JSON object: %v", id, err)
	}
	raw, ok := props[f.field]
	if !ok {
		return 0, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil || string(bytes.TrimSpace(raw)) == "null" || n != math.Trunc(n) || n < 0 || n > maxSafeEpoch {
		return 0, fmt.Errorf("item %q holds %s in %q, which is not an epoch: the fence will not overwrite it (choose another field with WithField)", id, raw, f.field)
	}
	return int64(n), nil
}

// stamp sets the fence field of the JSON object update returned to this epoch, and checks its id.
func (f *Fence) stamp(id string, next []byte) ([]byte, error) {
	var props map[string]json.RawMessage
	if err := json.Unmarshal(next, &props); err != nil || props == nil {
		return nil, fmt.Errorf("the update of item %q did not return a JSON object", id)
	}
	if raw, ok := props["id"]; ok {
		var got string
		if json.Unmarshal(raw, &got) != nil || got != id {
			return nil, fmt.Errorf("the update of item %q returned an object with id %s", id, raw)
		}
	} else {
		props["id"], _ = json.Marshal(id)
	}
	props[f.field] = json.RawMessage(strconv.FormatInt(f.epoch, 10))
	return json.Marshal(props)
}

func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func substatusOf(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.RawResponse != nil {
		return re.RawResponse.Header.Get("x-ms-substatus")
	}
	return ""
}

// Container returns the SDK's client of the lease container, for items kept beside the leases (fence them
// with Lease.Fence). The lease documents in it are the protocol's: never write them.
func (c *Client) Container() *azcosmos.ContainerClient {
	if s, ok := c.st.(*cosmosstore.Store); ok {
		return s.Container()
	}
	return nil
}
