package leasehandler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// host.json carries what the host needs; the function folders are generated from the jobs: LeaseTimer's binds
// %LeaseTimerSchedule% (as the hand-written one of the single-job handler did), a job whose schedule is in an
// app setting binds it in the form the host can resolve, a literal schedule is written as is, and every folder
// has a route and every route a folder.
func TestFunctionFolders(t *testing.T) {
	var host struct {
		Version         string `json:"version"`
		FunctionTimeout string `json:"functionTimeout"`
		ExtensionBundle struct {
			ID, Version string
		} `json:"extensionBundle"`
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
			EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
		} `json:"customHandler"`
	}
	readJSON(t, "../../host.json", &host)
	if host.Version != "2.0" || host.ExtensionBundle.ID != "Microsoft.Azure.Functions.ExtensionBundle" ||
		host.ExtensionBundle.Version != "[4.*, 5.0.0)" || host.CustomHandler.Description.DefaultExecutablePath != "leasehandler" ||
		host.FunctionTimeout == "" || host.CustomHandler.EnableForwardingHTTPRequest {
		t.Fatalf("host.json: %+v", host)
	}

	e := environment{"LeaseJobs__Nightly_Export__Command": "./export.sh --full", "LeaseJobs__Nightly_Export__Schedule": "0 0 2 * * *",
		"LeaseJobs__Report__FailoverDelay": "00:00:05"}
	jobs := []Job{LeaseTimer(noWork), {Name: "Report", Schedule: "0 30 6 * * Mon-Fri", Work: noWork},
		{Name: "Cleanup", Schedule: "%CleanupSchedule%", Work: noWork}, {Name: "Rollup", Work: noWork}}
	specs, problems := listJobs(jobs, e)
	dir := t.TempDir()
	var listed strings.Builder
	if err := writeFunctions(dir, specs, problems, &listed); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(listed.String()); strings.Join(got, ",") != "Cleanup,LeaseStatus,LeaseTimer,LeaseTrigger,Nightly_Export,Report,Rollup" {
		t.Fatalf("folders written: %v", got)
	}
	h := newHandler(nil, errors.New("no app settings in this test"), specs, e, nil)
	var routes []string
	for name := range h.routes() {
		routes = append(routes, name)
	}
	sort.Strings(routes)
	if strings.Join(routes, ",") != "Cleanup,LeaseStatus,LeaseTimer,LeaseTrigger,Nightly_Export,Report,Rollup" {
		t.Fatalf("routes %v", routes)
	}

	type binding struct {
		Name, Type, Direction, Schedule, AuthLevel string
		RunOnStartup, UseMonitor                   *bool
		Methods                                    []string
	}
	var trigger struct{ Bindings []binding }
	readJSON(t, filepath.Join(dir, "LeaseTrigger", "function.json"), &trigger)
	if b := trigger.Bindings; len(b) != 1 || b[0].Type != "timerTrigger" || b[0].Schedule != "0 */1 * * * *" || b[0].UseMonitor == nil || *b[0].UseMonitor {
		t.Fatalf("LeaseTrigger's bindings: %+v; want an unmonitored timer every minute", b)
	}
	for name, want := range map[string]string{"LeaseTimer": "%LeaseTimerSchedule%", "Report": "0 30 6 * * Mon-Fri",
		"Cleanup": "%CleanupSchedule%", "Rollup": "%LeaseJobs:Rollup:Schedule%", "Nightly_Export": "%LeaseJobs:Nightly_Export:Schedule%"} {
		var timer struct{ Bindings []binding }
		readJSON(t, filepath.Join(dir, name, "function.json"), &timer)
		b := timer.Bindings[0]
		if len(timer.Bindings) != 1 || b.Name != "timer" || b.Type != "timerTrigger" || b.Direction != "in" ||
			b.Schedule != want || b.RunOnStartup == nil || *b.RunOnStartup || b.UseMonitor == nil || !*b.UseMonitor {
			t.Fatalf("%s bindings: %+v; want the schedule %s", name, timer.Bindings, want)
		}
	}
	var status struct{ Bindings []binding }
	readJSON(t, filepath.Join(dir, "LeaseStatus", "function.json"), &status)
	if len(status.Bindings) != 2 || status.Bindings[0].Type != "httpTrigger" || status.Bindings[0].AuthLevel != "function" ||
		strings.Join(status.Bindings[0].Methods, ",") != "get" || status.Bindings[1].Type != "http" || status.Bindings[1].Name != "res" {
		t.Fatalf("LeaseStatus bindings: %+v", status.Bindings)
	}

	// What no setting can fix stops the packaging, naming the job.
	for _, tc := range []struct {
		jobs []Job
		env  environment
		want string
	}{
		{[]Job{{Name: "Report", Schedule: "0 61 * * * *", Work: noWork}}, nil, "job Report's Schedule"},
		{nil, environment{"LeaseJobs__Export__Schedule": "0 0 2 * * *"}, "LeaseJobs__Export__Command is not set"},
		{nil, environment{"LeaseJobs__Export__Command": "./x", "LeaseJobs__Export__Shedule": "0 0 2 * * *"}, "unknown app setting LeaseJobs__Export__Shedule"},
		{nil, environment{"LeaseJobs__bad-name__Command": "./x"}, "is not a function name"},
		{nil, environment{"LeaseJobs__Export": "./x"}, "not of the form LeaseJobs__NAME__FIELD"},
	} {
		specs, problems := listJobs(tc.jobs, tc.env)
		if err := writeFunctions(t.TempDir(), specs, problems, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("jobs %+v, settings %v: %v; want an error saying %q", tc.jobs, tc.env, err, tc.want)
		}
	}
	for _, tc := range []struct {
		jobs []Job
		want string
	}{
		{[]Job{{Name: "", Work: noWork}}, "a job needs a name"},
		{[]Job{{Name: "Report"}}, "job Report has no Work"},
		{[]Job{{Name: "Report", Work: noWork}, {Name: "report", Work: noWork}}, "have the same name"},
		{[]Job{{Name: "nightly-report", Work: noWork}}, "is not a function name"},
		{[]Job{{Name: "Nightly__Report", Work: noWork}}, "double underscore"},
		{[]Job{{Name: "leasestatus", Work: noWork}}, "taken by the handler's status function"},
		{[]Job{{Name: "host", Work: noWork}}, "is not a function name"},
	} {
		if err := checkGoJobs(tc.jobs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("jobs %+v: %v; want an error saying %q", tc.jobs, err, tc.want)
		}
	}
}

