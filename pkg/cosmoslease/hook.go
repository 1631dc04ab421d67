package cosmoslease

import (
	"fmt"

	"github.com/cosmoslease/cosmoslease/internal/libhook"
)

// The simulator (internal/sim) builds clients over the in-memory store and virtual clocks through this hook; see
// package libhook.
func init() {
	libhook.NewClient = func(p libhook.Parts, o any) (any, error) {
		opts, ok := o.(Options)
		if !ok {
			return nil, fmt.Errorf("libhook.NewClient: options of type %T, not cosmoslease.Options", o)
		}
		opts, err := opts.withDefaults()
		if err != nil {
			return nil, err
		}
		c := newClient(p.Store, opts, p.Clock)
		c.rand, c.decode = p.Rand, p.Decode
		return c, nil
	}
}
