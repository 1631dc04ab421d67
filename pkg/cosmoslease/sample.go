package cosmoslease

import (
	"math"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
)

// Documents of the reference sample.
//
// The sample's holder writes expiresAt = its clock's reading when it builds the write + its lease duration Ds,
// and believes it holds the lease until its own clock reads expiresAt. Its contenders take over once their own
// clocks pass expiresAt. A contender here keeps its one rule for every document — the same version seen
// unchanged for long enough, on its monotonic clock or by the server's Date − _ts — and only "long enough"
// differs for a sample document: sampleHold instead of the leaseDurationMs the sample does not write.

// sampleHold is how long a contender must see a sample document's version unchanged before it may take the
// lease over:
//
//	max(LeaseDuration, expiresAt − _ts) + (LeaseDuration − RenewDeadline)
//
// Why that is safe against a sample holder that trusts its own expiresAt. Let tb be the instant the holder
// built its write, reading its clock H; ta ≥ tb the instant Cosmos DB applied it, stamping _ts = ⌊S(ta)⌋ from
// its own clock S. The holder believes it holds the lease until its clock has advanced Ds past H(tb), that is
// for Ds of its clock from tb. Both ways of counting the wait (our monotonic clock since we first saw the
// version; Date − _ts − 1 s) start no earlier than ta, so it suffices that the wait exceeds what the holder
// still believed at ta, or Ds itself:
//
//   - expiresAt − _ts ≥ H(tb) + Ds − S(ta), which is Ds − (ta − tb), exactly the belief left at ta, when H
//     agrees with S. A holder clock ahead of Cosmos DB's makes it larger (we wait longer than needed); one
//     behind it by δ makes it δ too short. The truncation of _ts only makes it larger.
//   - LeaseDuration, when it is at least Ds, covers a holder clock behind Cosmos DB's by any amount: the
//     holder's belief is a span of its own clock that starts before ta, and no clock offset changes a span.
//     A migration usually has Ds = LeaseDuration, since both read DefaultLeaseDuration from the same settings.
//   - On top of either, LeaseDuration − RenewDeadline: the budget our own holders leave for the same errors —
//     the clocks' rates over the wait and the skew σ between the hosts that stamp Date and _ts (see the package
//     comment). Without it the LeaseDuration branch would have nothing for them when Ds = LeaseDuration. In the
//     expiresAt branch what is left of it covers a holder clock that is a little behind Cosmos DB's.
//
// So the takeover is safe when Ds ≤ LeaseDuration (given the package's clock condition), or when the sample
// holder's clock is behind Cosmos DB's by less than about LeaseDuration − RenewDeadline − σ − 2ρ·(expiresAt −
// _ts). An abandoned sample document is taken over about LeaseDuration − RenewDeadline after its expiresAt (10 s
// with the defaults), or that long after LeaseDuration when the sample's lease is the shorter. A document
// without _ts (Cosmos DB always adds it) is held for LeaseDuration plus the budget.
//
// The other direction cannot be made safe from here: a sample contender compares its clock with the expiresAt
// our holder wrote (holder's wall clock + LeaseDuration) while our holder stops at RenewDeadline, so it is safe
// only while the two clocks differ by less than LeaseDuration − RenewDeadline.
//
// expiresAt is used here, and only here, and only to lengthen the wait: as expiresAt − _ts, both read from the
// one document, never compared with a clock of ours. A sample that writes an expiresAt far ahead (.NET's
// DateTime.MaxValue, "never expires") is held for as long as a Duration can count (292 years), not less.
func (c *Client) sampleHold(d *leasedoc.Doc) time.Duration {
	var promised time.Duration
	if d.TS > 0 && !d.ExpiresAt.IsZero() {
		promised = d.ExpiresAt.Sub(time.Unix(d.TS, 0)) // saturates at the largest Duration
	}
	hold, margin := max(c.opts.LeaseDuration, promised), c.opts.LeaseDuration-c.opts.RenewDeadline
	if hold > math.MaxInt64-margin {
		return math.MaxInt64 // the sum would wrap negative, which reads as expired
	}
	return hold + margin
}
