package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// ev is one JSON event of a `cosmoslease run --json` process, tagged with the process incarnation.
type ev struct {
	Event      string `json:"event"`
	Time       string `json:"time"`
	Instance   string `json:"instance"`
	Lease      string `json:"lease"`
	Epoch      int64  `json:"epoch"`
	LeaseID    string `json:"leaseId"`
	Owner      string `json:"owner"`
	AcquiredAt string `json:"acquiredAt"`
	Reason     string `json:"reason"`
	From       string `json:"from"`
	// Counter is the value a work item wrote to the fenced counter; FencedBy the epoch that refused a write.
	Counter  *int64 `json:"counter"`
	FencedBy int64  `json:"fencedBy"`

	proc    string    // name#incarnation
	at      time.Time // parsed Time
	acq     time.Time // parsed AcquiredAt
	skipped bool      // the process worked without checking its lease (--skip-lease-check)
}

// parseEvent reads one line of `run --json` output.
func parseEvent(proc string, line []byte) (ev, bool) {
	var e ev
	if json.Unmarshal(line, &e) != nil {
		return e, false
	}
	e.proc = proc
	e.at, _ = time.Parse(time.RFC3339Nano, e.Time)
	if e.AcquiredAt != "" {
		e.acq, _ = time.Parse(time.RFC3339Nano, e.AcquiredAt)
	}
	return e, true
}

// window is a span of time in which the network was disturbed for everyone (a burst) or for one client.
type window struct {
	from, to time.Time
	what     string
}

// verdict is what the checker found for one lease key.
type verdict struct {
	acquisitions, takeovers, works int
	violations                     []string
	failovers                      []time.Duration // from a holder's last sign of life to the next acquisition
	worstFailover                  time.Duration
	maxEpoch                       int64
}

// check verifies the safety properties over every event of one lease key, and liveness in quiet windows:
//   - no two acquisitions share an epoch, and epochs strictly increase with the time of acquisition;
//   - no work event of epoch e starts after an acquisition of a higher epoch (a superseded holder never works),
//     which also means no two instances hold at once — except for processes that skip the lease check on
//     purpose, which only the fence stops (checkCounter judges them);
//   - the document's final epoch is the highest acquired (never lost or reset);
//   - the lease gets a new holder within LeaseDuration + RetryPeriod + slack of the old holder's last sign of
//     life, counting only time when the network was not disturbed for everyone.
func check(events []ev, finalEpoch int64, bursts []window, lease, retry, slack time.Duration) verdict {
	var v verdict
	byEpoch := map[int64]ev{}
	var acquired []ev
	lastSign := map[int64]time.Time{} // epoch → the holder's last event
	for _, e := range events {
		switch e.Event {
		case "acquired":
			v.acquisitions++
			if prev, dup := byEpoch[e.Epoch]; dup {
				v.violations = append(v.violations, fmt.Sprintf("epoch %d acquired twice: by %s and by %s", e.Epoch, prev.proc, e.proc))
				continue
			}
			byEpoch[e.Epoch] = e
			acquired = append(acquired, e)
		case "takeover":
			v.takeovers++
		case "work":
			v.works++
		}
		if e.Event == "acquired" || e.Event == "work" || e.Event == "renewed" || e.Event == "released" {
			if e.at.After(lastSign[e.Epoch]) {
				lastSign[e.Epoch] = e.at
			}
		}
	}
	sort.Slice(acquired, func(i, j int) bool { return acquired[i].Epoch < acquired[j].Epoch })
	for i := 1; i < len(acquired); i++ {
		if !acquired[i].acq.After(acquired[i-1].acq) {
			v.violations = append(v.violations, fmt.Sprintf("epoch %d was acquired at %s, not after epoch %d at %s",
				acquired[i].Epoch, acquired[i].acq.Format(time.RFC3339Nano), acquired[i-1].Epoch, acquired[i-1].acq.Format(time.RFC3339Nano)))
		}
	}
	if n := len(acquired); n > 0 {
		v.maxEpoch = acquired[n-1].Epoch
		if finalEpoch < v.maxEpoch {
			v.violations = append(v.violations, fmt.Sprintf("the document ends at epoch %d, below the acquired epoch %d: it was lost or reset", finalEpoch, v.maxEpoch))
		}
	}
	// A work event of epoch e must start before the acquisition of every higher epoch.
	for _, e := range events {
		if e.Event != "work" || e.skipped {
			continue
		}
		i := sort.Search(len(acquired), func(i int) bool { return acquired[i].Epoch > e.Epoch })
		for ; i < len(acquired); i++ {
			if !e.at.Before(acquired[i].acq) {
				v.violations = append(v.violations, fmt.Sprintf("%s worked at epoch %d at %s, after %s acquired epoch %d at %s",
					e.proc, e.Epoch, e.at.Format(time.RFC3339Nano), acquired[i].proc, acquired[i].Epoch, acquired[i].acq.Format(time.RFC3339Nano)))
				break
			}
		}
	}
	// Liveness: the time from a holder's last sign of life to the next acquisition, less the time the network was
	// disturbed for everyone, must not exceed the bound.
	bound := lease + retry + slack
	for i := 1; i < len(acquired); i++ {
		last, ok := lastSign[acquired[i-1].Epoch]
		if !ok {
			continue
		}
		next := acquired[i].acq
		gap := next.Sub(last)
		if gap < 0 {
			continue
		}
		v.failovers = append(v.failovers, gap)
		if gap > v.worstFailover {
			v.worstFailover = gap
		}
		quiet := gap - overlap(last, next, bursts)
		if quiet > bound {
			v.violations = append(v.violations, fmt.Sprintf("no holder for %s of undisturbed time after epoch %d (%s) went silent at %s; the bound is %s",
				quiet.Round(time.Millisecond), acquired[i-1].Epoch, acquired[i-1].proc, last.Format(time.RFC3339Nano), bound))
		}
	}
	return v
}

// overlap is how much of [from, to] the windows cover.
func overlap(from, to time.Time, ws []window) time.Duration {
	var total time.Duration
	for _, w := range ws {
		a, b := w.from, w.to
		if a.Before(from) {
			a = from
		}
		if b.After(to) {
			b = to
		}
		if b.After(a) {
			total += b.Sub(a)
		}
	}
	return total
}
