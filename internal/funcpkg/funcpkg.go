// Package funcpkg builds a Functions custom handler (a main package that calls pkg/leasehandler.Serve) and writes
// a deployable zip with the layout the host expects: host.json at the root (naming the target's executable),
// the handler binary, one function folder per job, and the app's own files (the scripts of command jobs).
// `cosmoslease package`, `cosmoslease deploy` and `make package` (tools/package) all use it, so the zip deployed
// is the zip tested.
//
// Nobody writes a function folder by hand: the handler writes them itself. Build builds it a second time, for
// the machine it runs on (once, when this machine is the target), and runs it with leasehandler.WriteFunctionsEnv
// set, and with the app settings of the command jobs being packaged, so the folders come from the same code that
// serves them. Package does the same around a handler already built for the target.
package funcpkg

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

// DefaultHandler is this project's handler: the job LeaseTimer and the command jobs of the app settings.
const DefaultHandler = "github.com/cosmoslease/cosmoslease/functions/leasehandler"

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

// Spec says what goes into a package.
type Spec struct {
	// Root is the Go module the handler is built in (its go.mod, and host.json if it has one).
	Root string
	// Handler is the handler's main package, as go build names it (an import path, or ./cmd/jobs relative to
	// Root); default DefaultHandler.
	Handler string
	// Settings are app settings the handler reads to list its jobs: the LeaseJobs__NAME__Schedule and
	// __Command of the command jobs being packaged (each gets its function folder).
	Settings map[string]string
	// Include are folders of the app's files (the scripts of command jobs), each put in the package under its
	// path relative to Root (its base name when it is outside Root), with its files' modes.
	Include []string
}

func (s Spec) handler() string {
	if s.Handler == "" {
		return DefaultHandler
	}
	return s.Handler
}

// Build compiles the handler for t, writes out/<name>/ (for `func start`) and out/<name>.zip, and returns the
// zip's path and the names of the functions in it. It needs the go command.
func Build(ctx context.Context, spec Spec, out string, t Target) (zipPath string, functions []string, err error) {
	return build(ctx, spec, out, t, nil)
}

// Package writes the same folder and zip as Build around exe, the handler already built for t: the layout
// without the compilation for t (which `make cross` and Build do). The function folders still come from the
// handler: exe writes them when this machine is t; otherwise Package builds the handler for this machine to
// write them.
func Package(ctx context.Context, spec Spec, out string, t Target, exe []byte) (zipPath string, functions []string, err error) {
	if exe == nil {
		exe = []byte{}
	}
	return build(ctx, spec, out, t, exe)
}

// build is Build, or Package when exe is not nil.
func build(ctx context.Context, spec Spec, out string, t Target, exe []byte) (zipPath string, functions []string, err error) {
	dir := filepath.Join(out, t.Name())
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	host := hostTarget()
	prebuilt := exe != nil && host == t
	// What is cheap to check comes first; then the build for this machine, whose run lists the functions; then,
	// unless this machine is the target, the build for the target.
	if !prebuilt {
		if err := checkMain(ctx, spec); err != nil {
			return "", nil, err
		}
	}
	includes, err := includes(spec)
	if err != nil {
		return "", nil, err
	}
	// The handler for this machine is built beside the package, not in the system's temporary folder: it becomes
	// the package's executable when this machine is the target, and a rename cannot cross file systems.
	tmp, err := os.MkdirTemp(out, ".handler-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	local := filepath.Join(tmp, host.Exe())
	if prebuilt {
		err = os.WriteFile(local, exe, 0o755)
	} else {
		err = goBuild(ctx, spec, local, host)
	}
	if err != nil {
		return "", nil, err
	}
	if functions, err = writeFunctions(ctx, spec, local, absDir); err != nil {
		return "", nil, err
	}
	taken := map[string]bool{"host.json": true, t.Exe(): true}
	for _, f := range functions {
		taken[strings.ToLower(f)] = true
	}
	for _, inc := range includes {
		if taken[strings.ToLower(inc.top)] {
			return "", nil, fmt.Errorf("--include %s would put %s in the package, which already holds %s (the handler, host.json or a function folder): move the files to a folder of another name",
				inc.given, inc.name, inc.top)
		}
	}
	target := filepath.Join(absDir, t.Exe())
	switch {
	case host == t:
		err = os.Rename(local, target)
	case exe != nil:
		err = os.WriteFile(target, exe, 0o755)
	default:
		err = goBuild(ctx, spec, target, t)
	}
	if err != nil {
		return "", nil, err
	}
	hj, err := hostJSON(filepath.Join(spec.Root, "host.json"), t.Exe())
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "host.json"), hj, 0o644); err != nil {
		return "", nil, err
	}
	for _, inc := range includes {
		if err := inc.copyInto(dir); err != nil {
			return "", nil, err
		}
	}
	zipPath = filepath.Join(out, t.Name()+".zip")
	return zipPath, functions, writeZip(dir, zipPath, t.Exe())
}

// checkMain says whether the handler is a main package (go build would write a library's archive instead).
func checkMain(ctx context.Context, spec Spec) error {
	cmd := exec.CommandContext(ctx, "go", "list", "-f", "{{.Name}}", spec.handler())
	cmd.Dir = spec.Root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	switch name := strings.TrimSpace(string(out)); {
	case err != nil:
		return fmt.Errorf("go list %s: %v\n%s", spec.handler(), err, strings.TrimSpace(stderr.String()))
	case name != "main":
		return fmt.Errorf("%s is not a main package (it is package %s): the handler is a main package that calls leasehandler.Serve", spec.handler(), name)
	}
	return nil
}

