package leasehandler

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Time zone settings: LeaseJobs__NAME__TimeZone over LeaseTimerTimeZone; an unknown name refuses the job (or, app
// wide, every job) naming the setting; a zoned schedule must keep to whole minutes; WEBSITE_TIME_ZONE is refused
// with the settings to use instead.
func TestTimeZoneSettings(t *testing.T) {
	report := Job{Name: "Report", Schedule: "0 30 2 * * *", Work: noWork}
	h := jobsOf(t, map[string]string{"LeaseTimerTimeZone": "America/New_York", "LeaseJobs__Report__TimeZone": "Europe/Berlin"},
		report, Job{Name: "Other", Schedule: "0 0 * * * *", Work: noWork}, Job{Name: "Utc", Schedule: "0 0 * * * *", Work: noWork})
	if j := h.job("Report"); j.err != nil || j.s.sched.Location().String() != "Europe/Berlin" || !j.s.ticked {
		t.Fatalf("Report: %+v", j)
	}
	if j := h.job("Other"); j.err != nil || j.s.sched.Location().String() != "America/New_York" {
		t.Fatalf("Other: %+v", j)
	}
	// The retention's floor counts the 25-hour day: two of them.
	if j := h.job("Report"); j.s.sched.Longest() != 25*time.Hour || j.s.retention != 30*24*time.Hour {
		t.Fatalf("Report's gaps: %s, retention %s", j.s.sched.Longest(), j.s.retention)
	}
	h = jobsOf(t, map[string]string{"LeaseTimerTimeZone": "America/New_York"}, Job{Name: "Coded", Schedule: "0 30 2 * * *", TimeZone: "Australia/Lord_Howe", Work: noWork})
	if j := h.job("Coded"); j.err != nil || j.s.sched.Location().String() != "Australia/Lord_Howe" {
		t.Fatalf("the job's TimeZone field: %+v", j)
	}
	h = jobsOf(t, map[string]string{"LeaseJobs__Report__TimeZone": "UTC"}, report)
	if j := h.job("Report"); j.err != nil || j.s.ticked {
		t.Fatalf("UTC is no zone: %+v", j)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		job  Job
		want string
	}{
		{"unknown zone", map[string]string{"LeaseJobs__Report__TimeZone": "Europe/Berln"}, report,
			`LeaseJobs__Report__TimeZone "Europe/Berln" is not a time zone this knows: name an IANA time zone, such as Europe/Berlin`},
		{"windows name", map[string]string{"LeaseJobs__Report__TimeZone": "W. Europe Standard Time"}, report, "looks like a Windows time zone name"},
		{"seconds", map[string]string{"LeaseTimerTimeZone": "Europe/Berlin"}, Job{Name: "Report", Schedule: "*/30 * * * * *", Work: noWork},
			`job Report's schedule "*/30 * * * * *" fires at seconds other than 0, but a job with a time zone (LeaseTimerTimeZone Europe/Berlin) is fired by the host once a minute`},
		{"website time zone", map[string]string{"WEBSITE_TIME_ZONE": "Europe/Berlin"}, report,
			"remove WEBSITE_TIME_ZONE, and to run jobs on a time zone's clock set LeaseTimerTimeZone (every job) or LeaseJobs__NAME__TimeZone to an IANA name such as Europe/Berlin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := jobsOf(t, tc.env, tc.job).job(tc.job.Name)
			if j == nil || j.err == nil || !strings.Contains(j.err.Error(), tc.want) || strings.Contains(j.err.Error(), "\n") {
				t.Fatalf("%+v; want one line saying %q", j, tc.want)
			}
		})
	}
	_, err := loadApp(environment(merge(appEnv, map[string]string{"LeaseTimerTimeZone": "Mars/Olympus"})))
	if err == nil || !strings.HasPrefix(err.Error(), `LeaseTimerTimeZone "Mars/Olympus" is not a time zone this knows`) {
		t.Fatalf("an unknown app-wide zone: %v", err)
	}
}

