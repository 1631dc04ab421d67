//go:build linux || darwin

package leasehandler

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
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

// Over the host's protocol, a zone that cannot work fails each tick (HTTP 500, the host counts a failed execution)
// with one line naming the setting: WEBSITE_TIME_ZONE, pointing to the settings to use; an unknown job zone.
func TestTimeZoneRefusedTicks(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WEBSITE_TIME_ZONE": "Europe/Berlin"}, "remove WEBSITE_TIME_ZONE, and to run jobs on a time zone's clock set LeaseTimerTimeZone (every job) or LeaseJobs__NAME__TimeZone"},
		{map[string]string{"LeaseJobs__LeaseTimer__TimeZone": "Mars/Olympus"}, `LeaseJobs__LeaseTimer__TimeZone "Mars/Olympus" is not a time zone this knows`},
	} {
		e := environment(merge(testEnv(t), tc.env))
		app, err := loadApp(e)
		if err != nil {
			t.Fatal(err)
		}
		specs, _ := listJobs([]Job{LeaseTimer(noWork)}, e)
		h := newHandler(app, nil, specs, e, slog.New(slog.DiscardHandler))
		h.out = &output{stdout: io.Discard, stderr: io.Discard}
		ts := httptest.NewServer(h.mux())
		res := postTimer(t, ts, time.Now().UTC().Truncate(2*time.Second))
		ts.Close()
		if res.Status != "failed" || !strings.Contains(res.Reason, tc.want) || strings.Contains(res.Reason, "\n") {
			t.Errorf("%v: %+v; want failed, saying %q", tc.env, res, tc.want)
		}
	}
}
