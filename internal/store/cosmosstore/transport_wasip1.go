//go:build wasip1

package cosmosstore

import (
	"errors"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// defaultTransport: WASI preview 1 gives a module no sockets, so only the host can carry HTTP requests.
func defaultTransport() (policy.Transporter, error) {
	return nil, errors.New("GOOS=wasip1 has no sockets: set Options.Transport to an HTTP transport the host provides (a policy.Transporter, for example over the host's own HTTP functions)")
}
