package sim

import (
	"context"
	"sync"
)

func (w *world) startJobs(ctx context.Context, p *proc, inc int, st *procStore, wg *sync.WaitGroup) {}
