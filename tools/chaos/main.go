// Command chaos tries hard to break the lease: contender processes (`cosmoslease run --wait --json`) behind a
// fault-injecting proxy, killed with SIGKILL, paused with SIGSTOP past their lease and resumed, partitioned and
// restarted at random, while network faults come in bursts. A checker then reads every event (see check) and
// prints a summary. `make chaos` runs it for long; a short run is part of the tests.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/faultproxy"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

type config struct {
	bin                 string
	keys, perKey        int
	duration            time.Duration
	lease, renew, work  time.Duration
	holdMin, holdMax    time.Duration
	latency             time.Duration
	eventsPath          string
	minAcquisitions     int
	chaosEvery, quietly time.Duration
	// fence: every contender increments a counter item per key through the fence on each work item, and one in
	// three skips the lease check before working (a stand-in for a pause at the worst moment); the checker then
	// proves the counter never accepted a superseded epoch's write. unfenced writes that counter without the
	// fence, to show the checker catching what the fence prevents.
	fence, unfenced bool
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/cosmoslease", "the cosmoslease binary")
	flag.IntVar(&c.keys, "keys", 2, "lease keys contended for in parallel")
	flag.IntVar(&c.perKey, "contenders", 4, "contender processes per key")
	flag.DurationVar(&c.duration, "duration", 2*time.Minute, "how long to run")
	flag.DurationVar(&c.lease, "lease", 3*time.Second, "lease duration")
	flag.DurationVar(&c.renew, "renew", time.Second, "renew interval")
	flag.DurationVar(&c.work, "work", 100*time.Millisecond, "work interval")
	flag.DurationVar(&c.holdMin, "hold-min", 200*time.Millisecond, "shortest hold before a holder releases and exits")
	flag.DurationVar(&c.holdMax, "hold-max", 6*time.Second, "longest hold (longer than the lease, so a superseded holder would have time to misbehave)")
	flag.DurationVar(&c.latency, "latency", 20*time.Millisecond, "latency added to every request during bursts")
	flag.DurationVar(&c.chaosEvery, "chaos-every", time.Second, "mean time between chaos actions")
	flag.StringVar(&c.eventsPath, "events", "", "also write every event, one JSON object per line, to this file")
	flag.IntVar(&c.minAcquisitions, "min-acquisitions", 0, "fail unless at least this many acquisitions happened")
	flag.BoolVar(&c.fence, "fence", false, "contenders increment a fenced counter on every work item, one in three without checking the lease first")
	flag.BoolVar(&c.unfenced, "unfenced", false, "with -fence: write the counter without the fence (the checker must then report violations)")
	flag.Parse()
	rep, err := run(context.Background(), c, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		os.Exit(1)
	}
	if rep.violations > 0 || rep.acquisitions < c.minAcquisitions {
		os.Exit(1)
	}
}

// report sums up a run.
type report struct {
	acquisitions, takeovers, violations int
	counterWrites, fencedOff            int
	faults                              map[string]int64
	worstFailover                       time.Duration
	failovers                           []time.Duration
}

type contender struct {
	name, key, base string
	incarnation     int
	cmd             *exec.Cmd
	done            chan struct{}
	paused          atomic.Bool
	partitioned     atomic.Bool
}

type orchestra struct {
	c      config
	proxy  *faultproxy.Proxy
	env    []string
	mu     sync.Mutex
	events []ev
	out    io.Writer
	file   *os.File
	bursts []window
	counts map[string]int
	rng    *rand.Rand
	// skipping holds the processes (name#incarnation) that work without checking their lease.
	skipping map[string]bool
}