func noWork(ctx context.Context, run Run) error { return nil }

// loadSettings reads the settings of the job LeaseTimer, as the handler of one job read its own.
func loadSettings(env map[string]string) (*settings, error) {
	e := environment(env)
	app, err := loadApp(e)
	if err != nil {
		return nil, err
	}
	specs, _ := listJobs([]Job{LeaseTimer(noWork)}, e)
	if specs[0].err != nil {
		return nil, specs[0].err
	}
	return app.job(specs[0].Job, e, specs[0].env)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestParseTimerIsLenient(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v.UTC() }
	for _, tc := range []struct {
		name     string
		body     string
		next     time.Time
		nullStat bool
		pastDue  bool
	}{
		{"documented PascalCase", `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-09-24T13:08:00.0096035+00:00","Next":"2026-09-24T13:09:00+00:00","LastUpdated":"2026-09-24T13:08:00.0096035+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"LeaseTimer","UtcNow":"2026-09-24T13:09:00.0151719Z","RandGuid":"x"}}}`,
			at("2026-09-24T13:09:00Z"), false, false},
		{"camelCase with empty times", `{"Data":{"timer":{"schedule":{},"scheduleStatus":{"last":"","next":"","lastUpdated":""},"isPastDue":true}},"Metadata":{}}`,
			time.Time{}, false, true},
		{"null status", `{"Data":{"timer":{"Schedule":{"AdjustForDST":false},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`,
			time.Time{}, true, false},
		{"timer as a JSON string, zone-less DateTime.MinValue", `{"Data":{"timer":"{\"ScheduleStatus\":{\"Last\":\"0001-01-01T00:00:00\",\"Next\":\"2018-07-24T23:24:00-07:00\",\"LastUpdated\":\"0001-01-01T00:00:00\"},\"IsPastDue\":true}"},"Metadata":{}}`,
			at("2018-07-25T06:24:00Z"), false, true},
		{"invariant culture dates", `{"Data":{"timer":{"ScheduleStatus":{"Last":"09/24/2026 13:08:00","Next":"09/24/2026 13:09:00","LastUpdated":"09/24/2026 13:08:00"},"IsPastDue":false}}}`,
			at("2026-09-24T13:09:00Z"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req invokeRequest
			if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}
			info, _, err := parseTimer(req, "LeaseTimer")
			if err != nil {
				t.Fatal(err)
			}
			if tc.nullStat != (info.ScheduleStatus == nil) || info.IsPastDue != tc.pastDue {
				t.Fatalf("parsed %+v", info)
			}
			if info.ScheduleStatus != nil && !info.ScheduleStatus.Next.Equal(tc.next) {
				t.Fatalf("Next = %v, want %v", info.ScheduleStatus.Next, tc.next)
			}
		})
	}
	for _, bad := range []string{`{"Data":{}}`, `{"Data":{"timer":{"ScheduleStatus":{"Next":"tomorrow"}}}}`, `{"Data":{"timer":"{"}}`} {
		var req invokeRequest
		_ = json.Unmarshal([]byte(bad), &req)
		if _, _, err := parseTimer(req, "LeaseTimer"); err == nil {
			t.Errorf("parseTimer(%s) accepted it", bad)
		}
	}
}

