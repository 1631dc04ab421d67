package leasehandler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cosmoslease/cosmoslease/internal/ncrontab"
)

// The host finds a function by its folder: NAME/function.json beside host.json. The handler's jobs decide which
// folders there are, so they are written from the jobs (writeFunctions), never by hand.

// binding is the schedule a job's function.json gives the timer trigger: the literal expression its code
// fixes, or %Setting% naming the app setting that holds it (bindingName: LeaseJobs:NAME:Schedule for
// LeaseJobs__NAME__Schedule).
func binding(j Job) string {
	if s := scheduleSetting(j); s != "" {
		return "%" + bindingName(s) + "%"
	}
	return j.Schedule
}

// functionBinding is one binding of a function.json, in the order the host's documentation writes them.
type functionBinding struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Direction    string   `json:"direction"`
	Schedule     string   `json:"schedule,omitempty"`
	RunOnStartup *bool    `json:"runOnStartup,omitempty"`
	UseMonitor   *bool    `json:"useMonitor,omitempty"`
	AuthLevel    string   `json:"authLevel,omitempty"`
	Methods      []string `json:"methods,omitempty"`
}

// timerFunction is a job's function.json: the timer trigger the handler reads as "timer". useMonitor keeps the
// schedule's status in the app's storage, so the host replays an occurrence missed while the app was down
// (IsPastDue); it is ignored for schedules of more than one occurrence a minute.
func timerFunction(schedule string) []byte {
	no, yes := false, true
	return marshalFunction(map[string][]functionBinding{"bindings": {{Name: "timer", Type: "timerTrigger", Direction: "in",
		Schedule: schedule, RunOnStartup: &no, UseMonitor: &yes}}})
}

// triggerFunctionJSON is LeaseTrigger's function.json: every minute, unmonitored (no schedule status in storage,
// no replay of a tick missed while the app was down: the next minute's tick serves the trigger all the same).
func triggerFunctionJSON() []byte {
	no := false
	return marshalFunction(map[string][]functionBinding{"bindings": {{Name: "timer", Type: "timerTrigger", Direction: "in",
		Schedule: triggerSchedule, RunOnStartup: &no, UseMonitor: &no}}})
}

// statusFunctionJSON is LeaseStatus's function.json: HTTP GET with the function's key, answered through "res".
func statusFunctionJSON() []byte {
	return marshalFunction(map[string][]functionBinding{"bindings": {
		{Name: "req", Type: "httpTrigger", Direction: "in", AuthLevel: "function", Methods: []string{"get"}},
		{Name: "res", Type: "http", Direction: "out"}}})
}

func marshalFunction(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return b.Bytes()
}

// functionFiles are the function folders of the jobs: name → function.json. A job that could never load is an
// error here, so that packaging stops instead of deploying it.
func functionFiles(specs []jobSpec, problems []string) (map[string][]byte, error) {
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	files := map[string][]byte{statusFunction: statusFunctionJSON(), triggerFunction: triggerFunctionJSON()}
	for _, spec := range specs {
		if spec.err != nil {
			return nil, fmt.Errorf("job %s: %v", spec.Name, spec.err)
		}
		if spec.commandSetting != "" {
			if _, err := SplitCommand(spec.command); err != nil {
				return nil, fmt.Errorf("%s %q: %v", spec.commandSetting, spec.command, err)
			}
		}
		if spec.Schedule != "" && !strings.HasPrefix(spec.Schedule, "%") {
			if _, err := ncrontab.Parse(spec.Schedule); err != nil {
				return nil, fmt.Errorf("job %s's Schedule %v", spec.Name, err)
			}
		}
		schedule := binding(spec.Job)
		if spec.ticked {
			schedule = tickSchedule // a job with a time zone: the handler picks the ticks that are occurrences
		}
		files[spec.Name] = timerFunction(schedule)
	}
	return files, nil
}

// writeFunctions writes the function folders of the jobs into dir and lists their names on w.
func writeFunctions(dir string, specs []jobSpec, problems []string, w io.Writer) error {
	files, err := functionFiles(specs, problems)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name, "function.json"), files[name], 0o644); err != nil {
			return err
		}
		fmt.Fprintln(w, name)
	}
	return nil
}