func run(ctx context.Context, c config, out io.Writer) (*report, error) {
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s not found: run 'make chaos', which builds it", c.bin)
	}
	endpoint, server, err := cosmostest.StartProcess()
	if err != nil {
		return nil, err
	}
	defer cosmostest.Stop(server)
	const db, container = "ChaosLeasing", "Leases"
	if err := emulator.EnsureContainer(ctx, endpoint, db, container, "/leaseKey"); err != nil {
		return nil, err
	}
	proxy, err := faultproxy.New(endpoint)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	o := &orchestra{c: c, proxy: proxy, out: out, counts: map[string]int{}, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		skipping: map[string]bool{},
		env:      append(os.Environ(), "CosmosLeasing__DatabaseName="+db, "CosmosLeasing__ContainerName="+container, "COSMOSLEASE_LOG_LEVEL=error")}
	if c.eventsPath != "" {
		if o.file, err = os.Create(c.eventsPath); err != nil {
			return nil, err
		}
		defer o.file.Close()
	}
	var all []*contender
	for k := range c.keys {
		for i := range c.perKey {
			name := fmt.Sprintf("k%d-c%d", k, i)
			base, err := proxy.Listen(name)
			if err != nil {
				return nil, err
			}
			all = append(all, &contender{name: name, key: fmt.Sprintf("chaos-%d", k), base: base})
		}
	}
	fmt.Fprintf(out, "chaos: %d keys × %d contenders for %s; lease %s, renew every %s; server %s behind the fault proxy\n",
		c.keys, c.perKey, c.duration, c.lease, c.renew, endpoint)
	for _, ct := range all {
		o.start(bin, ct)
	}
	end := time.Now().Add(c.duration)
	next := time.Now()
	for time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
		for _, ct := range all {
			select {
			case <-ct.done:
				o.start(bin, ct) // finished, lost, killed or failed: a new incarnation stands by
			default:
			}
		}
		if time.Now().After(next) {
			o.act(all)
			next = time.Now().Add(time.Duration(o.rng.ExpFloat64() * float64(c.chaosEvery)))
		}
	}
	// Calm down, then stop everyone gracefully.
	proxy.SetFaults(faultproxy.Faults{})
	for _, ct := range all {
		if ct.partitioned.Load() {
			proxy.Partition(ct.name, false)
		}
		if ct.paused.Load() {
			_ = ct.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	for _, ct := range all {
		_ = ct.cmd.Process.Signal(syscall.SIGINT)
	}
	for _, ct := range all {
		select {
		case <-ct.done:
		case <-time.After(15 * time.Second):
			_ = ct.cmd.Process.Kill()
			<-ct.done
		}
	}
	return o.verdict(ctx, endpoint, db, container)
}

func (o *orchestra) start(bin string, ct *contender) {
	ct.incarnation++
	ct.paused.Store(false)
	ct.partitioned.Store(false)
	o.proxy.Partition(ct.name, false)
	// Mostly short holds, so leases change hands often; one in five longer than the lease, so a holder that was
	// superseded without noticing would have time to misbehave.
	hold := o.c.holdMin + time.Duration(o.rng.Int64N(int64(time.Second)))
	if o.rng.IntN(5) == 0 {
		hold = o.c.holdMin + time.Duration(o.rng.Int64N(int64(o.c.holdMax-o.c.holdMin)+1))
	}
	args := []string{"run", "--instance", ct.name, "--lease", ct.key, "--wait", "--json",
		"--duration", o.c.lease.String(), "--renew-interval", o.c.renew.String(), "--work-interval", o.c.work.String(), "--hold-for", hold.String()}
	if o.rng.IntN(2) == 0 {
		// Half the holders also call Renew themselves, as an application may, while automatic renewal runs.
		args = append(args, "--renew-concurrently", (o.c.renew/4 + time.Duration(o.rng.Int64N(int64(o.c.renew)))).String())
	}
	proc := fmt.Sprintf("%s#%d", ct.name, ct.incarnation)
	if o.c.fence {
		args = append(args, "--fence-counter", counterID(ct.key))
		if o.c.unfenced {
			args = append(args, "--unfenced-counter")
		}
		if o.rng.IntN(3) == 0 {
			args = append(args, "--skip-lease-check")
			o.mu.Lock()
			o.skipping[proc] = true
			o.mu.Unlock()
		}
	}
	ct.cmd = exec.Command(bin, args...)
	ct.cmd.Env = append(append([]string{}, o.env...), "CosmosLeasing__ConnectionString="+emulator.ConnectionString(ct.base))
	stdout, _ := ct.cmd.StdoutPipe()
	ct.cmd.Stderr = io.Discard
	ct.done = make(chan struct{})
	if err := ct.cmd.Start(); err != nil {
		close(ct.done)
		return
	}
	done := ct.done
	cmd := ct.cmd
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			o.record(proc, sc.Bytes())
		}
		_ = cmd.Wait()
		close(done)
	}()
}

// counterID names the fenced counter item of a lease key.
func counterID(key string) string { return "counter-" + key }

func (o *orchestra) record(proc string, line []byte) {
	e, ok := parseEvent(proc, line)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	e.skipped = o.skipping[proc]
	o.events = append(o.events, e)
	if o.file != nil {
		fmt.Fprintf(o.file, "{\"proc\":%q,%s\n", proc, strings.TrimPrefix(string(line), "{"))
	}
}