func FuzzParseTimer(f *testing.F) {
	f.Add([]byte(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-09-24T13:08:00.0096035+00:00","Next":"2026-09-24T13:09:00+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"UtcNow":"2026-09-24T13:09:00Z"}}}`))
	f.Add([]byte(`{"Data":{"timer":"{\"IsPastDue\":true}"}}`))
	f.Add([]byte(`{"Data":{"timer":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req invokeRequest
		if json.Unmarshal(b, &req) != nil {
			return
		}
		info, sys, err := parseTimer(req, "LeaseTimer")
		if err != nil {
			return
		}
		sched, _ := ncrontab.Parse("0 * * * * *")
		now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC) }
		if occ := occurrenceOf(sched, info, sys, now); !sched.Contains(occ) {
			t.Fatalf("occurrence %s for %s is not one of the schedule's", occ, b)
		}
	})
}

func TestSettings(t *testing.T) {
	base := map[string]string{"CosmosLeasing__AccountEndpoint": "https://acct.documents.azure.com:443/", "REGION_NAME": "East US", "WEBSITE_INSTANCE_ID": "abcdef0123456789",
		"LeaseTimerSchedule": "0 */1 * * * *", "WEBSITE_SITE_NAME": "func-demo-eastus"}
	get := func(extra map[string]string) map[string]string { return merge(base, extra) }
	s, err := loadSettings(get(nil))
	if err != nil {
		t.Fatal(err)
	}
	// The lease is held only while an occurrence's work runs: short, renewed automatically, whatever the
	// schedule; the owner is the region's app, stable across its processes; no takeover of a live holder.
	if s.key != "timer-singleton" || s.opts.LeaseDuration != 30*time.Second || s.opts.ManualRenew || s.opts.TakeOverSameOwner ||
		s.opts.Region != "East US" || s.delay != 10*time.Second || s.retryAbandoned || len(s.preferred) != 0 || s.retention != 30*24*time.Hour {
		t.Fatalf("defaults: %+v %+v", s, s.opts)
	}
	if s.opts.OwnerID != "func-demo-eastus@eastus" || s.instance != "abcdef0123456789" || s.opts.Hostname != s.instance {
		t.Fatalf("owner %q, instance %q, hostname %q", s.opts.OwnerID, s.instance, s.opts.Hostname)
	}
	// The instance id as the host finds it on Linux Consumption and Flex, then App Service, then the hostname.
	host, _ := os.Hostname()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WEBSITE_POD_NAME": "pod-7", "CONTAINER_NAME": "ctr-3"}, "pod-7"},
		{map[string]string{"CONTAINER_NAME": "ctr-3"}, "ctr-3"},
		{map[string]string{}, "abcdef0123456789"},
		{map[string]string{"WEBSITE_INSTANCE_ID": ""}, host},
	} {
		if s, err := loadSettings(get(tc.env)); err != nil || s.instance != tc.want {
			t.Errorf("instance with %v: %v, %v; want %q", tc.env, s, err, tc.want)
		}
	}
	if s, err := loadSettings(get(map[string]string{"WEBSITE_SITE_NAME": "", "LeaseTimerRegion": "West Europe"})); err != nil || s.opts.OwnerID != host+"@westeurope" {
		t.Errorf("owner without WEBSITE_SITE_NAME: %v, %v; want the hostname and the region", s, err)
	}
	// Neither the lease nor the failover delay depends on the schedule; the retention is at least two of its
	// longest gaps (and a day).
	for expr, retention := range map[string]time.Duration{"*/5 * * * *": 30 * 24 * time.Hour, "*/2 * * * * *": 30 * 24 * time.Hour,
		"0 0 9 * * Monday-Friday": 30 * 24 * time.Hour, "0 0 9 13 * Fri": 2 * 427 * 24 * time.Hour} {
		s, err := loadSettings(get(map[string]string{"LeaseTimerSchedule": expr}))
		if err != nil {
			t.Errorf("LeaseTimerSchedule %q: %v", expr, err)
		} else if s.opts.LeaseDuration != 30*time.Second || s.delay != 10*time.Second || s.retention != retention {
			t.Errorf("LeaseTimerSchedule %q: lease %v, delay %v, retention %v; want 30s, 10s, %v", expr, s.opts.LeaseDuration, s.delay, s.retention, retention)
		}
	}
	// Preference: the setting, compared as REGION_NAME is (case and spaces do not matter); an unlisted region
	// ranks last; with no setting, the account's order.
	s, err = loadSettings(get(map[string]string{"LeaseTimerPreferredRegions": "westeurope, East US ,Southeast Asia", "LeaseTimerFailoverDelay": "00:00:05",
		"LeaseTimerRetryAbandoned": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if r, n := s.rank(nil); r != 1 || n != 3 || s.delay != 5*time.Second || !s.retryAbandoned {
		t.Fatalf("rank %d of %d, delay %v, retry %v", r, n, s.delay, s.retryAbandoned)
	}
	s.opts.Region = "North Europe"
	if r, n := s.rank(nil); r != 3 || n != 4 {
		t.Fatalf("unlisted region: rank %d of %d, want 3 of 4", r, n)
	}
	// The catch-up window: off by default; the app's, then the job's own.
	if s.catchUp != 0 {
		t.Fatalf("catch-up window by default: %v, want 0 (off)", s.catchUp)
	}
	for env, want := range map[string]time.Duration{"LeaseTimerCatchUpWindow": 2 * time.Hour, "LeaseJobs__LeaseTimer__CatchUpWindow": 2 * time.Hour} {
		if s, err := loadSettings(get(map[string]string{env: "02:00:00"})); err != nil || s.catchUp != want {
			t.Fatalf("%s: %v, %v", env, s, err)
		}
	}
	if s, err := loadSettings(get(map[string]string{"LeaseTimerCatchUpWindow": "02:00:00", "LeaseJobs__LeaseTimer__CatchUpWindow": "00:10:00"})); err != nil || s.catchUp != 10*time.Minute {
		t.Fatalf("the job's own window over the app's: %v, %v", s, err)
	}
	// The overlap policy: wait by default; the app's, then the job's own.
	if s.overlap != cosmoslease.OverlapWait {
		t.Fatalf("overlap by default: %q, want wait", s.overlap)
	}
	if s, err := loadSettings(get(map[string]string{"LeaseTimerOverlap": "Skip"})); err != nil || s.overlap != cosmoslease.OverlapSkip {
		t.Fatalf("LeaseTimerOverlap: %v, %v", s, err)
	}
	if s, err := loadSettings(get(map[string]string{"LeaseTimerOverlap": "skip", "LeaseJobs__LeaseTimer__Overlap": "wait"})); err != nil || s.overlap != cosmoslease.OverlapWait {
		t.Fatalf("the job's own policy over the app's: %v, %v", s, err)
	}
	s, _ = loadSettings(get(nil))
	if r, n := s.rank([]string{"West Europe", "East US"}); r != 1 || n != 2 {
		t.Fatalf("account order: rank %d of %d, want 1 of 2", r, n)
	}
	for _, tc := range []struct {
		extra map[string]string
		want  string
	}{
		{map[string]string{"CosmosLeasing__AccountEndpoint": ""}, "no Cosmos DB account configured"},
		// No silent default: the host would not load LeaseTimer, so the handler says why.
		{map[string]string{"LeaseTimerSchedule": ""}, "LeaseTimerSchedule is not set"},
		{map[string]string{"LeaseTimerSchedule": "  "}, "LeaseTimerSchedule is not set"},
		{map[string]string{"CosmosLeasing__AccountEndpoint": "acct"}, "is not a URL"},
		{map[string]string{"CosmosLeasing__DefaultLeaseDuration": "soon"}, "CosmosLeasing__DefaultLeaseDuration"},
		{map[string]string{"CosmosLeasing__DefaultLeaseDuration": "00:00:03"}, "from 00:00:06 to 00:10:00"},
		{map[string]string{"LeaseTimerPreferredRegions": "eastus,East US"}, "\"East US\" is named twice"},
		{map[string]string{"LeaseTimerFailoverDelay": "soon"}, "LeaseTimerFailoverDelay"},
		{map[string]string{"LeaseTimerFailoverDelay": "00:00:00"}, "from 00:00:01 to 01:00:00"},
		{map[string]string{"LeaseTimerRetryAbandoned": "maybe"}, "not true or false"},
		{map[string]string{"LeaseTimerFailoverDelay": "00:01:00", "AzureFunctionsJobHost__functionTimeout": "00:01:00"}, "too long for functionTimeout"},
		// Records must outlive every late tick of their occurrence: a day at least, and two of the longest gaps.
		{map[string]string{"LeaseTimerRunRetention": "00:00:01"}, "too short"},
		{map[string]string{"LeaseTimerRunRetention": "20.00:00:00", "LeaseTimerSchedule": "0 0 9 13 * Fri"}, "use at least 854.00:00:00"},
		{map[string]string{"LeaseTimerSchedule": "0 61 * * * *"}, "outside 0-59"},
		{map[string]string{"LeaseTimerLeaseKey": "a/b"}, "LeaseTimerLeaseKey"},
		{map[string]string{"LeaseTimerRunRetention": "forever"}, "LeaseTimerRunRetention"},
		{map[string]string{"LeaseTimerRunRetention": "00:00:00"}, "too short"},
		{map[string]string{"CosmosLeasing__PartitionKeyPath": "/id"}, "partitioned on /id"},
		{map[string]string{"REGION_NAME": ""}, "set the app setting LeaseTimerRegion"},
		{map[string]string{"LeaseTimerCatchUpWindow": "soon"}, `LeaseTimerCatchUpWindow "soon" is not a duration`},
		{map[string]string{"LeaseTimerCatchUpWindow": "-01:00:00"}, `LeaseTimerCatchUpWindow "-01:00:00" is not a duration`},
		{map[string]string{"LeaseTimerCatchUpWindow": "40.00:00:00"}, "LeaseTimerCatchUpWindow (40.00:00:00) is longer than the run-record retention (30.00:00:00)"},
		{map[string]string{"LeaseJobs__LeaseTimer__CatchUpWindow": "2h?"}, `LeaseJobs__LeaseTimer__CatchUpWindow "2h?" is not a duration`},
		{map[string]string{"LeaseTimerOverlap": "queue"}, `LeaseTimerOverlap "queue" is not an overlap policy: use skip`},
		{map[string]string{"LeaseJobs__LeaseTimer__Overlap": "never"}, `LeaseJobs__LeaseTimer__Overlap "never" is not an overlap policy`},
	} {
		if _, err := loadSettings(get(tc.extra)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("settings %v: %v, want %q", tc.extra, err, tc.want)
		}
	}
}

// The occurrence a tick is for, worked out by hand (2026-09-26 is a Saturday).
func TestOccurrence(t *testing.T) {
	at := func(s string) flexTime {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return flexTime{v.UTC()}
	}
	status := func(last, next string) *scheduleStatus {
		return &scheduleStatus{Last: at(last), Next: at(next), LastUpdated: at(last)}
	}
	const never = "0001-01-01T00:00:00Z"
	for _, tc := range []struct {
		name, schedule string
		status         *scheduleStatus
		utcNow         string
		want           string
	}{
		{"scheduled run: Next is the occurrence firing", "0 */1 * * * *", status("2026-09-24T13:08:00Z", "2026-09-24T13:09:00Z"), "2026-09-24T13:09:00.0151719Z", "2026-09-24T13:09:00Z"},
		{"scheduled run fired early", "0 */1 * * * *", status("2026-09-24T13:08:00Z", "2026-09-24T13:09:00Z"), "2026-09-24T13:08:59.2Z", "2026-09-24T13:09:00Z"},
		{"first run ever", "0 */1 * * * *", status(never, "2026-09-24T13:09:00Z"), "2026-09-24T13:09:00.01Z", "2026-09-24T13:09:00Z"},
		{"past-due replay names the missed occurrence", "0 */5 * * * *", status("2026-09-24T13:00:00Z", "2026-09-24T13:05:00Z"), "2026-09-24T13:09:20Z", "2026-09-24T13:05:00Z"},
		// No status: sub-minute schedules, useMonitor false.
		{"no status, fired early", "*/2 * * * * *", nil, "2026-09-24T13:07:39.2Z", "2026-09-24T13:07:40Z"},
		{"no status, fired late", "*/2 * * * * *", nil, "2026-09-24T13:07:40.3Z", "2026-09-24T13:07:40Z"},
		{"no status, gaps that do not divide the minute", "5/20 * * * * *", nil, "2026-09-24T13:07:45.01Z", "2026-09-24T13:07:45Z"},
		// A manual run carries the occurrence still to come: name the latest one that is due.
		{"manual run", "0 */5 * * * *", status("2026-09-24T13:05:00Z", "2026-09-24T13:10:00Z"), "2026-09-24T13:07:30Z", "2026-09-24T13:05:00Z"},
		{"manual run on a weekend", "0 0 9 * * Mon-Fri", status("2026-09-25T09:00:00Z", "2026-09-28T09:00:00Z"), "2026-09-26T15:00:00Z", "2026-09-25T09:00:00Z"},
		// A Next that the schedule does not contain (the status of a schedule since changed) is not trusted.
		{"stale status", "0 */5 * * * *", status("2026-09-24T13:02:00Z", "2026-09-24T13:03:00Z"), "2026-09-24T13:05:00.2Z", "2026-09-24T13:05:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sched, err := ncrontab.Parse(tc.schedule)
			if err != nil {
				t.Fatal(err)
			}
			now := func() time.Time {
				t.Fatal("the handler's clock was read although the host sent UtcNow")
				return time.Time{}
			}
			got := occurrenceOf(sched, timerInfo{ScheduleStatus: tc.status}, sysMetadata{UtcNow: at(tc.utcNow)}, now)
			if want := at(tc.want).Time; !got.Equal(want) {
				t.Fatalf("occurrence = %s, want %s", got.Format(time.RFC3339Nano), want.Format(time.RFC3339))
			}
		})
	}
}

// functionTimeout as the host finds it, and the handler's deadline below it.
func TestFunctionTimeout(t *testing.T) {
	dir := func(hostJSON string) string {
		d := t.TempDir()
		if err := os.WriteFile(d+"/host.json", []byte(hostJSON), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == settingFunctionTimeout {
				return v
			}
			return ""
		}
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name    string
		getenv  func(string) string
		dirs    []string
		want    time.Duration
		wantErr string
	}{
		{"this app's host.json", env(""), []string{"../.."}, 10 * time.Minute, ""},
		{"the app setting overrides host.json", env("00:02:00"), []string{"../.."}, 2 * time.Minute, ""},
		{"the first host.json found", env(""), []string{empty, dir(`{"version":"2.0","functionTimeout":"00:00:30"}`)}, 30 * time.Second, ""},
		{"key case does not matter", env(""), []string{dir(`{"FunctionTimeout":"01:00:00"}`)}, time.Hour, ""},
		{"no limit", env(""), []string{dir(`{"functionTimeout":"-1"}`)}, 0, ""},
		{"not in host.json", env(""), []string{dir(`{"version":"2.0"}`)}, defaultFunctionTimeout, ""},
		{"no host.json", env(""), []string{empty}, defaultFunctionTimeout, ""},
		{"bad setting", env("ten minutes"), nil, 0, "AzureFunctionsJobHost__functionTimeout \"ten minutes\""},
		{"bad host.json value", env(""), []string{dir(`{"functionTimeout":"00:00:00.5"}`)}, 0, "host.json's functionTimeout"},
		{"bad host.json", env(""), []string{dir(`{"functionTimeout":`)}, 0, "host.json is not valid JSON"},
	} {
		got, err := readFunctionTimeout(tc.getenv, tc.dirs)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, %v; want an error saying %q", tc.name, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	// A tenth (1 s to 1 min) is kept for stopping the work, recording the run and answering.
	for timeout, want := range map[time.Duration]budget{
		10 * time.Minute: {timeout: 10 * time.Minute, work: 9 * time.Minute, grace: 30 * time.Second, answer: 9*time.Minute + 45*time.Second, finish: 15 * time.Second},
		4 * time.Second:  {timeout: 4 * time.Second, work: 3 * time.Second, grace: 500 * time.Millisecond, answer: 3750 * time.Millisecond, finish: 250 * time.Millisecond},
		time.Hour:        {timeout: time.Hour, work: 59 * time.Minute, grace: 30 * time.Second, answer: time.Hour - 15*time.Second, finish: 15 * time.Second},
		0:                {},
	} {
		if got := newBudget(timeout); got != want {
			t.Errorf("newBudget(%v) = %+v, want %+v", timeout, got, want)
		}
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
