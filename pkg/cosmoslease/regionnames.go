package cosmoslease

import (
	"fmt"
	"slices"
	"strings"
)

// knownRegions are Azure regions in which Cosmos DB runs, normalised: the names of Microsoft.Azure.Cosmos.Regions
// (Azure/azure-cosmos-dotnet-v3, Microsoft.Azure.Cosmos/src/Regions.cs at commit 035c837e, read on 2026-12-07),
// with the regions of `az account list-locations` in testdata/az. Azure adds regions: a name this list does not
// know is refused only when it is a near miss of one it knows (a typo), and otherwise accepted with a warning.
var knownRegions = func() []string {
	var out []string
	for _, r := range []string{
		"West US", "West US 2", "West Central US", "East US", "East US 2", "Central US", "South Central US",
		"North Central US", "West Europe", "North Europe", "East Asia", "Southeast Asia", "Japan East", "Japan West",
		"Australia East", "Australia Southeast", "Central India", "South India", "West India", "Canada East",
		"Canada Central", "Germany Central", "Germany Northeast", "China North", "China East", "China North 2",
		"China East 2", "Korea South", "Korea Central", "UK West", "UK South", "Brazil South", "USGov Arizona",
		"USGov Texas", "USGov Virginia", "East US 2 EUAP", "Central US EUAP", "France Central", "France South",
		"USDoD Central", "USDoD East", "Australia Central", "Australia Central 2", "South Africa North",
		"South Africa West", "UAE Central", "UAE North", "USNat East", "USNat West", "USSec East", "USSec West",
		"Switzerland North", "Switzerland West", "Germany North", "Germany West Central", "Norway East",
		"Norway West", "Brazil Southeast", "West US 3", "Jio India Central", "Jio India West", "East US SLV",
		"Sweden Central", "Sweden South", "Qatar Central", "China North 3", "China East 3",
	} {
		out = append(out, NormalizeRegion(r))
	}
	return out
}()

// CheckRegion checks that name can be an Azure region, so that a typo does not silently rank a region last (where
// it never runs the work while any listed region lives). account are the account's regions (Client.AccountRegions),
// when it could be read. A name must be letters and digits once case and spaces are dropped ("East US" is
// eastus); it is accepted when the account or knownRegions has it. Otherwise it is refused, naming the closest
// region known, when it is within two edits of one (eastu, eastsu); any other name is accepted with a warning, since
// Azure adds regions this list does not know yet.
func CheckRegion(name string, account []string) (warning string, err error) {
	n := NormalizeRegion(name)
	if n == "" {
		return "", invalid("the region is empty")
	}
	for _, r := range n {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return "", invalid("%q is not a region name: Azure's are letters and digits, such as eastus or \"East US\"", name)
		}
	}
	known := slices.Clone(knownRegions)
	for _, r := range account {
		known = append(known, NormalizeRegion(r))
	}
	if slices.Contains(known, n) {
		return "", nil
	}
	best, dist := "", 3
	for _, k := range known {
		if d := editDistance(n, k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return "", invalid("%q is not an Azure region: did you mean %s?", name, best)
	}
	where := "the regions this version knows"
	if len(account) > 0 {
		where = "the account's regions (" + strings.Join(account, ", ") + ") or " + where
	}
	return fmt.Sprintf("region %q is not among %s; using it as given (a new region?)", name, where), nil
}

// editDistance is the Levenshtein distance between a and b (bytes: region names are ASCII once checked).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
