package memstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// marshalled is how put stored a body before withSystem: decoded into a map, the two set, marshalled again.
func marshalled(body []byte, etag string, ts int64) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return nil, false
	}
	m["_etag"], _ = json.Marshal(etag)
	m["_ts"], _ = json.Marshal(ts)
	b, _ := json.Marshal(m)
	return b, true
}

var storedBodies = []string{
	`{"id":"lease-k","leaseKey":"k","epoch":3,"released":false,"metadata":{"region":"eastus","hostname":"h"}}`,
	`{ "id" : "a",  "b" : [ 1, 2 , {"c" : "d e", "f": [[], {}, ""]} ],"n":null, "t":true , "x": -1.5e-3 }`,
	`{"id":"x","z":"<script>&amp;</script>","y":"line\u2028sep\u2029","w":"real ` + "\u2028" + ` sep","q":"\"quoted\" \\ back"}`,
	`{"id":"x","_etag":"\"old\"","_ts":1,"_rid":"r"}`,
	`{"id":"dup","a":1,"a":{"b":2},"_ts":5,"a":[3]}`,
	`{"id":"keys","\u00e9t\u00e9":1,"a<b":2,"q\"k":3,"tab\tkey":4,"ünï":5,"esc\/aped":6,"":7}`,
	`{"id":"job","job":{"cursor":"2026-12-07T10:00:00Z","pending":[{"reason":"overlap: a run was going"}]}}`,
	`{}`,
	` { } `,
	"{\n\t\"id\": \"indented\",\n\t\"v\": 1.50e3,\n\t\"o\": {\n\t\t\"k\": \"v\"\n\t}\n}",
	`{"id":"str-with-brackets","s":"}{][,:","t":"\\\"}"}`,
}

// withSystem stores exactly the bytes json.Marshal did, and refuses what is not an object.
func TestWithSystemIsWhatMarshalWrote(t *testing.T) {
	for i, b := range storedBodies {
		want, wok := marshalled([]byte(b), `"42"`, 1765100000)
		got, gok := withSystem([]byte(b), `"42"`, 1765100000)
		if wok != gok || string(got) != string(want) {
			t.Errorf("body %d %s:\n got %s (%v)\nwant %s (%v)", i, b, got, gok, want, wok)
		}
	}
	for _, b := range []string{`[1,2]`, `"s"`, `{"id":`, `not json`, `null`, `{"a":1}x`, ``} {
		if _, ok := withSystem([]byte(b), `"1"`, 1); ok {
			t.Errorf("%q: stored as an object", b)
		}
	}
}

// FuzzWithSystem: for any JSON object, the same bytes as json.Marshal.
func FuzzWithSystem(f *testing.F) {
	for _, b := range storedBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b string) {
		want, wok := marshalled([]byte(b), `"42"`, 7)
		got, gok := withSystem([]byte(b), `"42"`, 7)
		if wok != gok || string(got) != string(want) {
			t.Fatalf("%q:\n got %s (%v)\nwant %s (%v)", b, got, gok, want, wok)
		}
	})
}

func BenchmarkPut(b *testing.B) {
	body := []byte(fmt.Sprintf(`{"id":"lease-k","leaseKey":"k","leaseId":"0f3c","ownerId":"p0","acquiredAt":"2026-12-07T10:00:00Z","metadata":{"instanceId":"i","region":"eastus","hostname":"h"},"epoch":3,"renewals":7,"released":false,"leaseDurationMs":60000,"job":%s}`,
		`{"cursor":"2026-12-07T10:00:00Z","run":{"id":"run-k-1","status":"started","reason":"claimed at rank 0"},"pending":[`+strings.Repeat(`{"id":"run-k-0","status":"skipped","reason":"overlap"},`, 5)+`{}],"missed":0}`))
	b.Run("withSystem", func(b *testing.B) {
		for b.Loop() {
			withSystem(body, `"42"`, 1765100000)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			marshalled(body, `"42"`, 1765100000)
		}
	})
}
