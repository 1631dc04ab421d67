package cli

import (
	"time"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// checkTimings refuses a lease duration and renewal interval that the library would refuse, in the words of the
// flags and settings a user sets (--duration, --renew-interval; DefaultLeaseDuration, AutoRenewInterval), not of
// the library's fields. It resolves the defaults as cosmoslease.Options documents them: the renewal interval
// defaults to 40 s, or two thirds of a shorter lease; a holder gives up halfway between its renewal interval and
// the lease's end (RenewDeadline); and it must give up at least a tenth of the lease, and at least 1 s, before the
// lease ends.
func checkTimings(o cosmoslease.Options, renewFlag bool) error {
	l, ri := o.LeaseDuration, o.RenewInterval
	if l == 0 {
		l = cosmoslease.DefaultLeaseDuration
	}
	if ri == 0 {
		ri = cosmoslease.DefaultRenewInterval
		if ri >= l {
			ri = l * 2 / 3
		}
	}
	margin := max(time.Second, l/10)
	deadline := ri + (l-ri)/2
	if ri < l && l-deadline >= margin {
		return nil
	}
	if !renewFlag {
		// The interval was derived: only a longer lease helps. With a derived interval the margin is l/6, which
		// is at least 1 s from 6 s on.
		return usagef("--duration %s is too short: a holder that cannot renew must give up at least 1s (and a tenth of the lease) before its lease ends, "+
			"so that it stops before any contender may take over; use --duration 6s or more", l)
	}
	// (l − ri)/2 ≥ max(1 s, l/10): l ≥ ri + 2 s and l ≥ 1.25 × ri.
	least := max(ri+2*time.Second, ri*5/4)
	if ri >= l {
		return usagef("--renew-interval %s must be shorter than --duration %s; use --duration %s or more, or a shorter --renew-interval", ri, l, least)
	}
	return usagef("--duration %s is too short for --renew-interval %s: a holder that cannot renew gives up halfway between them (%s), "+
		"which must come at least %s before the lease ends, so that it stops before any contender may take over; use --duration %s or more, or a shorter --renew-interval",
		l, ri, deadline, margin, least)
}
