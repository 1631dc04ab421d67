// Package funcpkg builds the Functions custom handler and writes a deployable zip with the layout the host
// expects: host.json at the root (naming the target's executable), beside the function folders and the handler
// binary. `make package` (tools/package) and `cosmoslease deploy` both use it, so the zip deployed is the zip
// tested.
package funcpkg

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Target is a platform to build the handler for.
type Target struct{ GOOS, GOARCH string }

// Linux is the Flex Consumption target (runtime custom); Windows the target of Windows plans.
var (
	Linux   = Target{"linux", "amd64"}
	Windows = Target{"windows", "amd64"}
)

// Name is the name of the zip without ".zip", and of its unpacked folder.
func (t Target) Name() string { return "functionapp-" + t.GOOS + "-" + t.GOARCH }

// Exe is the handler's file name.
func (t Target) Exe() string {
	if t.GOOS == "windows" {
		return "leasehandler.exe"
	}
	return "leasehandler"
}

// Build compiles ./functions/leasehandler of the module at root for t, writes out/<name>/ (for `func start`) and
// out/<name>.zip, and returns the zip's path. It needs the go command.
func Build(root, out string, t Target) (string, error) {
	dir, err := prepare(out, t)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, t.Exe()), "./functions/leasehandler")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS="+t.GOOS, "GOARCH="+t.GOARCH, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./functions/leasehandler: %v\n%s", err, strings.TrimSpace(string(b)))
	}
	return finish(root, out, dir, t)
}

// Package writes the same folder and zip as Build around exe, a handler already built for t: the layout without
// the compilation (which `make cross` and Build do).
func Package(root, out string, t Target, exe []byte) (string, error) {
	dir, err := prepare(out, t)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, t.Exe()), exe, 0o755); err != nil {
		return "", err
	}
	return finish(root, out, dir, t)
}

// prepare empties out/<name>/ and returns its absolute path.
func prepare(out string, t Target) (string, error) {
	dir := filepath.Join(out, t.Name())
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// finish writes host.json (naming t's executable) and the function folders beside the executable in dir, then the
// zip.
func finish(root, out, dir string, t Target) (string, error) {
	host, err := hostJSON(filepath.Join(root, "host.json"), t.Exe())
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "host.json"), host, 0o644); err != nil {
		return "", err
	}
	fns, _ := filepath.Glob(filepath.Join(root, "functions", "*", "function.json"))
	if len(fns) == 0 {
		return "", fmt.Errorf("no functions/*/function.json under %s", root)
	}
	for _, f := range fns {
		name := filepath.Base(filepath.Dir(f))
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, name, "function.json"), b, 0o644); err != nil {
			return "", err
		}
	}
	zipPath := filepath.Join(out, t.Name()+".zip")
	return zipPath, writeZip(dir, zipPath, t.Exe())
}

// hostJSON names the target's executable in host.json.
func hostJSON(path, exe string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("host.json: %v", err)
	}
	ch, _ := m["customHandler"].(map[string]any)
	desc, _ := ch["description"].(map[string]any)
	if desc == nil {
		return nil, fmt.Errorf("host.json has no customHandler.description")
	}
	desc["defaultExecutablePath"] = exe
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeZip(dir, zipPath, exe string) error {
	f, err := os.Create(zipPath)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h := &zip.FileHeader{Name: filepath.ToSlash(rel), Method: zip.Deflate}
		h.SetMode(0o644)
		if rel == exe || strings.HasSuffix(rel, "/"+exe) {
			h.SetMode(0o755)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
