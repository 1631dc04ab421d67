package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// sampleNamesakes returns one warning for each document of the reference sample in states whose instance
// (metadata.instanceId, or ownerId) is one of owners. The sample takes a lease whose document names its own
// instance for free, so an instance of it named like one of our holders takes that holder's lease at once, and
// both then hold it until our holder's next renewal fails (docs/reliability.md, "Mixed fleets"). Nothing on
// our side can prevent that; the names must differ.
func sampleNamesakes(states []cosmoslease.State, owners []string) []string {
	var out []string
	for _, s := range states {
		if !s.Sample {
			continue
		}
		for _, name := range []string{s.InstanceID, s.Owner} {
			if name != "" && slices.Contains(owners, name) {
				out = append(out, fmt.Sprintf("warning: lease %q was written by an instance of the reference sample named %q, "+
					"the name of a cosmoslease instance here. The sample takes a lease whose document names its own instance as free: "+
					"on any key both contend for, it takes that instance's lease at once, and both then hold it. Give one of them another name "+
					"(docs/reliability.md, \"Mixed fleets\")", s.Key, name))
				break
			}
		}
	}
	return out
}

// ourOwners are the owners of the leases in cosmoslease's own form (not the sample's, not invalid).
func ourOwners(states []cosmoslease.State) []string {
	var owners []string
	for _, s := range states {
		if !s.Sample && s.Problem == "" && s.Owner != "" && !slices.Contains(owners, s.Owner) {
			owners = append(owners, s.Owner)
		}
	}
	return owners
}

// warnSampleNamesakes lists the container and warns on w about sample documents named like owners (nil: the
// owners of our own leases in it). A failed listing only goes to the debug log: the warning is advice.
func warnSampleNamesakes(ctx context.Context, w io.Writer, log *slog.Logger, client *cosmoslease.Client, owners []string) {
	states, err := client.List(ctx)
	if err != nil {
		log.Debug("cannot list the container to look for reference-sample instances named like ours", "error", err)
		return
	}
	if owners == nil {
		owners = ourOwners(states)
	}
	if warnings := sampleNamesakes(states, owners); len(warnings) > 0 {
		fmt.Fprintln(w, strings.Join(warnings, "\n"))
	}
}
