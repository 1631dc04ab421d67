package az

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func response(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/az/responses", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Each of az's error forms becomes one readable line, and keeps its codes for callers that act on them.
func TestMessageForms(t *testing.T) {
	for _, tc := range []struct {
		name, stderr, want string
		codes              []string
	}{
		{"deployment failure: the innermost error, without the outer boilerplate", response(t, "deployment-failed.txt"),
			"BadRequest: Serverless accounts do not support multiple regions.", []string{"DeploymentFailed", "BadRequest"}},
		{"nested details, ActivityId dropped", response(t, "deployment-principal-not-found.txt"),
			"BadRequest: The provided principal ID [99999999-0000-0000-0000-000000000000] was not found in the AAD tenant(s) [72f988bf-0000-0000-0000-000000000000] which are associated with the customer's subscription.",
			[]string{"DeploymentFailed", "ResourceDeploymentFailure", "BadRequest"}},
		{"validation: the last inner error", response(t, "validate-failed.txt"),
			"RequestDisallowedByPolicy: Resource 'cosmos-abc123' was disallowed by policy.", []string{"InvalidTemplateDeployment", "RequestDisallowedByPolicy"}},
		{"(Code) message form without its repeated lines",
			"ERROR: (ResourceNotFound) The Resource 'Microsoft.Web/sites/f' under resource group 'g' was not found.\nCode: ResourceNotFound\nMessage: The Resource 'Microsoft.Web/sites/f' under resource group 'g' was not found.\n",
			"(ResourceNotFound) The Resource 'Microsoft.Web/sites/f' under resource group 'g' was not found.", []string{"ResourceNotFound"}},
		{"plain text, warnings dropped", "WARNING: something\nERROR: Subscription 'x' not found.\n", "Subscription 'x' not found.", nil},
		{"nothing", "\n", "no message", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, codes := parse(tc.stderr)
			if !strings.HasPrefix(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "ActivityId") || strings.Contains(msg, "See inner errors") {
				t.Fatalf("message:\n%q\nwant it to start with:\n%q", msg, tc.want)
			}
			if strings.Join(codes, ",") != strings.Join(tc.codes, ",") {
				t.Fatalf("codes %v, want %v", codes, tc.codes)
			}
		})
	}
}

func TestExecClassifies(t *testing.T) {
	stub, err := filepath.Abs("../../testdata/az/az")
	if err != nil {
		t.Fatal(err)
	}
	run := func(scenario string, args ...string) error {
		_, err := Exec{Path: stub, Env: []string{"PATH=" + os.Getenv("PATH"), "AZ_STUB_SCENARIO=" + scenario}}.Run(context.Background(), args...)
		return err
	}
	if err := run("notloggedin", "account", "show"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("not logged in: %v", err)
	}
	err = run("validatefail", "deployment", "group", "validate", "--name", "x")
	var azErr *Error
	if !errors.As(err, &azErr) || !azErr.HasCode("requestdisallowedbypolicy") || azErr.ExitCode != 1 ||
		!strings.HasPrefix(err.Error(), "az deployment group validate failed: RequestDisallowedByPolicy:") {
		t.Fatalf("validation failure: %v", err)
	}
	if _, err := (Exec{Path: filepath.Join(t.TempDir(), "az")}).Run(context.Background(), "version"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("missing az: %v", err)
	}
}

// Issue 27, item 5: the azure-cli version comes from `az version`; one older than MinVersion is refused with
// the upgrade command, a newer one (compared by number, not as text) passes.
func TestRequireVersion(t *testing.T) {
	stub, err := filepath.Abs("../../testdata/az/az")
	if err != nil {
		t.Fatal(err)
	}
	for v, ok := range map[string]bool{"2.67.0": true, "2.60.0": true, "2.100.0": true, "3.0.0": true, "2.59.1": false, "2.9.0": false, "2.6.0": false} {
		r := Exec{Path: stub, Env: []string{"PATH=" + os.Getenv("PATH"), "AZ_STUB_AZ_VERSION=" + v}}
		err := RequireVersion(context.Background(), r)
		switch {
		case ok && err != nil:
			t.Errorf("az %s refused: %v", v, err)
		case !ok && (err == nil || !strings.Contains(err.Error(), "the Azure CLI is version "+v+", and cosmoslease needs 2.60.0 or newer") || !strings.Contains(err.Error(), "'az upgrade'")):
			t.Errorf("az %s: %v", v, err)
		}
	}
}
