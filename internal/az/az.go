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
)

// Runner runs one az command and returns its standard output.
type Runner interface {
	Run(ctx context.Context, args ...string) ([]byte, error)
}

// Exec runs the az on PATH (or Path).
type Exec struct {
	Path string
	// Env, when not nil, is the command's whole environment.
	Env []string
}

// ErrNotInstalled means there is no az to run.
var ErrNotInstalled = errors.New("the Azure CLI (az) is not installed or not on PATH: install it (https://learn.microsoft.com/cli/azure/install-azure-cli), then run 'az login'")

// ErrNotLoggedIn means az has no signed-in account.
var ErrNotLoggedIn = errors.New("the Azure CLI is not signed in: run 'az login' (and 'az account set --subscription …' to pick a subscription)")

// Error is a failed az command.
type Error struct {
	Args     []string
	ExitCode int
	Message  string // az's error, reduced to its message
}

func (e *Error) Error() string {
	return fmt.Sprintf("az %s failed: %s", strings.Join(e.Args[:min(len(e.Args), 3)], " "), e.Message)
}

func (x Exec) Run(ctx context.Context, args ...string) ([]byte, error) {
	path := x.Path
	if path == "" {
		path = "az"
	}
	cmd := exec.CommandContext(ctx, path, args...)
	if x.Env != nil {
		cmd.Env = x.Env
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) || errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotInstalled
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, classify(args, ee.ExitCode(), stderr.String())
}

var notLoggedIn = regexp.MustCompile(`(?i)please run 'az login'|az login|no subscription found|AADSTS700082|refresh token has expired`)

// classify turns az's stderr into one message.
func classify(args []string, code int, stderr string) error {
	if notLoggedIn.MatchString(stderr) {
		return ErrNotLoggedIn
	}
	return &Error{Args: args, ExitCode: code, Message: Message(stderr)}
}

// Message reduces az's stderr to its error: the text after "ERROR:", with the messages of an ARM error's
// details when it is JSON.
func Message(stderr string) string {
	text := strings.TrimSpace(stderr)
	if i := strings.Index(text, "ERROR:"); i >= 0 {
		text = strings.TrimSpace(text[i+len("ERROR:"):])
	}
	var arm struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Details []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(text), &arm) == nil && arm.Error.Message != "" {
		parts := []string{arm.Error.Message}
		for _, d := range arm.Error.Details {
			parts = append(parts, d.Code+": "+d.Message)
		}
		return strings.Join(parts, " | ")
	}
	lines := strings.Split(text, "\n")
	var kept []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "WARNING:") {
			continue
		}
		kept = append(kept, l)
	}
	if len(kept) == 0 {
		return "no message"
	}
	return strings.Join(kept, " ")
}
