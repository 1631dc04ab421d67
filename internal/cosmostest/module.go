package cosmostest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FreshModule makes a Go module outside this repository, as a team's own would be: example.com/teamjobs, whose
// go.mod requires this module (replaced by this checkout, found from the working directory, so that no path is
// committed) and this module's own requirements, with this module's go.sum. files are its files (path →
// content). The go commands of the test then run without the network (GOPROXY=off, GOFLAGS=-mod=mod): what they
// need is in the module cache, since this repository builds.
func FreshModule(t testing.TB, files map[string]string) string {
	t.Helper()
	root, err := ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	root = filepath.Dir(filepath.Dir(root)) // testdata/cosmosdb-server → the module root
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("module example.com/teamjobs\n\ngo 1.26\n\nrequire github.com/cosmoslease/cosmoslease v0.0.0-00010101000000-000000000000\n\n")
	for _, req := range regexp.MustCompile(`(?s)require \(.*?\)`).FindAllString(string(gomod), -1) {
		b.WriteString(req + "\n\n")
	}
	b.WriteString("replace github.com/cosmoslease/cosmoslease => " + root + "\n")
	dir := t.TempDir()
	all := map[string]string{"go.mod": b.String(), "go.sum": mustRead(t, filepath.Join(root, "go.sum"))}
	for name, body := range files {
		all[name] = body
	}
	for name, body := range all {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOFLAGS", "-mod=mod")
	return dir
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
