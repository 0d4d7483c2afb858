package train

import "context"

// batch is one batch's inputs and targets, or the error reading it.
type batch struct {
	x, t []float32
	err  error
}

// prefetcher reads batches in order on its own goroutine, one ahead of the
// engine, reusing two buffers.
type prefetcher struct {
	ready  chan *batch
	free   chan *batch
	cancel context.CancelFunc
	done   chan struct{}
}

// prefetch starts reading batches from (epoch, k) to the end of the last
// epoch with read (Dataset.ReadRows, or readRowsFloat16 for a run that
// trains on float16-rounded values).
func prefetch(ctx context.Context, d *Dataset, read func(rows []int32, x, t []float32) error, o *Order, epoch, k, epochs int) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{ready: make(chan *batch, 1), free: make(chan *batch, 2), cancel: cancel, done: make(chan struct{})}
	for range 2 {
		p.free <- &batch{x: make([]float32, o.Batch*d.InputDim), t: make([]float32, o.Batch*d.OutputDim)}
	}
	go func() {
		defer close(p.done)
		defer close(p.ready)
		for e := epoch; e < epochs; e++ {
			for ; k < o.StepsPerEpoch(); k++ {
				var b *batch
				select {
				case b = <-p.free:
				case <-ctx.Done():
					return
				}
				b.err = read(o.BatchRows(e, k), b.x, b.t)
				select {
				case p.ready <- b:
				case <-ctx.Done():
					return
				}
				if b.err != nil {
					return
				}
			}
			k = 0
		}
	}()
	return p
}

// next returns the next batch; hand it back with recycle once used.
func (p *prefetcher) next() (*batch, error) {
	b, ok := <-p.ready
	if !ok {
		return nil, context.Canceled
	}
	return b, b.err
}

func (p *prefetcher) recycle(b *batch) { p.free <- b }

// stop ends the reading goroutine and waits for it.
func (p *prefetcher) stop() {
	p.cancel()
	<-p.done
}
