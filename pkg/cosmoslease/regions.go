package cosmoslease

import (
	"slices"
	"strings"
	"time"
)

// NormalizeRegion is the form in which regions are compared: Azure writes the same region "East US" (REGION_NAME,
// the account's locations) and "eastus" (ARM, az), so case and spaces do not count.
func NormalizeRegion(r string) string {
	return strings.ToLower(strings.Join(strings.Fields(r), ""))
}

// ParseRegions reads a preference order written as a comma-separated list of regions, most preferred first
// ("westeurope, East US"): normalised, in order. A region named twice is an error.
func ParseRegions(list string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(list, ",") {
		if n := NormalizeRegion(r); n != "" {
			if slices.Contains(out, n) {
				return nil, invalid("%q is named twice; list each region once, most preferred first", strings.TrimSpace(r))
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// Rank is region's place in the preference order, for RunOptions.Rank: its index in preferred, or, when
// preferred is empty, in the account's regions (Client.AccountRegions: the write region first, then the read
// regions by failover priority). A region not listed ranks after every listed one. ranks is the number of ranks
// in use, so the last contender contends (ranks − 1) × the failover delay after an occurrence.
func Rank(region string, preferred, account []string) (rank, ranks int) {
	order := Order(preferred, account)
	if i := slices.Index(order, NormalizeRegion(region)); i >= 0 {
		return i, len(order)
	}
	return len(order), len(order) + 1
}

// Order is the preference order Rank uses, for RunOptions.Regions: preferred, or when it is empty the account's
// regions (write region first), normalised.
func Order(preferred, account []string) []string {
	if len(preferred) > 0 {
		return preferred
	}
	order := make([]string, 0, len(account))
	for _, r := range account {
		order = append(order, NormalizeRegion(r))
	}
	return order
}

// ClaimWindow is how long after an occurrence its run record may still be missing without the occurrence being
// missed, for RunOptions.MissedAfter: the last of ranks contenders' delay, a crashed holder's lease running out,
// and ten seconds for the requests.
func ClaimWindow(ranks int, delay, leaseDuration time.Duration) time.Duration {
	return time.Duration(ranks)*delay + leaseDuration + 10*time.Second
}
