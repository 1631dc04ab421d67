//go:build !windows

package az

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid is a running process (a zombie waiting to be reaped counts as gone).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err) // no /proc (macOS): kill(pid, 0) has the last word
	}
	// pid (comm) state …: the state follows the last ')'.
	s := string(b)
	return !strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
}

// An az that never returns is stopped at the call's deadline, with the child it started, whether the deadline is
// the context's or the runner's own; the caller gets a TimeoutError that is a context.DeadlineExceeded.
func TestExecStopsAnAzThatNeverReturns(t *testing.T) {
	stub, err := filepath.Abs("../../testdata/az/az")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		timeout func([]string) time.Duration
		ctx     func() (context.Context, context.CancelFunc)
	}{
		{"context deadline", nil, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Second)
		}},
		{"runner timeout", func([]string) time.Duration { return time.Second }, func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "az.log")
			x := Exec{Path: stub, Env: []string{"PATH=" + os.Getenv("PATH"), "AZ_STUB_SCENARIO=hang", "AZ_STUB_LOG=" + log}, Timeout: tc.timeout}
			ctx, cancel := tc.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := x.Run(ctx, "account", "show", "--output", "json")
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(time.Minute): // the stub's child sleeps for 10 minutes: only a kill ends it sooner
				t.Fatal("Run did not return a minute after a one-second deadline")
			}
			var te *TimeoutError
			if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) ||
				!strings.HasPrefix(err.Error(), "az account show --output json did not finish within ") {
				t.Fatalf("err = %v", err)
			}
			b, err := os.ReadFile(log + ".hang")
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; alive(pid); i++ {
				if i == 100 {
					t.Fatalf("the child az started (pid %d) is still running", pid)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// Interrupting the caller (Ctrl-C) is not a timeout.
func TestExecInterrupted(t *testing.T) {
	stub, _ := filepath.Abs("../../testdata/az/az")
	log := filepath.Join(t.TempDir(), "az.log")
	x := Exec{Path: stub, Env: []string{"PATH=" + os.Getenv("PATH"), "AZ_STUB_SCENARIO=hang", "AZ_STUB_LOG=" + log}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	_, err := x.Run(ctx, "account", "show")
	var te *TimeoutError
	if !errors.Is(err, context.Canceled) || errors.As(err, &te) {
		t.Fatalf("err = %v", err)
	}
}

func TestDefaultTimeout(t *testing.T) {
	for args, want := range map[string]time.Duration{
		"deployment group create --name x":                 LongTimeout,
		"functionapp deployment source config-zip --src z": LongTimeout,
		"group delete --name g --yes":                      LongTimeout,
		"deployment group show --name x":                   ShortTimeout,
		"account show":                                     ShortTimeout,
		"functionapp function keys list":                   ShortTimeout,
	} {
		if got := DefaultTimeout(strings.Fields(args)); got != want {
			t.Errorf("%s: %v, want %v", args, got, want)
		}
	}
}
