//go:build js && wasm

package cosmosstore

import (
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cosmoslease/cosmoslease/internal/jsfetch"
)

// defaultTransport is the host's fetch: net/http turns its own fetch transport off under Node.js and then has no
// way to dial.
func defaultTransport() (policy.Transporter, error) { return jsfetch.Transport{}, nil }
