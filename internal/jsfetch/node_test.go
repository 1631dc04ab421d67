//go:build !js

package jsfetch

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnderPlainNode compiles this package's js/wasm tests (jsfetch_js_test.go) and runs them with `node`, as
// Node.js users run a module, against a server here.
func TestUnderPlainNode(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a js/wasm test binary run under node")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH: install Node.js 20 or newer")
	}
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("ETag", `"etag-2"`)
			w.Header().Set("x-ms-session-token", "0:-1#7")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "%s %s %s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("If-Match"), r.Header.Get("X-Ms-Thing"), body)
		case "/hang":
			select {
			case <-r.Context().Done():
			case <-hang:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(hang)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String() + "/"
	closed.Close()

	module := filepath.Join(t.TempDir(), "jsfetch.test.wasm")
	build := exec.Command("go", "test", "-c", "-o", module, ".")
	build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js GOARCH=wasm go test -c: %v\n%s", err, out)
	}
	root, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(strings.TrimSpace(string(root)), "lib", "wasm", "wasm_exec_node.js")
	if _, err := os.Stat(helper); err != nil {
		helper = filepath.Join(strings.TrimSpace(string(root)), "misc", "wasm", "wasm_exec_node.js")
	}
	run := exec.Command(node, helper, module, "-test.v", "-test.count=1")
	run.Env = append(os.Environ(), "JSFETCH_TEST_URL="+srv.URL, "JSFETCH_TEST_CLOSED_URL="+closedURL)
	out, err := run.CombinedOutput()
	if err != nil || strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "--- PASS: TestContextEndsTheRequest") {
		t.Fatalf("js/wasm tests under node: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
