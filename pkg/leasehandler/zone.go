package leasehandler

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
)

// A job with a time zone (LeaseTimerTimeZone, or LeaseJobs__NAME__TimeZone) has its schedule read on that zone's
// wall clock and its occurrences named in UTC, the same in every region (internal/ncrontab states the
// daylight-saving rules). The host cannot fire on that clock (on Flex Consumption it reads schedules in UTC, and
// WEBSITE_TIME_ZONE is refused), so the job's function.json fires every minute (tickSchedule) and the handler
// runs the ticks that are occurrences.

// jobZone is the time zone of a job, and what names it: LeaseJobs__NAME__TimeZone, else the job's TimeZone field,
// else LeaseTimerTimeZone; nil for UTC.
func jobZone(e environment, je *jobEnv, j Job) (*time.Location, string, error) {
	v, name, ok := je.get("TimeZone")
	switch {
	case ok:
	case j.TimeZone != "":
		v, name = j.TimeZone, "job "+j.Name+"'s TimeZone"
	default:
		v, name = e.get(settingJobTimeZone), settingJobTimeZone
		if strings.TrimSpace(v) == "" {
			return nil, "", nil
		}
	}
	loc, err := ncrontab.LoadZone(v)
	if err != nil {
		return nil, name, fmt.Errorf("%s %v", name, err)
	}
	if loc == time.UTC {
		return nil, name, nil
	}
	return loc, name, nil
}

// functionDirs are where the app's function folders may be (the host's working directory, the handler's).
var functionDirs = hostDirs

// checkTicks refuses a job whose deployed function.json does not fire the way the settings need: every minute
// for a job with a time zone, on its schedule otherwise. App settings change without a new deployment, and
// function.json only with one; without this check a zone set afterwards would leave every occurrence unticked,
// and so run nowhere, with nothing recorded. A missing function.json (a test, a local run) is not checked.
func checkTicks(name string, ticked bool, zoneSource string, zone *time.Location) error {
	for _, dir := range functionDirs() {
		b, err := os.ReadFile(filepath.Join(dir, name, "function.json"))
		if err != nil {
			continue
		}
		var f struct {
			Bindings []functionBinding `json:"bindings"`
		}
		if json.Unmarshal(b, &f) != nil {
			return nil
		}
		for _, bd := range f.Bindings {
			if !strings.EqualFold(bd.Type, "timerTrigger") {
				continue
			}
			switch {
			case ticked && bd.Schedule != tickSchedule:
				return fmt.Errorf("job %s has a time zone (%s %s), so the host must fire it every minute (%q in its function.json), but its deployed function.json, packaged without the zone, fires on %q in UTC: package and deploy it again with the zone known (the job's TimeZone field, or the setting in the environment of cosmoslease deploy), or remove %s",
					name, zoneSource, zone, tickSchedule, bd.Schedule, zoneSource)
			case !ticked && bd.Schedule == tickSchedule:
				return fmt.Errorf("job %s's deployed function.json fires every minute, as for a job with a time zone, but its settings name none: package and deploy it again, or set LeaseJobs__%s__TimeZone or %s again",
					name, name, settingJobTimeZone)
			}
			return nil
		}
	}
	return nil
}

// tickOccurrence is, for a job the host fires every minute, the occurrence a tick is for, and whether the tick
// is one: the minute the host fired for (ScheduleStatus.Next during a scheduled run, else the minute of
// UtcNow + 1 s, since the host can fire up to about a second early).
func tickOccurrence(sched *ncrontab.Schedule, info timerInfo, sys sysMetadata, now func() time.Time) (time.Time, bool) {
	t := sys.UtcNow.Time
	if t.IsZero() {
		t = now().UTC()
	}
	limit := t.Add(time.Second)
	tick := limit.Truncate(time.Minute)
	if st := info.ScheduleStatus; st != nil && !st.Next.IsZero() && !st.Next.After(limit) {
		tick = st.Next.UTC()
	}
	return tick, sched.Contains(tick)
}
