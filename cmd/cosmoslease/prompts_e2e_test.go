//go:build linux || darwin

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
)

// configure in a terminal: a mistyped connection string is refused without echoing it and asked again; after
// writing the file, configure offers the connection check, which reaches the real server.
func TestConfigureChecksTheConnectionInATerminal(t *testing.T) {
	srv := cosmostest.Get(t)
	ctr := srv.NewContainer(t, "/leaseKey")
	dir := t.TempDir()
	c, cmd, screen := console(t, dir, "configure")
	bad := "AccountEndpoint=" + srv.Endpoint + ";AccountKey=not-base64-s3cr3t!;"
	steps := []step{
		{"Authentication mode", "\x1b[B\r"}, // the second: connection string
		{"Connection string (AccountEndpoint", bad + "\r"},
		{"Sorry, your reply was invalid", ""},
		{cursorQuery, emulator.ConnectionString(srv.Endpoint) + "\r"},
		{"Database name", srv.Database + "\r"},
		{"Container name", ctr + "\r"},
		{"Check the connection now", "\r"}, // yes
		{"Connection works: container " + ctr, ""},
	}
	play(t, c, screen, steps)
	waitExit(t, cmd, 0)
	// What the command printed never holds a key. (Only its own lines are checked: text typed before a prompt has
	// switched the terminal to raw mode is echoed by the terminal itself.)
	for _, l := range strings.Split(screen.String(), "\n") {
		if (strings.Contains(l, "Sorry, your reply was invalid") || strings.Contains(l, "Connection works") || strings.Contains(l, "Checking")) &&
			(strings.Contains(l, "s3cr3t") || strings.Contains(l, emulator.Key)) {
			t.Fatalf("a key was printed: %q", l)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "appsettings.Local.json"))
	if err != nil || !strings.Contains(string(b), `"ContainerName": "`+ctr+`"`) {
		t.Fatalf("settings file: %v\n%s", err, b)
	}
}
