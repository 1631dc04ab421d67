package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A lease held by an instance of the reference sample (its protocol, through the official JavaScript SDK):
// run names the holder and exits 3 while the sample renews; inspect names it and says where the document came
// from; once the sample crashes, run --wait takes the lease over at epoch 1.
func TestRunAndInspectWithASampleHolder(t *testing.T) {
	h := newHarness(t).withServer()
	h.lib("watcher") // creates the container
	sp := h.srv.StartSample(t, h.ctr, "dotnet-1", "--region", "us-east", "--duration", "3000", "--renew-interval", "1000",
		"--work-interval", "200")
	sp.Wait(t, "acquired", 20*time.Second)

	for range 2 { // across the sample's renewals
		r := h.run(append([]string{"run", "--emulator", "--instance", "eu-west-1", "--region", "eu-west"}, fast...)...)
		r.expect(t, ExitHeld)
		if !strings.Contains(r.stdout, "Current holder: dotnet-1 (us-east region), an instance of the reference sample") {
			t.Fatalf("held report does not name the sample's holder:\n%s", r.stdout)
		}
		time.Sleep(1200 * time.Millisecond)
	}
	sp.Wait(t, "renewed", 10*time.Second)

	r := h.run("inspect", "--emulator")
	r.expect(t, ExitOK)
	for _, s := range []string{"dotnet-1", "us-east", "held", "written by the reference sample"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("inspect table lacks %q:\n%s", s, r.stdout)
		}
	}
	r = h.run("inspect", "--emulator", "--json")
	r.expect(t, ExitOK)
	var list []leaseJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
		t.Fatalf("inspect --json: %v %s", err, r.stdout)
	}
	if l := list[0]; !l.Sample || l.Owner != "dotnet-1" || l.Region != "us-east" || l.State != "held" || l.Epoch != 0 || l.Problem != "" {
		t.Fatalf("inspect --json: %+v", l)
	}

	sp.Kill()
	r = h.run(append([]string{"run", "--emulator", "--instance", "eu-west-1", "--wait", "--hold-for", "300ms", "--json"}, fast...)...)
	r.expect(t, ExitOK)
	evs := events(t, r.stdout)
	if !strings.HasPrefix(names(evs), "started held takeover acquired") || evs[2]["from"] != "dotnet-1" || evs[3]["epoch"].(float64) != 1 {
		t.Fatalf("standby events after the sample crashed: %s / %v", names(evs), evs)
	}
}