// goBuild compiles the handler for t into exe.
func goBuild(ctx context.Context, spec Spec, exe string, t Target) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", exe, spec.handler())
	cmd.Dir = spec.Root
	cmd.Env = append(os.Environ(), "GOOS="+t.GOOS, "GOARCH="+t.GOARCH, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", spec.handler(), err, strings.TrimSpace(string(b)))
	}
	return nil
}

// writeFunctions runs exe, the handler built for this machine, to write its function folders into dir; it
// returns the functions' names.
func writeFunctions(ctx context.Context, spec Spec, exe, dir string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Dir = filepath.Dir(exe)
	// The handler's environment holds the settings of the jobs being packaged, and none of this machine's.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(strings.ToLower(k), "leasejobs__") && k != "FUNCTIONS_CUSTOMHANDLER_PORT" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range spec.Settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, leasehandler.WriteFunctionsEnv+"="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s did not write its function folders within 2 minutes: does its main call leasehandler.Serve? %s", spec.handler(), msg)
	case err != nil:
		return nil, fmt.Errorf("%s cannot list its jobs: %s", spec.handler(), orDefault(msg, err.Error()))
	}
	names := strings.Fields(stdout.String())
	if _, err := os.Stat(filepath.Join(dir, "LeaseStatus", "function.json")); err != nil || len(names) == 0 {
		return nil, fmt.Errorf("%s wrote no function folders: is it a handler whose main calls leasehandler.Serve (pkg/leasehandler)?", spec.handler())
	}
	return names, nil
}

func hostTarget() Target {
	out, err := exec.Command("go", "env", "GOHOSTOS", "GOHOSTARCH").Output()
	if f := strings.Fields(string(out)); err == nil && len(f) == 2 {
		return Target{f[0], f[1]}
	}
	return Target{}
}

// defaultHost is the host.json of a module that has none: the Functions host version 2 with the extension
// bundle that holds the timer and HTTP triggers, a ten-minute functionTimeout, and the custom handler.
var defaultHost = map[string]any{
	"version":         "2.0",
	"functionTimeout": "00:10:00",
	"logging":         map[string]any{"logLevel": map[string]any{"default": "Information"}},
	"extensionBundle": map[string]any{"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
	"customHandler": map[string]any{
		"description":                 map[string]any{"defaultExecutablePath": "leasehandler", "workingDirectory": "", "arguments": []any{}},
		"enableForwardingHttpRequest": false,
	},
}

// hostJSON is the module's host.json (at path), or defaultHost, naming the target's executable.
func hostJSON(path, exe string) ([]byte, error) {
	var m map[string]any
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b, _ = json.Marshal(defaultHost)
	case err != nil:
		return nil, err
	}
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

// anInclude is one folder of the app's files: given as --include names it, put under name in the package.
type anInclude struct {
	given, src, name, top string
}

// includes checks the folders of the app's files: each is put in the package under its path relative to Root,
// or its base name when it is outside Root.
func includes(spec Spec) ([]anInclude, error) {
	var out []anInclude
	for _, inc := range spec.Include {
		src := inc
		if !filepath.IsAbs(src) {
			src = filepath.Join(spec.Root, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("--include %s: %v", inc, errors.Unwrap(err))
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("--include %s is not a folder", inc)
		}
		name := filepath.Base(src)
		if absRoot, err := filepath.Abs(spec.Root); err == nil {
			if absSrc, err := filepath.Abs(src); err == nil {
				if rel, err := filepath.Rel(absRoot, absSrc); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
					name = rel
				}
			}
		}
		out = append(out, anInclude{given: inc, src: src, name: name, top: strings.Split(filepath.ToSlash(name), "/")[0]})
	}
	return out, nil
}

// copyInto copies the folder into dir, keeping its files' modes; a symbolic link is packaged as the file it
// names.
func (inc anInclude) copyInto(dir string) error {
	return filepath.WalkDir(inc.src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(inc.src, path)
		dst := filepath.Join(dir, inc.name, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("--include %s: %s is not a regular file", inc.given, filepath.Join(inc.name, rel))
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, info.Mode().Perm()); err != nil {
			return err
		}
		return os.Chmod(dst, info.Mode().Perm()) // WriteFile's mode is filtered by the umask
	})
}

func writeZip(dir, zipPath, exe string) error {
	f, err := os.Create(zipPath)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(f)
	var paths []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, path)
		}
		return err
	})
	sort.Strings(paths)
	for _, path := range paths {
		if err != nil {
			break
		}
		err = addFile(zw, dir, path, exe)
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// addFile adds one file, with its mode: the handler 0755, an app file as it was, the rest 0644.
func addFile(zw *zip.Writer, dir, path, exe string) error {
	rel, _ := filepath.Rel(dir, path)
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	h := &zip.FileHeader{Name: filepath.ToSlash(rel), Method: zip.Deflate}
	mode := info.Mode().Perm() | 0o644
	if rel == exe {
		mode = 0o755
	}
	h.SetMode(mode)
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
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
