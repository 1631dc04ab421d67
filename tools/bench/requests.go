package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/faultproxy"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// Requests per scenario, by kind and status, and the request units Azure would charge for them: the figures of
// docs/operating.md's request and RU model. The library's own operations are counted at the client's HTTP
// transport; the Functions handler's occurrences at a proxy (internal/faultproxy) with one listener per region,
// since each region's handler is a process of its own. `go run ./tools/bench -only requests` rewrites this section
// alone; the occurrence election's counts change whenever it does, so run it again after changing it.

const requestsHeading = "## Requests and request units per scenario"

// tally counts requests by "kind status" (cosmostest.Kind; 404 is a read of a missing document).
type tally map[string]int

func (t tally) add(o tally) {
	for k, v := range o {
		t[k] += v
	}
}

// statusCounter is an HTTP transport that tallies what it sends by kind and status.
type statusCounter struct {
	next *http.Client
	mu   sync.Mutex
	n    tally
}

func (c *statusCounter) Do(r *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(r)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	c.mu.Lock()
	c.n[fmt.Sprintf("%s %d", cosmostest.Kind(r), status)]++
	c.mu.Unlock()
	return resp, err
}

func (c *statusCounter) take() tally {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = tally{}
	return out
}

// ruEstimate is Azure's charge for one request to a lease document or run record (both under 1 KB, a handful of
// indexed terms with the container's policy) under Session consistency; reads cost twice as much under Strong and
// BoundedStaleness. The figures: "Understand request units consumption in Azure Cosmos DB" (learn.microsoft.com,
// azure/cosmos-db/understand-request-unit-consumption): a point read of 1 KB, 1 RU; a create, 5 RU plus 0.2 per
// indexed term; a replace deletes and inserts, 10 RU plus 0.2 per changed term removed and added, "approximately
// twice as many RUs as creates"; a delete, 5 RU plus 0.2 per term. "Optimize request cost": reads under Strong or
// BoundedStaleness cost twice. A query within one partition costs more than a point read (about 3 RU for these).
// Requests the service refuses (404, 409, 412) carry a charge too; 1 RU is assumed for them, and the account and
// container reads an SDK makes on connecting are not charged.
var ruEstimate = map[string]float64{
	"read 200": 1, "read 404": 1, "query 200": 3,
	"create 201": 6, "create 409": 1,
	"replace 200": 11, "replace 412": 1, "replace 404": 1,
	"delete 204": 6, "delete 412": 1, "delete 404": 1,
}

// ru sums the estimate of a tally; strong doubles the reads.
func (t tally) ru(strong bool) (float64, []string) {
	var total float64
	var unknown []string
	for k, n := range t {
		if strings.HasPrefix(k, "account ") || strings.HasPrefix(k, "other ") {
			continue
		}
		per, ok := ruEstimate[k]
		if !ok {
			unknown = append(unknown, k)
			continue
		}
		if strong && (strings.HasPrefix(k, "read ") || strings.HasPrefix(k, "query ")) {
			per *= 2
		}
		total += per * float64(n)
	}
	sort.Strings(unknown)
	return total, unknown
}

// scenarioCount is one scenario: the tallies of its repetitions, by client.
type scenarioCount struct {
	name, per string
	reps      int
	clients   []string
	byClient  map[string]tally
}

func (s scenarioCount) total() tally {
	t := tally{}
	for _, c := range s.byClient {
		t.add(c)
	}
	return t
}

type requestsResult struct {
	scenarios []scenarioCount
	commit    string
	reps      int
	renew     time.Duration
	poll      time.Duration
}

