//go:build linux || darwin

package leasehandler

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/functionshost"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// fnTimer is the job of the in-process tests: LeaseTimer, the job of the single-job handler.
const fnTimer = "LeaseTimer"

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// lines waits until the buffer holds at least n lines and returns them.
func (s *syncBuf) lines(t *testing.T, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		text := strings.TrimSpace(s.String())
		if lines := strings.Split(text, "\n"); text != "" && len(lines) >= n || time.Now().After(deadline) {
			if text == "" {
				return nil
			}
			return lines
		}
	}
}

// The host's invocations of a timer function, as internal/functionshost builds them for the demo and the tools
// (PascalCase, the timer status's dates as Json.NET writes them; see there).
var (
	monitoredTick   = functionshost.MonitoredTick
	unmonitoredTick = functionshost.UnmonitoredTick
	fired           = functionshost.Fired
)