// act does one chaos action, always leaving at least one contender per key healthy.
func (o *orchestra) act(all []*contender) {
	healthy := func(key string) int {
		n := 0
		for _, ct := range all {
			if ct.key == key && !ct.paused.Load() && !ct.partitioned.Load() {
				n++
			}
		}
		return n
	}
	ct := all[o.rng.IntN(len(all))]
	if h := o.holder(ct.key); h != "" && o.rng.IntN(2) == 0 {
		for _, x := range all { // half the time, aim at the holder
			if x.name == h {
				ct = x
			}
		}
	}
	switch x := o.rng.IntN(10); {
	case x < 3:
		if ct.paused.Load() {
			return
		}
		o.counts["sigkill"]++
		_ = ct.cmd.Process.Kill()
	case x < 5:
		if ct.paused.Load() || ct.partitioned.Load() || healthy(ct.key) < 2 {
			return
		}
		o.counts["sigstop"]++
		ct.paused.Store(true)
		_ = ct.cmd.Process.Signal(syscall.SIGSTOP)
		pause := o.c.lease + time.Duration(o.rng.Int64N(int64(o.c.lease)))
		cmd := ct.cmd
		time.AfterFunc(pause, func() { _ = cmd.Process.Signal(syscall.SIGCONT); ct.paused.Store(false) })
	case x < 7:
		if ct.paused.Load() || ct.partitioned.Load() || healthy(ct.key) < 2 {
			return
		}
		o.counts["partition"]++
		ct.partitioned.Store(true)
		o.proxy.Partition(ct.name, true)
		d := time.Second + time.Duration(o.rng.Int64N(int64(2*o.c.lease)))
		time.AfterFunc(d, func() { o.proxy.Partition(ct.name, false); ct.partitioned.Store(false) })
	default:
		o.counts["burst"]++
		f := faultproxy.Faults{Latency: o.c.latency, LatencyJitter: o.c.latency, Drop: 0.05 * o.rng.Float64(), Throttle: 0.15 * o.rng.Float64(),
			Unavailable: 0.1 * o.rng.Float64(), Timeout: 0.05 * o.rng.Float64(), LostReply: 0.15 * o.rng.Float64(),
			StaleRead: 0.3 * o.rng.Float64()}
		d := 500*time.Millisecond + time.Duration(o.rng.Int64N(int64(2*time.Second)))
		o.proxy.SetFaults(f)
		from := time.Now()
		o.mu.Lock()
		o.bursts = append(o.bursts, window{from: from, to: from.Add(d), what: "burst"})
		o.mu.Unlock()
		time.Sleep(d) // one burst at a time; the loop resumes after it
		o.proxy.SetFaults(faultproxy.Faults{})
	}
}

// holder is the instance that most recently acquired key.
func (o *orchestra) holder(key string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.events) - 1; i >= 0; i-- {
		if e := o.events[i]; e.Lease == key && e.Event == "acquired" {
			return e.Instance
		}
	}
	return ""
}

func (o *orchestra) verdict(ctx context.Context, endpoint, db, container string) (*report, error) {
	inspector, err := cosmoslease.Open(ctx, cosmoslease.Options{ConnectionString: emulator.ConnectionString(endpoint), Database: db, Container: container, OwnerID: "chaos-checker"})
	if err != nil {
		return nil, err
	}
	defer inspector.Close()
	o.mu.Lock()
	defer o.mu.Unlock()
	rep := &report{faults: o.proxy.Counts()}
	for k, v := range o.counts {
		rep.faults[k] = int64(v)
	}
	byKey := map[string][]ev{}
	for _, e := range o.events {
		byKey[e.Lease] = append(byKey[e.Lease], e)
	}
	var keys []string
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	slack := 2*time.Second + 2*o.c.latency
	for _, key := range keys {
		s, err := inspector.Inspect(ctx, key)
		if err != nil {
			return nil, err
		}
		v := check(byKey[key], s.Epoch, o.bursts, o.c.lease, o.c.lease/12, slack)
		counterLine := ""
		if o.c.fence {
			final, err := readCounter(ctx, inspector, key)
			if err != nil {
				return nil, err
			}
			cv := checkCounter(byKey[key], final)
			v.violations = append(v.violations, cv.violations...)
			rep.counterWrites += cv.writes
			rep.fencedOff += cv.fenced
			counterLine = fmt.Sprintf(", counter %d (%d writes checked, %d holders fenced off)", final.Value, cv.writes, cv.fenced)
		}
		rep.acquisitions += v.acquisitions
		rep.takeovers += v.takeovers
		rep.violations += len(v.violations)
		rep.failovers = append(rep.failovers, v.failovers...)
		if v.worstFailover > rep.worstFailover {
			rep.worstFailover = v.worstFailover
		}
		fmt.Fprintf(o.out, "lease %s: %d acquisitions, %d takeovers, %d work items, final epoch %d%s, %d violations\n",
			key, v.acquisitions, v.takeovers, v.works, s.Epoch, counterLine, len(v.violations))
		for _, msg := range v.violations {
			fmt.Fprintf(o.out, "  VIOLATION: %s\n", msg)
		}
	}
	if rep.faults["documents"] == 0 {
		return nil, errors.New("no document request passed through the proxy: the contenders bypassed it")
	}
	names := make([]string, 0, len(rep.faults))
	for k := range rep.faults {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, rep.faults[k]))
	}
	sort.Slice(rep.failovers, func(i, j int) bool { return rep.failovers[i] < rep.failovers[j] })
	median := time.Duration(0)
	if n := len(rep.failovers); n > 0 {
		median = rep.failovers[n/2]
	}
	fmt.Fprintf(o.out, "faults and requests: %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(o.out, "handovers: %d, median %s, worst %s (lease %s)\n", len(rep.failovers), median.Round(time.Millisecond), rep.worstFailover.Round(time.Millisecond), o.c.lease)
	if o.c.fence {
		fmt.Fprintf(o.out, "fenced counter: %d writes checked, %d holders fenced off by Cosmos DB\n", rep.counterWrites, rep.fencedOff)
	}
	fmt.Fprintf(o.out, "acquisitions: %d, takeovers: %d, violations: %d\n", rep.acquisitions, rep.takeovers, rep.violations)
	return rep, nil
}
