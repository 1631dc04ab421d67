package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// The scenario the reference sample cannot show: a holder frozen past its lease, a standby taking over, and the
// frozen holder resuming and writing, refused by Cosmos DB through the fence.
const (
	counterID = "orders-counter"
	lease     = "critical-section-lock"
)

var counterLine = regexp.MustCompile(`Counter: (\d+) \(epoch (\d+)\)`)

// counters returns the counter values and epochs a process printed, in order.
func (d *demo) counters(name string) (values, epochs []int64) {
	d.mu.Lock()
	text := d.logs[name].String()
	d.mu.Unlock()
	for _, m := range counterLine.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		e, _ := strconv.ParseInt(m[2], 10, 64)
		values, epochs = append(values, v), append(epochs, e)
	}
	return values, epochs
}

// fresh starts the log of a process name anew, for a name used in an earlier scenario.
func (d *demo) fresh(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logs[name] = &strings.Builder{}
}

func (d *demo) fencedWrites(endpoint string) error {
	const holder, standby = "us-east-1", "eu-west-1"
	d.say("Scenario 4 — a paused holder meets the fence: %s holds the lease and, on every work item, increments the counter item %q\n"+
		"  through the lease's fence (a write Cosmos DB applies only if no later epoch has written the item)", holder, counterID)
	d.say("%s runs with its lease check before each work item turned off (a hidden flag): it stands for a pause that falls\n"+
		"  between the check and the write, which no lease can prevent", holder)
	d.fresh(holder)
	frozen, frozenCode, err := d.start(holder, append([]string{"run", "--emulator", "--instance", holder, "--region", "us-east",
		"--fence-counter", counterID, "--skip-lease-check"}, timings...)...)
	if err != nil {
		return err
	}
	if err := d.waitFor(holder, "| Counter: 2 ", 30*time.Second); err != nil {
		return err
	}
	d.fresh(standby)
	_, standbyCode, err := d.start(standby, append([]string{"run", "--emulator", "--instance", standby, "--region", "eu-west", "--wait",
		"--hold-for", "5s", "--fence-counter", counterID}, timings...)...)
	if err != nil {
		return err
	}
	if err := d.waitFor(standby, "Standing by", 20*time.Second); err != nil {
		return err
	}
	if err := frozen.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	values, epochs := d.counters(holder)
	oldEpoch := epochs[len(epochs)-1]
	d.say("Froze %s with SIGSTOP, as a GC pause or a stopped VM would, after it counted to %d at epoch %d: it cannot renew,\n"+
		"  so its lease runs out and %s takes over", holder, values[len(values)-1], oldEpoch, standby)
	if err := d.waitFor(standby, "LOCK ACQUIRED", 30*time.Second); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, _ := d.counters(standby); len(v) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scenario 4: %s did not count twice within 20 s of taking over", standby)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, newEpochs := d.counters(standby)
	newEpoch := newEpochs[0]
	d.say("%s holds epoch %d and counts on. Now %s resumes (SIGCONT): it does not know it lost the lease, and its next\n"+
		"  work item increments the counter at epoch %d", standby, newEpoch, holder, oldEpoch)
	if err := frozen.Process.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	select {
	case c := <-frozenCode:
		if c != 4 {
			return fmt.Errorf("scenario 4: the resumed holder exited %d, want 4 (fenced off)", c)
		}
	case <-time.After(30 * time.Second):
		_ = frozen.Process.Kill()
		return fmt.Errorf("scenario 4: the resumed holder was not fenced off within 30 s")
	}
	refusal := fmt.Sprintf("was written at epoch %d, after this holder's epoch %d", newEpoch, oldEpoch)
	if err := d.waitFor(holder, refusal, time.Second); err != nil {
		return err
	}
	if c := <-standbyCode; c != 0 {
		return fmt.Errorf("scenario 4: the standby exited %d, want 0", c)
	}
	standbyValues, _ := d.counters(standby)
	last := standbyValues[len(standbyValues)-1]
	value, fence, err := readCounter(endpoint)
	if err != nil {
		return err
	}
	if value != last || fence != newEpoch {
		return fmt.Errorf("scenario 4: the counter reads %d at epoch %d; want %s's last value %d at epoch %d", value, fence, standby, last, newEpoch)
	}
	d.say("Cosmos DB refused %s's write, and it stopped (exit code 4): its increment was conditional on the version of the\n"+
		"  counter it wrote last, at epoch %d, and epoch %d had written since. The counter reads %d at epoch %d, the last value\n"+
		"  %s wrote: no increment from the paused holder was applied", holder, oldEpoch, newEpoch, value, fence, standby)
	return nil
}

// readCounter reads the counter item as any client of the account would.
func readCounter(endpoint string) (value, fence int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cosmoslease.Open(ctx, cosmoslease.Options{ConnectionString: emulator.ConnectionString(endpoint), OwnerID: "demo"})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	resp, err := c.Container().ReadItem(ctx, azcosmos.NewPartitionKeyString(lease), counterID, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("read the counter: %w", err)
	}
	var item struct{ Value, Fence int64 }
	if err := json.Unmarshal(resp.Value, &item); err != nil {
		return 0, 0, err
	}
	return item.Value, item.Fence, nil
}
