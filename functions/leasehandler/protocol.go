package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The custom-handler protocol: the host POSTs an invocation to /{FunctionName}; the handler answers with the
// function's outputs, log lines and return value. The host keeps the logs only from a 2xx answer, so every
// invocation that reached the handler is answered 200, with failures in Logs and ReturnValue.

// invokeRequest is what the host sends.
type invokeRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// invokeResponse is what the handler answers.
type invokeResponse struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// httpOutput is the "res" output of an HTTP-triggered function.
type httpOutput struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

// timerInfo is the timer trigger's data. Field names match whatever their case (the host has sent both
// PascalCase and camelCase); ScheduleStatus is null for schedules that run more than once a minute.
type timerInfo struct {
	ScheduleStatus *scheduleStatus
	IsPastDue      bool
}

// scheduleStatus is the timer's monitor record. Last is the previous run (0001-01-01 before the first),
// Next the occurrence now firing during a scheduled run, or the one to come during a manual run.
type scheduleStatus struct {
	Last        flexTime
	Next        flexTime
	LastUpdated flexTime
}

// sysMetadata is Metadata.sys.
type sysMetadata struct {
	MethodName string
	UtcNow     flexTime
	RandGuid   string
}

// flexTime reads the timestamp forms the host writes: RFC 3339 with any number of fraction digits, with or
// without an offset (no offset means UTC), the invariant culture's "MM/dd/yyyy HH:mm:ss", empty or null.
// 0001-01-01 (DateTime.MinValue, "never") reads as the zero time.
type flexTime struct{ time.Time }

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"01/02/2006 15:04:05",
	"1/2/2006 3:04:05 PM",
}

func (f *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*f = flexTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp %s is not a string", b)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		*f = flexTime{}
		return nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() <= 1 {
				t = time.Time{}
			}
			*f = flexTime{t.UTC()}
			return nil
		}
	}
	return fmt.Errorf("timestamp %q is in no known form", s)
}

// parseTimer reads the timer binding from the request: an object, or a JSON string holding one.
func parseTimer(req invokeRequest) (timerInfo, sysMetadata, error) {
	var info timerInfo
	var sys sysMetadata
	raw, ok := req.Data["timer"]
	if !ok {
		return info, sys, fmt.Errorf("the request has no Data.timer: is the binding in LeaseTimer/function.json named \"timer\"?")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var inner string
		if err := json.Unmarshal(raw, &inner); err != nil {
			return info, sys, fmt.Errorf("Data.timer: %v", err)
		}
		raw = []byte(inner)
	}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &info); err != nil {
			return info, sys, fmt.Errorf("Data.timer: %v", err)
		}
	}
	if m, ok := req.Metadata["sys"]; ok {
		_ = json.Unmarshal(m, &sys) // metadata is informational; a stranger form must not fail the tick
	}
	return info, sys, nil
}
