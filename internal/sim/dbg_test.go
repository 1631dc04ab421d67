package sim

import (
	"fmt"
	"testing"
	"time"
)

func TestDbgSeed(t *testing.T) {
	r := Run(t, expand(*flagSeed, 4*time.Hour))
	for _, e := range r.w.log {
		if e.key == *flagWhat && e.at > 72*time.Minute && e.at < 74*time.Minute {
			fmt.Printf("%s p%d#%d %s\n", fmtAt(e.at), e.proc, e.inc, e.text)
		}
	}
	for _, o := range r.w.ops {
		if o.doc == "lease-"+*flagWhat && o.kind != opRead && o.call > 72*time.Minute && o.call < 74*time.Minute {
			fmt.Println(describeOp(r.w, o))
		}
	}
}
