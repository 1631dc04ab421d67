package cosmoslease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/faultproxy"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
	"github.com/cosmoslease/cosmoslease/internal/store/memstore"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.MainWithExamples(m)) }

// Fault kinds, injected the same way for both beds.
const (
	faultThrottle    = "throttle"      // 429 with a short retry-after; not applied
	faultUnavailable = "unavailable"   // 503; not applied
	faultTimeout     = "timeout"       // no answer until the request's context ends; not applied
	faultLostReply   = "lost-response" // applied by the server, then the connection drops
	// faultStale: a read answered by a replica one write behind on the document, unless the read's session
	// token names the newest write (Session consistency).
	faultStale = "stale"
	// faultRetried: applied by the server, the answer lost, and the SDK's retry refused because the first try
	// changed the document (409 for a create, 412 for a replace).
	faultRetried = "retried"
)

// faults is a queue of faults per operation ("read", "create", "replace"), taken one per request, and a count
// of the requests that reached the store.
type faults struct {
	mu      sync.Mutex
	queue   map[string][]string
	reached map[string]int
}

func newFaults() *faults { return &faults{queue: map[string][]string{}, reached: map[string]int{}} }

func (f *faults) inject(op, kind string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.queue[op] = append(f.queue[op], kind)
	}
}

func (f *faults) take(op string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queue[op]
	if len(q) == 0 {
		return ""
	}
	f.queue[op] = q[1:]
	return q[0]
}

func (f *faults) reach(op string) {
	f.mu.Lock()
	f.reached[op]++
	f.mu.Unlock()
}

// count returns how many requests of op reached the store.
func (f *faults) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reached[op]
}

func (f *faults) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reached = map[string]int{}
}

// bed is one place the conformance suite runs: the in-memory store or a real Cosmos-protocol server.
type bed interface {
	// client opens a contender named owner; tweak adjusts the options first.
	client(t *testing.T, owner string, tweak func(*Options)) (*Client, *faults)
	// put overwrites the document of key by hand, unconditionally; del deletes it.
	put(t *testing.T, key string, body string)
	del(t *testing.T, key string)
	// dropContainer deletes the container.
	dropContainer(t *testing.T)
}

// testOptions are short timings: a takeover takes about 3 s.
func testOptions(owner string) Options {
	return Options{OwnerID: owner, Region: "region-" + owner, LeaseDuration: 3 * time.Second,
		RenewInterval: time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
		RequestTimeout: time.Second}
}

// memBed: the in-memory store behind a fault-injecting wrapper, on the real clock.
type memBed struct{ st *memstore.Store }

var _ bed = (*memBed)(nil)
var _ bed = (*serverBed)(nil)

func newMemBed() *memBed { return &memBed{st: memstore.New(clock.Real{})} }

