package funcpkg

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// zipFiles lists a zip's files with their modes and contents.
func zipFiles(t *testing.T, path string) map[string]zipFile {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := map[string]zipFile{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = zipFile{mode: f.Mode().Perm(), body: b}
	}
	return out
}

type zipFile struct {
	mode os.FileMode
	body []byte
}

func names(files map[string]zipFile) string {
	var n []string
	for k := range files {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

func schedule(t *testing.T, f zipFile) string {
	t.Helper()
	var fn struct {
		Bindings []struct{ Type, Schedule string }
	}
	if err := json.Unmarshal(f.body, &fn); err != nil || len(fn.Bindings) != 1 || fn.Bindings[0].Type != "timerTrigger" {
		t.Fatalf("not a timer function: %s", f.body)
	}
	return fn.Bindings[0].Schedule
}

// This project's handler, packaged for both targets: host.json naming the target's executable, the executable
// (runnable on Linux), and the function folders the handler wrote: LeaseTimer bound to %LeaseTimerSchedule% as
// before, and LeaseStatus. Linux's zip holds the handler built for it (the build deploy makes); Windows's is
// packaged around a stand-in executable, since compiling for Windows is cross-compilation, which `make cross`
// does (and `make package`); its function folders still come from the handler, built for this machine.
func TestPackageLayout(t *testing.T) {
	out := t.TempDir()
	standIn := []byte("MZ stand-in")
	for _, tg := range []Target{Linux, Windows} {
		var zipPath string
		var functions []string
		var err error
		if tg == Linux {
			zipPath, functions, err = Build(context.Background(), Spec{Root: "../.."}, out, tg)
		} else {
			zipPath, functions, err = Package(context.Background(), Spec{Root: "../.."}, out, tg, standIn)
		}
		if err != nil {
			t.Fatal(err)
		}
		files := zipFiles(t, zipPath)
		if got, want := names(files), "LeaseStatus/function.json,LeaseTimer/function.json,LeaseTrigger/function.json,host.json,"+tg.Exe(); got != want {
			t.Fatalf("%s holds %v, want %v", filepath.Base(zipPath), got, want)
		}
		if strings.Join(functions, ",") != "LeaseStatus,LeaseTimer,LeaseTrigger" {
			t.Fatalf("functions %v", functions)
		}
		var host struct {
			CustomHandler struct {
				Description struct{ DefaultExecutablePath string } `json:"description"`
			} `json:"customHandler"`
		}
		if err := json.Unmarshal(files["host.json"].body, &host); err != nil || host.CustomHandler.Description.DefaultExecutablePath != tg.Exe() {
			t.Fatalf("%s host.json names %q: %v", tg.Name(), host.CustomHandler.Description.DefaultExecutablePath, err)
		}
		if tg.GOOS == "linux" && files[tg.Exe()].mode&0o111 == 0 {
			t.Fatalf("the linux handler is not executable in the zip: %v", files[tg.Exe()].mode)
		}
		if tg == Windows && !bytes.Equal(files[tg.Exe()].body, standIn) {
			t.Fatalf("the windows zip does not hold the executable it was given")
		}
		if s := schedule(t, files["LeaseTimer/function.json"]); s != "%LeaseTimerSchedule%" {
			t.Fatalf("LeaseTimer's schedule: %s", s)
		}
	}
	// Packaged around the executable Build made for this machine, the package is Build's, byte for byte: the
	// handler already built writes the function folders itself.
	if hostTarget() != Linux {
		return
	}
	exe, err := os.ReadFile(filepath.Join(out, Linux.Name(), Linux.Exe()))
	if err != nil {
		t.Fatal(err)
	}
	again := t.TempDir()
	zipPath, functions, err := Package(context.Background(), Spec{Root: "../.."}, again, Linux, exe)
	if err != nil {
		t.Fatal(err)
	}
	built, _ := os.ReadFile(filepath.Join(out, Linux.Name()+".zip"))
	if packaged, err := os.ReadFile(zipPath); err != nil || !bytes.Equal(packaged, built) || strings.Join(functions, ",") != "LeaseStatus,LeaseTimer,LeaseTrigger" {
		t.Fatalf("Package around Build's executable: %v, functions %v, same zip %v", err, functions, bytes.Equal(packaged, built))
	}
	if leftover, _ := filepath.Glob(filepath.Join(again, ".handler-*")); len(leftover) > 0 {
		t.Fatalf("left behind: %v", leftover)
	}
}

// A module without a host.json gets this repository's.
func TestDefaultHostJSONIsTheRepositorys(t *testing.T) {
	var repo, def map[string]any
	b, err := os.ReadFile("../../host.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &repo); err != nil {
		t.Fatal(err)
	}
	b, _ = hostJSON(filepath.Join(t.TempDir(), "host.json"), "leasehandler")
	if err := json.Unmarshal(b, &def); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(repo, def) {
		t.Fatalf("the default host.json:\n%v\nthe repository's:\n%v", def, repo)
	}
}

// Command jobs: each gets its function folder, bound to its schedule's app setting, and the app's files go in
// with their modes (a script stays executable).
func TestPackageCommandJobsAndAppFiles(t *testing.T) {
	app := t.TempDir()
	if err := os.MkdirAll(filepath.Join(app, "jobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"jobs/export.sh": 0o755, "jobs/query.sql": 0o644} {
		if err := os.WriteFile(filepath.Join(app, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(filepath.Join(app, name), mode)
	}
	settings := map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *", "LeaseJobs__Export__Command": "jobs/export.sh --full"}
	zipPath, functions, err := Build(context.Background(), Spec{Root: "../..", Settings: settings, Include: []string{filepath.Join(app, "jobs")}}, t.TempDir(), Linux)
	if err != nil {
		t.Fatal(err)
	}
	files := zipFiles(t, zipPath)
	if got := names(files); got != "Export/function.json,LeaseStatus/function.json,LeaseTimer/function.json,LeaseTrigger/function.json,host.json,jobs/export.sh,jobs/query.sql,leasehandler" {
		t.Fatalf("the zip holds %s", got)
	}
	if strings.Join(functions, ",") != "Export,LeaseStatus,LeaseTimer,LeaseTrigger" {
		t.Fatalf("functions %v", functions)
	}
	if s := schedule(t, files["Export/function.json"]); s != "%LeaseJobs:Export:Schedule%" {
		t.Fatalf("Export's schedule: %s", s)
	}
	if runtime.GOOS != "windows" && (files["jobs/export.sh"].mode != 0o755 || files["jobs/query.sql"].mode != 0o644) {
		t.Fatalf("modes: export.sh %v, query.sql %v", files["jobs/export.sh"].mode, files["jobs/query.sql"].mode)
	}

	// What cannot work is refused, saying why.
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Root: "../..", Settings: map[string]string{"LeaseJobs__Export__Schedule": "0 0 2 * * *"}}, "LeaseJobs__Export__Command is not set"},
		{Spec{Root: "../..", Settings: map[string]string{"LeaseJobs__my-job__Command": "x"}}, "is not a function name"},
		{Spec{Root: "../..", Include: []string{filepath.Join(app, "missing")}}, "--include " + filepath.Join(app, "missing")},
		{Spec{Root: "../..", Include: []string{filepath.Join(app, "jobs", "export.sh")}}, "is not a folder"},
		{Spec{Root: "../..", Handler: "./internal/config"}, "is not a main package"},
	} {
		if _, _, err := Build(context.Background(), tc.spec, t.TempDir(), Linux); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error saying %q", tc.spec, err, tc.want)
		}
	}
	clash := filepath.Join(t.TempDir(), "LeaseTimer")
	if err := os.MkdirAll(clash, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Build(context.Background(), Spec{Root: "../..", Include: []string{clash}}, t.TempDir(), Linux); err == nil || !strings.Contains(err.Error(), "which already holds LeaseTimer") {
		t.Errorf("an app folder named like a function: %v", err)
	}
}

// A team's handler in its own module (--handler): its jobs' folders and the default host.json, no LeaseTimer.
func TestPackageAUsersHandler(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the module is built with a Unix path in go.mod")
	}
	example, err := os.ReadFile("../../pkg/leasehandler/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	main := strings.Replace(strings.Replace(string(example), "package leasehandler_test", "package main", 1), "func Example() {", "func main() {", 1)
	dir := cosmostest.FreshModule(t, map[string]string{"cmd/jobs/main.go": main})
	zipPath, _, err := Build(context.Background(), Spec{Root: dir, Handler: "./cmd/jobs"}, t.TempDir(), Linux)
	if err != nil {
		t.Fatal(err)
	}
	files := zipFiles(t, zipPath)
	if got := names(files); got != "LeaseStatus/function.json,LeaseTrigger/function.json,NightlyReport/function.json,Rollup/function.json,host.json,leasehandler" {
		t.Fatalf("the zip holds %s", got)
	}
	if a, b := schedule(t, files["NightlyReport/function.json"]), schedule(t, files["Rollup/function.json"]); a != "0 0 2 * * *" || b != "%LeaseJobs:Rollup:Schedule%" {
		t.Fatalf("schedules %q, %q", a, b)
	}
}