// A job with a time zone is fired every minute: its function.json says so, and a deployed function.json that does
// not (the zone set after the deployment) refuses the job, as does the reverse, since either way occurrences
// would run nowhere, or each minute's tick would read Cosmos DB.
func TestTimeZoneFunctionJSON(t *testing.T) {
	e := environment(merge(appEnv, map[string]string{"LeaseJobs__Report__TimeZone": "Europe/Berlin", "LeaseJobs__Export__Schedule": "0 0 2 * * *",
		"LeaseJobs__Export__Command": "/bin/true", "LeaseJobs__Export__TimeZone": "America/New_York"}))
	specs, problems := listJobs([]Job{{Name: "Report", Schedule: "0 30 2 * * *", Work: noWork}, {Name: "Plain", Schedule: "0 30 2 * * *", Work: noWork}}, e)
	files, err := functionFiles(specs, problems)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"Report": tickSchedule, "Export": tickSchedule, "Plain": "0 30 2 * * *"} {
		var f struct{ Bindings []functionBinding }
		if err := json.Unmarshal(files[name], &f); err != nil || f.Bindings[0].Schedule != want {
			t.Errorf("%s/function.json: %s (%v), want schedule %q", name, files[name], err, want)
		}
	}
	bad := environment(merge(appEnv, map[string]string{"LeaseJobs__Report__TimeZone": "Berlin"}))
	specs, problems = listJobs([]Job{{Name: "Report", Schedule: "0 30 2 * * *", Work: noWork}}, bad)
	if _, err := functionFiles(specs, problems); err == nil || !strings.Contains(err.Error(), `LeaseJobs__Report__TimeZone "Berlin" is not a time zone`) {
		t.Fatalf("packaging a job with an unknown zone: %v", err)
	}

	dir := t.TempDir()
	saved := functionDirs
	functionDirs = func() []string { return []string{dir} }
	defer func() { functionDirs = saved }()
	deployed := func(name, schedule string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "function.json"), timerFunction(schedule), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deployed("Report", "0 30 2 * * *")
	deployed("Plain", tickSchedule)
	h := jobsOf(t, map[string]string{"LeaseJobs__Report__TimeZone": "Europe/Berlin"}, Job{Name: "Report", Schedule: "0 30 2 * * *", Work: noWork},
		Job{Name: "Plain", Schedule: "0 30 2 * * *", Work: noWork})
	if j := h.job("Report"); j.err == nil || !strings.Contains(j.err.Error(), `job Report has a time zone (LeaseJobs__Report__TimeZone Europe/Berlin), so the host must fire it every minute ("0 * * * * *" in its function.json), but its deployed function.json, packaged without the zone, fires on "0 30 2 * * *" in UTC: package and deploy it again`) {
		t.Errorf("a zone set after the deployment: %v", j.err)
	}
	if j := h.job("Plain"); j.err == nil || !strings.Contains(j.err.Error(), "job Plain's deployed function.json fires every minute, as for a job with a time zone, but its settings name none") {
		t.Errorf("a zone removed after the deployment: %v", j.err)
	}
	deployed("Report", tickSchedule)
	deployed("Plain", "0 30 2 * * *")
	h = jobsOf(t, map[string]string{"LeaseJobs__Report__TimeZone": "Europe/Berlin"}, Job{Name: "Report", Schedule: "0 30 2 * * *", Work: noWork},
		Job{Name: "Plain", Schedule: "0 30 2 * * *", Work: noWork})
	if a, b := h.job("Report"), h.job("Plain"); a.err != nil || b.err != nil {
		t.Errorf("matching function.json files: %v / %v", a.err, b.err)
	}
}

// Which minute ticks are occurrences, across both of 2026's daylight-saving changes in Europe/Berlin and
// America/New_York: a fixed time runs at the first instant after a skipped hour and at the first instance of a
// repeated one; an interval schedule at every real instant. The host's ScheduleStatus.Next names the tick; without
// it (a manual run, useMonitor off), UtcNow does.
func TestTickOccurrenceAcrossDaylightSaving(t *testing.T) {
	for _, tc := range []struct {
		zone, expr string
		yes, no    []string
	}{
		{"Europe/Berlin", "0 30 2 * * *", []string{"2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
			[]string{"2026-03-29T01:30:00Z", "2026-03-29T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-24T01:30:00Z"}},
		{"Europe/Berlin", "0 */15 * * * *", []string{"2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"},
			[]string{"2026-03-29T00:50:00Z", "2026-10-25T01:31:00Z"}},
		{"America/New_York", "0 30 2 * * *", []string{"2026-03-08T07:00:00Z", "2026-11-01T07:30:00Z"},
			[]string{"2026-03-08T07:30:00Z", "2026-11-01T06:30:00Z"}},
		{"America/New_York", "30 1 * * *", []string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}, []string{"2026-11-01T06:30:00Z"}},
		{"America/New_York", "*/30 * * * *", []string{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"}, []string{"2026-11-01T06:15:00Z"}},
	} {
		h := jobsOf(t, map[string]string{"LeaseTimerTimeZone": tc.zone}, Job{Name: "Report", Schedule: tc.expr, Work: noWork})
		s := h.job("Report").s
		for i, list := range [][]string{tc.yes, tc.no} {
			for _, v := range list {
				at, _ := time.Parse(time.RFC3339, v)
				var req invokeRequest
				for _, payload := range [][]byte{monitoredTick(at.Add(-time.Minute), at, fired(at), false), unmonitoredTick(fired(at)), unmonitoredTick(at.Add(-700 * time.Millisecond))} {
					if err := json.Unmarshal(payload, &req); err != nil {
						t.Fatal(err)
					}
					info, sys, err := parseTimer(req, "Report")
					if err != nil {
						t.Fatal(err)
					}
					occ, ok := tickOccurrence(s.sched, info, sys, time.Now)
					if want := i == 0; ok != want || !occ.Equal(at) {
						t.Errorf("%s in %s, tick %s: occurrence %s %v, want %v", tc.expr, tc.zone, v, occ, ok, want)
					}
				}
			}
		}
	}
}
