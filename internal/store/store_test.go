package store

import "testing"

// The _etag system property is read by its exact name: a user property that differs only in case is not it,
// wherever it stands in the document.
func TestETagOfMatchesTheNameExactly(t *testing.T) {
	for body, want := range map[string]string{
		`{"id":"a","_etag":"\"00\""}`:                  `"00"`,
		`{"id":"a","_etag":"\"00\"","_Etag":"mine"}`:   `"00"`,
		`{"_ETAG":"mine","id":"a","_etag":"\"00\""}`:   `"00"`,
		`{"id":"a","_Etag":"mine"}`:                    ``,
		`{"id":"a","nested":{"_etag":"no"},"n":[1,2]}`: ``,
		`not json`: ``,
	} {
		if got := ETagOf([]byte(body)); got != want {
			t.Errorf("ETagOf(%s) = %q, want %q", body, got, want)
		}
	}
}