// requestCounts measures the scenarios: reps of each library operation, and reps occurrences of the handler in
// three regions, healthy and then with the preferred region dead.
func requestCounts(ctx context.Context, e env, reps int) (*requestsResult, error) {
	res := &requestsResult{commit: commitOf(), reps: reps}
	tr := &statusCounter{next: &http.Client{}, n: tally{}}
	open := func(owner string) (*cosmoslease.Client, error) {
		o := e.options(owner, nil)
		o.Transport = tr
		return cosmoslease.Open(ctx, o)
	}
	holder, err := open("holder")
	if err != nil {
		return nil, err
	}
	defer holder.Close()
	standby, err := open("standby")
	if err != nil {
		return nil, err
	}
	defer standby.Close()
	res.renew, res.poll = cosmoslease.DefaultRenewInterval, cosmoslease.DefaultLeaseDuration/12
	key := fmt.Sprintf("requests-%d", time.Now().UnixNano())
	lease, err := holder.TryAcquire(ctx, key)
	if err != nil {
		return nil, err
	}
	tr.take()
	for range reps {
		if err := lease.Renew(ctx); err != nil {
			return nil, err
		}
	}
	res.scenarios = append(res.scenarios, scenarioCount{name: "renewal of a held lease", per: "renewal", reps: reps, clients: []string{"holder"},
		byClient: map[string]tally{"holder": tr.take()}})
	// A standby's poll is one attempt of Acquire's loop, the attempt TryAcquire makes.
	for range reps {
		var held *cosmoslease.HeldError
		if _, err := standby.TryAcquire(ctx, key); !errors.As(err, &held) {
			return nil, fmt.Errorf("standby poll: %v, want held", err)
		}
	}
	res.scenarios = append(res.scenarios, scenarioCount{name: "standby's poll of a held lease", per: "poll", reps: reps, clients: []string{"standby"},
		byClient: map[string]tally{"standby": tr.take()}})
	if err := lease.Release(ctx); err != nil {
		return nil, err
	}

	occ, err := occurrenceCounts(ctx, e, reps)
	if err != nil {
		return nil, err
	}
	res.scenarios = append(res.scenarios, occ...)
	return res, nil
}

// occurrenceCounts runs the handler in three regions behind the proxy and counts, per occurrence, what each
// region sends: reps occurrences with every region alive, then reps with the preferred one (eastus) killed.
func occurrenceCounts(ctx context.Context, e env, reps int) ([]scenarioCount, error) {
	bin, cleanup, err := functionshost.Build("")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dir, err := os.MkdirTemp("", "cosmoslease-bench-requests")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if b, err := os.ReadFile("host.json"); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "host.json"), b, 0o644); err != nil {
			return nil, err
		}
	}
	container := fmt.Sprintf("requests-%d", time.Now().UnixNano())
	if err := emulator.EnsureContainer(ctx, e.endpoint, e.db, container, "/leaseKey"); err != nil {
		return nil, err
	}
	proxy, err := faultproxy.New(e.endpoint)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	var mu sync.Mutex
	counts := map[string]tally{}
	proxy.Observe(func(name string, r *http.Request, status int) {
		mu.Lock()
		if counts[name] == nil {
			counts[name] = tally{}
		}
		counts[name][fmt.Sprintf("%s %d", cosmostest.Kind(r), status)]++
		mu.Unlock()
	})
	take := func() map[string]tally {
		mu.Lock()
		defer mu.Unlock()
		out := counts
		counts = map[string]tally{}
		return out
	}
	// 30 s, not 20: the handler refuses a job whose last region (rank 2, 2 × 10 s late) would still wait when the
	// next occurrence is due (the failover scenarios run the same schedule).
	const expr, gap = "*/30 * * * * *", 30 * time.Second
	live := map[string]*functionshost.Handler{}
	defer func() {
		for _, h := range live {
			h.Kill()
		}
	}()
	for _, r := range benchRegions {
		base, err := proxy.Listen(r)
		if err != nil {
			return nil, err
		}
		app := functionshost.App{Bin: bin, Dir: dir, Site: "bench-requests", Settings: map[string]string{
			"CosmosLeasing__ConnectionString": emulator.ConnectionString(base), "CosmosLeasing__DatabaseName": e.db,
			"CosmosLeasing__ContainerName": container, "LeaseTimerSchedule": expr,
			"LeaseTimerPreferredRegions": strings.Join(benchRegions, ",")}}
		h, err := app.Start(r, r+"-1", io.Discard, os.Stderr)
		if err != nil {
			return nil, err
		}
		live[r] = h
	}
	handlers := func() []*functionshost.Handler {
		var hs []*functionshost.Handler
		for _, r := range benchRegions {
			if h := live[r]; h != nil {
				hs = append(hs, h)
			}
		}
		return hs
	}
	tick := func(occ time.Time) []byte { return functionshost.UnmonitoredTick(functionshost.Fired(occ)) }
	// A first occurrence connects every region (account and container reads), uncounted.
	next := nextOccurrence(gap, 2*time.Second)
	if _, err := fire(handlers(), next, tick(next)); err != nil {
		return nil, err
	}
	measure := func(name, want string) (scenarioCount, error) {
		sc := scenarioCount{name: name, per: "occurrence", reps: reps, byClient: map[string]tally{}}
		for _, r := range benchRegions {
			sc.clients = append(sc.clients, r)
			sc.byClient[r] = tally{}
		}
		for i := range reps {
			next = next.Add(gap)
			fmt.Printf("bench: %s, occurrence %d of %d at %s\n", name, i+1, reps, next.Format(time.TimeOnly))
			take()
			r, err := fire(handlers(), next, tick(next))
			if err != nil {
				return sc, err
			}
			if r.Region != want {
				return sc, fmt.Errorf("%s: %s ran occurrence %s, want %s", name, r.Region, next.Format(time.RFC3339), want)
			}
			for region, t := range take() {
				sc.byClient[region].add(t)
			}
		}
		return sc, nil
	}
	healthy, err := measure("occurrence in three regions, all alive", "eastus")
	if err != nil {
		return nil, err
	}
	live["eastus"].Kill()
	delete(live, "eastus")
	failed, err := measure("occurrence with the preferred region (eastus) dead", "westeurope")
	if err != nil {
		return nil, err
	}
	return []scenarioCount{healthy, failed}, nil
}

