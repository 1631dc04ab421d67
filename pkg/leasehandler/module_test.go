package leasehandler

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
)

// A team's handler is a main package in a module of its own: the package's Example, made into main.go of a
// fresh module outside this repository, builds with go build, and the binary lists its jobs' function folders
// and, outside the host, says what is missing.
func TestExampleIsAHandlerOfAFreshModule(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the module is built with a Unix path in go.mod")
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	main := strings.Replace(strings.Replace(string(example), "package leasehandler_test", "package main", 1), "func Example() {", "func main() {", 1)
	dir := cosmostest.FreshModule(t, map[string]string{"cmd/jobs/main.go": main})
	exe := filepath.Join(t.TempDir(), "jobs")
	build := exec.Command("go", "build", "-o", exe, "./cmd/jobs")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the fresh module: %v\n%s", err, out)
	}
	out, err := exec.Command(exe).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "FUNCTIONS_CUSTOMHANDLER_PORT is not set") {
		t.Fatalf("the handler outside the host: %v\n%s", err, out)
	}
	functions := t.TempDir()
	list := exec.Command(exe)
	list.Env = append(os.Environ(), WriteFunctionsEnv+"="+functions)
	out, err = list.CombinedOutput()
	if err != nil || strings.Join(strings.Fields(string(out)), ",") != "LeaseStatus,LeaseTrigger,NightlyReport,Rollup" {
		t.Fatalf("the handler's function folders: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(functions, "NightlyReport", "function.json"))
	if err != nil || !strings.Contains(string(b), `"schedule": "0 0 2 * * *"`) {
		t.Fatalf("NightlyReport/function.json: %v\n%s", err, b)
	}
}
