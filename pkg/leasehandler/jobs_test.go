package leasehandler

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// appEnv is the settings of an app in eastus with no job of its own.
var appEnv = map[string]string{"CosmosLeasing__AccountEndpoint": "https://acct.documents.azure.com:443/", "REGION_NAME": "eastus",
	"WEBSITE_SITE_NAME": "func-demo", "WEBSITE_POD_NAME": "pod-1"}

// jobsOf serves jobs on the app settings env, as Serve does, without listening.
func jobsOf(t *testing.T, env map[string]string, jobs ...Job) *handler {
	t.Helper()
	e := environment(merge(appEnv, env))
	app, err := loadApp(e)
	if err != nil {
		t.Fatal(err)
	}
	specs, _ := listJobs(jobs, e)
	return newHandler(app, nil, specs, e, nil)
}

func (h *handler) job(name string) *job {
	for _, j := range h.jobs {
		if j.name == name {
			return j
		}
	}
	return nil
}

// A job's settings: its LeaseJobs__NAME__* settings, then its code, then the app's defaults, then the library's.
func TestJobSettings(t *testing.T) {
	h := jobsOf(t, map[string]string{
		"LeaseTimerPreferredRegions": "eastus,westeurope", "LeaseTimerFailoverDelay": "00:00:03", "LeaseTimerRunRetention": "10.00:00:00",
		"LeaseJobs__Report__FailoverDelay": "00:00:07", "LeaseJobs__Report__PreferredRegions": "westeurope, East US",
		"LeaseJobs__Report__LeaseKey": "reports", "LeaseJobs__Report__RetryAbandoned": "true", "LeaseJobs__Report__RunRetention": "40.00:00:00",
		"leasejobs__rollup__schedule": "0 */5 * * * *", // names are compared without case, as the host compares them
	},
		Job{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork, LeaseKey: "ignored", FailoverDelay: 2 * time.Second},
		Job{Name: "Rollup", Work: noWork, PreferredRegions: []string{"northeurope", "eastus"}, FailoverDelay: 4 * time.Second,
			Retention: 20 * 24 * time.Hour, RetryAbandoned: true},
		Job{Name: "Plain", Schedule: "0 0 * * * *", Work: noWork},
	)
	for _, j := range h.jobs {
		if j.err != nil {
			t.Fatalf("job %s: %v", j.name, j.err)
		}
	}
	r := h.job("Report").s
	if r.key != "reports" || r.delay != 7*time.Second || strings.Join(r.preferred, ",") != "westeurope,eastus" || !r.retryAbandoned ||
		r.retention != 40*24*time.Hour || r.sched.Expr() != "0 0 2 * * *" {
		t.Errorf("Report: key %q, delay %v, regions %v, retry %v, retention %v, schedule %q", r.key, r.delay, r.preferred, r.retryAbandoned, r.retention, r.sched.Expr())
	}
	if rank, n := r.rank(nil); rank != 1 || n != 2 {
		t.Errorf("Report ranks eastus %d of %d, want 1 of 2", rank, n)
	}
	ro := h.job("Rollup").s
	if ro.key != "Rollup" || ro.delay != 4*time.Second || strings.Join(ro.preferred, ",") != "northeurope,eastus" || !ro.retryAbandoned ||
		ro.retention != 20*24*time.Hour || ro.sched.Expr() != "0 */5 * * * *" {
		t.Errorf("Rollup: key %q, delay %v, regions %v, retry %v, retention %v, schedule %q", ro.key, ro.delay, ro.preferred, ro.retryAbandoned, ro.retention, ro.sched.Expr())
	}
	p := h.job("Plain").s
	if p.key != "Plain" || p.delay != 3*time.Second || strings.Join(p.preferred, ",") != "eastus,westeurope" || p.retryAbandoned ||
		p.retention != 10*24*time.Hour || p.opts.OwnerID != "func-demo@eastus" || p.instance != "pod-1" {
		t.Errorf("Plain: key %q, delay %v, regions %v, retry %v, retention %v, owner %q", p.key, p.delay, p.preferred, p.retryAbandoned, p.retention, p.opts.OwnerID)
	}

	// LeaseTimer keeps the settings of the single-job handler, and LeaseJobs__LeaseTimer__* override them.
	h = jobsOf(t, map[string]string{"LeaseTimerSchedule": "0 */1 * * * *", "LeaseTimerLeaseKey": "my-timer", "LeaseTimerRetryAbandoned": "true"}, LeaseTimer(noWork))
	if s := h.jobs[0].s; s == nil || s.key != "my-timer" || !s.retryAbandoned || s.sched.Expr() != "0 */1 * * * *" {
		t.Fatalf("LeaseTimer: %+v (%v)", s, h.jobs[0].err)
	}
	h = jobsOf(t, map[string]string{"LeaseTimerSchedule": "0 */1 * * * *", "LeaseTimerLeaseKey": "my-timer", "LeaseJobs__LeaseTimer__LeaseKey": "other"}, LeaseTimer(noWork))
	if s := h.jobs[0].s; s == nil || s.key != "other" {
		t.Fatalf("LeaseTimer with LeaseJobs__LeaseTimer__LeaseKey: %+v (%v)", s, h.jobs[0].err)
	}
	h = jobsOf(t, map[string]string{"LeaseTimerSchedule": "0 */1 * * * *"}, LeaseTimer(noWork))
	if s := h.jobs[0].s; s == nil || s.key != "timer-singleton" {
		t.Fatalf("LeaseTimer's default lease: %+v (%v)", s, h.jobs[0].err)
	}
}

