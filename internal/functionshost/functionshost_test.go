//go:build linux || darwin

package functionshost

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/cosmostest"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// The bench's mid-work kill rests on two things only the bench uses: a Work of its own added to the handler
// through go build -overlay, and the host's payload for a monitored schedule. Here a handler built so runs the
// added Work (its line is in the invocation's Logs) for the occurrence that payload names.
func TestOverlayWorkRunsForTheMonitoredOccurrence(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a handler built with overlaid work")
	}
	srv := cosmostest.Get(t)
	container := srv.NewContainer(t, "/leaseKey")
	bin, cleanup, err := Build(`package main

import (
	"context"

	"github.com/cosmoslease/cosmoslease/pkg/leasehandler"
)

func init() {
	Work = func(ctx context.Context, run leasehandler.Run) error {
		run.Logf("overlay work ran for %s", run.Occurrence.Format("15:04:05"))
		return nil
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	app := App{Bin: bin, Dir: t.TempDir(), Site: "functionshost-test", Settings: map[string]string{
		"CosmosLeasing__ConnectionString": emulator.ConnectionString(srv.Endpoint), "CosmosLeasing__DatabaseName": srv.Database,
		"CosmosLeasing__ContainerName": container, "LeaseTimerSchedule": "0 * * * * *"}}
	var stderr strings.Builder
	h, err := app.Start("eastus", "eastus-1", nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Kill()
	next := time.Now().UTC().Truncate(time.Minute)
	r := h.Timer(context.Background(), MonitoredTick(next.Add(-time.Minute), next, Fired(next), false))
	if r.Err != nil || r.HTTPStatus != 200 || r.Result.Status != "executed" || !r.Result.Occurrence.Equal(next) || r.Instance != "eastus-1" {
		t.Fatalf("answer %+v; want occurrence %s executed (stderr: %s)", r, next, stderr.String())
	}
	if want := "overlay work ran for " + next.Format("15:04:05"); !strings.Contains(strings.Join(r.Logs, "\n"), want) {
		t.Fatalf("Logs %q lack %q: the added Work did not run", r.Logs, want)
	}
}
