// Command bench measures cosmoslease against the local Cosmos-protocol server and writes docs/benchmarks.md
// with SVG plots: requests and latency per operation beside the reference sample's protocol and the bare
// azcosmos calls, the kinds of read a holder and a standby make in steady state, failover after SIGKILL,
// handoff after release, failover of the Functions handler's scheduled work, one process renewing many leases, and many contenders on one key. `make bench` runs it. Numbers are from this machine and this server; the report says
// which. `-only reads` measures the steady-state reads alone and rewrites only their section of the report;
// `-only failover-occurrences` does the same for the scheduled work's failover.
package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

type config struct {
	bin             string
	out             string
	iterations      int
	failoverSamples int
	scaleLeases     int
	scaleFor        time.Duration
	contenders      int
	contendFor      time.Duration
	readsFor        time.Duration
	occurrenceKills int
	requestReps     int
	only            string
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/cosmoslease", "the cosmoslease binary (for failover timings)")
	flag.StringVar(&c.out, "out", "docs", "where to write benchmarks.md and the plots")
	flag.IntVar(&c.iterations, "iterations", 300, "timed repetitions of each operation")
	flag.IntVar(&c.failoverSamples, "failover-samples", 20, "SIGKILL failovers and release handoffs to time")
	flag.IntVar(&c.scaleLeases, "leases", 1000, "leases one process holds and renews")
	flag.DurationVar(&c.scaleFor, "leases-for", 30*time.Second, "how long to hold them")
	flag.IntVar(&c.contenders, "contenders", 100, "contenders on one key")
	flag.DurationVar(&c.contendFor, "contend-for", 20*time.Second, "how long they contend")
	flag.DurationVar(&c.readsFor, "reads-for", time.Minute, "how long a holder and a standby run for the steady-state reads")
	flag.IntVar(&c.occurrenceKills, "occurrence-kills", 3, "times the Functions handler's preferred region is killed right after it ran an occurrence of a 30 s schedule")
	flag.StringVar(&c.only, "only", "", "run one measurement and rewrite only its section of benchmarks.md: \"reads\", \"failover-occurrences\" or \"requests\"")
	flag.IntVar(&c.requestReps, "request-reps", 5, "repetitions of each scenario of the request counts (occurrences take 30 s each)")
	flag.Parse()
	if c.only != "" && c.only != "reads" && c.only != "failover-occurrences" && c.only != "requests" {
		fmt.Fprintf(os.Stderr, "bench: -only %q: the sections that can be measured alone are \"reads\", \"failover-occurrences\" and \"requests\"\n", c.only)
		os.Exit(2)
	}
	if c.requestReps < 1 {
		fmt.Fprintf(os.Stderr, "bench: -request-reps %d: repeat each scenario at least once\n", c.requestReps)
		os.Exit(2)
	}
	if c.occurrenceKills < 1 {
		fmt.Fprintf(os.Stderr, "bench: -occurrence-kills %d: kill the preferred region at least once\n", c.occurrenceKills)
		os.Exit(2)
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// counter counts the requests that leave for the server, by kind.
type counter struct {
	next *http.Client
	n    sync.Map // kind → *atomic.Int64
}

func (c *counter) Do(r *http.Request) (*http.Response, error) {
	v, _ := c.n.LoadOrStore(cosmostest.Kind(r), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	return c.next.Do(r)
}

func (c *counter) count(kind string) int64 {
	if v, ok := c.n.Load(kind); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (c *counter) documents() int64 {
	var total int64
	c.n.Range(func(k, v any) bool {
		switch k {
		case "read", "query", "create", "replace", "delete":
			total += v.(*atomic.Int64).Load()
		}
		return true
	})
	return total
}

type env struct {
	endpoint, db, container string
}

func (e env) options(owner string, tr *counter) cosmoslease.Options {
	return cosmoslease.Options{ConnectionString: emulator.ConnectionString(e.endpoint), Database: e.db, Container: e.container,
		OwnerID: owner, Region: "bench", Transport: tr, LeaseDuration: 10 * time.Second, RenewInterval: 3 * time.Second, ManualRenew: true}
}

// result is one row of the operations table.
type result struct {
	name           string
	requests       float64
	sampleRequests float64
	lat, sample    []time.Duration
}

func run(ctx context.Context, c config) error {
	endpoint, server, err := cosmostest.StartProcess()
	if err != nil {
		return err
	}
	defer cosmostest.Stop(server)
	e := env{endpoint: endpoint, db: "Bench", container: "Leases"}
	if err := emulator.EnsureContainer(ctx, endpoint, e.db, e.container, "/leaseKey"); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	report := filepath.Join(c.out, "benchmarks.md")
	if c.only == "requests" {
		fmt.Println("bench: requests per scenario")
		req, err := requestCounts(ctx, e, c.requestReps)
		if err != nil {
			return err
		}
		return replaceSection(report, requestsHeading, requestsSection(req), "## Failover\n")
	}
	if c.only == "failover-occurrences" {
		fmt.Println("bench: failover of scheduled work (Functions handler)")
		occ, err := occurrenceFailovers(ctx, e, c.occurrenceKills)
		if err != nil {
			return err
		}
		return replaceSection(report, occurrencesHeading, occurrencesSection(occ), "## Scale\n")
	}
	fmt.Println("bench: reads of a holder and a standby in steady state")
	reads, err := steadyReads(ctx, e, c.readsFor)
	if err != nil {
		return err
	}
	if c.only == "reads" {
		return replaceSection(report, readsHeading, readsSection(reads), "## Failover\n")
	}
	fmt.Println("bench: requests per scenario")
	req, err := requestCounts(ctx, e, c.requestReps)
	if err != nil {
		return err
	}
	fmt.Println("bench: operations")
	ops, bare, err := operations(ctx, e, c.iterations)
	if err != nil {
		return err
	}
	fmt.Println("bench: failover after SIGKILL, handoff after release")
	kill, handoff, err := failovers(ctx, e, c)
	if err != nil {
		return err
	}
	fmt.Println("bench: failover of scheduled work (Functions handler)")
	occ, err := occurrenceFailovers(ctx, e, c.occurrenceKills)
	if err != nil {
		return err
	}
	fmt.Println("bench: one process, many leases")
	sc, err := scale(ctx, e, c.scaleLeases, c.scaleFor)
	if err != nil {
		return err
	}
	fmt.Println("bench: many contenders, one key")
	ct, err := contend(ctx, e, c.contenders, c.contendFor)
	if err != nil {
		return err
	}
	fmt.Println("bench: go test -bench")
	micro := benchLines("-bench", ".", "-benchmem", "./internal/leasedoc", "./pkg/cosmoslease")
	history := benchLines(historyBench...)
	return writeReport(c, ops, bare, reads, req, kill, handoff, occ, sc, ct, micro, history)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(p * float64(len(d)-1))
	return d[i]
}

// step is one timed operation with an untimed, uncounted preparation before it.
type step struct{ prep, op func() error }

// measure runs a step n times; it returns the operation's latencies and requests per operation.
func measure(tr *counter, n int, s step) ([]time.Duration, float64, error) {
	var lat []time.Duration
	var requests int64
	for range n {
		if s.prep != nil {
			if err := s.prep(); err != nil {
				return nil, 0, err
			}
		}
		before := tr.documents()
		start := time.Now()
		if err := s.op(); err != nil {
			return nil, 0, err
		}
		lat = append(lat, time.Since(start))
		requests += tr.documents() - before
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, float64(requests) / float64(n), nil
}

// operations times each operation for this library and for the reference sample's protocol.
func operations(ctx context.Context, e env, n int) ([]result, map[string][]time.Duration, error) {
	tr := &counter{next: &http.Client{}}
	open := func(owner string) (*cosmoslease.Client, error) { return cosmoslease.Open(ctx, e.options(owner, tr)) }
	holder, err := open("holder")
	if err != nil {
		return nil, nil, err
	}
	defer holder.Close()
	other, err := open("other")
	if err != nil {
		return nil, nil, err
	}
	defer other.Close()
	samp, err := newSample(e, tr)
	if err != nil {
		return nil, nil, err
	}
	var rows []result
	add := func(name string, ours, ref step) error {
		r := result{name: name}
		var err error
		if r.lat, r.requests, err = measure(tr, n, ours); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if ref.op != nil {
			if r.sample, r.sampleRequests, err = measure(tr, n, ref); err != nil {
				return fmt.Errorf("%s (reference): %w", name, err)
			}
		}
		rows = append(rows, r)
		return nil
	}
	var lease *cosmoslease.Lease
	release := func() error {
		if lease == nil {
			return nil
		}
		err := lease.Release(ctx)
		lease = nil
		return err
	}

	// A free lease, seen for the first time (a new client: no observation): read, then replace.
	var fresh *cosmoslease.Client
	if err := add("acquire, free (first look)", step{
		prep: func() error {
			if err := release(); err != nil {
				return err
			}
			if fresh != nil {
				fresh.Close()
			}
			fresh, err = open("fresh")
			return err
		},
		op: func() (err error) { lease, err = fresh.TryAcquire(ctx, "bench-free"); return err },
	}, step{
		prep: func() error { return samp.release(ctx, "bench-free-s", "fresh") },
		op:   func() error { return samp.acquire(ctx, "bench-free-s", "fresh") },
	}); err != nil {
		return nil, nil, err
	}
	if err := release(); err != nil {
		return nil, nil, err
	}
	fresh.Close()

	// Held by another instance: one attempt.
	if _, err := holder.TryAcquire(ctx, "bench-held"); err != nil {
		return nil, nil, err
	}
	if err := samp.acquire(ctx, "bench-held-s", "holder"); err != nil {
		return nil, nil, err
	}
	if err := add("acquire, contended (held)", step{op: func() error {
		var held *cosmoslease.HeldError
		if _, err := other.TryAcquire(ctx, "bench-held"); !errors.As(err, &held) {
			return fmt.Errorf("expected held, got %v", err)
		}
		return nil
	}}, step{op: func() error {
		if err := samp.acquire(ctx, "bench-held-s", "other"); !errors.Is(err, errHeld) {
			return fmt.Errorf("expected held, got %v", err)
		}
		return nil
	}}); err != nil {
		return nil, nil, err
	}

	// A standby that has seen the lease released takes it with one write; the reference reads first.
	if err := add("acquire, standby (fresh observation)", step{
		prep: func() error {
			if err := release(); err != nil {
				return err
			}
			_, err := other.Inspect(ctx, "bench-standby") // the standby's latest poll
			return err
		},
		op: func() (err error) { lease, err = other.TryAcquire(ctx, "bench-standby"); return err },
	}, step{
		prep: func() error { return samp.release(ctx, "bench-standby-s", "other") },
		op:   func() error { return samp.acquire(ctx, "bench-standby-s", "other") },
	}); err != nil {
		return nil, nil, err
	}
	if err := release(); err != nil {
		return nil, nil, err
	}

	if lease, err = holder.TryAcquire(ctx, "bench-renew"); err != nil {
		return nil, nil, err
	}
	if err := samp.acquire(ctx, "bench-renew-s", "holder"); err != nil {
		return nil, nil, err
	}
	if err := add("renew", step{op: func() error { return lease.Renew(ctx) }},
		step{op: func() error { return samp.renew(ctx, "bench-renew-s", "holder") }}); err != nil {
		return nil, nil, err
	}
	if err := release(); err != nil {
		return nil, nil, err
	}

	if err := add("release", step{
		prep: func() (err error) { lease, err = holder.TryAcquire(ctx, "bench-release"); return err },
		op:   release,
	}, step{
		prep: func() error { return samp.acquire(ctx, "bench-release-s", "holder") },
		op:   func() error { return samp.release(ctx, "bench-release-s", "holder") },
	}); err != nil {
		return nil, nil, err
	}

	// Bare SDK calls on the same server, for the ratios.
	bare := map[string][]time.Duration{}
	cc, err := samp.client.NewContainer(e.db, e.container)
	if err != nil {
		return nil, nil, err
	}
	pk := azcosmos.NewPartitionKeyString("bench-bare")
	resp, err := cc.UpsertItem(ctx, pk, []byte(`{"id":"bare","leaseKey":"bench-bare","n":0}`), nil)
	if err != nil {
		return nil, nil, err
	}
	etag := resp.ETag
	if bare["replace"], _, err = measure(tr, n, step{op: func() error {
		r, err := cc.ReplaceItem(ctx, pk, "bare", []byte(`{"id":"bare","leaseKey":"bench-bare","n":1}`), &azcosmos.ItemOptions{IfMatchEtag: &etag})
		if err == nil {
			etag = r.ETag
		}
		return err
	}}); err != nil {
		return nil, nil, err
	}
	if bare["read"], _, err = measure(tr, n, step{op: func() error {
		_, err := cc.ReadItem(ctx, pk, "bare", nil)
		return err
	}}); err != nil {
		return nil, nil, err
	}
	return rows, bare, nil
}

var errHeld = errors.New("held")

// sample is the reference sample's protocol, built on the same SDK: read before every write, expiry judged by
// comparing expiresAt with the local wall clock, release by deleting the document.
type sample struct {
	client    *azcosmos.Client
	container *azcosmos.ContainerClient
}

type sampleDoc struct {
	ID        string `json:"id"`
	LeaseKey  string `json:"leaseKey"`
	LeaseID   string `json:"leaseId"`
	OwnerID   string `json:"ownerId"`
	ExpiresAt string `json:"expiresAt"`
	ETag      string `json:"_etag,omitempty"`
}

func newSample(e env, tr *counter) (*sample, error) {
	cred, err := azcosmos.NewKeyCredential(emulator.Key)
	if err != nil {
		return nil, err
	}
	c, err := azcosmos.NewClientWithKey(e.endpoint, cred, &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: tr}})
	if err != nil {
		return nil, err
	}
	cc, err := c.NewContainer(e.db, e.container)
	if err != nil {
		return nil, err
	}
	return &sample{client: c, container: cc}, nil
}

func (s *sample) read(ctx context.Context, key string) (*sampleDoc, error) {
	p := s.container.NewQueryItemsPager("SELECT * FROM c WHERE c.id = @id", azcosmos.NewPartitionKeyString(key),
		&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@id", Value: "lease-" + key}}})
	page, err := p.NextPage(ctx)
	if err != nil {
		return nil, err
	}
	if len(page.Items) == 0 {
		return nil, nil
	}
	var d sampleDoc
	return &d, json.Unmarshal(page.Items[0], &d)
}

func (s *sample) acquire(ctx context.Context, key, owner string) error {
	d, err := s.read(ctx, key)
	if err != nil {
		return err
	}
	next := sampleDoc{ID: "lease-" + key, LeaseKey: key, LeaseID: fmt.Sprint(time.Now().UnixNano()), OwnerID: owner,
		ExpiresAt: time.Now().UTC().Add(time.Minute).Format(time.RFC3339Nano)}
	body, _ := json.Marshal(next)
	pk := azcosmos.NewPartitionKeyString(key)
	if d == nil {
		_, err = s.container.CreateItem(ctx, pk, body, nil)
		return err
	}
	if exp, _ := time.Parse(time.RFC3339Nano, d.ExpiresAt); exp.After(time.Now()) && d.OwnerID != owner {
		return errHeld
	}
	tag := azcore.ETag(d.ETag)
	_, err = s.container.ReplaceItem(ctx, pk, d.ID, body, &azcosmos.ItemOptions{IfMatchEtag: &tag})
	return err
}

func (s *sample) renew(ctx context.Context, key, owner string) error {
	d, err := s.read(ctx, key)
	if err != nil {
		return err
	}
	if d == nil || d.OwnerID != owner {
		return errors.New("lost")
	}
	d2 := *d
	d2.ETag = ""
	d2.ExpiresAt = time.Now().UTC().Add(time.Minute).Format(time.RFC3339Nano)
	body, _ := json.Marshal(d2)
	tag := azcore.ETag(d.ETag)
	_, err = s.container.ReplaceItem(ctx, azcosmos.NewPartitionKeyString(key), d.ID, body, &azcosmos.ItemOptions{IfMatchEtag: &tag})
	return err
}

func (s *sample) release(ctx context.Context, key, owner string) error {
	d, err := s.read(ctx, key)
	if err != nil || d == nil {
		return err
	}
	tag := azcore.ETag(d.ETag)
	_, err = s.container.DeleteItem(ctx, azcosmos.NewPartitionKeyString(key), d.ID, &azcosmos.ItemOptions{IfMatchEtag: &tag})
	return err
}

// failovers times a --wait standby taking over after the holder is killed, and after it releases.
func failovers(ctx context.Context, e env, c config) (kill, handoff []time.Duration, err error) {
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return nil, nil, err
	}
	environ := append(os.Environ(), "CosmosLeasing__ConnectionString="+emulator.ConnectionString(e.endpoint),
		"CosmosLeasing__DatabaseName="+e.db, "CosmosLeasing__ContainerName="+e.container, "COSMOSLEASE_LOG_LEVEL=error")
	args := func(instance, key string, extra ...string) []string {
		return append([]string{"run", "--instance", instance, "--lease", key, "--json", "--duration", "3s", "--renew-interval", "1s", "--work-interval", "100ms"}, extra...)
	}
	for i := range c.failoverSamples {
		for _, mode := range []string{"kill", "release"} {
			key := fmt.Sprintf("failover-%s-%d", mode, i)
			var holderArgs []string
			if mode == "release" {
				holderArgs = args("holder", key, "--hold-for", "1500ms")
			} else {
				holderArgs = args("holder", key)
			}
			h, err := startProc(bin, environ, holderArgs)
			if err != nil {
				return nil, nil, err
			}
			if _, err := h.wait("acquired", 20*time.Second); err != nil {
				h.kill()
				return nil, nil, err
			}
			s, err := startProc(bin, environ, args("standby", key, "--wait", "--hold-for", "100ms"))
			if err != nil {
				h.kill()
				return nil, nil, err
			}
			if _, err := s.wait("held", 20*time.Second); err != nil {
				h.kill()
				s.kill()
				return nil, nil, err
			}
			var from time.Time
			if mode == "kill" {
				time.Sleep(500 * time.Millisecond)
				from = time.Now()
				h.kill()
			} else {
				ev, err := h.wait("released", 20*time.Second)
				if err != nil {
					h.kill()
					s.kill()
					return nil, nil, err
				}
				from = ev
			}
			got, err := s.wait("acquired", 30*time.Second)
			h.kill()
			s.kill()
			if err != nil {
				return nil, nil, err
			}
			if mode == "kill" {
				kill = append(kill, got.Sub(from))
			} else {
				handoff = append(handoff, got.Sub(from))
			}
		}
	}
	sort.Slice(kill, func(i, j int) bool { return kill[i] < kill[j] })
	sort.Slice(handoff, func(i, j int) bool { return handoff[i] < handoff[j] })
	return kill, handoff, nil
}

type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events map[string]time.Time
}

func startProc(bin string, environ, args []string) (*proc, error) {
	p := &proc{cmd: exec.Command(bin, args...), events: map[string]time.Time{}}
	p.cmd.Env = environ
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev struct{ Event, Time string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				t, _ := time.Parse(time.RFC3339Nano, ev.Time)
				p.mu.Lock()
				if _, seen := p.events[ev.Event]; !seen {
					p.events[ev.Event] = t
				}
				p.mu.Unlock()
			}
		}
		_ = p.cmd.Wait()
	}()
	return p, nil
}

