//go:build !(js && wasm) && !wasip1

package cosmosstore

import (
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// defaultTransport is net/http's, with no overall timeout: each request is bounded by its context.
func defaultTransport() (policy.Transporter, error) { return &http.Client{}, nil }
