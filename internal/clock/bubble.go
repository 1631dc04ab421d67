package clock

import "time"

// Bubble is the system clock without the boot clock, for code run inside a testing/synctest bubble: there
// time.Now and timers follow the bubble's virtual time, but the boot clock, read from the kernel, does not, so
// Real would count the real time a test takes as time elapsed.
type Bubble struct{}

func (Bubble) Now() time.Time { return time.Now() }

func (Bubble) Stamp() Stamp {
	t := time.Now()
	return Stamp{Mono: t, Wall: t.Round(0)}
}

func (Bubble) After(d time.Duration) <-chan time.Time { return time.After(d) }
