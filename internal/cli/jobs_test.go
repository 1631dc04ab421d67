package cli

import (
	"archive/zip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

// loggedArgs reads back the arguments of the az calls the stub logged (shell-quoted by printf %q).
func loggedArgs(t *testing.T, logPath, prefix string) [][]string {
	t.Helper()
	var out [][]string
	for _, c := range azCalls(t, logPath) {
		if strings.HasPrefix(c, prefix) {
			argv, err := leasehandler.SplitCommand(c)
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			out = append(out, argv)
		}
	}
	return out
}

// Command jobs deployed (issue 25): deploy --job NAME=SCHEDULE --include DIR -- COMMAND sets each job's app
// settings in every region's app, before its package, and the package holds the jobs' function folders and the
// app's files, scripts still executable. A region whose settings cannot be set gets no package, and the others
// still go. A jobs file, through cosmoslease package.
func TestDeployCommandJobs(t *testing.T) {
	h := newHarness(t)
	h.dir = userModule(t, "command-jobs")
	// The handler compiled once per test binary; the jobs' function folders and the app's files are still
	// packaged for each run (funcpkg.Package), and TestDeployToEveryRegion builds for real.
	h.prebuilt = true
	recordSetup(t, h.dir)
	newLeaseStatusStandIn(t, h)
	if err := os.MkdirAll(filepath.Join(h.dir, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "jobs", "export.sh"), []byte("#!/bin/sh\necho exported\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	log := h.stubAz("ok")
	args := []string{"deploy", "--job", "Export=0 0 2 * * *", "--job", "Rollup=0 0 9,17 * * Mon-Fri", "--include", "jobs", "--",
		"jobs/export.sh", "--full", "two words", "it's"}
	r := h.run(args...)
	r.expect(t, ExitOK, "the functions Export, LeaseStatus, LeaseTimer, LeaseTrigger, Rollup.", "[3/3] eastus: func-abc123-0 answers")
	r.noKey(t)
	command := `jobs/export.sh --full 'two words' 'it'\''s'`
	if argv, err := leasehandler.SplitCommand(command); err != nil || strings.Join(argv, "|") != "jobs/export.sh|--full|two words|it's" {
		t.Fatalf("the command line %q reads back as %q (%v)", command, argv, err)
	}
	want := []string{"LeaseJobs__Export__Command=" + command, "LeaseJobs__Export__Schedule=0 0 2 * * *",
		"LeaseJobs__Rollup__Command=" + command, "LeaseJobs__Rollup__Schedule=0 0 9,17 * * Mon-Fri"}
	sets := loggedArgs(t, log, "functionapp config appsettings set")
	if len(sets) != 3 {
		t.Fatalf("%d app settings calls, want one per region: %v", len(sets), azCalls(t, log))
	}
	for i, a := range []string{"func-abc123-2", "func-abc123-1", "func-abc123-0"} {
		got := strings.Join(sets[i], "|")
		if !strings.Contains(got, "--name|"+a+"|--settings|"+strings.Join(want, "|")+"|--subscription|"+sub1) {
			t.Fatalf("app settings of %s: %q; want %q", a, sets[i], want)
		}
	}
	// Each region's settings come before its package.
	calls := azCalls(t, log)
	for _, a := range []string{"func-abc123-2", "func-abc123-1", "func-abc123-0"} {
		set, zipAt := -1, -1
		for i, c := range calls {
			switch {
			case strings.HasPrefix(c, "functionapp config appsettings set") && strings.Contains(c, " "+a+" "):
				set = i
			case strings.HasPrefix(c, "functionapp deployment source config-zip") && strings.Contains(c, " "+a+" "):
				zipAt = i
			}
		}
		if set < 0 || zipAt < set {
			t.Fatalf("%s: settings at call %d, package at %d:\n%s", a, set, zipAt, strings.Join(calls, "\n"))
		}
	}
	zr, err := zip.OpenReader(log + ".zip.func-abc123-0")
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "jobs/export.sh" && f.Mode().Perm() != 0o755 {
			t.Fatalf("jobs/export.sh is %v in the zip, want 0755", f.Mode().Perm())
		}
	}
	if got := strings.Join(names, ","); got != "Export/function.json,LeaseStatus/function.json,LeaseTimer/function.json,LeaseTrigger/function.json,Rollup/function.json,host.json,jobs/export.sh,leasehandler" {
		t.Fatalf("the zip holds %s", got)
	}

	// A region whose settings cannot be set: no package there, named, the others deployed, exit 1.
	log = h.stubAz("ok", "AZ_STUB_SETTINGS_FAIL_APPS=func-abc123-1")
	r = h.run(args...)
	r.expect(t, ExitError, "[2/3] westeurope: func-abc123-1 FAILED: the command jobs' app settings were not set, so its package was not deployed: (ResourceNotFound)",
		"1 of 3 regions did not deploy and answer (westeurope: the command jobs' app settings were not set")
	if n := callsStarting(t, log, "functionapp deployment source config-zip"); n != 2 || strings.Contains(strings.Join(azCalls(t, log), "\n"), "config-zip --resource-group rg-demo --name func-abc123-1") {
		t.Fatalf("%d packages deployed (want 2, none to func-abc123-1):\n%s", n, strings.Join(azCalls(t, log), "\n"))
	}

	// --dry-run prints the settings calls, and runs none.
	log = h.stubAz("ok")
	r = h.run(append([]string{"deploy", "--dry-run"}, args[1:]...)...)
	r.expect(t, ExitOK)
	if n := strings.Count(r.stdout, "az functionapp config appsettings set --resource-group rg-demo --name func-abc123-"); n != 3 ||
		!strings.Contains(r.stdout, `'LeaseJobs__Export__Command=jobs/export.sh --full '\''two words'\'' '\''it'\''\'\'''\''s'\'''`) {
		t.Fatalf("dry run:\n%s", r.stdout)
	}
	if callsStarting(t, log, "functionapp") > 0 {
		t.Fatalf("--dry-run ran %v", azCalls(t, log))
	}

	// A jobs file gives each job its own command and settings; cosmoslease package builds the same package and
	// prints the settings to set.
	if err := os.MkdirAll(filepath.Join(h.dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "scripts", "a.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := `{"jobs": [{"name": "Export", "schedule": "0 0 2 * * *", "command": "scripts/a.sh --full", "retryAbandoned": true},
	  {"name": "Report", "schedule": "0 30 6 * * *", "command": "python3 scripts/report.py", "failoverDelay": "00:00:05", "leaseKey": "reports", "timeZone": "Europe/Berlin"}],
	 "include": ["scripts"]}`
	if err := os.WriteFile(filepath.Join(h.dir, "jobs.json"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.run("package", "--jobs", "jobs.json")
	r.expect(t, ExitOK, "the functions Export, LeaseStatus, LeaseTimer, LeaseTrigger, Report.")
	for _, l := range []string{filepath.Join(h.dir, "dist", "functionapp-linux-amd64.zip"), "'LeaseJobs__Export__Command=scripts/a.sh --full'",
		"LeaseJobs__Export__RetryAbandoned=true", "LeaseJobs__Report__FailoverDelay=00:00:05", "LeaseJobs__Report__LeaseKey=reports",
		"'LeaseJobs__Report__Schedule=0 30 6 * * *'", "LeaseJobs__Report__TimeZone=Europe/Berlin"} {
		if !strings.Contains(r.stdout, l) {
			t.Fatalf("stdout lacks %q:\n%s", l, r.stdout)
		}
	}
	// A job with a time zone is fired every minute: the handler picks the minutes that are occurrences.
	for fn, want := range map[string]string{"Report": `"schedule": "0 * * * * *"`, "Export": `"schedule": "%LeaseJobs:Export:Schedule%"`} {
		b, err := os.ReadFile(filepath.Join(h.dir, "dist", "functionapp-linux-amd64", fn, "function.json"))
		if err != nil || !strings.Contains(string(b), want) {
			t.Fatalf("%s/function.json: %s %v; want %s", fn, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.dir, "dist", "functionapp-linux-amd64", "scripts", "a.sh")); err != nil {
		t.Fatal(err)
	}
}

// What a command job needs is checked before anything is built, each problem one line, exit 2.
func TestPackageJobsBadInput(t *testing.T) {
	h := newHarness(t)
	if err := os.WriteFile(filepath.Join(h.dir, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "bad.json"), []byte(`{"jobs": [{"name": "A", "schedule": "0 0 2 * * *", "comand": "x"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A command job's preferred regions are checked as cron checks its own (issue 28): a typo would rank last.
	if err := os.WriteFile(filepath.Join(h.dir, "typo.json"), []byte(`{"jobs": [{"name": "A", "schedule": "0 0 2 * * *", "command": "x", "preferredRegions": "eastus, westeurpoe"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"package", "--job", "Export"}, "--job \"Export\" is not NAME=SCHEDULE"},
		{[]string{"package", "--jobs", "typo.json"}, "job A: preferredRegions: \"westeurpoe\" is not an Azure region: did you mean westeurope?"},
		{[]string{"package", "--job", "Export=0 0 2 * * *"}, "--job Export=0 0 2 * * * needs the command to run after --"},
		{[]string{"package", "--", "jobs/x.sh"}, "package takes a command after -- only for --job NAME=SCHEDULE"},
		{[]string{"package", "--job", "my-job=0 0 2 * * *", "--", "x"}, "job name \"my-job\" is not a function name"},
		{[]string{"package", "--job", "Export=0 61 * * * *", "--", "x"}, "job Export: schedule"},
		{[]string{"package", "--job", "Export=0 0 2 * * *", "--job", "export=0 0 3 * * *", "--", "x"}, "jobs Export and export have the same name"},
		{[]string{"package", "--job", "Export=0 0 2 * * *", "--time-zone", "Europe/Berln", "--", "x"}, `job Export: time zone "Europe/Berln" is not a time zone this knows`},
		{[]string{"package", "--jobs", "missing.json"}, "--jobs missing.json: no such file or directory"},
		{[]string{"package", "--jobs", "bad.json"}, "--jobs bad.json is not a jobs file (json: unknown field \"comand\")"},
	} {
		h.run(tc.args...).expect(t, ExitUsage, tc.want)
	}
}

// deploy's verification names the jobs that cannot run, as LeaseStatus reports them.
func TestLeaseStatusSummaryWithJobs(t *testing.T) {
	for body, want := range map[string]string{
		`{"lease":"timer-singleton","state":"released","epoch":4,"recentRuns":[],"jobs":[{"name":"LeaseTimer","lease":"timer-singleton"},{"name":"Export","error":"LeaseJobs__Export__Command: cannot run jobs/x.sh: not found"}]}`: "lease timer-singleton released, epoch 4; no run yet; job Export cannot run: LeaseJobs__Export__Command: cannot run jobs/x.sh: not found",
		`{"lease":"","state":"","recentRuns":[],"jobs":[{"name":"LeaseTimer","error":"the app setting LeaseTimerSchedule is not set"}]}`:                                                                                            "no job can run; job LeaseTimer cannot run: the app setting LeaseTimerSchedule is not set",
	} {
		var s leaseStatus
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatal(err)
		}
		if got := s.summary(); got != want {
			t.Errorf("%s:\n got %q\nwant %q", body, got, want)
		}
	}
}
