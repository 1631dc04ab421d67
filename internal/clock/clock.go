// Package clock lets the protocol read time and wait through an interface, so tests can move time by hand.
//
// Durations the protocol measures are always differences of Now() values taken in this process; with the real
// clock those carry Go's monotonic reading, so a wall-clock step does not shorten or lengthen a lease.
package clock

import (
	"sync"
	"time"
)

// Clock is the protocol's only source of time.
type Clock interface {
	Now() time.Time
	// After delivers once, d after the call.
	After(d time.Duration) <-chan time.Time
}

// Real is the system clock.
type Real struct{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that moves only when told to.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
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

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
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

// Advance moves time forward and fires every wait that is due.
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

// Waiting returns a channel that receives each time some goroutine begins to wait on the clock.
func (f *Fake) Waiting() <-chan struct{} { return f.waiting }
