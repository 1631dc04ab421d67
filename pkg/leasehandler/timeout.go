package leasehandler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/config"
)

// The host gives every invocation functionTimeout; when it passes, the host kills the handler process, with
// no answer, the run record left "started" and the work cut off wherever it was. So the handler keeps a
// deadline of its own, below functionTimeout: the work's context ends, the work gets a moment (grace) to
// return, the run is recorded as timed out, the lease is released, and the invocation is answered while the
// host is still waiting. Work that ignores its context is left running; the lease stays held (renewed) until it
// returns, so no other occurrence starts beside it in any region.

// settingFunctionTimeout is the host's app-setting override of host.json's functionTimeout.
const settingFunctionTimeout = "AzureFunctionsJobHost__functionTimeout"

// defaultFunctionTimeout applies when neither the setting nor host.json says: the smallest default of the
// plans (Consumption's; Flex Consumption's is 30 minutes), so the handler never outlives the host's patience.
const defaultFunctionTimeout = 5 * time.Minute

// errDeadline is the cause of the work's context when the invocation's own deadline passes.
var errDeadline = errors.New("the invocation reached its deadline")

// budget splits functionTimeout. A zero timeout (functionTimeout -1) means no limit and no deadlines.
type budget struct {
	timeout time.Duration // the host's functionTimeout
	work    time.Duration // from the invocation's start until the work's context ends
	grace   time.Duration // how long the work then has to return
	answer  time.Duration // from the start until the run must be recorded and the answer sent
	finish  time.Duration // how long recording the end of a run and releasing may take
}

// newBudget keeps a tenth of functionTimeout (at least 1 s, at most a minute) for stopping, recording and
// answering.
func newBudget(timeout time.Duration) budget {
	if timeout <= 0 {
		return budget{}
	}
	margin := min(max(timeout/10, time.Second), time.Minute)
	return budget{timeout: timeout, work: timeout - margin, grace: margin / 2, answer: timeout - margin/4, finish: margin / 4}
}

// deadline bounds an invocation that started at start.
func (b budget) deadline(ctx context.Context, start time.Time) (context.Context, context.CancelFunc) {
	if b.timeout == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, start.Add(b.work), fmt.Errorf("%w (%s after it started, before the host's functionTimeout of %s)",
		errDeadline, b.work, config.FormatTimeSpan(b.timeout)))
}

// readFunctionTimeout finds functionTimeout as the host does: the app setting, else host.json (the handler runs
// in the app's root, beside it; dirs are where to look), else the platform's default. -1 means no limit (0).
func readFunctionTimeout(getenv func(string) string, dirs []string) (time.Duration, error) {
	if v := strings.TrimSpace(getenv(settingFunctionTimeout)); v != "" {
		return parseFunctionTimeout(v, "the app setting "+settingFunctionTimeout)
	}
	for _, dir := range dirs {
		path := filepath.Join(dir, "host.json")
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read host.json: %v", err)
		}
		var host struct {
			FunctionTimeout *string `json:"functionTimeout"`
		}
		if err := json.Unmarshal(b, &host); err != nil {
			return 0, fmt.Errorf("host.json is not valid JSON: %v", err)
		}
		if host.FunctionTimeout == nil {
			return defaultFunctionTimeout, nil
		}
		return parseFunctionTimeout(*host.FunctionTimeout, "host.json's functionTimeout")
	}
	return defaultFunctionTimeout, nil
}

func parseFunctionTimeout(v, source string) (time.Duration, error) {
	if strings.TrimSpace(v) == "-1" {
		return 0, nil
	}
	d, err := config.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("%s %q is not a TimeSpan of at least a second, such as 00:10:00, or -1", source, v)
	}
	return d, nil
}

// hostDirs are where host.json may be: the working directory (the host starts the handler in the app's root)
// and the executable's directory (the app's root too, as host.json's defaultExecutablePath names it).
func hostDirs() []string {
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	return dirs
}
