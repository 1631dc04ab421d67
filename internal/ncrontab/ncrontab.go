// Package ncrontab reads NCRONTAB schedules exactly as the Azure Functions timer trigger does (NCrontab 3.3.3),
// so that every region, and every other scheduler built on cosmoslease, agrees on which instants are
// occurrences.
package ncrontab

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Schedule is an NCRONTAB schedule read exactly as the Functions host reads it: the timer trigger parses its
// schedule with NCrontab 3.3.3, and so does Parse, rule for rule:
//
//   - Fields are separated by spaces (only spaces). Five fields are {minute} {hour} {day} {month}
//     {day-of-week} with the second 0; six put {second} in front. (Only Windows Consumption insists on six.)
//   - A field is a comma list of items; an item is *, a value, or a range a-b (a reversed range is swapped),
//     with an optional /step. A single value with a step (5/15) runs to the field's maximum.
//   - Months and days of the week also take names: any case-insensitive prefix of the English name, the first
//     in calendar order winning (Jan, January, Ma = March, M = Monday, Tues, Thursday). Days of the week are
//     0-6 with Sunday 0; 7 is refused, as NCrontab refuses it. There is no ?, L, W or #.
//   - A time matches when every field matches: when both day of month and day of week are restricted, a day
//     must satisfy both (0 0 9 13 * Fri is Friday the 13th only), unlike Unix cron's either.
//
// Times are UTC, as on Flex Consumption, unless the schedule is read in a time zone (ParseIn): see ParseIn for
// how its occurrences are computed, and named in UTC, across daylight-saving changes.
type Schedule struct {
	expr string
	// loc is the time zone the fields are read in; nil for UTC.
	loc *time.Location
	// interval is true when the second, minute or hour field holds *, - or /: such a schedule runs through a
	// repeated (fall-back) hour at each real instant, where a fixed time runs at its first instance only.
	interval bool
	// day-level fields, indexed by value.
	day     [32]bool
	month   [13]bool
	weekday [7]bool
	// times are the seconds of the day at which it fires, ascending; never empty.
	times []int32
	// shortest and longest time between two consecutive occurrences, over a whole Gregorian cycle.
	shortest, longest time.Duration
}

// cycleDays is the length of the Gregorian calendar's cycle: dates and weekdays repeat every 400 years.
const cycleDays = 146097

type fieldSpec struct {
	name     string
	min, max int
	names    []string
}

var (
	secondField  = fieldSpec{"second", 0, 59, nil}
	minuteField  = fieldSpec{"minute", 0, 59, nil}
	hourField    = fieldSpec{"hour", 0, 23, nil}
	dayField     = fieldSpec{"day", 1, 31, nil}
	monthField   = fieldSpec{"month", 1, 12, []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}}
	weekdayField = fieldSpec{"day-of-week", 0, 6, []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}}
)

