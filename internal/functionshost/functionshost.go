// Package functionshost plays the Azure Functions host for the custom handler (functions/leasehandler) in the
// demo and the benchmarks: it builds the handler, starts its processes as the host starts them on an instance of
// a region's app, and invokes LeaseTimer with the payloads the host sends. The payloads' shapes are those of the
// handler's process tests (functions/leasehandler/process_test.go), which document where each comes from.
package functionshost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// handlerPackage is the custom handler's main package.
const handlerPackage = "github.com/cosmoslease/cosmoslease/functions/leasehandler"

// Build compiles the handler into a temporary directory (from any directory inside the module). When work is
// not empty it is the source of one more file of the handler's package main, added to the build alone through
// go build -overlay: a Work of its own, set as a user replaces Work, with the handler's source untouched.
func Build(work string) (path string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "cosmoslease-handler")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	path = filepath.Join(tmp, "leasehandler")
	args := []string{"build", "-o", path}
	if work != "" {
		out, err := exec.Command("go", "list", "-f", "{{.Dir}}", handlerPackage).Output()
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("go list %s: %v", handlerPackage, err)
		}
		src := filepath.Join(tmp, "work.go")
		if err := os.WriteFile(src, []byte(work), 0o644); err != nil {
			cleanup()
			return "", nil, err
		}
		overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {
			filepath.Join(strings.TrimSpace(string(out)), "zz_overlay_work.go"): src}})
		ov := filepath.Join(tmp, "overlay.json")
		if err := os.WriteFile(ov, overlay, 0o644); err != nil {
			cleanup()
			return "", nil, err
		}
		args = append(args, "-overlay", ov)
	}
	if out, err := exec.Command("go", append(args, handlerPackage)...).CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build %s: %v\n%s", handlerPackage, err, out)
	}
	return path, cleanup, nil
}

// App is one Function App, deployed under the same name in every region.
type App struct {
	Bin  string // the handler
	Dir  string // the app's root, where the host starts the handler
	Site string // WEBSITE_SITE_NAME
	// Settings are the app settings (CosmosLeasing__*, LeaseTimer*).
	Settings map[string]string
}

// Handler is one handler process: the app's instance Instance in Region.
type Handler struct {
	Region, Instance string
	port             int
	cmd              *exec.Cmd
	done             chan struct{}
	invocations      atomic.Int64
}

// Start starts the handler on a new instance of the app in region, as the host does: FUNCTIONS_CUSTOMHANDLER_PORT,
// the platform's REGION_NAME, WEBSITE_SITE_NAME and WEBSITE_POD_NAME, and the app settings; it returns once the
// handler listens. The process's stdout and stderr go to the writers given.
func (a App) Start(region, instance string, stdout, stderr io.Writer) (*Handler, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	h := &Handler{Region: region, Instance: instance, port: port, done: make(chan struct{})}
	h.cmd = exec.Command(a.Bin)
	h.cmd.Dir = a.Dir
	h.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "FUNCTIONS_CUSTOMHANDLER_PORT=" + strconv.Itoa(port),
		"REGION_NAME=" + region, "WEBSITE_SITE_NAME=" + a.Site, "WEBSITE_POD_NAME=" + instance}
	for k, v := range a.Settings {
		h.cmd.Env = append(h.cmd.Env, k+"="+v)
	}
	h.cmd.Stdout, h.cmd.Stderr = stdout, stderr
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return h, nil
		}
		select {
		case <-h.done:
			return nil, fmt.Errorf("the handler of %s (%s) exited before it listened: %v", region, instance, h.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			h.Kill()
			return nil, fmt.Errorf("the handler of %s (%s) did not listen within 20 s", region, instance)
		}
	}
}

// Kill ends the process with SIGKILL, as the host ends a handler (and as a region's outage does), and waits for it.
func (h *Handler) Kill() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// Result is a timer function's return value (pkg/leasehandler's tickResult).
type Result struct {
	Status          string    `json:"status"` // executed, skipped, failed
	Occurrence      time.Time `json:"occurrence"`
	Region          string    `json:"region"`
	Owner           string    `json:"owner"`
	Instance        string    `json:"instance"`
	Rank            int       `json:"rank"`
	Epoch           int64     `json:"epoch"`
	ExitCode        *int      `json:"exitCode"`
	Holder          string    `json:"holder"`
	Reason          string    `json:"reason"`
	FailoverDelayMs int64     `json:"failoverDelayMs"`
}

