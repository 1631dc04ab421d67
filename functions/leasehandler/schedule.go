package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/config"
)

// gaps returns the shortest and longest time between two runs of a timer schedule: an NCRONTAB expression
// with six fields ({second} {minute} {hour} {day} {month} {day-of-week}), or a TimeSpan ("00:05:00") as the
// App Service plans accept. The longest gap bounds how long the lease must last to be kept from one tick to
// the next; the shortest identifies an occurrence when the host sends no schedule status.
func gaps(schedule string) (shortest, longest time.Duration, err error) {
	schedule = strings.TrimSpace(schedule)
	if strings.Contains(schedule, ":") && !strings.Contains(schedule, " ") {
		d, err := config.ParseDuration(schedule)
		if err != nil || d <= 0 {
			return 0, 0, fmt.Errorf("LeaseTimerSchedule %q is not a positive TimeSpan", schedule)
		}
		return d, d, nil
	}
	c, err := parseCron(schedule)
	if err != nil {
		return 0, 0, err
	}
	// Walk a little over a year minute by minute, from a fixed day, so leap days and month ends are seen.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var prev time.Time
	fires := 0
	for t := start; t.Before(start.AddDate(1, 0, 2)) && fires < 200000; t = t.Add(time.Minute) {
		if !c.matchMinute(t) {
			continue
		}
		for _, s := range c.seconds {
			at := t.Add(time.Duration(s) * time.Second)
			if !prev.IsZero() {
				g := at.Sub(prev)
				if shortest == 0 || g < shortest {
					shortest = g
				}
				if g > longest {
					longest = g
				}
			}
			prev = at
			fires++
		}
	}
	if fires < 2 {
		return 0, 0, fmt.Errorf("LeaseTimerSchedule %q fires less than twice a year; a lease cannot span that", schedule)
	}
	return shortest, longest, nil
}

type cron struct {
	seconds                     []int
	minutes, hours, days, month map[int]bool
	weekdays                    map[int]bool
	anyDay, anyWeekday          bool
}

func (c *cron) matchMinute(t time.Time) bool {
	if !c.minutes[t.Minute()] || !c.hours[t.Hour()] || !c.month[int(t.Month())] {
		return false
	}
	dom, dow := c.days[t.Day()], c.weekdays[int(t.Weekday())]
	switch {
	case c.anyDay && c.anyWeekday:
		return true
	case c.anyDay:
		return dow
	case c.anyWeekday:
		return dom
	}
	return dom || dow // as cron: either restriction matches
}

var monthNames = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
var dayNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

func parseCron(expr string) (*cron, error) {
	fields := strings.Fields(expr)
	if len(fields) != 6 {
		return nil, fmt.Errorf("LeaseTimerSchedule %q must have six fields ({second} {minute} {hour} {day} {month} {day-of-week}), such as 0 */1 * * * *", expr)
	}
	specs := []struct {
		name     string
		min, max int
		names    map[string]int
	}{{"second", 0, 59, nil}, {"minute", 0, 59, nil}, {"hour", 0, 23, nil}, {"day", 1, 31, nil}, {"month", 1, 12, monthNames}, {"day-of-week", 0, 6, dayNames}}
	sets := make([]map[int]bool, 6)
	for i, f := range fields {
		set, err := parseField(f, specs[i].min, specs[i].max, specs[i].names)
		if err != nil {
			return nil, fmt.Errorf("LeaseTimerSchedule %q: %s field %q: %v", expr, specs[i].name, f, err)
		}
		sets[i] = set
	}
	c := &cron{minutes: sets[1], hours: sets[2], days: sets[3], month: sets[4], weekdays: sets[5],
		anyDay: fields[3] == "*" || fields[3] == "?", anyWeekday: fields[5] == "*" || fields[5] == "?"}
	for s := range sets[0] {
		c.seconds = append(c.seconds, s)
	}
	sort.Ints(c.seconds)
	return c, nil
}

func parseField(f string, lo, hi int, names map[string]int) (map[int]bool, error) {
	set := map[int]bool{}
	value := func(s string) (int, error) {
		if n, ok := names[strings.ToLower(s)]; ok {
			return n, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		if names != nil && hi == 6 && n == 7 {
			n = 0 // Sunday as 7
		}
		if n < lo || n > hi {
			return 0, fmt.Errorf("%d is outside %d-%d", n, lo, hi)
		}
		return n, nil
	}
	for _, part := range strings.Split(f, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("step %q is not a positive number", stepText)
			}
			step = n
		}
		a, b := lo, hi
		switch {
		case rng == "*" || rng == "?":
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err error
			if a, err = value(x); err != nil {
				return nil, err
			}
			if b, err = value(y); err != nil {
				return nil, err
			}
			if a > b {
				return nil, fmt.Errorf("range %s runs backwards", rng)
			}
		default:
			v, err := value(rng)
			if err != nil {
				return nil, err
			}
			a = v
			if !hasStep {
				b = v
			}
		}
		for v := a; v <= b; v += step {
			set[v] = true
		}
	}
	return set, nil
}
