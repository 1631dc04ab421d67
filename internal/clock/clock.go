// Package clock lets the protocol read time and wait through an interface, so tests can move time by hand.
//
// Durations the protocol measures are differences of readings taken in this process. Go's monotonic clock is
// immune to wall-clock steps, but it stops while the machine sleeps (and in some VM pauses), so a holder that
// trusted it alone would believe, after resuming, that its lease is still valid long past its deadline. A Stamp
// therefore holds both readings, and Elapsed is the larger of the two differences: a wall-clock step forward
// can only make a holder give up early, and a suspend is counted in full.
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

// Stamp is one instant read on both clocks.
type Stamp struct {
	Mono time.Time // carries Go's monotonic reading with the real clock
	Wall time.Time // wall clock only
}

// IsZero reports whether the stamp was never set.
func (s Stamp) IsZero() bool { return s.Mono.IsZero() }

// Elapsed is the time from s to now: the larger of the monotonic and the wall-clock difference, so time spent
// suspended, which the monotonic clock does not count, is never missed.
func Elapsed(s, now Stamp) time.Duration {
	d := now.Mono.Sub(s.Mono)
	if w := now.Wall.Sub(s.Wall); w > d {
		d = w
	}
	return d
}

// Real is the system clock.
type Real struct{}

func (Real) Now() time.Time { return time.Now() }

// Stamp uses one reading for both: time.Time keeps the monotonic reading beside the wall time, and Round(0)
// strips it, so subtraction uses the wall time.
func (Real) Stamp() Stamp {
	t := time.Now()
	return Stamp{Mono: t, Wall: t.Round(0)}
}

func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that moves only when told to.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	slept   time.Duration // wall time that passed while the monotonic clock stood still
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

// Stamp is the monotonic reading and the wall reading, which is ahead by the time spent suspended.
func (f *Fake) Stamp() Stamp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stamp{Mono: f.now, Wall: f.now.Add(f.slept)}
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

// Suspend moves the wall clock forward by d while the monotonic clock stands still, as a machine that sleeps
// does; no wait fires.
func (f *Fake) Suspend(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept += d
}

// Waiting returns a channel that receives each time some goroutine begins to wait on the clock.
func (f *Fake) Waiting() <-chan struct{} { return f.waiting }
