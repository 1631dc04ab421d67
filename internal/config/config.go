// Package config reads the reference sample's configuration: appsettings.json, then appsettings.Local.json (or
// one file named by the caller), section CosmosLeasing, then environment variables in the .NET / Azure
// Functions form (CosmosLeasing__AccountEndpoint). Later sources override earlier ones; flags, applied by the
// caller, override all. Keys match case-insensitively, as in .NET configuration.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Section is the JSON section and the environment prefix.
const Section = "CosmosLeasing"

// TimerLeaseKey is the lease of the Functions handler's scheduled work (and the run records the CLI's
// inspect --runs reads) unless LeaseTimerLeaseKey names another.
const TimerLeaseKey = "timer-singleton"

// File names, in the order they are read.
const (
	BaseFile  = "appsettings.json"
	LocalFile = "appsettings.Local.json"
)

// Keys of the section.
const (
	KeyConnectionString     = "ConnectionString"
	KeyAccountEndpoint      = "AccountEndpoint"
	KeyDatabaseName         = "DatabaseName"
	KeyContainerName        = "ContainerName"
	KeyPartitionKeyPath     = "PartitionKeyPath"
	KeyDefaultLeaseDuration = "DefaultLeaseDuration"
	KeyAutoRenew            = "AutoRenew"
	KeyAutoRenewInterval    = "AutoRenewInterval"
)

var keys = []string{KeyConnectionString, KeyAccountEndpoint, KeyDatabaseName, KeyContainerName, KeyPartitionKeyPath,
	KeyDefaultLeaseDuration, KeyAutoRenew, KeyAutoRenewInterval}

// ErrInvalid is wrapped by every error about configuration that a person must fix.
var ErrInvalid = errors.New("invalid configuration")

// Raw holds the text value of each key and where it came from.
type Raw struct {
	values  map[string]string
	sources map[string]string
}

// Get returns a value and its source ("appsettings.json", "environment variable CosmosLeasing__X", …).
func (r Raw) Get(key string) (value, source string) {
	return r.values[key], r.sources[key]
}

// Set records a value from a flag or a prompt.
func (r *Raw) Set(key, value, source string) {
	if r.values == nil {
		r.values, r.sources = map[string]string{}, map[string]string{}
	}
	r.values[key], r.sources[key] = value, source
}

// Files returns the files Load reads: the one given, or the two defaults in dir.
func Files(dir, explicit string) []string {
	if explicit != "" {
		return []string{explicit}
	}
	return []string{filepath.Join(dir, BaseFile), filepath.Join(dir, LocalFile)}
}

// Load reads the files (a missing default file is skipped; a missing explicit one is an error) and the
// environment.
func Load(dir, explicit string, getenv func(string) string) (Raw, error) {
	var r Raw
	for _, path := range Files(dir, explicit) {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) && explicit == "" {
			continue
		}
		if err != nil {
			return r, fmt.Errorf("%w: cannot read %s: %v", ErrInvalid, path, err)
		}
		if err := r.merge(path, b); err != nil {
			return r, err
		}
	}
	r.fromEnv(getenv)
	return r, nil
}

// FromEnv reads only the environment, as an Azure Functions app reads its app settings.
func FromEnv(getenv func(string) string) Raw {
	var r Raw
	r.fromEnv(getenv)
	return r
}

func (r *Raw) fromEnv(getenv func(string) string) {
	for _, k := range keys {
		for _, name := range []string{Section + "__" + k, strings.ToUpper(Section + "__" + k)} {
			if v := getenv(name); v != "" {
				r.Set(k, v, "environment variable "+name)
				break
			}
		}
	}
}

