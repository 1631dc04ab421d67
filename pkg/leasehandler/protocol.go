package leasehandler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The custom-handler protocol: the host POSTs an invocation to /{FunctionName} (with its id in the header
// X-Azure-Functions-InvocationId); the handler answers with the function's outputs, log lines and return
// value. How failures are reported is invocation's business, below.

// invokeRequest is what the host sends.
type invokeRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// invokeResponse is what the handler answers.
type invokeResponse struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// httpOutput is the "res" output of an HTTP-triggered function.
type httpOutput struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

// timerInfo is the timer trigger's data. Field names match whatever their case (the host has sent both
// PascalCase and camelCase); ScheduleStatus is null for schedules that run more than once a minute.
type timerInfo struct {
	ScheduleStatus *scheduleStatus
	IsPastDue      bool
}

// scheduleStatus is the timer's monitor record. Last is the previous run (0001-01-01 before the first),
// Next the occurrence now firing during a scheduled run, or the one to come during a manual run.
type scheduleStatus struct {
	Last        flexTime
	Next        flexTime
	LastUpdated flexTime
}

// sysMetadata is Metadata.sys.
type sysMetadata struct {
	MethodName string
	UtcNow     flexTime
	RandGuid   string
}

// flexTime reads the timestamp forms the host writes: RFC 3339 with any number of fraction digits, with or
// without an offset (no offset means UTC), the invariant culture's "MM/dd/yyyy HH:mm:ss", empty or null.
// 0001-01-01 (DateTime.MinValue, "never") reads as the zero time.
type flexTime struct{ time.Time }

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"01/02/2006 15:04:05",
	"1/2/2006 3:04:05 PM",
}

func (f *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*f = flexTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp %s is not a string", b)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		*f = flexTime{}
		return nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() <= 1 {
				t = time.Time{}
			}
			*f = flexTime{t.UTC()}
			return nil
		}
	}
	return fmt.Errorf("timestamp %q is in no known form", s)
}

// parseTimer reads the timer binding of function fn from the request: an object, or a JSON string holding one.
func parseTimer(req invokeRequest, fn string) (timerInfo, sysMetadata, error) {
	var info timerInfo
	var sys sysMetadata
	raw, ok := req.Data["timer"]
	if !ok {
		return info, sys, fmt.Errorf("the request has no Data.timer: is the binding in %s/function.json named \"timer\"?", fn)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var inner string
		if err := json.Unmarshal(raw, &inner); err != nil {
			return info, sys, fmt.Errorf("Data.timer: %v", err)
		}
		raw = []byte(inner)
	}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &info); err != nil {
			return info, sys, fmt.Errorf("Data.timer: %v", err)
		}
	}
	if m, ok := req.Metadata["sys"]; ok {
		_ = json.Unmarshal(m, &sys) // metadata is informational; a stranger form must not fail the tick
	}
	return info, sys, nil
}

// invocation is one call from the host: it collects the invocation's log lines and answers.
//
// The host logs the Logs of a 2xx answer (as information) and every line the handler writes to stdout (as
// information) and to stderr (as errors). A non-2xx answer makes the host record the invocation as failed,
// and it drops the Logs. So each line goes exactly one way:
//   - success (executed, skipped, a status read): 200, the lines in Logs and nowhere else;
//   - failure: 500, so monitoring counts a failed execution; the lines go to stdout and the reason, as one
//     line, to stderr, where the host logs it as an error. Logs in the answer are then empty.
type invocation struct {
	fn, id string
	out    *output

	mu       sync.Mutex
	lines    []string
	failure  string
	answered bool
}

func (h *handler) invocation(fn string, r *http.Request) *invocation {
	return &invocation{fn: fn, id: r.Header.Get("X-Azure-Functions-InvocationId"), out: h.out}
}

// maxLogLines bounds the lines an answer carries (a command job's output can be long); further lines go to
// stdout, which the host logs as well.
const maxLogLines = 1000

// logf adds a line. Lines added after the answer (work left running past its deadline), or past maxLogLines, go
// to stdout.
func (iv *invocation) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.answered || len(iv.lines) >= maxLogLines {
		iv.out.line(iv.out.stdout, iv.prefix()+msg)
		return
	}
	iv.lines = append(iv.lines, msg)
}

// fail marks the invocation failed, for the reason given; the first reason stands.
func (iv *invocation) fail(format string, args ...any) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.failure == "" {
		iv.failure = fmt.Sprintf(format, args...)
	}
}

func (iv *invocation) prefix() string {
	if iv.id == "" {
		return iv.fn + ": "
	}
	return iv.fn + " (invocation " + iv.id + "): "
}

// answer sends the answer: 200 with the lines in Logs, or, failed, 500 with the lines on stdout and the
// reason on stderr.
func (iv *invocation) answer(w http.ResponseWriter, outputs map[string]any, ret any) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.answered = true
	if outputs == nil {
		outputs = map[string]any{}
	}
	logs, code := iv.lines, http.StatusOK
	if iv.failure != "" {
		for _, l := range iv.lines {
			iv.out.line(iv.out.stdout, iv.prefix()+l)
		}
		iv.out.line(iv.out.stderr, iv.prefix()+"failed: "+iv.failure)
		logs, code = nil, http.StatusInternalServerError
	}
	if logs == nil {
		logs = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(invokeResponse{Outputs: outputs, Logs: logs, ReturnValue: ret})
}

// output is the handler's stdout and stderr, which the host reads line by line.
type output struct {
	mu             sync.Mutex
	stdout, stderr io.Writer
}

// line writes text as one line: the host would take each line of a multi-line message for a log of its own.
func (o *output) line(w io.Writer, text string) {
	text = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(text)
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = io.WriteString(w, text+"\n")
}
