// Command package builds the Functions custom handler and writes deployable zips, one per target, with the
// layout the host expects: host.json at the root, beside the function folders and the handler binary.
//
//	go run ./tools/package -out dist          # linux/amd64 (Flex Consumption) and windows/amd64
//
// Each zip also has an unpacked copy in dist/<name>/ for `func start`.
package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

type target struct{ goos, goarch string }

func (t target) name() string { return "functionapp-" + t.goos + "-" + t.goarch }

func (t target) exe() string {
	if t.goos == "windows" {
		return "leasehandler.exe"
	}
	return "leasehandler"
}

func main() {
	out := flag.String("out", "dist", "output folder")
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	for _, t := range []target{{"linux", "amd64"}, {"windows", "amd64"}} {
		zipPath, err := build(*root, *out, t)
		if err != nil {
			fmt.Fprintf(os.Stderr, "package: %s: %v\n", t.name(), err)
			os.Exit(1)
		}
		fmt.Println(zipPath)
	}
}

// build writes out/<name>/ and out/<name>.zip for one target.
func build(root, out string, t target) (string, error) {
	dir := filepath.Join(out, t.name())
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(absDir, t.exe()), "./functions/leasehandler")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS="+t.goos, "GOARCH="+t.goarch, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	host, err := hostJSON(filepath.Join(root, "host.json"), t.exe())
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
	zipPath := filepath.Join(out, t.name()+".zip")
	return zipPath, writeZip(dir, zipPath, t.exe())
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