// Parse reads an NCRONTAB expression (see Schedule) and works out its gaps. It refuses schedules that never
// fire, and TimeSpan schedules. Its errors quote the expression and say what is wrong; the caller adds where
// the expression came from.
func Parse(expr string) (*Schedule, error) {
	var tokens []string
	for _, t := range strings.Split(expr, " ") {
		if t != "" {
			tokens = append(tokens, t)
		}
	}
	specs := []fieldSpec{secondField, minuteField, hourField, dayField, monthField, weekdayField}
	switch len(tokens) {
	case 5:
		tokens = append([]string{"0"}, tokens...)
	case 6:
	default:
		if strings.Contains(expr, ":") && len(tokens) == 1 {
			return nil, fmt.Errorf("%q is a TimeSpan schedule: it fires at times counted from each host's start, so regions cannot agree on an occurrence (and Flex Consumption does not accept it); use an NCRONTAB expression such as 0 */5 * * * *", expr)
		}
		return nil, fmt.Errorf("%q has %d fields; an NCRONTAB expression has five ({minute} {hour} {day} {month} {day-of-week}) or six ({second} first), such as */5 * * * * or 0 */5 * * * *", expr, len(tokens))
	}
	var sets [6][]bool
	for i, tok := range tokens {
		set, err := parseField(tok, specs[i])
		if err != nil {
			return nil, fmt.Errorf("%q: %s field %q: %v", expr, specs[i].name, tok, err)
		}
		sets[i] = set
	}
	s := &Schedule{expr: expr}
	for _, tok := range tokens[:3] {
		if strings.ContainsAny(tok, "*-/") {
			s.interval = true
		}
	}
	copy(s.day[:], sets[3])
	copy(s.month[:], sets[4])
	copy(s.weekday[:], sets[5])
	for h := range 24 {
		for m := range 60 {
			for sec := range 60 {
				if sets[2][h] && sets[1][m] && sets[0][sec] {
					s.times = append(s.times, int32(h*3600+m*60+sec))
				}
			}
		}
	}
	if err := s.measure(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseField reads one field into a set indexed by value, following NCrontab's CrontabFieldImpl.
func parseField(f string, spec fieldSpec) ([]bool, error) {
	set := make([]bool, spec.max+1)
	return set, parseItem(f, spec, set)
}

func parseItem(f string, spec fieldSpec, set []bool) error {
	if f == "" {
		return fmt.Errorf("an empty value")
	}
	if i := strings.IndexByte(f, ','); i > 0 {
		for _, item := range strings.Split(f, ",") {
			if err := parseItem(item, spec, set); err != nil {
				return err
			}
		}
		return nil
	}
	step, hasStep := 1, false
	if i := strings.IndexByte(f, '/'); i > 0 {
		n, err := dotnetInt(f[i+1:])
		if err != nil {
			return fmt.Errorf("step %q is not a whole number", f[i+1:])
		}
		step, hasStep, f = n, true, f[:i]
	}
	if f == "*" {
		return fill(set, -1, -1, step, spec)
	}
	if i := strings.IndexByte(f, '-'); i > 0 {
		a, err := parseValue(f[:i], spec)
		if err != nil {
			return err
		}
		b, err := parseValue(f[i+1:], spec)
		if err != nil {
			return err
		}
		return fill(set, a, b, step, spec)
	}
	v, err := parseValue(f, spec)
	if err != nil {
		return err
	}
	if !hasStep {
		return fill(set, v, v, 1, spec)
	}
	return fill(set, v, spec.max, step, spec)
}

// fill sets start..end every step; -1 for both means the whole range. It mirrors CrontabField.Accumulate,
// including its quirks: reversed ranges are swapped, and a step below 1 counts as 1.
func fill(set []bool, start, end, step int, spec fieldSpec) error {
	outside := func(v int) error {
		return fmt.Errorf("%d is outside %d-%d", v, spec.min, spec.max)
	}
	if start == end {
		if start < 0 {
			start, end = spec.min, spec.max
		} else if start < spec.min || start > spec.max {
			return outside(start)
		}
	} else {
		if start > end {
			start, end = end, start
		}
		if start < spec.min {
			return outside(start)
		}
		if end > spec.max {
			return outside(end)
		}
	}
	step = max(step, 1)
	for v := start; v <= end; v += step {
		set[v] = true
	}
	return nil
}

// parseValue reads a number, or for months and days of the week a name: the first whose English name starts
// with the text, ignoring case (ASCII letters; .NET's invariant-culture comparison would also let through
// look-alike Unicode letters, which nobody writes in a schedule).
func parseValue(s string, spec fieldSpec) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("an empty value")
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := dotnetInt(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		return n, nil
	}
	if spec.names == nil {
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, spec.min, spec.max)
	}
	for i, name := range spec.names {
		if len(s) <= len(name) && strings.EqualFold(name[:len(s)], s) && isASCII(s) {
			return spec.min + i, nil
		}
	}
	return 0, fmt.Errorf("%q is not a number from %d to %d or the start of a name (%s)", s, spec.min, spec.max, strings.Join(spec.names, ", "))
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// dotnetInt parses as .NET's int.Parse with the invariant culture: white space around, an optional sign,
// decimal digits, and a value that fits in 32 bits.
func dotnetInt(s string) (int, error) {
	n, err := strconv.ParseInt(strings.Trim(s, " \t\n\v\f\r"), 10, 32) // ParseInt takes the sign
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// fires reports whether the schedule fires on a date.
func (s *Schedule) fires(y int, m time.Month, d int, wd time.Weekday) bool {
	return s.month[m] && s.day[d] && s.weekday[wd]
}

func (s *Schedule) firesOn(day time.Time) bool {
	y, m, d := day.Date()
	return s.fires(y, m, d, day.Weekday())
}

// Next is the first occurrence after t, as NCrontab's GetNextOccurrence: later than t's whole second.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.loc != nil {
		return s.nextIn(t)
	}
	return s.nextUTC(t)
}

