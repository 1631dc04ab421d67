package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The container's history, checked for linearizability per document with porcupine: every read, create,
// replace and patch, as its caller saw it. A request whose caller got no answer (lost, timed out, cut off) may
// have been applied or not: its output is unknown, and it may take either outcome, at any point between its call
// and the moment the world was done with it (after that it can no longer be applied). A 409 or 412 answer to the
// SDK's retry of an applied write is two operations: the applied one, unanswered, and the retry. Reads that the
// fault layer answered from a replica behind are left out (Session consistency allows them; the store's rule
// that they are never behind the read's session token is memstore's, tested against the server).

// docState is a document as the model sees it. etag "?" is a version an unanswered write produced: the next
// operation that shows a version names it.
type docState struct {
	exists bool
	etag   string
	fence  int64 // -1: no fence field
}

type linInput struct {
	kind  opKind
	cond  string
	fence int64
	limit int64
}

type linOutput struct {
	status int // 0: unknown
	etag   string
}

func linModel(init docState) porcupine.Model {
	nd := porcupine.NondeterministicModel{
		Init: func() []any { return []any{init} },
		Step: func(st, in, out any) []any {
			s, i, o := st.(docState), in.(linInput), out.(linOutput)
			matches := func(e string) (docState, bool) {
				if s.etag == "?" {
					n := s
					n.etag = e
					return n, true
				}
				return s, s.etag == e
			}
			// applied is the state after the write, when it can apply in s.
			applied := func(etag string) (docState, bool) {
				switch i.kind {
				case opCreate:
					if s.exists {
						return s, false
					}
					return docState{exists: true, etag: etag, fence: i.fence}, true
				case opReplace:
					if !s.exists || i.cond != "" && s.etag != "?" && s.etag != i.cond {
						return s, false
					}
					return docState{exists: true, etag: etag, fence: i.fence}, true
				case opPatch:
					if !s.exists || i.cond != "" && s.etag != "?" && s.etag != i.cond {
						return s, false
					}
					if i.limit >= 0 && s.fence > i.limit {
						return s, false
					}
					f := s.fence
					if i.fence >= 0 {
						f = i.fence
					}
					return docState{exists: true, etag: etag, fence: f}, true
				}
				return s, false
			}
			switch {
			case i.kind == opRead && o.status == 0:
				return []any{s}
			case i.kind == opRead && o.status == 404:
				if !s.exists {
					return []any{s}
				}
				return nil
			case i.kind == opRead && o.status == 200:
				if n, ok := matches(o.etag); ok && s.exists {
					return []any{n}
				}
				return nil
			case o.status == 0: // a write whose outcome the caller never learnt
				if n, ok := applied("?"); ok {
					return []any{s, n}
				}
				return []any{s}
			case o.status == 200 || o.status == 201:
				if n, ok := applied(o.etag); ok {
					return []any{n}
				}
				return nil
			case o.status == 404:
				if !s.exists {
					return []any{s}
				}
				return nil
			case o.status == 409:
				if s.exists {
					return []any{s}
				}
				return nil
			case o.status == 412:
				if !s.exists {
					return nil
				}
				if _, ok := applied("x"); !ok || s.etag == "?" {
					return []any{s}
				}
				return nil
			}
			return []any{s} // refusals (400, 429, 503): not applied
		},
		Equal: func(a, b any) bool { return a.(docState) == b.(docState) },
		DescribeOperation: func(in, out any) string {
			i, o := in.(linInput), out.(linOutput)
			return fmt.Sprintf("%s cond=%q fence=%d limit=%d → %d %s", opNames[i.kind], i.cond, i.fence, i.limit, o.status, o.etag)
		},
	}
	return nd.ToModel()
}

// checkLinearizable checks the history of every document. A document's history is cut where no request was in
// flight (a quiescent point), and each piece is checked from the document's actual state at its start, as the
// container held it then: porcupine's search grows with the length of what it checks, and the pieces are short.
func (w *world) checkLinearizable(timeout time.Duration) {
	byDoc := map[string][]int32{} // indices into w.ops
	for i := range w.ops {
		o := &w.ops[i]
		if o.kind == opQuery || o.doc == "" || o.lagged || o.status == 429 || o.status == 503 || o.status == 400 || isSpell404(*o) {
			continue
		}
		if o.ret < o.call {
			o.ret = o.call
		}
		byDoc[o.doc] = append(byDoc[o.doc], int32(i))
	}
	for doc, idx := range byDoc {
		sort.SliceStable(idx, func(i, j int) bool { return w.ops[idx[i]].call < w.ops[idx[j]].call })
		ops := func(yield func(int, *op) bool) {
			for i, k := range idx {
				if !yield(i, &w.ops[k]) {
					return
				}
			}
		}
		var piece []porcupine.Operation
		init := docState{fence: -1}
		var reach time.Duration // the latest return so far
		flush := func(next time.Duration) {
			if len(piece) > 0 {
				w.linearPiece(doc, init, piece, timeout)
			}
			piece = piece[:0]
			init = w.stateAt(doc, next)
		}
		for i, o := range ops {
			if i > 0 && o.call > reach {
				flush(reach + (o.call-reach)/2)
			}
			reach = max(reach, o.ret)
			piece = append(piece, porcupine.Operation{ClientId: int(o.proc), Call: int64(o.call), Return: int64(o.ret),
				Input: linInput{kind: o.kind, cond: o.cond, fence: o.fence, limit: o.limit}, Output: linOutput{status: o.status, etag: o.etag}})
		}
		flush(reach)
	}
}

func (w *world) linearPiece(doc string, init docState, piece []porcupine.Operation, timeout time.Duration) {
	result := porcupine.Ok
	if len(piece) == 1 {
		// One operation alone: linearizable exactly when the model can take it from the initial state (what
		// porcupine would find, without its machinery; most pieces are one request).
		m := linModel(init)
		if ok, _ := m.Step(m.Init(), piece[0].Input, piece[0].Output); !ok {
			result = porcupine.Illegal
		}
	} else {
		result = porcupine.CheckOperationsTimeout(linModel(init), piece, timeout)
	}
	switch result {
	case porcupine.Illegal:
		w.viol = append(w.viol, Violation{At: time.Duration(piece[0].Call), Check: checkLinear, Key: doc,
			Text: fmt.Sprintf("the container's history of %s from %s (%d operations, starting from %s) is not linearizable",
				doc, fmtAt(time.Duration(piece[0].Call)), len(piece), init)})
	case porcupine.Unknown:
		w.unknownLinear++
	}
}

// stateAt is the document as the container held it at t, from the writes it applied.
func (w *world) stateAt(doc string, t time.Duration) docState {
	ws := w.rec.writes[doc]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].at > t })
	if i == 0 {
		return docState{fence: -1}
	}
	return ws[i-1].state
}

func (s docState) String() string {
	if !s.exists {
		return "no document"
	}
	return fmt.Sprintf("version %s, fence %d", s.etag, s.fence)
}

func isSpell404(o op) bool { return o.note == "read session not available (404/1002)" }

func (w *world) firstOp(doc string) time.Duration {
	for _, o := range w.ops {
		if o.doc == doc {
			return o.call
		}
	}
	return 0
}
