package faultproxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Replicas models the replicas of a Session-consistency account in front of a server that keeps one copy and
// sends no session tokens (the local test server). Every successful document write gets a log sequence number
// and a session token in its answer, as Cosmos DB gives. A point read can then be answered by a replica that
// lags one write behind on that document — unless the read carries a session token naming a write that replica
// has not applied: then, as in Cosmos DB, an up-to-date replica answers. This is what a client sees when it
// reads after its own write without passing that write's token: possibly the version before its write.
//
// The model knows only the writes that pass through it; writes that bypass it simply make its history older,
// which a lagging replica is allowed to be.
type Replicas struct {
	mu   sync.Mutex
	lsn  int64
	docs map[string][]version // document path → its two newest versions, oldest first
}

type version struct {
	lsn  int64
	body []byte // nil: the document did not exist
}

// NewReplicas starts an empty model.
func NewReplicas() *Replicas { return &Replicas{docs: map[string][]version{}} }

const sessionHeader = "x-ms-session-token"

func sessionToken(lsn int64) string { return "0:-1#" + strconv.FormatInt(lsn, 10) }

// sessionLSN reads the log sequence number of a token; 0 when there is none.
func sessionLSN(token string) int64 {
	n, _ := store.SessionLSN(token)
	return n
}

// docPath names the document a request is about: …/docs/{id}, or for a create, the id in its body.
func docPath(r *http.Request, body []byte) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	if strings.Contains(p, "/docs/") {
		return p
	}
	if strings.HasSuffix(p, "/docs") && r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/query+json") {
		var d struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &d) == nil && d.ID != "" {
			return p + "/" + d.ID
		}
	}
	return ""
}

// Observe records the answer to a document request and gives it a session token: a successful write becomes
// the document's newest version (the request body with the answer's ETag and time), a point read's answer
// confirms or updates it. Call it for every document request that reached the server.
func (m *Replicas) Observe(r *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	path := docPath(r, reqBody)
	if path == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case status >= 200 && status < 300 && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		m.lsn++
		m.push(path, version{lsn: m.lsn, body: stamp(reqBody, header)})
		header.Set(sessionHeader, sessionToken(m.lsn))
	case status >= 200 && status < 300 && r.Method == http.MethodDelete:
		m.lsn++
		m.push(path, version{lsn: m.lsn})
		header.Set(sessionHeader, sessionToken(m.lsn))
	case r.Method == http.MethodPatch && status >= 200 && status < 300:
		// The patched body is not known here: forget the history, so no lagging answer can be wrong.
		m.lsn++
		delete(m.docs, path)
		header.Set(sessionHeader, sessionToken(m.lsn))
	case r.Method == http.MethodGet && (status == http.StatusOK || status == http.StatusNotFound):
		var body []byte
		if status == http.StatusOK {
			body = bytes.Clone(respBody)
		}
		v := m.docs[path]
		if len(v) == 0 || store.ETagOf(v[len(v)-1].body) != store.ETagOf(body) {
			// A version written behind the model's back (or never seen): the newest from now on.
			m.lsn++
			m.push(path, version{lsn: m.lsn, body: body})
		}
		header.Set(sessionHeader, sessionToken(m.lsn))
	}
}

func (m *Replicas) push(path string, v version) {
	vs := append(m.docs[path], v)
	if len(vs) > 2 {
		vs = vs[len(vs)-2:]
	}
	m.docs[path] = vs
}

// Lagging answers a point read as a replica one write behind on the document would, if the read's session
// token allows it; ok is false when an up-to-date replica must answer (no older version is known, or the token
// names the newest write).
func (m *Replicas) Lagging(r *http.Request) (status int, body []byte, header http.Header, ok bool) {
	if r.Method != http.MethodGet {
		return 0, nil, nil, false
	}
	path := docPath(r, nil)
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.docs[path]
	if path == "" || len(vs) < 2 || sessionLSN(r.Header.Get(sessionHeader)) >= vs[1].lsn {
		return 0, nil, nil, false
	}
	old := vs[0]
	header = http.Header{"Content-Type": {"application/json"}, sessionHeader: {sessionToken(old.lsn)},
		"Date": {time.Now().UTC().Format(http.TimeFormat)}, "x-ms-request-charge": {"1"}}
	if old.body == nil {
		return http.StatusNotFound, []byte(`{"code":"NotFound","message":"Entity with the specified id does not exist in the system."}`), header, true
	}
	header.Set("ETag", store.ETagOf(old.body))
	return http.StatusOK, bytes.Clone(old.body), header, true
}

// stamp adds the system properties a stored document has: _etag from the answer's ETag, _ts from its Date.
func stamp(body []byte, header http.Header) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	m["_etag"], _ = json.Marshal(header.Get("ETag"))
	ts := time.Now().Unix()
	if t, err := http.ParseTime(header.Get("Date")); err == nil {
		ts = t.Unix()
	}
	m["_ts"], _ = json.Marshal(ts)
	out, _ := json.Marshal(m)
	return out
}
