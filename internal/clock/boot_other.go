//go:build !linux && !darwin

package clock

import "time"

// bootClock: none here. On Windows Go's monotonic clock already counts sleep; elsewhere the wall clock is the
// only witness of a suspend.
func bootClock() time.Duration { return 0 }