func (r *Raw) merge(path string, b []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(path, b, err))
	}
	var section json.RawMessage
	for k, v := range doc {
		if strings.EqualFold(k, Section) {
			section = v
		}
	}
	if section == nil {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(section, &fields); err != nil {
		return fmt.Errorf("%w: %s: %q must be a JSON object", ErrInvalid, path, Section)
	}
	name := filepath.Base(path)
	for k, v := range fields {
		canon := ""
		for _, known := range keys {
			if strings.EqualFold(k, known) {
				canon = known
			}
		}
		if canon == "" {
			continue // other keys belong to other readers of the same file
		}
		var text string
		switch {
		case bytes.HasPrefix(bytes.TrimSpace(v), []byte(`"`)):
			_ = json.Unmarshal(v, &text)
		case string(v) == "null":
			continue
		case bytes.HasPrefix(bytes.TrimSpace(v), []byte("{")) || bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")):
			return fmt.Errorf("%w: %s: %s.%s must be a string, not %s", ErrInvalid, path, Section, canon, v)
		default:
			text = string(v) // numbers and booleans, as .NET flattens them
		}
		r.Set(canon, text, name)
	}
	return nil
}

// describeJSONError turns a JSON syntax error into "file:line:column: what".
func describeJSONError(path string, b []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	offset := int64(-1)
	switch {
	case errors.As(err, &se):
		offset = se.Offset
	case errors.As(err, &te):
		offset = te.Offset
	}
	if offset < 0 {
		return fmt.Sprintf("%s: %v", path, err)
	}
	line, col := 1, 1
	for i := int64(0); i < offset-1 && i < int64(len(b)); i++ {
		if b[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("%s:%d:%d: not valid JSON: %v", path, line, col, err)
}

var placeholder = regexp.MustCompile(`\[[A-Z0-9_]+\]`)

// Placeholder returns the template placeholder in a value, such as [YOUR_COSMOS_ACCOUNT], or "".
func Placeholder(value string) string { return placeholder.FindString(value) }

// ParseDuration accepts .NET TimeSpan text ("00:01:00", "1.02:03:04.5") and Go durations ("60s", "1m30s").
// It refuses negative values.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var d time.Duration
	var err error
	if strings.Contains(s, ":") {
		d, err = parseTimeSpan(s)
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			err = fmt.Errorf("%q is not a duration: write it as 00:01:00 or 60s", s)
		}
	}
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

var timeSpan = regexp.MustCompile(`^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$`)

func parseTimeSpan(s string) (time.Duration, error) {
	m := timeSpan.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a TimeSpan: write it as hh:mm:ss, such as 00:01:00", s)
	}
	num := func(t string) int64 {
		if t == "" {
			return 0
		}
		n, _ := strconv.ParseInt(t, 10, 64)
		return n
	}
	days, hours, mins, secs := num(m[2]), num(m[3]), num(m[4]), num(m[5])
	if hours > 23 || mins > 59 || secs > 59 {
		return 0, fmt.Errorf("%q is not a TimeSpan: hours must be below 24 and minutes and seconds below 60", s)
	}
	if days > 10000 {
		return 0, fmt.Errorf("%q is too long", s)
	}
	frac := m[6]
	var ns int64
	if frac != "" {
		ns = num((frac + "0000000")[:7]) * 100
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(hours)*time.Hour + time.Duration(mins)*time.Minute +
		time.Duration(secs)*time.Second + time.Duration(ns)
	if m[1] == "-" {
		d = -d
	}
	return d, nil
}

// FormatTimeSpan writes a duration as .NET TimeSpan text, the form the files use.
func FormatTimeSpan(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	h := int64(d / time.Hour)
	m := int64(d/time.Minute) % 60
	s := int64(d/time.Second) % 60
	out := fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	if h >= 24 {
		out = fmt.Sprintf("%d.%02d:%02d:%02d", h/24, h%24, m, s)
	}
	if frac := d % time.Second; frac != 0 {
		out += fmt.Sprintf(".%07d", int64(frac/100))
	}
	if neg {
		out = "-" + out
	}
	return out
}

// ParseBool accepts the forms .NET accepts for booleans.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}
