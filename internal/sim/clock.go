package sim

import (
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
)

// procClock is one simulated machine's clock, read inside a synctest bubble, where time.Now and timers follow
// the bubble's virtual time. It is offset from the true (virtual) time by offset, and runs fast or slow by drift:
// at rate 1 + drift for driftPeriod, then 1 − drift for as long, and so on, as a clock that time synchronisation
// keeps near the true time does (the rate error is what the lease's bound is about; the offset stays within
// offset ± drift × driftPeriod). Its monotonic, boot and wall readings are the same reading (clocks of one
// machine agree with each other; clocks of different machines do not), so clock.Elapsed, the protocol's measure
// of time, counts what this clock counts. Nothing here reads the host's clocks: clock.Real's boot reading is a
// CLOCK_BOOTTIME system call, which synctest does not virtualise, so the simulator never uses clock.Real.
type procClock struct {
	origin time.Time     // true time at which the machine's clock read origin + offset
	offset time.Duration // how far ahead of the true time the machine's clock is at origin
	drift  float64
}

// driftPeriod is how long a clock runs fast (or slow) before its synchronisation turns it round.
const driftPeriod = time.Minute

var _ clock.Clock = (*procClock)(nil)

func newProcClock(origin time.Time, offset time.Duration, drift float64) *procClock {
	return &procClock{origin: origin, offset: offset, drift: drift}
}

// skew is how far the clock has run ahead of true time after a true duration e since origin (beyond offset):
// drift × a triangle wave of slope ±1 and period 2 × driftPeriod.
func (c *procClock) skew(e time.Duration) time.Duration {
	k, r := e/driftPeriod, e%driftPeriod
	tri := r
	if k%2 == 1 {
		tri = driftPeriod - r
	}
	return time.Duration(c.drift * float64(tri))
}

// local is the machine's reading at true time t.
func (c *procClock) local(t time.Time) time.Time {
	e := t.Sub(c.origin)
	return c.origin.Add(c.offset + e + c.skew(e))
}

func (c *procClock) Now() time.Time { return c.local(time.Now()) }

func (c *procClock) Stamp() clock.Stamp {
	t := c.local(time.Now())
	return clock.Stamp{Mono: t, Wall: t.Round(0), Boot: time.Hour + t.Sub(c.origin)}
}

// After fires when the machine's clock has counted d.
func (c *procClock) After(d time.Duration) <-chan time.Time {
	return time.After(c.trueDuration(d))
}

// trueDuration is how much true time, from now, the machine's clock takes to count d: the inverse of local,
// one rate segment at a time.
func (c *procClock) trueDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	e := time.Since(c.origin)
	var total time.Duration
	for d > 0 {
		k := e / driftPeriod
		rate := 1 + c.drift
		if k%2 == 1 {
			rate = 1 - c.drift
		}
		left := (k+1)*driftPeriod - e // true time left in this segment
		if counted := time.Duration(float64(left) * rate); counted < d {
			d -= counted
			total += left
			e += left
			continue
		}
		total += time.Duration(float64(d)/rate) + 1
		break
	}
	return total
}

// sleepUntil waits until the machine's clock reads t, or done is closed.
func (c *procClock) sleepUntil(done <-chan struct{}, t time.Time) bool {
	d := t.Sub(c.Now())
	if d <= 0 {
		return true
	}
	select {
	case <-c.After(d):
		return true
	case <-done:
		return false
	}
}
