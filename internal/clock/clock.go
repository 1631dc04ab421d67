// Package clock lets the protocol read time and wait through an interface, so tests can move time by hand.
//
// Durations the protocol measures are differences of readings taken in this process. Go's monotonic clock is
// immune to wall-clock steps, but on Linux and macOS it stops while the machine sleeps (and in some VM pauses),
// so a holder that trusted it alone would believe, after resuming, that its lease is still valid long past its
// deadline. A Stamp therefore holds three readings: the monotonic clock; the boot clock, which counts time
// suspended and is never stepped (CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC on macOS; on Windows Go's monotonic
// clock already counts sleep, and elsewhere there is none); and the wall clock, for platforms without a boot
// clock. Elapsed is the largest of the differences: a wall-clock step forward can only make a holder give up
// early, a suspend is counted in full, and with a boot clock a wall-clock step back cannot hide a suspend.
package clock

import (
	"sync"
	"time"
)

// Clock is the protocol's only source of time.
type Clock interface {
	// Now is the monotonic reading (what timers follow).
	Now() time.Time
	// Stamp reads the monotonic and the wall clock at once.
	Stamp() Stamp
	// After delivers once, d after the call, by the monotonic clock.
	After(d time.Duration) <-chan time.Time
}

// Stamp is one instant read on every clock.
type Stamp struct {
	Mono time.Time // carries Go's monotonic reading with the real clock
	Wall time.Time // wall clock only
	// Boot is the boot clock's reading: it counts time suspended and is never stepped. Zero where there is none.
	Boot time.Duration
}

// IsZero reports whether the stamp was never set.
func (s Stamp) IsZero() bool { return s.Mono.IsZero() }

// Elapsed is the time from s to now: the largest of the monotonic, boot-clock and wall-clock differences, so
// time spent suspended, which the monotonic clock does not count, is never missed.
func Elapsed(s, now Stamp) time.Duration {
	d := now.Mono.Sub(s.Mono)
	if w := now.Wall.Sub(s.Wall); w > d {
		d = w
	}
	if s.Boot != 0 && now.Boot != 0 && now.Boot-s.Boot > d {
		d = now.Boot - s.Boot
	}
	return d
}

// Real is the system clock.
type Real struct{}

func (Real) Now() time.Time { return time.Now() }

// Stamp uses one time.Now for two readings: time.Time keeps the monotonic reading beside the wall time, and
// Round(0) strips it, so subtraction uses the wall time.
func (Real) Stamp() Stamp {
	t := time.Now()
	return Stamp{Mono: t, Wall: t.Round(0), Boot: bootClock()}
}

func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that moves only when told to.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	slept   time.Duration // time that passed while the monotonic clock stood still (the machine slept)
	stepped time.Duration // net wall-clock steps
	waiters []waiter
	// waiting is signalled each time a goroutine starts waiting, so a test can advance exactly when the code
	// under test is parked.
	waiting chan struct{}
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewFake starts a fake clock at t.
func NewFake(t time.Time) *Fake { return &Fake{now: t, waiting: make(chan struct{}, 1024)} }

// Now is the fake monotonic reading.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Stamp is the monotonic reading; the boot reading, ahead by the time spent suspended; and the wall reading,
// ahead by that and by the net steps. The boot clock starts at one hour, so it is never zero.
func (f *Fake) Stamp() Stamp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stamp{Mono: f.now, Wall: f.now.Add(f.slept + f.stepped), Boot: time.Hour + time.Duration(f.now.UnixNano()) + f.slept}
}

func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: f.now.Add(d), ch: ch})
	select {
	case f.waiting <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves time forward on both clocks and fires every wait that is due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			w.ch <- f.now
		} else {
			kept = append(kept, w)
		}
	}
	f.waiters = kept
}

// Suspend moves the wall and boot clocks forward by d while the monotonic clock stands still, as a machine that
// sleeps does; no wait fires.
func (f *Fake) Suspend(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept += d
}

// StepWall steps the wall clock by d, forward or back, as a time daemon does; no other clock moves.
func (f *Fake) StepWall(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stepped += d
}

// Waiting returns a channel that receives each time some goroutine begins to wait on the clock.
func (f *Fake) Waiting() <-chan struct{} { return f.waiting }
