//go:build race

package sim

// Under the race detector (make test) the simulation runs several times slower: the short run is cut so that
// the whole test command stays within its time.
const raceEnabled = true
