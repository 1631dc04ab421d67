package sim

import (
	"time"

	"github.com/cosmoslease/cosmoslease/internal/clock"
)

// procClock is one simulated machine's clock, read inside a synctest bubble, where time.Now and timers follow
// the bubble's virtual time. The machine's clock is off by offset from the true (virtual) time and runs at rate
// (1 + drift): after a true duration d it has counted rate × d. Its monotonic, boot and wall readings all follow
// it (a process's clocks agree with each other; clocks of different machines do not), so clock.Elapsed, the
// protocol's only measure of time, counts rate × d. Nothing here reads the host's clocks: clock.Real's boot
// reading is a CLOCK_BOOTTIME system call, which synctest does not virtualise, so the simulator never uses it.
type procClock struct {
	origin time.Time     // true time at which the machine's clock read origin + offset
	offset time.Duration // how far ahead of the true time the machine's clock is at origin
	rate   float64       // 1 + drift
}

var _ clock.Clock = (*procClock)(nil)

func newProcClock(origin time.Time, offset time.Duration, drift float64) *procClock {
	return &procClock{origin: origin, offset: offset, rate: 1 + drift}
}

// local is the machine's reading at true time t.
func (c *procClock) local(t time.Time) time.Time {
	return c.origin.Add(c.offset + time.Duration(float64(t.Sub(c.origin))*c.rate))
}

func (c *procClock) Now() time.Time { return c.local(time.Now()) }

func (c *procClock) Stamp() clock.Stamp {
	t := c.local(time.Now())
	return clock.Stamp{Mono: t, Wall: t.Round(0), Boot: time.Hour + t.Sub(c.origin)}
}

// After fires when the machine's clock has counted d: after d / rate of true time.
func (c *procClock) After(d time.Duration) <-chan time.Time {
	return time.After(c.trueDuration(d))
}

// trueDuration is how much true time passes while the machine's clock counts d.
func (c *procClock) trueDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d)/c.rate) + 1
}

// sleepUntil waits until the machine's clock reads t, or ctx ends.
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
