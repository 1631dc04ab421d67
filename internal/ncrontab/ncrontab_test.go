package ncrontab

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Next occurrences worked out by hand from a calendar (2026-09-24 is a Thursday; the Fridays the 13th of
// 2026-2028 are February, March and November 2026, August 2027 and October 2028).
func TestScheduleOccurrences(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		expr, from, next, prev string
	}{
		// Five fields: the second is 0.
		{"*/5 * * * *", "2026-09-24T13:07:30Z", "2026-09-24T13:10:00Z", "2026-09-24T13:05:00Z"},
		{"*/5 * * * *", "2026-09-24T13:05:00Z", "2026-09-24T13:10:00Z", "2026-09-24T13:05:00Z"},
		{"0 */5 * * * *", "2026-09-24T13:59:59.9Z", "2026-09-24T14:00:00Z", "2026-09-24T13:55:00Z"},
		// Full day names, and a range of them: Friday 10:00 → Monday 09:00.
		{"0 0 9 * * Monday-Friday", "2026-09-25T10:00:00Z", "2026-09-28T09:00:00Z", "2026-09-25T09:00:00Z"},
		{"0 0 9 * * Monday-Friday", "2026-09-28T08:59:59Z", "2026-09-28T09:00:00Z", "2026-09-25T09:00:00Z"},
		// Prefixes in any case: tues = Tuesday; M = Monday (first in calendar order); Ma = March; j = January.
		{"0 0 12 * * tues", "2026-09-24T00:00:00Z", "2026-09-29T12:00:00Z", "2026-09-22T12:00:00Z"},
		{"0 0 0 * * M", "2026-09-24T00:00:00Z", "2026-09-28T00:00:00Z", "2026-09-21T00:00:00Z"},
		{"0 0 0 1 Ma *", "2026-09-24T00:00:00Z", "2027-03-01T00:00:00Z", "2026-03-01T00:00:00Z"},
		{"0 0 1 j *", "2026-09-24T00:00:00Z", "2027-01-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		// Day of month AND day of week: Friday the 13th only.
		{"0 0 9 13 * Fri", "2026-02-13T09:00:00Z", "2026-03-13T09:00:00Z", "2026-02-13T09:00:00Z"},
		{"0 0 9 13 * Fri", "2026-03-14T00:00:00Z", "2026-11-13T09:00:00Z", "2026-03-13T09:00:00Z"},
		{"0 0 9 13 * Fri", "2026-11-13T09:00:01Z", "2027-08-13T09:00:00Z", "2026-11-13T09:00:00Z"},
		// Seconds.
		{"*/10 * * * * *", "2026-09-24T13:07:35Z", "2026-09-24T13:07:40Z", "2026-09-24T13:07:30Z"},
		{"*/2 * * * * *", "2026-09-24T13:07:39.999Z", "2026-09-24T13:07:40Z", "2026-09-24T13:07:38Z"},
		// Day 31 skips short months; 29 February waits for a leap year.
		{"0 0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z", "2026-03-31T00:00:00Z"},
		{"0 0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z", "2024-02-29T00:00:00Z"},
		// A reversed range is swapped (hours 1-5); a single value with a step runs to the maximum (5,25,45).
		{"0 0 5-1 * * *", "2026-09-24T06:00:00Z", "2026-09-25T01:00:00Z", "2026-09-24T05:00:00Z"},
		{"0 5/20 * * * *", "2026-09-24T13:30:00Z", "2026-09-24T13:45:00Z", "2026-09-24T13:25:00Z"},
		// Lists, and days of the week by number (0 = Sunday).
		{"0 0 8,17 * * 0,6", "2026-09-24T00:00:00Z", "2026-09-26T08:00:00Z", "2026-09-20T17:00:00Z"},
	} {
		s, err := Parse(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		from := at(tc.from)
		if got := s.Next(from); !got.Equal(at(tc.next)) {
			t.Errorf("%q: next after %s = %s, want %s", tc.expr, tc.from, got.Format(time.RFC3339), tc.next)
		}
		if got := s.Prev(from); !got.Equal(at(tc.prev)) {
			t.Errorf("%q: latest at or before %s = %s, want %s", tc.expr, tc.from, got.Format(time.RFC3339), tc.prev)
		}
	}
}

func TestScheduleGaps(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		expr              string
		shortest, longest time.Duration
	}{
		{"0 */1 * * * *", time.Minute, time.Minute},
		{"*/5 * * * *", 5 * time.Minute, 5 * time.Minute},
		{"*/10 * * * * *", 10 * time.Second, 10 * time.Second},
		{"0 0 * * * *", time.Hour, time.Hour},
		{"0 30 9 * * Mon-Fri", day, 3 * day},
		{"0 0,30 8-17 * * *", 30 * time.Minute, 14*time.Hour + 30*time.Minute},
		// Friday the 13th: 28 days (February to March of a common year) to 427 days (13 July 2001 to
		// 13 September 2002, the longest wait in the Gregorian calendar).
		{"0 0 9 13 * Fri", 28 * day, 427 * day},
		// 29 February: every four years, but eight across a century year that is not a leap year (2096-2104).
		{"0 0 0 29 2 *", (365*3 + 366) * day, (365*7 + 366) * day},
	} {
		s, err := Parse(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if s.shortest != tc.shortest || s.longest != tc.longest {
			t.Errorf("%q: gaps %v, %v; want %v, %v", tc.expr, s.shortest, s.longest, tc.shortest, tc.longest)
		}
	}
}

// Expressions the host refuses are refused with a message saying what is wrong.
func TestScheduleErrors(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"", "has 0 fields"},
		{"0 */1 * * * * *", "has 7 fields"},
		{"every minute", "has 2 fields"},
		{"0 61 * * * *", "61 is outside 0-59"},
		{"0 0 24 * * *", "24 is outside 0-23"},
		{"0 0 0 0 * *", "0 is outside 1-31"},
		{"0 0 0 * 13 *", "13 is outside 1-12"},
		{"0 0 0 * * 7", "7 is outside 0-6"}, // NCrontab has no 7 for Sunday
		{"0 0 0 * * Funday", "the start of a name"},
		{"0 0 0 * * ?", "the start of a name"},
		{"0 0 0 1,,2 * *", "an empty value"},
		{"0 0 0 1, * *", "an empty value"},
		{"0 */x * * * *", "step \"x\""},
		{"0 1-2-3 * * * *", "is not a number"},
		{"0 0 9 * * Mon\tTue", "day-of-week field"}, // only spaces separate fields
		{"0 0 0 30 2 *", "never fires"},
		{"0 0 0 31 4,6,9,11 *", "never fires"},
		{"00:05:00", "TimeSpan"},
		{"0 0 0 * * 99999999999", "is not a number"},
	} {
		if _, err := Parse(tc.expr); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.expr)) {
			t.Errorf("Parse(%q) = %v, want an error quoting the expression and saying %q", tc.expr, err, tc.want)
		}
	}
	// What NCrontab accepts, so must we: steps of 0 (every value), signs and padding in numbers, a reversed
	// range of names, double spaces.
	for _, expr := range []string{"*/0 * * * * *", "0 */+5 * * * *", "0 05 09 * * *", "0 0 9 * * Fri-Mon", "0  0 9 * *  *", " 0 0 9 * * * "} {
		if _, err := Parse(expr); err != nil {
			t.Errorf("Parse(%q): %v", expr, err)
		}
	}
}

