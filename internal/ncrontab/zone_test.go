package ncrontab

import (
	"strings"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The occurrences around each daylight-saving change of 2026, worked out by hand from the zones' rules:
// Europe/Berlin springs forward on 29 March at 01:00Z (02:00 CET → 03:00 CEST) and falls back on 25 October at
// 01:00Z (03:00 CEST → 02:00 CET); America/New_York on 8 March at 07:00Z (02:00 EST → 03:00 EDT) and 1 November
// at 06:00Z (02:00 EDT → 01:00 EST); Australia/Lord_Howe (+10:30, +11 in summer, a 30-minute shift) falls back
// on 5 April at 15:00Z of the 4th (02:00 → 01:30) and springs forward on 4 October at 15:30Z of the 3rd
// (02:00 → 02:30).
func TestZoneDaylightSaving(t *testing.T) {
	for _, tc := range []struct {
		name, zone, expr, from string
		want                   []string
	}{
		// A fixed time in the skipped hour runs at the first instant after it (03:00 CEST), once.
		{"berlin fixed spring", "Europe/Berlin", "0 30 2 * * *", "2026-03-27T12:00:00Z",
			[]string{"2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
		// A fixed time in the repeated hour runs at its first instance (02:30 CEST), not again at 02:30 CET.
		{"berlin fixed fall", "Europe/Berlin", "0 30 2 * * *", "2026-10-23T12:00:00Z",
			[]string{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		// Every quarter hour: the skipped quarters are the one at 03:00 CEST; through the repeated hour every real
		// quarter hour runs, each a different instant.
		{"berlin interval spring", "Europe/Berlin", "0 */15 * * * *", "2026-03-29T00:29:59Z",
			[]string{"2026-03-29T00:30:00Z", "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"}},
		{"berlin interval fall", "Europe/Berlin", "0 */15 * * * *", "2026-10-24T23:50:00Z",
			[]string{"2026-10-25T00:00:00Z", "2026-10-25T00:15:00Z", "2026-10-25T00:30:00Z", "2026-10-25T00:45:00Z",
				"2026-10-25T01:00:00Z", "2026-10-25T01:15:00Z", "2026-10-25T01:30:00Z", "2026-10-25T01:45:00Z", "2026-10-25T02:00:00Z"}},
		// Five fields, and a list of fixed times in the skipped hour: both run once, together, after the gap.
		{"berlin fixed list spring", "Europe/Berlin", "15,45 2 * * *", "2026-03-28T12:00:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-30T00:15:00Z", "2026-03-30T00:45:00Z"}},
		{"new york fixed spring", "America/New_York", "0 30 2 * * *", "2026-03-07T00:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
		{"new york fixed fall", "America/New_York", "0 30 1 * * *", "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		// 02:30 happens once on the fall-back day (EST): a fixed time outside the repeated hour is untouched.
		{"new york fixed after fall", "America/New_York", "0 30 2 * * *", "2026-10-31T00:00:00Z",
			[]string{"2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"}},
		{"new york interval spring", "America/New_York", "0 */15 * * * *", "2026-03-08T06:30:00Z",
			[]string{"2026-03-08T06:45:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"}},
		{"new york interval fall", "America/New_York", "0 */15 * * * *", "2026-11-01T05:40:00Z",
			[]string{"2026-11-01T05:45:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:15:00Z", "2026-11-01T06:30:00Z",
				"2026-11-01T06:45:00Z", "2026-11-01T07:00:00Z"}},
		// A range in the hour field makes a schedule an interval one (as for Cronos and the Functions host): 01:30
		// runs in both instances of the repeated hour.
		{"new york range fall", "America/New_York", "0 30 1-1 * * *", "2026-11-01T00:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"}},
		// Lord Howe's half-hour shifts: hourly runs at 02:30 LHDT for the skipped 02:00, then 03:00 half an
		// hour later; through the repeated half hour, 01:00 LHDT then 02:00 LHST an hour and a half later.
		{"lord howe interval spring", "Australia/Lord_Howe", "0 0 * * * *", "2026-10-03T14:00:00Z",
			[]string{"2026-10-03T14:30:00Z", "2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z"}},
		{"lord howe interval fall", "Australia/Lord_Howe", "0 0 * * * *", "2026-04-04T13:30:00Z",
			[]string{"2026-04-04T14:00:00Z", "2026-04-04T15:30:00Z", "2026-04-04T16:30:00Z"}},
		{"lord howe fixed fall", "Australia/Lord_Howe", "0 45 1 * * *", "2026-04-03T00:00:00Z",
			[]string{"2026-04-03T14:45:00Z", "2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"}},
		{"lord howe fixed spring", "Australia/Lord_Howe", "0 15 2 * * *", "2026-10-02T00:00:00Z",
			[]string{"2026-10-02T15:45:00Z", "2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseIn(tc.expr, mustZone(t, tc.zone))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for at := utc(t, tc.from); len(got) < len(tc.want); {
				at = s.Next(at)
				got = append(got, at.UTC().Format(time.RFC3339))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("%s in %s after %s:\n got %v\nwant %v", tc.expr, tc.zone, tc.from, got, tc.want)
			}
			// Backwards, Prev finds the same occurrences, and each is one (Contains); the instants between are not.
			for i := len(tc.want) - 1; i >= 0; i-- {
				occ := utc(t, tc.want[i])
				if p := s.Prev(occ); !p.Equal(occ) {
					t.Errorf("Prev(%s) = %s", tc.want[i], p.UTC().Format(time.RFC3339))
				}
				if i > 0 {
					if p := s.Prev(occ.Add(-time.Second)); !p.Equal(utc(t, tc.want[i-1])) {
						t.Errorf("Prev(%s − 1 s) = %s, want %s", tc.want[i], p.UTC().Format(time.RFC3339), tc.want[i-1])
					}
				}
				if !s.Contains(occ) || s.Contains(occ.Add(time.Second)) {
					t.Errorf("Contains around %s is wrong", tc.want[i])
				}
			}
		})
	}
}

// Across a year of each zone, every instant's Next and Prev agree: occurrences strictly increase in UTC, Prev of
// an occurrence is itself, and walking forward with Next meets exactly the occurrences walking back with Prev
// meets. The computation does not depend on the machine's own zone (time.Local). 2040 is a leap year beyond the
// zone database's listed changes, where Go's ZoneBounds ends the year a day early.
func TestZoneSequenceConsistent(t *testing.T) {
	for _, year := range []int{2026, 2040} {
		for _, zone := range []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"} {
			for _, expr := range []string{"0 30 2 * * *", "0 */15 * * * *", "0 0,30 1-3 * * *", "0 0 1,2 * * *", "0 45 1 * * Sun"} {
				s, err := ParseIn(expr, mustZone(t, zone))
				if err != nil {
					t.Fatal(err)
				}
				from, to := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(year+1, 1, 1, 0, 0, 0, 0, time.UTC)
				var fwd []time.Time
				for at := s.Next(from.Add(-time.Second)); at.Before(to); {
					if len(fwd) > 0 && !at.After(fwd[len(fwd)-1]) {
						t.Fatalf("%s in %s: %s follows %s", expr, zone, at, fwd[len(fwd)-1])
					}
					fwd = append(fwd, at)
					at = s.Next(at)
				}
				var back []time.Time
				for at := s.Prev(to.Add(-time.Second)); !at.Before(from); at = s.Prev(at.Add(-time.Second)) {
					back = append(back, at)
				}
				if len(back) != len(fwd) {
					t.Fatalf("%s in %s: %d occurrences forward, %d back", expr, zone, len(fwd), len(back))
				}
				for i := range fwd {
					if b := back[len(back)-1-i]; !b.Equal(fwd[i]) {
						t.Fatalf("%s in %s: occurrence %d is %s forward, %s back", expr, zone, i, fwd[i], b)
					}
				}
				// Next from any instant between two occurrences is the later one; Prev the earlier.
				for i := 1; i < len(fwd); i += 97 {
					mid := fwd[i-1].Add(fwd[i].Sub(fwd[i-1]) / 2)
					if !s.Next(mid).Equal(fwd[i]) || !s.Prev(mid).Equal(fwd[i-1]) {
						t.Fatalf("%s in %s: between %s and %s, Next %s, Prev %s", expr, zone, fwd[i-1], fwd[i], s.Next(mid), s.Prev(mid))
					}
				}
				// Another machine's local zone changes nothing.
				saved := time.Local
				time.Local = mustZone(t, "Asia/Kolkata")
				other, _ := ParseIn(expr, mustZone(t, zone))
				for _, occ := range fwd[:min(len(fwd), 50)] {
					if !other.Next(occ.Add(-time.Second)).Equal(occ) {
						t.Errorf("%s in %s: with another local zone, Next before %s differs", expr, zone, occ)
					}
				}
				time.Local = saved
			}
		}
	}
}

// The gaps between occurrences, which bound the failover delay and the run records' retention, count the
// changes of offset.
func TestZoneGaps(t *testing.T) {
	for _, tc := range []struct {
		zone, expr        string
		shortest, longest time.Duration
	}{
		{"Europe/Berlin", "0 30 2 * * *", 23*time.Hour + 30*time.Minute, 25 * time.Hour},
		{"America/New_York", "0 30 2 * * *", 23*time.Hour + 30*time.Minute, 25 * time.Hour},
		{"Europe/Berlin", "0 */15 * * * *", 15 * time.Minute, 15 * time.Minute},
		{"Australia/Lord_Howe", "0 0 * * * *", 30 * time.Minute, 90 * time.Minute},
		{"UTC", "0 30 2 * * *", 24 * time.Hour, 24 * time.Hour},
		{"Asia/Kolkata", "0 30 2 * * *", 24 * time.Hour, 24 * time.Hour},
	} {
		s, err := ParseIn(tc.expr, mustZone(t, tc.zone))
		if err != nil {
			t.Fatal(err)
		}
		if s.Shortest() != tc.shortest || s.Longest() != tc.longest {
			t.Errorf("%s in %s: gaps %s to %s, want %s to %s", tc.expr, tc.zone, s.Shortest(), s.Longest(), tc.shortest, tc.longest)
		}
	}
}

func TestZoneNames(t *testing.T) {
	for _, bad := range []string{"", "Local", "Europe/Berln", "W. Europe Standard Time", "../etc/passwd"} {
		_, err := LoadZone(bad)
		if err == nil || !strings.Contains(err.Error(), "IANA") {
			t.Errorf("LoadZone(%q) = %v, want a message naming IANA time zones", bad, err)
		}
	}
	if _, err := LoadZone("W. Europe Standard Time"); err == nil || !strings.Contains(err.Error(), "Windows") {
		t.Errorf("a Windows name: %v", err)
	}
	s, err := ParseIn("0 30 2 * * *", mustZone(t, "Europe/Berlin"))
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "CRON_TZ=Europe/Berlin 0 30 2 * * *" {
		t.Errorf("String() = %q", s.String())
	}
	back, err := ParseRecord(s.String())
	if err != nil || back.Location().String() != "Europe/Berlin" || back.Expr() != "0 30 2 * * *" {
		t.Errorf("ParseRecord(%q) = %v, %v", s.String(), back, err)
	}
	for _, name := range []string{"UTC", "Etc/UTC", "GMT", "Zulu"} {
		if mustZone(t, name) != time.UTC {
			t.Errorf("%s is not UTC", name)
		}
	}
	u, err := ParseIn("0 30 2 * * *", mustZone(t, "UTC"))
	if err != nil || u.String() != "0 30 2 * * *" || u.Location() != time.UTC {
		t.Errorf("in UTC: %v %v", u, err)
	}
}
