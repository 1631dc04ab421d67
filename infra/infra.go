// Package infra embeds the Bicep template and the file it loads, so an installed cosmoslease can provision from
// any directory, and so the emulator mode creates the same lease container as Azure gets.
package infra

import (
	_ "embed"
	"os"
	"path/filepath"
)

// MainBicep is main.bicep.
//
//go:embed main.bicep
var MainBicep []byte

// LeaseContainerJSON is lease-container.json: the lease container's default TTL and indexing policy. main.bicep
// loads it with loadJsonContent; internal/emulator reads it for the containers it creates.
//
//go:embed lease-container.json
var LeaseContainerJSON []byte

// Write writes the template and the files it loads into dir and returns the path of main.bicep.
func Write(dir string) (string, error) {
	for name, b := range map[string][]byte{"main.bicep": MainBicep, "lease-container.json": LeaseContainerJSON} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "main.bicep"), nil
}