func (b *memBed) client(t *testing.T, owner string, tweak func(*Options)) (*Client, *faults) {
	t.Helper()
	opts := testOptions(owner)
	if tweak != nil {
		tweak(&opts)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	f := newFaults()
	return newClient(&faultStore{Store: b.st, f: f, lag: b.st.LagReads}, opts, clock.Real{}), f
}

func (b *memBed) put(t *testing.T, key, body string) { b.st.Put(leasedoc.IDPrefix+key, []byte(body)) }
func (b *memBed) del(t *testing.T, key string)       { b.st.Delete(leasedoc.IDPrefix + key) }
func (b *memBed) dropContainer(t *testing.T)         { b.st.DropContainer() }

// faultStore applies injected faults around a store.Store.
type faultStore struct {
	store.Store
	f   *faults
	lag func(n, depth int) // makes the next n reads lag (memstore.LagReads)
}

func (s *faultStore) around(ctx context.Context, op string, call func() (store.Item, error)) (store.Item, error) {
	switch s.f.take(op) {
	case faultThrottle:
		return store.Item{}, &store.Error{Op: op, Status: 429, Kind: store.Throttled, RetryAfter: 20 * time.Millisecond}
	case faultUnavailable:
		return store.Item{}, &store.Error{Op: op, Status: 503, Kind: store.Unavailable}
	case faultTimeout:
		<-ctx.Done()
		return store.Item{}, &store.Error{Op: op, Kind: store.Unknown, Err: ctx.Err()}
	case faultLostReply:
		s.f.reach(op)
		_, _ = call()
		return store.Item{}, &store.Error{Op: op, Kind: store.Unknown, Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}
	case faultStale:
		s.lag(1, 1)
	case faultRetried:
		s.f.reach(op)
		_, _ = call()
		s.f.reach(op)
		return call()
	}
	s.f.reach(op)
	return call()
}

func (s *faultStore) Read(ctx context.Context, pk, id, session string) (store.Item, error) {
	return s.around(ctx, "read", func() (store.Item, error) { return s.Store.Read(ctx, pk, id, session) })
}

func (s *faultStore) Create(ctx context.Context, pk string, body []byte) (store.Item, error) {
	return s.around(ctx, "create", func() (store.Item, error) { return s.Store.Create(ctx, pk, body) })
}

func (s *faultStore) Replace(ctx context.Context, pk, id string, body []byte, etag string) (store.Item, error) {
	return s.around(ctx, "replace", func() (store.Item, error) { return s.Store.Replace(ctx, pk, id, body, etag) })
}

// serverBed: the real SDK over HTTP to the Cosmos-protocol server, one container per test, with faults
// injected in the HTTP transport under the SDK and requests counted where they leave for the server.
type serverBed struct {
	srv       *cosmostest.Server
	container string
	pkPath    string
	// replicas gives the server, which has one copy and no session tokens, the replicas of a
	// Session-consistency account, shared by every client of the bed.
	replicas *faultproxy.Replicas
}

func newServerBed(t *testing.T, pkPath string) *serverBed {
	srv := cosmostest.Get(t)
	return &serverBed{srv: srv, container: srv.NewContainer(t, pkPath), pkPath: pkPath, replicas: faultproxy.NewReplicas()}
}

func (b *serverBed) options(owner string) Options {
	opts := testOptions(owner)
	opts.ConnectionString, opts.Endpoint = b.srv.ConnectionString, b.srv.Endpoint
	opts.Database, opts.Container, opts.PartitionKeyPath = b.srv.Database, b.container, b.pkPath
	return opts
}

func (b *serverBed) client(t *testing.T, owner string, tweak func(*Options)) (*Client, *faults) {
	t.Helper()
	opts := b.options(owner)
	f := newFaults()
	opts.Transport = &faultTransport{next: &http.Client{}, f: f, replicas: b.replicas}
	if tweak != nil {
		tweak(&opts)
	}
	c, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.reset() // count only what the test itself does
	return c, f
}

func (b *serverBed) pkValue(key string) azcosmos.PartitionKey {
	if b.pkPath == "/id" {
		return azcosmos.NewPartitionKeyString(leasedoc.IDPrefix + key)
	}
	return azcosmos.NewPartitionKeyString(key)
}

func (b *serverBed) put(t *testing.T, key, body string) {
	t.Helper()
	if _, err := b.srv.Container(t, b.container).UpsertItem(context.Background(), b.pkValue(key), []byte(body), nil); err != nil {
		t.Fatal(err)
	}
}

func (b *serverBed) del(t *testing.T, key string) {
	t.Helper()
	if _, err := b.srv.Container(t, b.container).DeleteItem(context.Background(), b.pkValue(key), leasedoc.IDPrefix+key, nil); err != nil {
		t.Fatal(err)
	}
}

func (b *serverBed) dropContainer(t *testing.T) {
	t.Helper()
	if _, err := b.srv.Container(t, b.container).Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

// faultTransport injects faults into document requests and counts those that reach the server.
type faultTransport struct {
	next     policy.Transporter
	f        *faults
	replicas *faultproxy.Replicas // nil: no session tokens, no lagging replicas
	// account, when set, rewrites the account read (GET /) answer.
	account func([]byte) []byte
}

func (tr *faultTransport) Do(r *http.Request) (*http.Response, error) {
	op := cosmostest.Kind(r)
	if op == "account" && tr.account != nil {
		resp, err := tr.next.Do(r)
		if err != nil {
			return resp, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = tr.account(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
		return resp, nil
	}
	if op != "read" && op != "create" && op != "replace" {
		return tr.next.Do(r)
	}
	switch tr.f.take(op) {
	case faultThrottle:
		return synth(r, 429, "TooManyRequests", map[string]string{"x-ms-retry-after-ms": "20"}), nil
	case faultUnavailable:
		return synth(r, 503, "ServiceUnavailable", nil), nil
	case faultTimeout:
		<-r.Context().Done()
		return nil, r.Context().Err()
	case faultLostReply:
		tr.f.reach(op)
		_, _ = tr.forward(r)
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	case faultRetried:
		tr.f.reach(op)
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if resp, err := tr.forward(r); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		tr.f.reach(op)
		r.Body = io.NopCloser(bytes.NewReader(body))
		return tr.forward(r)
	case faultStale:
		if tr.replicas != nil {
			if status, body, header, ok := tr.replicas.Lagging(r); ok {
				tr.f.reach(op)
				resp := synth(r, status, "", nil)
				resp.Header, resp.Body, resp.ContentLength = header, io.NopCloser(bytes.NewReader(body)), int64(len(body))
				return resp, nil
			}
		}
	}
	tr.f.reach(op)
	return tr.forward(r)
}

// forward sends a document request to the server, and shows request and answer to the replica model.
func (tr *faultTransport) forward(r *http.Request) (*http.Response, error) {
	if tr.replicas == nil {
		return tr.next.Do(r)
	}
	var reqBody []byte
	if r.Body != nil {
		reqBody, _ = io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := tr.next.Do(r)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	tr.replicas.Observe(r, reqBody, resp.StatusCode, resp.Header, body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func synth(r *http.Request, status int, code string, headers map[string]string) *http.Response {
	body := fmt.Sprintf(`{"code":%q,"message":"injected by the test"}`, code)
	resp := &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body))}
	for k, v := range headers {
		resp.Header.Set(k, v)
	}
	return resp
}

// beds runs fn once per bed.
func beds(t *testing.T, fn func(t *testing.T, b bed)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		fn(t, newMemBed())
	})
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		fn(t, newServerBed(t, DefaultPartitionKeyPath))
	})
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func heldErr(t *testing.T, err error) *HeldError {
	t.Helper()
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("want *HeldError, got %v", err)
	}
	return held
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
