package ncrontab

import (
	"fmt"
	"strings"
	"time"
	// The zone database goes into every binary that reads schedules (the CLI, every handler): Flex Consumption's
	// images, and distroless ones, need not have /usr/share/zoneinfo.
	_ "time/tzdata"
)

// A schedule read in a time zone matches the zone's wall clock, and names each occurrence by its instant in UTC,
// so every region computes the same occurrences whatever its own clock's zone. Where daylight saving makes the
// wall clock skip or repeat, the rules are Vixie cron's (cron(8): jobs in a skipped interval run soon after the
// change, jobs in a repeated interval are not re-run, wildcard jobs run by the new time), as the Cronos library's
// README states them per field (github.com/HangfireIO/Cronos, "Daylight Saving Time"):
//
//   - A wall-clock time that does not exist (the clock springs forward over it) runs once, at the first instant
//     after the gap: 02:30 on the day Europe/Berlin goes from 02:00 to 03:00 runs at 03:00 CEST (01:00Z). Every
//     time of the gap that matches runs then, as one occurrence.
//   - A wall-clock time that happens twice (the clock falls back) runs once, at its first instance, when the
//     schedule names fixed times (its second, minute and hour fields are numbers and lists of them: 0 30 2 * * *).
//   - A schedule whose second, minute or hour field holds *, a range or a step (0 */15 * * * *) runs at every real
//     instant its wall-clock time matches: through a repeated hour it runs in both, each a different instant
//     in UTC, so a different occurrence.
//
// Occurrences are then strictly increasing in UTC, and none is named twice. The Functions host's timer, when
// WEBSITE_TIME_ZONE makes it fire in local time (CronSchedule in azure-webjobs-sdk-extensions), draws the same
// line between fixed and interval schedules (a *, - or / in the first three fields) and treats a repeated hour
// the same way, but moves a skipped time by the length of the gap (02:30 to 03:30 CEST), not to its end.

// LoadZone reads an IANA time zone name (Europe/Berlin, America/New_York, UTC). It refuses "Local" and the
// empty name, which would mean each machine's own zone. The binary carries the zone database (time/tzdata).
func LoadZone(name string) (*time.Location, error) {
	n := strings.TrimSpace(name)
	if n == "" || strings.EqualFold(n, "Local") {
		return nil, fmt.Errorf("%q is not a time zone name: name an IANA time zone, such as Europe/Berlin or America/New_York (or UTC), the same in every region", name)
	}
	loc, err := time.LoadLocation(n)
	if err != nil {
		hint := ""
		if strings.Contains(n, " ") {
			hint = " (that looks like a Windows time zone name; this needs the IANA one, such as Europe/Berlin for W. Europe Standard Time)"
		}
		return nil, fmt.Errorf("%q is not a time zone this knows: name an IANA time zone, such as Europe/Berlin or America/New_York%s", name, hint)
	}
	// UTC by another name (Etc/UTC, GMT, Zulu): one offset of 0 for all time.
	at := time.Unix(0, 0).In(loc)
	if start, end := at.ZoneBounds(); start.IsZero() && end.IsZero() {
		if _, off := at.Zone(); off == 0 {
			return time.UTC, nil
		}
	}
	return loc, nil
}

// ParseIn reads an NCRONTAB expression (see Schedule) whose fields are wall-clock times in loc (nil or UTC: as
// Parse). Its occurrences, its gaps (Shortest, Longest) and Contains follow the rules above.
func ParseIn(expr string, loc *time.Location) (*Schedule, error) {
	s, err := Parse(expr)
	if err != nil || loc == nil || loc == time.UTC || loc.String() == "UTC" {
		return s, err
	}
	s.loc = loc
	s.measureZone()
	return s, nil
}

// Location is the time zone the schedule is read in (UTC unless ParseIn gave another).
func (s *Schedule) Location() *time.Location {
	if s.loc == nil {
		return time.UTC
	}
	return s.loc
}

// WholeMinutes reports whether every occurrence is at second 0 (five fields, or a second field of 0): a timer
// that fires every minute then meets every one, in any zone (zones change their offset on whole minutes).
func (s *Schedule) WholeMinutes() bool {
	for _, t := range s.times {
		if t%60 != 0 {
			return false
		}
	}
	return true
}

// recordPrefix starts the schedule written into run records when it is read in a zone, as cronie writes a
// crontab line's zone (CRON_TZ=).
const recordPrefix = "CRON_TZ="

// String is the schedule as run records carry it: the expression, after CRON_TZ=ZONE and a space when it is read
// in a zone other than UTC. ParseRecord reads it back.
func (s *Schedule) String() string {
	if s.loc == nil {
		return s.expr
	}
	return recordPrefix + s.loc.String() + " " + s.expr
}

