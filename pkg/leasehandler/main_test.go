//go:build linux || darwin

package leasehandler

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
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

// The host's invocations of a timer function, as it sends them: PascalCase; the timer status's dates as
// Json.NET writes the host's local (UTC) times, with an offset and no trailing zeros; "never" as
// 0001-01-01T00:00:00+00:00; Last the previous run; Metadata holding only sys, whose UtcNow is a UTC DateTime
// (written with Z). internal/functionshost sends the same.

// monitoredTick is a run of a monitored schedule (useMonitor, at most one tick a minute): Next is the
// occurrence firing (a missed one when pastDue), Last the one before it, or zero for never.
func monitoredTick(last, next, utcNow time.Time, pastDue bool) []byte {
	return []byte(fmt.Sprintf(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":%q,"Next":%q,"LastUpdated":%q},"IsPastDue":%t}},"Metadata":{"sys":{"MethodName":"LeaseTimer","UtcNow":%q,"RandGuid":"6e4bc43b-77c3-4ad1-9e0b-5c2bd1a9e0f3"}}}`,
		hostTime(last), hostTime(next), hostTime(last), pastDue, utcNow.UTC().Format("2006-01-02T15:04:05.9999999Z07:00")))
}

// unmonitoredTick is a run of a schedule that fires more than once a minute: the host keeps no status for
// those and sends ScheduleStatus null.
func unmonitoredTick(utcNow time.Time) []byte {
	return []byte(fmt.Sprintf(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"LeaseTimer","UtcNow":%q,"RandGuid":"0f1e2d3c-4b5a-4697-8877-66a5b4c3d2e1"}}}`,
		utcNow.UTC().Format("2006-01-02T15:04:05.9999999Z07:00")))
}

func hostTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00+00:00"
	}
	return t.UTC().Format("2006-01-02T15:04:05.9999999") + "+00:00"
}

// fired is when the host's clock reads as it invokes the function for an occurrence: a few milliseconds late.
func fired(occurrence time.Time) time.Time { return occurrence.Add(15 * time.Millisecond) }