// commitOf names the commit measured, marked when the tree has changes.
func commitOf() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

func formatTally(t tally, reps int) string {
	var keys []string
	for k := range t {
		if !strings.HasPrefix(k, "account ") && !strings.HasPrefix(k, "other ") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s × %s", k, trimFloat(float64(t[k])/float64(reps))))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func requestsSection(r *requestsResult) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s\n\nMeasured on %s at commit %s with `go run ./tools/bench -bin bin/cosmoslease -only requests` (part of `make bench`), against the\n",
		requestsHeading, time.Now().UTC().Format("2006-01-02"), r.commit)
	w("local server: %d repetitions of each scenario, averaged. Requests are counted by kind (a point read is a GET of one document, a\n"+
		"query a POST with a query body) and by the status the server answered; the connection's own account and container reads\n"+
		"are left out. The library's operations are counted at the client's transport; the Functions handler's occurrences at a\n"+
		"proxy with one listener per region, the handler in three regions (eastus preferred, then westeurope, southeastasia) driven\n"+
		"as the host drives it, `*/30 * * * * *`, the app settings' defaults (lease 30 s, `LeaseTimerFailoverDelay` 10 s).\n\n", r.reps)
	w("The local server charges nothing, so the request units are estimates: each request times Azure's published charge for\n" +
		"its kind (docs/operating.md, \"Requests and request units\"). Strong consistency, setup's default across regions, doubles the reads.\n\n")
	w("| scenario | per | requests (kind status × count) | RU, Session | RU, Strong |\n|---|---|---|---|---|\n")
	for _, s := range r.scenarios {
		t := s.total()
		session, unknown := t.ru(false)
		strong, _ := t.ru(true)
		w("| %s | %s | %s | %s | %s |\n", s.name, s.per, formatTally(t, s.reps), trimFloat(session/float64(s.reps)), trimFloat(strong/float64(s.reps)))
		if len(unknown) > 0 {
			w("| | | (no estimate for %s) | | |\n", strings.Join(unknown, ", "))
		}
	}
	w("\nBy region, per occurrence:\n\n| scenario | region | requests | RU, Session | RU, Strong |\n|---|---|---|---|---|\n")
	for _, s := range r.scenarios {
		if s.per != "occurrence" {
			continue
		}
		for _, c := range s.clients {
			t := s.byClient[c]
			session, _ := t.ru(false)
			strong, _ := t.ru(true)
			w("| %s | %s | %s | %s | %s |\n", s.name, c, formatTally(t, s.reps), trimFloat(session/float64(s.reps)), trimFloat(strong/float64(s.reps)))
		}
	}
	w("\nA held lease renews every RenewInterval (%s by default) and a standby polls every RetryPeriod (%s by default, ± 10 %%):\n"+
		"per hour, %d renewals and %d polls.\n\n", r.renew, r.poll, int(time.Hour/r.renew), int(time.Hour/r.poll))
	return b.String()
}