// A job whose settings are wrong fails alone, with one line that says what is wrong and how to fix it.
func TestBadJobSettings(t *testing.T) {
	app := t.TempDir()
	if err := os.WriteFile(filepath.Join(app, "notexec.sh"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(app)
	for _, tc := range []struct {
		name string
		env  map[string]string
		jobs []Job
		job  string
		want string
	}{
		{"schedule setting missing", nil, []Job{{Name: "Rollup", Work: noWork}}, "Rollup",
			"the app setting LeaseJobs__Rollup__Schedule is not set: the host does not load Rollup without it (its function.json binds %LeaseJobs:Rollup:Schedule%)"},
		{"schedule named by the code", map[string]string{"CleanupSchedule": "0 61 * * * *"}, []Job{{Name: "Cleanup", Schedule: "%CleanupSchedule%", Work: noWork}}, "Cleanup",
			"CleanupSchedule"},
		{"setting beside a fixed schedule", map[string]string{"LeaseJobs__Report__Schedule": "0 0 3 * * *"}, []Job{{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork}}, "Report",
			"LeaseJobs__Report__Schedule is set (\"0 0 3 * * *\"), but job Report's schedule is fixed in its code"},
		{"schedule setting the binding does not name", map[string]string{"LeaseTimerSchedule": "0 */1 * * * *", "LeaseJobs__LeaseTimer__Schedule": "0 */5 * * * *"}, []Job{LeaseTimer(noWork)}, "LeaseTimer",
			"LeaseJobs__LeaseTimer__Schedule is set (\"0 */5 * * * *\"), but job LeaseTimer's schedule is the app setting LeaseTimerSchedule (its function.json binds %LeaseTimerSchedule%)"},
		{"bad delay", map[string]string{"LeaseJobs__Report__FailoverDelay": "soon"}, []Job{{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork}}, "Report",
			"LeaseJobs__Report__FailoverDelay \"soon\" is not a duration from 00:00:01 to 01:00:00"},
		{"bad retry", map[string]string{"LeaseJobs__Report__RetryAbandoned": "maybe"}, []Job{{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork}}, "Report",
			"LeaseJobs__Report__RetryAbandoned \"maybe\" is not true or false"},
		{"bad key", map[string]string{"LeaseJobs__Report__LeaseKey": "a/b"}, []Job{{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork}}, "Report",
			"LeaseJobs__Report__LeaseKey"},
		{"short retention", nil, []Job{{Name: "Report", Schedule: "0 0 9 13 * Fri", Work: noWork, Retention: 30 * 24 * time.Hour}}, "Report",
			"job Report's Retention (30.00:00:00) is too short"},
		{"unknown field", map[string]string{"LeaseJobs__Report__Delay": "00:00:05"}, []Job{{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork}}, "Report",
			"unknown app setting LeaseJobs__Report__Delay: a job's settings are LeaseJobs__Report__ followed by one of Schedule, Command"},
		{"command without a schedule", map[string]string{"LeaseJobs__Export__Command": "/bin/true"}, nil, "Export",
			"the app setting LeaseJobs__Export__Schedule is not set"},
		{"settings without a command", map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *"}, nil, "Export",
			"LeaseJobs__Export__Command is not set, and this handler has no Go job of that name"},
		{"command missing", map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *", "LeaseJobs__Export__Command": "scripts/export.sh --full"}, nil, "Export",
			"LeaseJobs__Export__Command: cannot run scripts/export.sh: not found: it is not in the app's files; package it with the handler (cosmoslease deploy --include DIR)"},
		{"command not on PATH", map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *", "LeaseJobs__Export__Command": "no-such-program-here"}, nil, "Export",
			"LeaseJobs__Export__Command: cannot run no-such-program-here: not found in PATH (give its path, such as ./no-such-program-here, or install it)"},
		{"unclosed quote", map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *", "LeaseJobs__Export__Command": "/bin/echo 'a b"}, nil, "Export",
			"a single quote is not closed"},
		{"time zone", map[string]string{"WEBSITE_TIME_ZONE": "W. Europe Standard Time"}, []Job{{Name: "Report", Schedule: "0 0 2 * * *", Work: noWork}}, "Report",
			"the app setting WEBSITE_TIME_ZONE is \"W. Europe Standard Time\": the host then fires timers on that time zone's clock (and Flex Consumption does not support it), but the handler names each occurrence in UTC"},
		// Issue 23, item 3: the host fires no tick while an invocation waits. Three regions 10 s apart cannot run
		// a schedule of 5 s gaps: the last would wait 20 s.
		{"delay past the gap", map[string]string{"LeaseTimerPreferredRegions": "eastus,westeurope,southeastasia"}, []Job{{Name: "Often", Schedule: "*/5 * * * * *", Work: noWork}}, "Often",
			"job Often: the schedule's shortest gap is 00:00:05, but with 3 regions and a failover delay of 00:00:10 (LeaseTimerFailoverDelay) the last region waits 00:00:20 before it contends, and the host fires no tick while an invocation waits, so occurrences would run nowhere; the largest allowed failover delay is 00:00:02 with 3 regions"},
		{"delay at the gap", map[string]string{"LeaseJobs__Often__FailoverDelay": "00:00:05"}, []Job{{Name: "Often", Schedule: "*/10 * * * * *", Work: noWork, PreferredRegions: []string{"eastus", "westeurope", "southeastasia"}}}, "Often",
			"the largest allowed failover delay is 00:00:04 with 3 regions: lower LeaseJobs__Often__FailoverDelay"},
		{"no delay fits", map[string]string{"LeaseTimerPreferredRegions": "eastus,westeurope,southeastasia", "LeaseTimerFailoverDelay": "00:00:01"}, []Job{{Name: "Often", Schedule: "*/1 * * * * *", Work: noWork}}, "Often",
			"no failover delay of 1 s or more fits with 3 regions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var other = Job{Name: "Other", Schedule: "0 0 * * * *", Work: noWork}
			h := jobsOf(t, tc.env, append(tc.jobs, other)...)
			j := h.job(tc.job)
			if j == nil || j.err == nil || !strings.Contains(j.err.Error(), tc.want) {
				t.Fatalf("job %s: %+v; want an error saying %q", tc.job, j, tc.want)
			}
			if strings.Contains(j.err.Error(), "\n") {
				t.Fatalf("the reason is more than one line: %q", j.err)
			}
			if o := h.job("Other"); o.err != nil && tc.name != "time zone" {
				t.Fatalf("the other job failed too: %v", o.err)
			}
		})
	}
	if runtime.GOOS != "windows" {
		h := jobsOf(t, map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *", "LeaseJobs__Export__Command": "./notexec.sh"})
		if j := h.job("Export"); j.err == nil || !strings.Contains(j.err.Error(), "LeaseJobs__Export__Command: cannot run ./notexec.sh: permission denied (it is not executable: chmod +x ./notexec.sh)") {
			t.Fatalf("a script without its executable bit: %v", j.err)
		}
	}

	// A delay that fits: (3 − 1) × 2 s is under the 5 s gap; with the account's order (no preference set) the
	// check waits for the account's regions, at the first tick.
	h := jobsOf(t, map[string]string{"LeaseTimerPreferredRegions": "eastus,westeurope,southeastasia", "LeaseTimerFailoverDelay": "00:00:02"},
		Job{Name: "Often", Schedule: "*/5 * * * * *", Work: noWork})
	if err := h.jobs[0].err; err != nil {
		t.Fatal(err)
	}
	h = jobsOf(t, nil, Job{Name: "Often", Schedule: "*/30 * * * * *", Work: noWork})
	if s := h.jobs[0].s; s == nil || s.checkGap(3) != nil || s.checkGap(4) == nil {
		t.Fatalf("the gap checked against the account's regions: %+v", h.jobs[0])
	}

	// Two jobs on one lease would take each other's occurrences: both fail, naming each other.
	h = jobsOf(t, map[string]string{"LeaseJobs__B__LeaseKey": "A"}, Job{Name: "A", Schedule: "0 0 * * * *", Work: noWork},
		Job{Name: "B", Schedule: "0 30 * * * *", Work: noWork}, Job{Name: "C", Schedule: "0 0 * * * *", Work: noWork})
	if a, b, c := h.job("A"), h.job("B"), h.job("C"); a.err == nil || b.err == nil || c.err != nil || !strings.Contains(a.err.Error(), "jobs A and B share the lease key \"A\"") {
		t.Fatalf("shared lease: %v / %v / %v", a.err, b.err, c.err)
	}

	// A problem with the settings every job shares fails every job, LeaseStatus too.
	e := environment(map[string]string{"REGION_NAME": "eastus"})
	_, err := loadApp(e)
	if err == nil || !strings.Contains(err.Error(), "no Cosmos DB account configured") {
		t.Fatalf("no account: %v", err)
	}
	h = newHandler(nil, err, nil, e, nil)
	if p := h.problems(); len(p) != 1 || !errors.Is(h.appErr, err) {
		t.Fatalf("problems %v", p)
	}
}

func TestSplitCommand(t *testing.T) {
	for line, want := range map[string]string{
		"scripts/export.sh --full":                 "scripts/export.sh|--full",
		"  bash   run.sh  ":                        "bash|run.sh",
		`python3 -c 'print("a b")'`:                `python3|-c|print("a b")`,
		`./x "a \"quoted\" word" a\ b ''`:          `./x|a "quoted" word|a b|`,
		`./x "back\\slash" "keep \n" 'it'\''s ok'`: `./x|back\slash|keep \n|it's ok`,
		"./x\ttab":      "./x|tab",
		`C:\path\x.exe`: `C:pathx.exe`,
		`./with-dollar $HOME "$(not expanded)" *.go`: `./with-dollar|$HOME|$(not expanded)|*.go`,
	} {
		got, err := SplitCommand(line)
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", line, strings.Join(got, "|"), err, want)
		}
	}
	for _, bad := range []string{"", "   ", `./x 'open`, `./x "open`, `./x "ends with \"`} {
		if got, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q) = %q, want an error", bad, got)
		}
	}
}
