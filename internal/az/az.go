// Package az runs the Azure CLI. Every call the project makes to az goes through Runner, so tests put a stub
// az in its place; errors carry az's own message, reduced to what a person needs.
package az

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// Runner runs one az command and returns its standard output.
type Runner interface {
	Run(ctx context.Context, args ...string) ([]byte, error)
}

// Exec runs the az on PATH (or Path). Every call has a deadline: the context's, or else the one Timeout gives
// for the command. When it passes, az and every process it started are killed, and Run returns a *TimeoutError.
type Exec struct {
	Path string
	// Env, when not nil, is the command's whole environment.
	Env []string
	// Timeout, when not nil, is the longest one call may run (it may shorten, never lengthen, the context's
	// deadline); nil uses DefaultTimeout.
	Timeout func(args []string) time.Duration
}

// ShortTimeout bounds a call that only reads or starts something (az account show, role assignment list, …).
const ShortTimeout = 5 * time.Minute

// LongTimeout bounds a call that waits for Azure to finish a deployment or a deletion.
const LongTimeout = 90 * time.Minute

// longCommands wait for Azure: a Cosmos DB account across regions takes tens of minutes to create or delete.
var longCommands = []string{"deployment group create", "deployment group validate", "deployment group what-if",
	"group delete", "functionapp deployment source"}

// DefaultTimeout is LongTimeout for the commands that wait for a deployment or a deletion, ShortTimeout for the
// others.
func DefaultTimeout(args []string) time.Duration {
	cmd := strings.Join(args[:min(len(args), 4)], " ")
	for _, l := range longCommands {
		if strings.HasPrefix(cmd, l) {
			return LongTimeout
		}
	}
	return ShortTimeout
}

// TimeoutError is an az call that did not finish before its deadline and was stopped.
type TimeoutError struct {
	Args  []string
	After time.Duration // how long it ran
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("az %s did not finish within %s and was stopped", strings.Join(e.Args[:min(len(e.Args), 4)], " "), e.After.Round(time.Second))
}

// Unwrap makes a TimeoutError a context.DeadlineExceeded.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// ErrNotInstalled means there is no az to run.
var ErrNotInstalled = errors.New("the Azure CLI (az) is not installed or not on PATH: install it (https://learn.microsoft.com/cli/azure/install-azure-cli), then run 'az login'")

// ErrNotLoggedIn means az has no signed-in account.
var ErrNotLoggedIn = errors.New("the Azure CLI is not signed in: run 'az login' (and 'az account set --subscription …' to pick a subscription)")

// Error is a failed az command.
type Error struct {
	Args     []string
	ExitCode int
	Message  string   // az's error, reduced to what a person needs (see Message)
	Codes    []string // the error codes in it (ARM's "code" fields, az's "Code:" lines), outermost first
}

func (e *Error) Error() string {
	return fmt.Sprintf("az %s failed: %s", strings.Join(e.Args[:min(len(e.Args), 3)], " "), e.Message)
}

// HasCode reports whether code is among the error's codes.
func (e *Error) HasCode(code string) bool {
	for _, c := range e.Codes {
		if strings.EqualFold(c, code) {
			return true
		}
	}
	return false
}

func (x Exec) Run(ctx context.Context, args ...string) ([]byte, error) {
	path := x.Path
	if path == "" {
		path = "az"
	}
	timeout := DefaultTimeout
	if x.Timeout != nil {
		timeout = x.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout(args))
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	killTree(cmd)
	// A process that escaped the kill (one that made a process group of its own) may still hold the pipes:
	// Wait stops waiting for them this long after the kill.
	cmd.WaitDelay = 5 * time.Second
	if x.Env != nil {
		cmd.Env = x.Env
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) || errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotInstalled
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, &TimeoutError{Args: args, After: time.Since(start)}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return nil, err
	}
	return nil, classify(args, ee.ExitCode(), stderr.String())
}

var notLoggedIn = regexp.MustCompile(`(?i)please run 'az login'|az login|no subscription found|AADSTS700082|refresh token has expired`)

// classify turns az's stderr into one message.
func classify(args []string, code int, stderr string) error {
	if notLoggedIn.MatchString(stderr) {
		return ErrNotLoggedIn
	}
	msg, codes := parse(stderr)
	return &Error{Args: args, ExitCode: code, Message: msg, Codes: codes}
}

// Message reduces az's stderr to its error, one line:
//   - the text after "ERROR:", without WARNING lines;
//   - for an ARM error (JSON, as deployments print it, with nested "details" and, after validation, "Inner
//     Errors:" blocks), the innermost errors as "Code: message", joined by " | ", without the boilerplate of the
//     outer ones ("See inner errors for details") and without the ActivityId lines services append;
//   - for az's "(Code) message" form, without the "Code:" and "Message:" lines that repeat it.
func Message(stderr string) string {
	msg, _ := parse(stderr)
	return msg
}

func parse(stderr string) (string, []string) {
	text := strings.TrimSpace(stderr)
	if i := strings.Index(text, "ERROR:"); i >= 0 {
		text = strings.TrimSpace(text[i+len("ERROR:"):])
	}
	if msg, codes, ok := armMessage(text); ok {
		return msg, codes
	}
	var kept, codes []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", strings.HasPrefix(l, "WARNING:"):
			continue
		case len(kept) > 0 && strings.HasPrefix(kept[0], "(") && strings.HasPrefix(l, "Code:"):
			codes = append(codes, strings.TrimSpace(strings.TrimPrefix(l, "Code:")))
			continue
		case len(kept) > 0 && strings.HasPrefix(kept[0], "(") && (strings.HasPrefix(l, "Message:") || strings.HasPrefix(l, "Target:")):
			continue
		}
		kept = append(kept, l)
	}
	if len(kept) == 0 {
		return "no message", codes
	}
	return strings.Join(kept, " "), codes
}

// armError is the error object of Azure Resource Manager.
type armError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Details []armError `json:"details"`
	Error   *armError  `json:"error"` // {"status":"Failed","error":{…}} and {"error":{…}} wrap it
}

// armMessage reads one or more ARM errors (az separates a validation error's inner errors with "Inner Errors:").
func armMessage(text string) (string, []string, bool) {
	var chain []armError
	for _, part := range strings.Split(text, "Inner Errors:") {
		var e armError
		if json.Unmarshal([]byte(strings.TrimSpace(part)), &e) != nil {
			return "", nil, false
		}
		if e.Error != nil {
			e = *e.Error
		}
		if e.Code == "" && e.Message == "" {
			return "", nil, false
		}
		chain = append(chain, e)
	}
	var codes []string
	var walk func(e armError)
	walk = func(e armError) {
		codes = append(codes, e.Code)
		for _, d := range e.Details {
			walk(d)
		}
	}
	for _, e := range chain {
		walk(e)
	}
	// The last block is the most specific; within it, the errors without details are the causes.
	var leaves []string
	var collect func(e armError)
	collect = func(e armError) {
		if len(e.Details) == 0 {
			switch m := firstLine(e.Message); {
			case m != "" && e.Code != "":
				leaves = append(leaves, e.Code+": "+m)
			case m != "":
				leaves = append(leaves, m)
			}
			return
		}
		for _, d := range e.Details {
			collect(d)
		}
	}
	collect(chain[len(chain)-1])
	if len(leaves) == 0 {
		leaves = append(leaves, firstLine(chain[0].Message))
	}
	return strings.Join(leaves, " | "), codes, true
}

// firstLine drops what services append after the message, such as "\r\nActivityId: …".
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