// nextUTC is Next with the fields read in UTC; in a zone, it works on wall-clock times written as UTC.
func (s *Schedule) nextUTC(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Second).Add(time.Second)
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	from := int32(t.Sub(day) / time.Second)
	for range cycleDays + 1 {
		if s.firesOn(day) {
			if i := sort.Search(len(s.times), func(i int) bool { return s.times[i] >= from }); i < len(s.times) {
				return day.Add(time.Duration(s.times[i]) * time.Second)
			}
		}
		day, from = day.AddDate(0, 0, 1), 0
	}
	panic("ncrontab: no occurrence in a Gregorian cycle; Parse refuses such schedules")
}

// Prev is the latest occurrence at or before t.
func (s *Schedule) Prev(t time.Time) time.Time {
	if s.loc != nil {
		return s.prevIn(t)
	}
	return s.prevUTC(t)
}

func (s *Schedule) prevUTC(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	upto := int32(t.Sub(day) / time.Second)
	for range cycleDays + 1 {
		if s.firesOn(day) {
			if i := sort.Search(len(s.times), func(i int) bool { return s.times[i] > upto }) - 1; i >= 0 {
				return day.Add(time.Duration(s.times[i]) * time.Second)
			}
		}
		day, upto = day.AddDate(0, 0, -1), 86399
	}
	panic("ncrontab: no occurrence in a Gregorian cycle; Parse refuses such schedules")
}

// Contains reports whether t is an occurrence.
func (s *Schedule) Contains(t time.Time) bool {
	return t.Nanosecond() == 0 && s.Prev(t).Equal(t)
}

// Expr is the expression as given.
func (s *Schedule) Expr() string { return s.expr }

// Shortest and Longest are the shortest and longest times between two consecutive occurrences, over a whole
// Gregorian cycle.
func (s *Schedule) Shortest() time.Duration { return s.shortest }
func (s *Schedule) Longest() time.Duration  { return s.longest }

// measure works out the shortest and longest gap between consecutive occurrences over one Gregorian cycle
// (after which dates and weekdays repeat), so rare schedules such as Friday the 13th, whose ticks can be 14
// months apart, are measured exactly.
func (s *Schedule) measure() error {
	var fireDays []int64
	y, m, d, wd := 2000, time.January, 1, time.Saturday // 2000-01-01 starts a cycle
	for i := range int64(cycleDays) {
		if s.fires(y, m, d, wd) {
			fireDays = append(fireDays, i)
		}
		wd = (wd + 1) % 7
		if d++; d > 28 && d > daysIn(y, m) {
			d = 1
			if m++; m > time.December {
				m, y = time.January, y+1
			}
		}
	}
	if len(fireDays) == 0 {
		return fmt.Errorf("%q never fires (no date matches its day, month and day of week together)", s.expr)
	}
	var shortest, longest int64 = math.MaxInt64, 0
	note := func(g int64) {
		shortest, longest = min(shortest, g), max(longest, g)
	}
	for i := 1; i < len(s.times); i++ {
		note(int64(s.times[i] - s.times[i-1]))
	}
	first, last := int64(s.times[0]), int64(s.times[len(s.times)-1])
	for i, day := range fireDays {
		nextDay := cycleDays + fireDays[0] // the first firing day of the next cycle
		if i+1 < len(fireDays) {
			nextDay = fireDays[i+1]
		}
		note((nextDay-day)*86400 + first - last)
	}
	// A few gaps must fit in a time.Duration (retention is counted in gaps).
	if longest > math.MaxInt64/int64(time.Second)/4 {
		return fmt.Errorf("%q fires too rarely (%d years can pass between ticks)", s.expr, longest/86400/365)
	}
	s.shortest, s.longest = time.Duration(shortest)*time.Second, time.Duration(longest)*time.Second
	return nil
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