func FuzzSchedule(f *testing.F) {
	for _, seed := range []string{"*/5 * * * *", "0 0 9 * * Monday-Friday", "0 0 9 13 * Fri", "*/10 * * * * *", "0 0 0 29 2 *",
		"0 5/20 1-5,7 * jan-Mar *", "0 0 5-1 * * sat", "00:05:00", "0 */0 * * * *"} {
		f.Add(seed, int64(1790000000))
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		at := time.Unix(unix%(200*365*86400), 0).UTC().Add(time.Duration(unix%1000) * time.Millisecond)
		n, p := s.Next(at), s.Prev(at)
		if !n.After(at) || p.After(at) || !s.Contains(n) || !s.Contains(p) {
			t.Fatalf("%q at %s: next %s, prev %s", expr, at, n, p)
		}
		// prev and next are consecutive occurrences, so they are one gap apart.
		if !s.Next(p).Equal(n) {
			t.Fatalf("%q at %s: an occurrence %s lies between prev %s and next %s", expr, at, s.Next(p), p, n)
		}
		if g := n.Sub(p); g < s.shortest || g > s.longest {
			t.Fatalf("%q at %s: next %s and prev %s are %s apart; gaps %s to %s", expr, at, n, p, g, s.shortest, s.longest)
		}
	})
}
