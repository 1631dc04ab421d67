package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"00:01:00", time.Minute, ""},
		{"00:00:40", 40 * time.Second, ""},
		{"1.02:03:04.5", 26*time.Hour + 3*time.Minute + 4*time.Second + 500*time.Millisecond, ""},
		{"00:00:00.0000001", 100 * time.Nanosecond, ""},
		{"01:30", time.Hour + 30*time.Minute, ""}, // .NET reads hh:mm
		{"60s", time.Minute, ""},
		{"1m30s", 90 * time.Second, ""},
		{" 00:00:05 ", 5 * time.Second, ""},
		{"", 0, "empty"},
		{"soon", 0, "not a duration"},
		{"-00:00:05", 0, "negative"},
		{"-5s", 0, "negative"},
		{"00:60:00", 0, "below 60"},
		{"24:00:00", 0, "below 24"},
		{"1:2:3:4", 0, "not a TimeSpan"},
	} {
		got, err := ParseDuration(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadPrecedenceAndCase(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, BaseFile), []byte(`{"CosmosLeasing":{"AccountEndpoint":"https://base/","DatabaseName":"BaseDb","AutoRenew":true,"DefaultLeaseDuration":"00:01:00"},"Other":{"x":1}}`), 0o644)
	os.WriteFile(filepath.Join(dir, LocalFile), []byte(`{"cosmosleasing":{"databasename":"LocalDb","ContainerName":"LocalC"}}`), 0o600)
	env := map[string]string{"COSMOSLEASING__CONTAINERNAME": "EnvC"}
	r, err := Load(dir, "", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][2]string{
		KeyAccountEndpoint:      {"https://base/", "appsettings.json"},
		KeyDatabaseName:         {"LocalDb", "appsettings.Local.json"},
		KeyContainerName:        {"EnvC", "environment variable COSMOSLEASING__CONTAINERNAME"},
		KeyAutoRenew:            {"true", "appsettings.json"},
		KeyDefaultLeaseDuration: {"00:01:00", "appsettings.json"},
	} {
		if v, src := r.Get(key); v != want[0] || src != want[1] {
			t.Errorf("%s = %q from %q, want %q from %q", key, v, src, want[0], want[1])
		}
	}
	if _, err := Load(dir, filepath.Join(dir, "missing.json"), func(string) string { return "" }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing explicit file: %v", err)
	}
}

func TestWriteLocalIsAtomicAndPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LocalFile)
	os.WriteFile(path, []byte("{ not json"), 0o644)
	if err := WriteLocal(path, []Pair{{Key: "AccountEndpoint", Value: "https://x/"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("overwrote a broken file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "{ not json" {
		t.Fatalf("broken file changed: %s", b)
	}
	os.Remove(path)
	if err := WriteLocal(path, []Pair{{Key: "AccountEndpoint", Value: "https://x/"}}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left temporary files: %v", entries)
	}
	r, err := Load(dir, "", func(string) string { return "" })
	if v, _ := r.Get(KeyAccountEndpoint); err != nil || v != "https://x/" {
		t.Fatalf("read back: %q %v", v, err)
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"00:01:00", "1.02:03:04.5", "60s", "-1", "99:99:99", "1.:", "00:00:00.12345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		if strings.Contains(s, ":") {
			back, err := ParseDuration(FormatTimeSpan(d))
			if err != nil || back != d {
				t.Fatalf("round trip of %q: %v → %q → %v, %v", s, d, FormatTimeSpan(d), back, err)
			}
		}
	})
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"CosmosLeasing":{"AccountEndpoint":"https://a/","AutoRenew":true,"DefaultLeaseDuration":"00:01:00"}}`))
	f.Add([]byte(`{"CosmosLeasing":[1]}`))
	f.Add([]byte(`{"CosmosLeasing":{"DatabaseName":{"x":1}}}`))
	f.Add([]byte("{\n\"a\":,}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, BaseFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir, "", func(string) string { return "" })
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not marked invalid: %v", err)
		}
	})
}
