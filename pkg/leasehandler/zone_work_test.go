//go:build linux || darwin

package leasehandler

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A job with a time zone over the host's protocol, against the real server: a minute tick that is an occurrence
// in the zone runs it, named in UTC, and its run record carries the zone; one that is not is answered idle at
// once, without a connection to Cosmos DB and without running the work.
func TestTimeZoneJobTicks(t *testing.T) {
	var runs atomic.Int64
	var named atomic.Value
	work := func(ctx context.Context, run Run) error {
		runs.Add(1)
		named.Store(run.Occurrence)
		return nil
	}
	ts, h, _ := inProcess(t, work, map[string]string{"LeaseTimerSchedule": "* * * * *", "LeaseTimerTimeZone": "Asia/Kolkata"})
	minute := time.Now().UTC().Truncate(time.Minute)
	res := post(t, ts, monitoredTick(minute.Add(-time.Minute), minute, fired(minute), false))
	if res.Status != "executed" || runs.Load() != 1 || !named.Load().(time.Time).Equal(minute) || !res.Occurrence.Equal(minute) {
		t.Fatalf("the tick of an occurrence: %+v, %d runs, named %v", res, runs.Load(), named.Load())
	}
	hist, err := h.client.History(context.Background(), h.jobs[0].s.key, 10, nil, 0)
	if err != nil || len(hist.Runs) != 1 || hist.Runs[0].Schedule != "CRON_TZ=Asia/Kolkata * * * * *" {
		t.Fatalf("the run record: %+v, %v", hist, err)
	}

	// 02:30 in Berlin is one minute a day: any other minute's tick is idle.
	ts, h, _ = inProcess(t, work, map[string]string{"LeaseTimerSchedule": "0 30 2 * * *", "LeaseTimerTimeZone": "Europe/Berlin"})
	if h.jobs[0].s.sched.Contains(minute) {
		minute = minute.Add(time.Minute)
	}
	res = post(t, ts, monitoredTick(minute.Add(-time.Minute), minute, fired(minute), false))
	if res.Status != "idle" || !res.Occurrence.Equal(minute) || runs.Load() != 1 || h.client != nil {
		t.Fatalf("the tick of a minute that is no occurrence: %+v, %d runs, connected %v", res, runs.Load(), h.client != nil)
	}
}
