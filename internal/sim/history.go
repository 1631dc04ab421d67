package sim

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// History renders what happened around violation v, in words: every event of the processes and every request
// touching v's key, from a few lease durations before it until shortly after, at most limit lines (the newest
// kept).
func (r Result) History(v Violation, limit int) string {
	w := r.w
	l := w.cfg.LeaseDuration
	from, to := v.At-3*l, v.At+l/2
	key := strings.TrimPrefix(strings.TrimPrefix(v.Key, itemPrefix), "lease-")
	related := func(doc string) bool {
		return doc == "lease-"+key || doc == itemPrefix+key || strings.HasPrefix(doc, "run-"+key+"-") || doc == v.Key
	}
	type line struct {
		at   time.Duration
		text string
	}
	var lines []line
	for _, e := range w.log {
		if e.at < from || e.at > to || (e.key != "" && e.key != key) {
			continue
		}
		who := fmt.Sprintf("%s#%d", w.procs[e.proc].cfg.Name, e.inc)
		k := ""
		if e.key != "" {
			k = " [" + e.key + "]"
		}
		lines = append(lines, line{e.at, fmt.Sprintf("%s %-6s%s %s", fmtAt(e.at), who, k, e.text)})
	}
	for _, o := range w.ops {
		if o.call > to || o.ret < from || !related(o.doc) {
			continue
		}
		lines = append(lines, line{o.call, describeOp(w, o)})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at < lines[j].at })
	if len(lines) > limit {
		// Keep the newest lines up to the violation, and a few after it.
		cut := sort.Search(len(lines), func(i int) bool { return lines[i].at > v.At })
		after := min(len(lines)-cut, limit/10)
		start := max(0, cut+after-limit)
		lines = lines[start : cut+after]
	}
	var b strings.Builder
	for _, ln := range lines {
		b.WriteString(ln.text)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s ====== %s\n", fmtAt(v.At), v)
	return b.String()
}

// describeOp puts one request in words: who sent what, when, and what it got.
func describeOp(w *world, o op) string {
	who := fmt.Sprintf("%s#%d", w.procs[o.proc].cfg.Name, o.inc)
	what := opNames[o.kind] + " " + o.doc
	if o.cond != "" {
		what += " if-match " + o.cond
	}
	if o.kind == opPatch && o.limit >= 0 {
		what += fmt.Sprintf(" if fence ≤ %d", o.limit)
	}
	if o.fence >= 0 && o.kind != opRead {
		what += fmt.Sprintf(" (writes fence %d)", o.fence)
	}
	got := "no answer"
	if o.status != 0 {
		got = fmt.Sprint(o.status)
	}
	if o.etag != "" {
		got += " etag " + o.etag
	}
	if o.lagged {
		got += " (from a replica behind)"
	}
	if o.note != "" {
		got += " — " + o.note
	}
	return fmt.Sprintf("%s %-6s → %s; at %s: %s", fmtAt(o.call), who, what, fmtAt(o.ret), got)
}
