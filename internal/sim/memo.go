package sim

import (
	"bytes"
	"maps"
	"sync"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
)

// decodeMemo is leasedoc.Decode for the clients of one world, remembering the last versions of each document it
// decoded: every standby polls the lease document several times per version, and decoding it was the largest
// cost of a simulation (docs/benchmarks.md). The answer is the one leasedoc.Decode gives for the same bytes (it
// is a function of the bytes and the id asked for alone), and each caller gets a copy of its own, which it may
// change. Errors are not remembered.
type decodeMemo struct {
	mu   sync.Mutex
	docs map[string][memoDepth]memoEntry // by the id asked for; newest first
}

// memoDepth is how many versions of a document are remembered: a read that a lagging replica answered asks for
// an older version between reads of the newest.
const memoDepth = 2

type memoEntry struct {
	body []byte
	doc  *leasedoc.Doc // never handed out: callers get copies
}

func newDecodeMemo() *decodeMemo { return &decodeMemo{docs: map[string][memoDepth]memoEntry{}} }

// decode is leasedoc.Decode(body, wantID).
func (m *decodeMemo) decode(body []byte, wantID string) (*leasedoc.Doc, error) {
	m.mu.Lock()
	es := m.docs[wantID]
	for _, e := range es {
		if e.doc != nil && bytes.Equal(e.body, body) {
			m.mu.Unlock()
			return copyDoc(e.doc), nil
		}
	}
	m.mu.Unlock()
	d, err := leasedoc.Decode(body, wantID)
	if err != nil {
		return d, err
	}
	m.mu.Lock()
	es = m.docs[wantID]
	copy(es[1:], es[:memoDepth-1])
	es[0] = memoEntry{body: bytes.Clone(body), doc: copyDoc(d)}
	m.docs[wantID] = es
	m.mu.Unlock()
	return d, nil
}

// copyDoc copies d and everything it refers to.
func copyDoc(d *leasedoc.Doc) *leasedoc.Doc {
	c := *d
	c.Metadata.Extra = maps.Clone(d.Metadata.Extra)
	c.Job = bytes.Clone(d.Job)
	return &c
}
