//go:build js && wasm

package jsfetch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// These run inside a js/wasm test binary under plain node, started by TestUnderPlainNode (node_test.go), which
// serves JSFETCH_TEST_URL.

func server(t *testing.T) string {
	u := os.Getenv("JSFETCH_TEST_URL")
	if u == "" {
		t.Skip("run by TestUnderPlainNode, which serves JSFETCH_TEST_URL")
	}
	return u
}

func TestRoundTrip(t *testing.T) {
	base := server(t)
	req, _ := http.NewRequest(http.MethodPut, base+"/echo?q=1", strings.NewReader(`{"id":"x"}`))
	req.Header.Set("If-Match", `"etag-1"`)
	req.Header.Add("X-Ms-Thing", "a")
	resp, err := Transport{}.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || resp.Status != "201 Created" || string(body) != `PUT /echo?q=1 "etag-1" a {"id":"x"}` ||
		resp.ContentLength != int64(len(body)) || resp.Request != req {
		t.Fatalf("%s %q (length %d)", resp.Status, body, resp.ContentLength)
	}
	if resp.Header.Get("Etag") != `"etag-2"` || resp.Header.Get("X-Ms-Session-Token") != "0:-1#7" || resp.Header.Get("Date") == "" {
		t.Fatalf("headers %v", resp.Header)
	}
}

func TestStatusWithoutBody(t *testing.T) {
	base := server(t)
	req, _ := http.NewRequest(http.MethodGet, base+"/missing", nil)
	resp, err := Transport{}.Do(req)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("%v %v", resp, err)
	}
}

// A request whose context ends is aborted, and Do returns the context's error, not a fetch error.
func TestContextEndsTheRequest(t *testing.T) {
	base := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/hang", nil)
	start := time.Now()
	_, err := Transport{}.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("Do = %v after %s, want the deadline at once", err, time.Since(start))
	}
}

// A refused connection says why: Node's fetch puts the reason in the error's cause.
func TestRefusedSaysWhy(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, os.Getenv("JSFETCH_TEST_CLOSED_URL"), nil)
	if req.URL.Host == "" {
		t.Skip("no closed port given")
	}
	_, err := Transport{}.Do(req)
	if err == nil || !strings.Contains(err.Error(), "ECONNREFUSED") || !strings.Contains(err.Error(), "fetch GET") {
		t.Fatalf("Do = %v", err)
	}
}
