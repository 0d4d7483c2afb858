// Package parallel runs the parts of a split loop on worker goroutines
// that outlive the loop, for the CPU engine's passes and matrix products
// (nn, internal/sgemm), of which a training step of a small model runs
// about a hundred, each a fraction of a millisecond.
//
// Starting a goroutine per part is cheap; what costs is waking the thread
// that runs it, which the Go runtime has parked if it found no work for a
// few microseconds (tens of microseconds on a virtual machine, per pass).
// The workers here keep watching for the next loop for a short while
// (spinWindow) after each one, yielding their processor to any other
// goroutine meanwhile, and block only when none came.
//
// Which part runs on which goroutine never changes a result: callers split
// their work into parts that depend only on the sizes and on the number of
// parts, and each part runs exactly once.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// spinWindow is how long a worker (or a waiting caller) keeps polling
// before it blocks: longer than the gap between two passes of a training
// step, short enough that an idle engine stops using the CPU at once.
const spinWindow = 100 * time.Microsecond

// Run calls fn(p) for every part p in [0, parts) and returns when all have
// returned: part 0 on the calling goroutine, the others on the pool's
// workers (one each), or on new goroutines where the pool is in use by
// another Run (concurrent callers, or a Run inside a part). parts below 2
// run inline.
func Run(parts int, fn func(part int)) {
	if parts < 2 {
		if parts == 1 {
			fn(0)
		}
		return
	}
	if !shared.TryLock() {
		runGoroutines(parts, fn)
		return
	}
	defer shared.Unlock()
	shared.run(parts, fn)
}

func runGoroutines(parts int, fn func(int)) {
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Go(func() { fn(p) })
	}
	fn(0)
	wg.Wait()
}

// maxParts bounds the parts of one Run on the pool (the job word holds the
// count in 16 bits); more run on new goroutines.
const maxParts = 1 << 15

var shared pool

// pool is a set of workers, worker w running part w of each job that has
// more than w parts. The fields but the mutex are the caller's who holds
// it.
type pool struct {
	sync.Mutex
	workers []*worker
	// job is the current job's generation (high bits) and part count (low
	// 16): one word, so that a worker sees a count and its generation
	// together. fn is set before job and stays until the job is done.
	job     atomic.Uint64
	fn      func(int)
	pending atomic.Int32 // parts of the current job not done, part 0 excluded
	// waiting is 1 while the caller blocks on done for the last part.
	waiting atomic.Int32
	done    chan struct{}
}

type worker struct {
	index    int
	sleeping atomic.Int32 // 1 while blocked on wake
	wake     chan struct{}
}

func (p *pool) run(parts int, fn func(int)) {
	if parts > maxParts {
		runGoroutines(parts, fn)
		return
	}
	for len(p.workers) < parts-1 {
		w := &worker{index: len(p.workers) + 1, wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		if p.done == nil {
			p.done = make(chan struct{}, 1)
		}
		go w.loop(p, p.job.Load())
	}
	p.fn = fn
	p.pending.Store(int32(parts - 1))
	gen := p.job.Load()>>16 + 1
	p.job.Store(gen<<16 | uint64(parts))
	for _, w := range p.workers[:parts-1] {
		if w.sleeping.CompareAndSwap(1, 0) {
			w.wake <- struct{}{}
		}
	}
	fn(0)
	p.wait()
	p.fn = nil
}

// wait returns when pending is zero: polling for spinWindow, then blocked
// on done, which the worker that finishes the last part signals.
func (p *pool) wait() {
	if spin(func() bool { return p.pending.Load() == 0 }) {
		return
	}
	p.waiting.Store(1)
	if p.pending.Load() == 0 && p.waiting.CompareAndSwap(1, 0) {
		return
	}
	<-p.done
}

// finish records that a worker's part is done, waking the caller if it
// was the last and the caller blocks.
func (p *pool) finish() {
	if p.pending.Add(-1) == 0 && p.waiting.CompareAndSwap(1, 0) {
		p.done <- struct{}{}
	}
}

// loop runs the worker's part of each job from the one after seen on.
func (w *worker) loop(p *pool, seen uint64) {
	for {
		job := w.next(p, seen)
		seen = job
		if int(job&0xffff) > w.index {
			p.fn(w.index)
			p.finish()
		}
	}
}

// next returns the job word once it differs from seen: polling for
// spinWindow, then blocked on wake.
func (w *worker) next(p *pool, seen uint64) uint64 {
	var job uint64
	changed := func() bool { job = p.job.Load(); return job != seen }
	for {
		if spin(changed) {
			return job
		}
		w.sleeping.Store(1)
		if changed() {
			if !w.sleeping.CompareAndSwap(1, 0) {
				<-w.wake // the caller took the flag: take its signal
			}
			return job
		}
		<-w.wake
	}
}

// spin polls cond, yielding the processor between polls, until it holds
// (true) or spinWindow has passed (false).
func spin(cond func() bool) bool {
	start := time.Now()
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if i&15 == 15 && time.Since(start) > spinWindow {
			return false
		}
		runtime.Gosched()
	}
}
