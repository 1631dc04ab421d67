package funcpkg

import (
	"archive/zip"
	"encoding/json"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The zips' layout: Linux's with the handler built for it (the build deploy makes); Windows's around a stand-in
// executable, since compiling for Windows is cross-compilation, which `make cross` does (and `make package`).
func TestPackageLayout(t *testing.T) {
	out := t.TempDir()
	for _, tg := range []Target{Linux, Windows} {
		var zipPath string
		var err error
		if tg == Linux {
			zipPath, err = Build("../..", out, tg)
		} else {
			zipPath, err = Package("../..", out, tg, []byte("MZ stand-in"))
		}
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zip.OpenReader(zipPath)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			switch f.Name {
			case "host.json":
				rc, _ := f.Open()
				b, _ := io.ReadAll(rc)
				rc.Close()
				var host struct {
					CustomHandler struct {
						Description struct{ DefaultExecutablePath string } `json:"description"`
					} `json:"customHandler"`
				}
				if err := json.Unmarshal(b, &host); err != nil || host.CustomHandler.Description.DefaultExecutablePath != tg.Exe() {
					t.Fatalf("%s host.json names %q: %v", tg.Name(), host.CustomHandler.Description.DefaultExecutablePath, err)
				}
			case tg.Exe():
				if tg.GOOS == "linux" && f.Mode().Perm()&0o111 == 0 {
					t.Fatalf("the linux handler is not executable in the zip: %v", f.Mode())
				}
			}
		}
		zr.Close()
		sort.Strings(names)
		want := []string{"LeaseStatus/function.json", "LeaseTimer/function.json", "host.json", tg.Exe()}
		sort.Strings(want)
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Fatalf("%s holds %v, want %v", filepath.Base(zipPath), names, want)
		}
	}
}
