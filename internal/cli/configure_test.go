package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
)

// Item 13: without a terminal, --check checks the written settings with one read of the container, against the
// real server; a failed check says so and keeps the file.
func TestConfigureCheck(t *testing.T) {
	h := newHarness(t).withServer()
	h.env["CosmosLeasing__ConnectionString"] = emulator.ConnectionString(h.srv.Endpoint)
	h.env["CosmosLeasing__ContainerName"] = h.srv.NewContainer(t, "/leaseKey")
	r := h.run("configure", "--auth", "key", "--check")
	r.expect(t, ExitOK, "Wrote", "Checking the connection to "+h.srv.Database+"/", "Connection works: container "+h.env["CosmosLeasing__ContainerName"])
	if strings.Contains(r.stdout+r.stderr, emulator.Key) {
		t.Fatal("the key was printed")
	}

	h.env["CosmosLeasing__ContainerName"] = "no-such-container"
	r = h.run("configure", "--auth", "key", "--check")
	r.expect(t, ExitError, "the settings are written, but the connection check failed:", "no-such-container")
	b, err := os.ReadFile(filepath.Join(h.dir, config.LocalFile))
	if err != nil || !strings.Contains(string(b), `"ContainerName": "no-such-container"`) {
		t.Fatalf("the file is not kept after a failed check: %v\n%s", err, b)
	}

	// Without --check, nothing is sent: the same settings are written and the command succeeds.
	h.run("configure", "--auth", "key").expect(t, ExitOK, "Wrote")
}

// A connection string that connecting would refuse (here, a key that is not base64) is refused when configured,
// with the reason and without the key; nothing is written.
func TestConfigureRefusesAConnectionStringThatCannotConnect(t *testing.T) {
	h := newHarness(t)
	h.env["CosmosLeasing__ConnectionString"] = "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=s3cr3t!!;"
	r := h.run("configure", "--auth", "key")
	r.expect(t, ExitUsage, "connection string: the AccountKey in the connection string is not valid base64")
	if strings.Contains(r.stdout+r.stderr, "s3cr3t") {
		t.Fatal("the key was printed")
	}
	if _, err := os.Stat(filepath.Join(h.dir, config.LocalFile)); !os.IsNotExist(err) {
		t.Fatal("a file was written")
	}
	// On a terminal the same check refuses the answer and asks again.
	h.tty = true
	h.fake = &fakePrompter{answers: []string{"Connection string", "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=s3cr3t!!;",
		"AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=c2VjcmV0;", "<default>", "<default>", "no"}}
	h.run("configure").expect(t, ExitOK)
	if len(h.fake.refused) != 1 {
		t.Fatalf("refused %d answers, want 1", len(h.fake.refused))
	}
}
