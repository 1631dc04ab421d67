// Package infra embeds the Bicep template, so an installed cosmoslease can provision from any directory.
package infra

import _ "embed"

// MainBicep is main.bicep.
//
//go:embed main.bicep
var MainBicep []byte
