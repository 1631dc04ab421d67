package az

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// MinVersion is the oldest Azure CLI that setup and deploy accept. Older releases deploy a zip to a Flex
// Consumption app through the path for the other plans (appservice custom.py enable_zip_deploy_functionapp picks
// enable_zip_deploy_flex only where is_flex_functionapp exists), which fails with messages that do not say why,
// and lack the commands setup's checks use (functionapp list-flexconsumption-runtimes).
const MinVersion = "2.60.0"

// Version reads the version of azure-cli from `az version --output json`. azure-cli-core util.py
// get_az_version_json builds that object: {"azure-cli": "2.67.0", "azure-cli-core": "2.67.0",
// "azure-cli-telemetry": "1.1.0", "extensions": {…}}, one key per installed CLI distribution.
func Version(ctx context.Context, r Runner) (string, error) {
	out, err := r.Run(ctx, "version", "--output", "json")
	if err != nil {
		return "", err
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		return "", fmt.Errorf("az version: unexpected output: %v", err)
	}
	s, _ := v["azure-cli"].(string)
	if s == "" {
		return "", fmt.Errorf("az version: no azure-cli version in its output")
	}
	return s, nil
}

// RequireVersion refuses an Azure CLI older than MinVersion, naming the upgrade command.
func RequireVersion(ctx context.Context, r Runner) error {
	v, err := Version(ctx, r)
	if err != nil {
		return err
	}
	if compareVersions(v, MinVersion) < 0 {
		return fmt.Errorf("the Azure CLI is version %s, and cosmoslease needs %s or newer (older releases deploy to Flex Consumption apps the wrong way): "+
			"upgrade it with 'az upgrade' (or the package manager you installed it with), then run this again", v, MinVersion)
	}
	return nil
}

// compareVersions compares dotted versions numerically ("2.9.1" < "2.60.0"); a part that is not a number
// compares as 0, and a suffix such as "b1" after the digits is ignored.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		x, y := versionPart(pa, i), versionPart(pb, i)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func versionPart(parts []string, i int) int {
	if i >= len(parts) {
		return 0
	}
	s := parts[i]
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(s[:end])
	return n
}
