package cosmoslease

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRegion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		account []string
		err     string // a substring of the error; empty: accepted
		warn    bool
	}{
		{name: "eastus"},
		{name: "East US"},
		{name: "West US 3"},
		{name: "eastu", err: `"eastu" is not an Azure region: did you mean eastus?`},
		{name: "westeurpoe", err: "did you mean westeurope?"},
		{name: "east us!!", err: `"east us!!" is not a region name: Azure's are letters and digits`},
		{name: "", err: "the region is empty"},
		// The account's own regions are known, whatever the static list says.
		{name: "Contoso Central", account: []string{"Contoso Central", "East US"}},
		{name: "contosocentra", account: []string{"Contoso Central"}, err: "did you mean contosocentral?"},
		// A name far from every known one may be a region newer than the list: accepted, with a warning.
		{name: "polandcentral", warn: true},
	} {
		warning, err := CheckRegion(tc.name, tc.account)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("CheckRegion(%q) = %v, want accepted", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid)):
			t.Errorf("CheckRegion(%q) = %v, want an ErrInvalid saying %q", tc.name, err, tc.err)
		case tc.warn != (warning != ""):
			t.Errorf("CheckRegion(%q) warning %q, want one: %v", tc.name, warning, tc.warn)
		}
	}
}
