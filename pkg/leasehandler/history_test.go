//go:build linux || darwin

package leasehandler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// meter is the HTTP transport under the SDK: it counts requests by kind, the bytes that come back from the
// server (status line, headers and body), and the documents each query answer carries.
type meter struct {
	next policy.Transporter

	mu        sync.Mutex
	requests  map[string]int
	bytes     int64
	queryDocs []int
	queryHdrs []http.Header
}

func newMeter() *meter { return &meter{next: &http.Client{}, requests: map[string]int{}} }

func (m *meter) Do(r *http.Request) (*http.Response, error) {
	resp, err := m.next.Do(r)
	if err != nil {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, rerr
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s\r\n", resp.Proto, resp.Status)
	_ = resp.Header.Write(&head)
	kind := cosmostest.Kind(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[kind]++
	m.bytes += int64(head.Len()+2) + int64(len(body))
	if kind == "query" {
		var page struct{ Documents []json.RawMessage }
		_ = json.Unmarshal(body, &page)
		m.queryDocs = append(m.queryDocs, len(page.Documents))
		m.queryHdrs = append(m.queryHdrs, r.Header.Clone())
	}
	return resp, nil
}

func (m *meter) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests, m.bytes, m.queryDocs, m.queryHdrs = map[string]int{}, 0, nil, nil
}

// seedRuns writes n completed run records of the handler's lease, one a minute up to the hour before now, as
// RunOnce writes them.
func seedRuns(tb testing.TB, container, key string, n int) {
	tb.Helper()
	cc := cosmostest.Get(tb).Container(tb, container)
	last := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	work := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				occ := last.Add(-time.Duration(i) * time.Minute)
				body, _ := json.Marshal(map[string]any{"id": cosmoslease.RunID(key, occ), "leaseKey": key, "type": "run",
					"occurrence": occ.Format("2006-01-02T15:04:05.000Z"), "region": "eastus", "instance": "eastus-pod-1", "epoch": 1,
					"status": cosmoslease.RunCompleted, "startedAt": occ, "finishedAt": occ.Add(time.Second), "ttl": 86400 * 30,
					"claimId": fmt.Sprint(i)})
				if _, err := cc.CreateItem(context.Background(), azcosmos.NewPartitionKeyString(key), body, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case work <- i:
		case err := <-errs:
			tb.Fatal(err)
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}

// leaseStatus invokes LeaseStatus as the host does and returns the body it answers the caller with.
func leaseStatus(tb testing.TB, ts *httptest.Server) map[string]json.RawMessage {
	tb.Helper()
	resp, err := ts.Client().Post(ts.URL+"/"+statusFunction, "application/json", strings.NewReader(`{"Data":{"req":{"Url":"http://localhost:7071/api/LeaseStatus","Method":"GET","Query":{},"Headers":{},"Params":{}}},"Metadata":{}}`))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Outputs struct{ Res httpOutput } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Outputs.Res.StatusCode != 200 {
		tb.Fatalf("LeaseStatus: %v %+v", err, out)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out.Outputs.Res.Body), &body); err != nil {
		tb.Fatal(err)
	}
	return body
}

// LeaseStatus reads the newest runs with one single-partition query that returns only them, however many
// records the lease has (it used to read every record of every lease, across partitions, and sort them), and
// lists the occurrences among them that no region ran.
func TestLeaseStatusReadsOnlyTheNewestRuns(t *testing.T) {
	ts, h, container := inProcess(t, func(ctx context.Context, run Run) error { return nil }, map[string]string{"LeaseTimerSchedule": "0 */1 * * * *"})
	m := newMeter()
	h.app.opts.Transport = m
	seedRuns(t, container, h.jobs[0].s.key, 40)
	ticked := time.Now().UTC().Truncate(time.Minute)
	if r := postTimer(t, ts, ticked); r.Status != "executed" {
		t.Fatalf("tick: %+v", r)
	}
	leaseStatus(t, ts) // connects: the account and container reads are not part of a call's cost
	m.reset()
	body := leaseStatus(t, ts)

	// It runs on the app's HTTP instances, never the timer's: it reports the lease, not whether "this" process
	// holds it. Between runs the lease is released.
	for _, k := range []string{"heldHere", "thisInstance", "thisRegion"} {
		if _, ok := body[k]; ok {
			t.Fatalf("LeaseStatus claims something about the process that served it (%s): %v", k, body)
		}
	}
	if string(body["state"]) != `"released"` || string(body["owner"]) != strconv.Quote(h.app.opts.OwnerID) || string(body["epoch"]) != "1" ||
		string(body["occurrence"]) != strconv.Quote(ticked.Format(time.RFC3339)) {
		t.Fatalf("LeaseStatus lease: %v", body)
	}
	var recent []cosmoslease.RunRecord
	if err := json.Unmarshal(body["recentRuns"], &recent); err != nil || len(recent) != cosmoslease.DefaultRunLimit {
		t.Fatalf("recentRuns: %v, %d records; want %d", err, len(recent), cosmoslease.DefaultRunLimit)
	}
	newestSeed := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	for i, r := range recent {
		want := ticked
		if i > 0 {
			want = newestSeed.Add(-time.Duration(i-1) * time.Minute)
		}
		if !r.Occurrence.Equal(want) {
			t.Fatalf("recentRuns[%d] is %s, want %s (newest first)", i, r.Occurrence, want)
		}
	}
	// Missed: every minute after the newest seed up to the window's end, but the one that ran.
	var win struct{ From, To time.Time }
	var count int
	var missed []time.Time
	_ = json.Unmarshal(body["missedWindow"], &win)
	_ = json.Unmarshal(body["missedCount"], &count)
	_ = json.Unmarshal(body["missed"], &missed)
	want := 0
	for m := newestSeed.Add(time.Minute); !m.After(win.To); m = m.Add(time.Minute) {
		if !m.Equal(ticked) {
			want++
		}
	}
	if want == 0 || count != want || !win.From.Equal(recent[len(recent)-1].Occurrence) || len(missed) != min(want, 10) ||
		!missed[0].After(missed[len(missed)-1]) || missed[0].Equal(ticked) {
		t.Fatalf("missed %d %v in %+v; want %d, newest first, from the oldest run shown", count, missed, win, want)
	}
	if m.requests["read"] != 1 || m.requests["query"] != 1 || len(m.requests) != 2 {
		t.Fatalf("requests %v; want a point read of the lease and one query for the run history", m.requests)
	}
	// azcosmos sends x-ms-documentdb-query-enablecrosspartition on every query; the partition key header is
	// what confines it.
	if pk := m.queryHdrs[len(m.queryHdrs)-1].Get("x-ms-documentdb-partitionkey"); pk != `["timer-singleton"]` {
		t.Fatalf("the history query names partition key %q, want the lease's", pk)
	}
	if got := m.queryDocs[len(m.queryDocs)-1]; got > cosmoslease.DefaultRunLimit {
		t.Fatalf("the history query brought back %d documents, want at most %d", got, cosmoslease.DefaultRunLimit)
	}
}

// BenchmarkLeaseStatus measures what one LeaseStatus call pulls from Cosmos DB when the lease has 3,000
// earlier run records: requests, and bytes received (status lines, headers and bodies) at the HTTP transport.
// "warm" is a call on a handler that has connected; "cold" includes connecting (account and container reads).
func BenchmarkLeaseStatus(b *testing.B) {
	const earlier = 3000
	ts, h, container := inProcess(b, func(ctx context.Context, run Run) error { return nil }, map[string]string{"LeaseTimerSchedule": "0 */1 * * * *"})
	m := newMeter()
	h.app.opts.Transport = m
	seedRuns(b, container, h.jobs[0].s.key, earlier)
	report := func(b *testing.B) {
		b.ReportMetric(float64(m.bytes)/float64(b.N), "bytes-from-cosmos/op")
		n := 0
		for _, c := range m.requests {
			n += c
		}
		b.ReportMetric(float64(n)/float64(b.N), "requests/op")
	}
	b.Run("warm", func(b *testing.B) {
		leaseStatus(b, ts)
		m.reset()
		b.ResetTimer()
		for range b.N {
			leaseStatus(b, ts)
		}
		report(b)
	})
	b.Run("cold", func(b *testing.B) {
		m.reset()
		b.ResetTimer()
		for range b.N {
			h.release() // closes the clients; the next call connects again
			leaseStatus(b, ts)
		}
		report(b)
	})
}

// Run records carry a ttl (the retention, in seconds) and a fixed-width occurrence; the lease document carries
// no ttl, so on a container whose default time-to-live is -1 records expire and leases never do.
func TestRunRecordsExpireAndLeasesDoNot(t *testing.T) {
	ts, _, container := inProcess(t, func(ctx context.Context, run Run) error { return nil }, map[string]string{"LeaseTimerRunRetention": "2.00:00:00", "LeaseTimerSchedule": "0 */1 * * * *"})
	occ := time.Now().UTC().Truncate(time.Minute)
	if r := postTimer(t, ts, occ); r.Status != "executed" {
		t.Fatalf("tick: %+v", r)
	}
	srv := cosmostest.Get(t)
	docs := map[string]map[string]any{}
	pager := srv.Container(t, container).NewQueryItemsPager("SELECT * FROM c", azcosmos.NewPartitionKeyString("timer-singleton"), nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Items {
			var d map[string]any
			_ = json.Unmarshal(b, &d)
			docs[d["id"].(string)] = d
		}
	}
	run, lease := docs[cosmoslease.RunID("timer-singleton", occ)], docs["lease-timer-singleton"]
	if run == nil || lease == nil {
		t.Fatalf("documents: %v", docs)
	}
	// The ttl counts from the write, and is set so that the record expires two days after its occurrence.
	ttl, _ := run["ttl"].(float64)
	if want := (2*24*time.Hour - time.Since(occ)).Seconds(); ttl > want+1 || ttl < want-5 || run["occurrence"] != occ.Format("2006-01-02T15:04:05.000Z") || run["leaseKey"] != "timer-singleton" {
		t.Fatalf("run record: %v", run)
	}
	if _, ok := lease["ttl"]; ok {
		t.Fatalf("the lease document carries a ttl: %v", lease)
	}
}
