// Package libhook lets the simulator (internal/sim) build a cosmoslease.Client over parts the public API does not
// take: a store.Store (the in-memory store behind a fault layer), a clock.Clock (a process's virtual clock) and
// a source of randomness for the client's jitter (drawn from the simulation's seed). Package cosmoslease
// registers the constructor when it is initialised; nothing else sets it, and no user can reach it (the package
// is internal). It is a hook, not an API: it returns the client as any, because this package cannot import
// cosmoslease.
package libhook

import (
	"github.com/cosmoslease/cosmoslease/internal/clock"
	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Parts are what the simulator supplies in place of Open's Cosmos DB connection and the real clock.
type Parts struct {
	Store store.Store
	Clock clock.Clock
	// Rand, when not nil, returns numbers in [0, 1) for the client's jitter; nil uses math/rand/v2.
	Rand func() float64
	// Decode, when not nil, decodes the lease documents the client reads in place of leasedoc.Decode: the
	// simulator passes a memo of leasedoc.Decode (the same answers, each a copy of its own, without parsing a
	// version again that every standby reads several times).
	Decode func(body []byte, wantID string) (*leasedoc.Doc, error)
}

// NewClient builds a *cosmoslease.Client from parts and opts (a cosmoslease.Options, checked and completed as
// Open does). Set by package cosmoslease's init.
var NewClient func(p Parts, opts any) (any, error)
