package cosmoslease

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestRegionsAndRank(t *testing.T) {
	if got := NormalizeRegion("  East  US "); got != "eastus" {
		t.Fatalf("NormalizeRegion = %q", got)
	}
	prefs, err := ParseRegions("westeurope, East US ,, Southeast Asia")
	if err != nil || fmt.Sprint(prefs) != "[westeurope eastus southeastasia]" {
		t.Fatalf("ParseRegions = %v, %v", prefs, err)
	}
	if _, err := ParseRegions("eastus,East US"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a region named twice: %v", err)
	}
	account := []string{"South Central US", "East US"}
	for _, tc := range []struct {
		why                string
		region             string
		preferred, account []string
		rank, of           int
	}{
		{"the setting, case and spaces aside", "East US", prefs, account, 1, 3},
		{"not listed: last", "northeurope", prefs, account, 3, 4},
		{"the account's order", "eastus", nil, account, 1, 2},
		{"the account's write region first", "South Central US", nil, account, 0, 2},
		{"not in the account: last", "westus", nil, account, 2, 3},
		{"nothing known: all rank 0", "eastus", nil, nil, 0, 1},
	} {
		if r, n := Rank(tc.region, tc.preferred, tc.account); r != tc.rank || n != tc.of {
			t.Errorf("%s: Rank(%q) = %d of %d, want %d of %d", tc.why, tc.region, r, n, tc.rank, tc.of)
		}
	}
	if got := ClaimWindow(3, 10*time.Second, 30*time.Second); got != 70*time.Second {
		t.Fatalf("ClaimWindow = %s", got)
	}
}