func (p *proc) wait(event string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		t, ok := p.events[event]
		p.mu.Unlock()
		if ok {
			return t, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no %q event from %v within %s", event, p.cmd.Args[1:3], limit)
}

func (p *proc) kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

// scaleResult is one process renewing many leases.
type scaleResult struct {
	leases                    int
	window, interval          time.Duration
	renewals                  int
	cpu                       time.Duration
	rssMB                     float64
	lateP50, lateP99, lateMax time.Duration
	lost                      int
}

func scale(ctx context.Context, e env, n int, window time.Duration) (*scaleResult, error) {
	tr := &counter{next: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	var mu sync.Mutex
	last := map[string]time.Time{}
	var late []time.Duration
	interval := 3 * time.Second
	opts := e.options("scale", tr)
	opts.ManualRenew = false
	opts.LeaseDuration, opts.RenewInterval = 10*time.Second, interval
	opts.OnOperation = func(op cosmoslease.Operation) {
		if op.Name != "renew" || op.Outcome != "ok" {
			return
		}
		now := time.Now()
		mu.Lock()
		if prev, ok := last[op.Key]; ok {
			late = append(late, now.Sub(prev)-interval)
		}
		last[op.Key] = now
		mu.Unlock()
	}
	c, err := cosmoslease.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	leases := make([]*cosmoslease.Lease, 0, n)
	for i := range n {
		l, err := c.TryAcquire(ctx, fmt.Sprintf("scale-%04d", i))
		if err != nil {
			return nil, err
		}
		leases = append(leases, l)
	}
	mu.Lock()
	last = map[string]time.Time{}
	late = nil
	mu.Unlock()
	cpu0 := cpuTime()
	time.Sleep(window)
	cpu := cpuTime() - cpu0
	r := &scaleResult{leases: n, window: window, interval: interval, cpu: cpu, rssMB: rssMB()}
	for _, l := range leases {
		if l.Err() != nil {
			r.lost++
		}
		_ = l.Release(ctx)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	r.renewals = len(late)
	r.lateP50, r.lateP99 = pct(late, 0.5), pct(late, 0.99)
	if len(late) > 0 {
		r.lateMax = late[len(late)-1]
	}
	return r, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// contendResult is many contenders on one key.
type contendResult struct {
	contenders, acquisitions, winners int
	window                            time.Duration
	requestsPerSecond                 float64
	probeP50, probeP99                time.Duration
}

func contend(ctx context.Context, e env, n int, window time.Duration) (*contendResult, error) {
	tr := &counter{next: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}}
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	var acquisitions atomic.Int64
	winners := sync.Map{}
	var wg sync.WaitGroup
	for i := range n {
		opts := e.options(fmt.Sprintf("c%03d", i), tr)
		opts.LeaseDuration, opts.RenewInterval, opts.RetryPeriod = 3*time.Second, time.Second, 250*time.Millisecond
		c, err := cosmoslease.Open(context.Background(), opts)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l, err := c.Acquire(ctx, "contended")
				if err != nil {
					continue
				}
				acquisitions.Add(1)
				winners.Store(opts.OwnerID, true)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				_ = l.Release(context.Background())
			}
		}()
	}
	// A bystander's reads show whether the server still answers others.
	probe, err := newSample(e, &counter{next: &http.Client{}})
	if err != nil {
		return nil, err
	}
	before := tr.documents()
	start := time.Now()
	var lat []time.Duration
	for ctx.Err() == nil {
		t := time.Now()
		if _, err := probe.read(context.Background(), "bystander"); err == nil {
			lat = append(lat, time.Since(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := &contendResult{contenders: n, acquisitions: int(acquisitions.Load()), window: window,
		requestsPerSecond: float64(tr.documents()-before) / elapsed.Seconds(), probeP50: pct(lat, 0.5), probeP99: pct(lat, 0.99)}
	winners.Range(func(any, any) bool { r.winners++; return true })
	return r, nil
}

// telemetryHistory is the before/after measurement of the OpenTelemetry instrumentation, made once by hand
// (benchstat over interleaved runs of the commit before it and after it); the report keeps it.
//
//go:embed telemetry-history.md
var telemetryHistory string

// historyBench measures one LeaseStatus call of the Functions handler with 3,000 earlier run records.
var historyBench = []string{"-bench", "BenchmarkLeaseStatus", "-benchtime", "50x", "./pkg/leasehandler"}

// benchLines runs Go benchmarks (go test -run ^$ args…) and returns their result lines.
func benchLines(args ...string) string {
	cmd := exec.Command("go", append([]string{"test", "-run", "^$"}, args...)...)
	out, err := cmd.CombinedOutput()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	if err != nil {
		lines = append(lines, "go test -bench failed: "+err.Error())
	}
	return strings.Join(lines, "\n")
}

func versions() string {
	var parts []string
	parts = append(parts, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH, fmt.Sprintf("%d CPUs", runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				parts = append(parts, strings.TrimSpace(strings.SplitN(l, ":", 2)[1]))
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if strings.HasSuffix(d.Path, "/azcosmos") {
				parts = append(parts, "azcosmos "+d.Version)
			}
		}
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		parts = append(parts, "Node.js "+strings.TrimSpace(string(out)))
	}
	if dir, err := cosmostest.ServerDir(); err == nil {
		var pkg struct{ Version string }
		if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@vercel", "cosmosdb-server", "package.json")); err == nil && json.Unmarshal(b, &pkg) == nil {
			parts = append(parts, "@vercel/cosmosdb-server "+pkg.Version)
		}
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func writeReport(c config, ops []result, bare map[string][]time.Duration, reads *readsResult, req *requestsResult, kill, handoff []time.Duration, occ *occurrencesResult, sc *scaleResult, ct *contendResult, micro, history string) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmarks\n\nMade by `make bench` on %s, against the local Cosmos-protocol server on loopback.\n", time.Now().UTC().Format("2006-01-02"))
	w("Machine and versions: %s.\n\n", versions())
	w("Latencies here are the SDK and the library over loopback to a Node.js server: they show overhead and ratios,\n" +
		"not Azure's latency. Request counts are exact: every request is counted at the HTTP transport.\n\n")
	w("## Requests and latency per operation\n\n")
	w("The reference protocol is the sample's: read, then conditional write, on acquire, renew and release (release deletes).\n")
	w("Ratios are to one bare azcosmos conditional replace on the same server (p50 %s, p99 %s; a bare point read: p50 %s).\n"+
		"Absolute times vary from run to run on a shared machine; compare the ratios and the request counts.\n\n",
		ms(pct(bare["replace"], 0.5)), ms(pct(bare["replace"], 0.99)), ms(pct(bare["read"], 0.5)))
	w("| operation | requests | p50 | p99 | × bare | reference requests | reference p50 | reference p99 | × bare |\n|---|---|---|---|---|---|---|---|---|\n")
	base := float64(pct(bare["replace"], 0.5))
	for _, r := range ops {
		ref := [4]string{fmt.Sprintf("%.1f", r.sampleRequests), ms(pct(r.sample, 0.5)), ms(pct(r.sample, 0.99)), fmt.Sprintf("%.2f", float64(pct(r.sample, 0.5))/base)}
		w("| %s | %.1f | %s | %s | %.2f | %s | %s | %s | %s |\n", r.name, r.requests, ms(pct(r.lat, 0.5)), ms(pct(r.lat, 0.99)),
			float64(pct(r.lat, 0.5))/base, ref[0], ref[1], ref[2], ref[3])
	}
	w("\nEach figure is from %d repetitions; preparation (re-acquiring before a release, a new client before a first look) is neither timed nor counted.\n", c.iterations)
	w("The first look uses a new client each time, so its latency includes the SDK's work on a client's first request,\nwhich the reference (one long-lived client) does not pay; compare its request count, not its latency.\n\n")
	w("![Latency CDF](bench-latency-cdf.svg)\n\n")
	b.WriteString(readsSection(reads))
	b.WriteString(requestsSection(req))
	w("## Failover\n\nA holder (`cosmoslease run`, lease 3 s, renew every 1 s, retry period 250 ms) and a `--wait` standby, %d samples each.\n\n", len(kill))
	w("| event | median | worst | bound |\n|---|---|---|---|\n")
	w("| SIGKILL of the holder → standby acquired | %s | %s | lease + retry period = 3.25 s after the last renewal (up to 1 s before the kill) |\n", ms(pct(kill, 0.5)), ms(pct(kill, 1)))
	w("| release → standby acquired | %s | %s | about one retry period (250 ms ± 10 %%) |\n\n", ms(pct(handoff, 0.5)), ms(pct(handoff, 1)))
	w("![Failover histogram](bench-failover.svg)\n\n")
	b.WriteString(occurrencesSection(occ))
	w("## Scale\n\nOne process holding and auto-renewing %d leases (lease 10 s, renew every %s) for %s: %d renewals,\n", sc.leases, sc.interval, sc.window, sc.renewals)
	w("CPU %s (%.1f %% of one core), RSS %.0f MiB; renewals ran late by p50 %s, p99 %s, worst %s (time between renewals of one lease less the interval,\nrequest latency included); leases lost: %d.\n\n",
		sc.cpu.Round(time.Millisecond), 100*sc.cpu.Seconds()/sc.window.Seconds(), sc.rssMB, ms(sc.lateP50), ms(sc.lateP99), ms(sc.lateMax), sc.lost)
	w("%d contenders on one key for %s (each holds 100 ms, then releases): %d acquisitions by %d distinct winners, %.0f requests/s;\n",
		ct.contenders, ct.window, ct.acquisitions, ct.winners, ct.requestsPerSecond)
	w("a bystander's reads meanwhile took p50 %s, p99 %s.\n\n", ms(ct.probeP50), ms(ct.probeP99))
	w("## LeaseStatus with a long run history\n\nOne call of the Functions handler's LeaseStatus when its lease has 3,000 earlier run records (`go test -run '^$' %s`):\n"+
		"requests, and bytes received from Cosmos DB (status lines, headers and bodies, counted at the HTTP transport). `warm` is a call\n"+
		"on a handler that has connected: the lease read and one single-partition query for the 10 newest runs. `cold` includes\n"+
		"connecting (the account and container reads). The time per call is the local server's: it scans and sorts the partition.\n\n```\n%s\n```\n\n"+
		"Before the run history was bounded (measured once, on 2026-11-28), the same call read every run record of every lease with a\n"+
		"cross-partition query: 3,000 documents, 1,440,814 bytes from this server in one answer (in Azure, pages of at most 100\n"+
		"documents: 30 or more requests).\n\n",
		strings.Join(historyBench, " "), history)
	w("## Hot paths\n\n`go test -bench . -benchmem ./internal/leasedoc ./pkg/cosmoslease` (BenchmarkRenew is the renewal path against the in-memory store,\n"+
		"so its allocations are the library's plus the store's; BenchmarkRenewOverHTTP the same through the SDK to the local server;\n"+
		"BenchmarkRenewWithTelemetry is BenchmarkRenew with an OpenTelemetry SDK installed):\n\n```\n%s\n```\n\n%s", micro, telemetryHistory)
	if err := os.WriteFile(filepath.Join(c.out, "benchmarks.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	series := map[string][]time.Duration{"bare replace": bare["replace"]}
	for _, r := range ops {
		series[r.name] = r.lat
		if r.sample != nil {
			series[r.name+" (reference)"] = r.sample
		}
	}
	if err := os.WriteFile(filepath.Join(c.out, "bench-latency-cdf.svg"), []byte(cdfSVG(series)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "bench-failover.svg"), []byte(histSVG(kill, handoff)), 0o644); err != nil {
		return err
	}
	fmt.Printf("bench: wrote %s\n", filepath.Join(c.out, "benchmarks.md"))
	_, _ = io.WriteString(os.Stdout, b.String())
	return nil
}