// Reply is the handler's answer to one invocation.
type Reply struct {
	Region, Instance string
	HTTPStatus       int
	Logs             []string
	Result           Result
	// Return is the ReturnValue as the handler wrote it (for functions whose answer is not a Result).
	Return json.RawMessage
	// Err is set when there was no answer (the process is dead, or the answer is not the protocol's).
	Err error
}

// Timer invokes LeaseTimer with body, as the host does.
func (h *Handler) Timer(ctx context.Context, body []byte) Reply {
	return h.Invoke(ctx, "LeaseTimer", body)
}

// Invoke invokes the function fn with body, as the host does.
func (h *Handler) Invoke(ctx context.Context, fn string, body []byte) Reply {
	r := Reply{Region: h.Region, Instance: h.Instance}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(h.port)+"/"+fn, bytes.NewReader(body))
	if err != nil {
		r.Err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", fmt.Sprintf("%s-inv-%d", h.Instance, h.invocations.Add(1)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.Err = err
		return r
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.Err = err
		return r
	}
	r.HTTPStatus = resp.StatusCode
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || len(raw) != 3 || raw["Outputs"] == nil || raw["Logs"] == nil || raw["ReturnValue"] == nil {
		r.Err = fmt.Errorf("answer %d %s is not {Outputs, Logs, ReturnValue}", resp.StatusCode, b)
		return r
	}
	r.Return = raw["ReturnValue"]
	if err := errors.Join(json.Unmarshal(raw["Logs"], &r.Logs), json.Unmarshal(raw["ReturnValue"], &r.Result)); err != nil {
		r.Err = fmt.Errorf("answer %s: %v", b, err)
	}
	return r
}

// Tick invokes LeaseTimer on every handler at once, as each region's timer fires for the same occurrence, and
// returns their answers in the same order.
func Tick(ctx context.Context, hs []*Handler, body []byte) []Reply {
	out := make([]Reply, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = h.Timer(ctx, body) }()
	}
	wg.Wait()
	return out
}

// The host's invocations of LeaseTimer: PascalCase; the timer status's dates as Json.NET writes the host's local
// (UTC) times, with an offset and no trailing zeros; "never" as 0001-01-01T00:00:00+00:00; Metadata holding only
// sys, whose UtcNow is a UTC DateTime (written with Z).

// MonitoredTick is a run of a monitored schedule (useMonitor, at most one occurrence a minute): Next is the
// occurrence firing (a missed one when pastDue), Last the one before it, or zero for never.
func MonitoredTick(last, next, utcNow time.Time, pastDue bool) []byte {
	return []byte(fmt.Sprintf(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":%q,"Next":%q,"LastUpdated":%q},"IsPastDue":%t}},"Metadata":{"sys":{"MethodName":"LeaseTimer","UtcNow":%q,"RandGuid":%q}}}`,
		hostTime(last), hostTime(next), hostTime(last), pastDue, utcNow.UTC().Format("2006-01-02T15:04:05.9999999Z07:00"), guid()))
}

// UnmonitoredTick is a run of a schedule that fires more than once a minute: the host keeps no status for those
// and sends ScheduleStatus null.
func UnmonitoredTick(utcNow time.Time) []byte {
	return []byte(fmt.Sprintf(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"LeaseTimer","UtcNow":%q,"RandGuid":%q}}}`,
		utcNow.UTC().Format("2006-01-02T15:04:05.9999999Z07:00"), guid()))
}

// Fired is when the host's clock reads as it invokes the function for an occurrence: a few milliseconds late.
func Fired(occurrence time.Time) time.Time { return occurrence.Add(15 * time.Millisecond) }

func hostTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00+00:00"
	}
	return t.UTC().Format("2006-01-02T15:04:05.9999999") + "+00:00"
}

// guid is a RandGuid: a random (version 4) GUID, new for each invocation.
func guid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