// ParseRecord reads a schedule as String writes it.
func ParseRecord(rec string) (*Schedule, error) {
	rest, ok := strings.CutPrefix(rec, recordPrefix)
	if !ok {
		return Parse(rec)
	}
	zone, expr, _ := strings.Cut(rest, " ")
	loc, err := LoadZone(zone)
	if err != nil {
		return nil, err
	}
	return ParseIn(expr, loc)
}

// period is the stretch of time with one UTC offset that holds u: where it starts (zero: at the beginning of time)
// and ends (zero: never), its offset, and the offset before it (its own when it has no start).
func (s *Schedule) period(u time.Time) (start, end time.Time, off, prev time.Duration) {
	lt := u.In(s.loc)
	start, end = lt.ZoneBounds()
	_, o := lt.Zone()
	off, prev = time.Duration(o)*time.Second, time.Duration(o)*time.Second
	if !end.IsZero() && !end.After(u) {
		// Go 1.26's ZoneBounds ends the last zone of a leap year on 31 December in the years its rules extend to
		// (Europe/Berlin in 2040): find the end from the offsets instead.
		end = s.nextChange(u, off)
	}
	if !start.IsZero() {
		_, p := start.Add(-time.Second).In(s.loc).Zone()
		prev = time.Duration(p) * time.Second
	}
	return start.UTC(), end.UTC(), off, prev
}

// nextChange is the first instant after u whose offset is not off (zero: none within two years).
func (s *Schedule) nextChange(u time.Time, off time.Duration) time.Time {
	offAt := func(t time.Time) time.Duration {
		_, o := t.In(s.loc).Zone()
		return time.Duration(o) * time.Second
	}
	for lo, i := u, 0; i < 800; i++ {
		hi := lo.Add(24 * time.Hour)
		if offAt(hi) == off {
			lo = hi
			continue
		}
		for hi.Sub(lo) > time.Second { // offAt(lo) == off, offAt(hi) != off
			mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
			if offAt(mid) == off {
				lo = mid
			} else {
				hi = mid
			}
		}
		return hi
	}
	return time.Time{}
}

// skipsMatch reports whether the clock, springing forward at start from offset prev to off, skips a wall-clock
// time that the schedule matches: [start+prev, start+off) in wall-clock time.
func (s *Schedule) skipsMatch(start time.Time, prev, off time.Duration) bool {
	if !start.IsZero() && prev < off {
		return s.nextUTC(start.Add(prev).Add(-time.Second)).Before(start.Add(off))
	}
	return false
}

// firstWall is the earliest wall-clock time of the period starting at start (offset off, prev before) at which
// the schedule may run: after a fall back, a fixed-time schedule does not run again through the repeated times.
func (s *Schedule) firstWall(start time.Time, prev, off time.Duration) time.Time {
	if !s.interval && !start.IsZero() && prev > off {
		return start.Add(prev)
	}
	return start.Add(off)
}

func (s *Schedule) nextIn(t time.Time) time.Time {
	u := t.UTC().Truncate(time.Second).Add(time.Second) // the first instant that may be the answer
	for {
		start, end, off, prev := s.period(u)
		if u.Equal(start) && s.skipsMatch(start, prev, off) {
			return start
		}
		from := u.Add(off)
		if !start.IsZero() {
			if first := s.firstWall(start, prev, off); from.Before(first) {
				from = first
			}
		}
		if c := s.nextUTC(from.Add(-time.Second)).Add(-off); end.IsZero() || c.Before(end) {
			return c
		}
		u = end
	}
}

func (s *Schedule) prevIn(t time.Time) time.Time {
	u := t.UTC().Truncate(time.Second) // the last instant that may be the answer
	for {
		start, _, off, prev := s.period(u)
		c := s.prevUTC(u.Add(off))
		if start.IsZero() || !c.Before(s.firstWall(start, prev, off)) {
			return c.Add(-off)
		}
		if s.skipsMatch(start, prev, off) {
			return start
		}
		u = start.Add(-time.Second)
	}
}

// measureZone widens the gaps measured on the wall clock (measure) by those across each change of offset from
// 1970 to 2100: away from a change, occurrences are the wall clock's shifted by one offset.
func (s *Schedule) measureZone() {
	shortest, longest := s.shortest, s.longest
	end := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	for u := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC); u.Before(end); {
		_, next, off, _ := s.period(u)
		if next.IsZero() {
			break
		}
		_, _, after, _ := s.period(next)
		if after != off {
			a := s.Prev(next.Add(-time.Second))
			b := s.Next(a)
			c := s.Next(b)
			for _, g := range []time.Duration{b.Sub(a), c.Sub(b)} {
				shortest, longest = min(shortest, g), max(longest, g)
			}
		}
		u = next
	}
	s.shortest, s.longest = shortest, longest
}
