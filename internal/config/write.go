package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Pair is one key of the CosmosLeasing section, written in the order given.
type Pair struct{ Key, Value string }

// WriteLocal writes the CosmosLeasing section to path with mode 0600, replacing the section in an existing file
// and keeping its other sections. The file is written to a temporary name and renamed, so a failure never
// leaves it half-written.
func WriteLocal(path string, pairs []Pair) error { return WriteSection(path, Section, pairs) }

// WriteSection is WriteLocal for any section.
func WriteSection(path, name string, pairs []Pair) error {
	top := map[string]json.RawMessage{}
	var order []string
	if b, err := os.ReadFile(path); err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := json.Unmarshal(b, &top); err != nil {
			return fmt.Errorf("%w: %s exists but %s; fix or remove it first", ErrInvalid, path, describeJSONError(path, b, err))
		}
		order = topLevelOrder(dec)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var section bytes.Buffer
	section.WriteString("{\n")
	for i, p := range pairs {
		k, _ := json.Marshal(p.Key)
		v, _ := json.Marshal(p.Value)
		fmt.Fprintf(&section, "    %s: %s", k, v)
		if i < len(pairs)-1 {
			section.WriteString(",")
		}
		section.WriteString("\n")
	}
	section.WriteString("  }")
	for k := range top {
		if k != name && equalFold(k, name) {
			delete(top, k)
		}
	}
	if _, ok := top[name]; !ok {
		order = append(order, name)
	}
	top[name] = section.Bytes()

	var out bytes.Buffer
	out.WriteString("{\n")
	written := 0
	for _, k := range order {
		v, ok := top[k]
		if !ok {
			continue
		}
		name, _ := json.Marshal(k)
		if written > 0 {
			out.WriteString(",\n")
		}
		fmt.Fprintf(&out, "  %s: %s", name, v)
		written++
		delete(top, k)
	}
	out.WriteString("\n}\n")

	tmp, err := os.CreateTemp(filepath.Dir(path), ".appsettings-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// topLevelOrder lists the top-level keys of a JSON object in file order.
func topLevelOrder(dec *json.Decoder) []string {
	var keys []string
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// ReadSection returns the string values of one top-level section of a settings file; nil when the file or the
// section is missing.
func ReadSection(path, name string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(path, b, err))
	}
	for k, v := range top {
		if equalFold(k, name) {
			var m map[string]string
			if err := json.Unmarshal(v, &m); err != nil {
				return nil, fmt.Errorf("%w: %s: section %s must hold strings", ErrInvalid, path, name)
			}
			return m, nil
		}
	}
	return nil, nil
}
