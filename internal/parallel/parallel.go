package parallel

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Run calls fn(p) for every part p in [0, parts) and returns when all have
// returned. The calling goroutine and up to GOMAXPROCS-1 of the pool's
// workers take parts in turn until none is left, so that a worker whose
// thread the machine has descheduled holds up no part it has not started
// (more workers where GOMAXPROCS has shrunk since the pool grew: workers
// are never retired, and one still polling takes parts unasked); where
// the pool is in use by another Run (concurrent callers, or a Run inside
// a part), the parts run on new goroutines instead. parts below 2 run
// inline.
func Run(parts int, fn func(part int)) {
	if parts < 2 {
		if parts == 1 {
			fn(0)
		}
		return
	}
	if parts > math.MaxInt32 || !shared.TryLock() {
		runGoroutines(parts, fn)
		return
	}
	defer shared.Unlock()
	shared.run(parts, fn)
}

// Ranges is Run over parts consecutive ranges of [0, n) as even as can
// be: fn(lo, hi) for each.
func Ranges(n, parts int, fn func(lo, hi int)) {
	Run(parts, func(w int) { fn(n*w/parts, n*(w+1)/parts) })
}

func runGoroutines(parts int, fn func(int)) {
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Go(func() { fn(p) })
	}
	fn(0)
	wg.Wait()
}

var shared pool

// pool is a set of workers that take the parts of its current job. The
// fields but job are the caller's who holds the mutex.
type pool struct {
	sync.Mutex
	workers []*worker
	job     atomic.Pointer[job]
	// waiting is the job whose caller blocks on done for its last part
	// (nil when none). It names the job, not just the fact of waiting: a
	// worker descheduled between finishing the last part of one job and
	// signalling would otherwise wake the caller of the next job while
	// that job's parts still run.
	waiting atomic.Pointer[job]
	done    chan struct{}
}

// job is one Run's parts. A worker that comes late to a job finds no part
// left to take (next >= parts) and nothing to do.
type job struct {
	fn       func(int)
	parts    int32
	next     atomic.Int32 // the next part to take
	finished atomic.Int32 // parts done
}

type worker struct {
	sleeping atomic.Int32 // 1 while blocked on wake
	wake     chan struct{}
}

func (p *pool) run(parts int, fn func(int)) {
	if p.done == nil {
		p.done = make(chan struct{}, 1)
	}
	// One helper per other processor at most: more parts than that are
	// taken in turn.
	helpers := min(parts, runtime.GOMAXPROCS(0)) - 1
	for len(p.workers) < helpers {
		w := &worker{wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		go w.loop(p, p.job.Load())
	}
	j := &job{fn: fn, parts: int32(parts)}
	p.job.Store(j)
	for _, w := range p.workers[:helpers] {
		if w.sleeping.CompareAndSwap(1, 0) {
			w.wake <- struct{}{}
		}
	}
	p.work(j)
	p.wait(j)
	j.fn = nil // late workers find no part left and do not read it
}

// work takes and runs parts of j until none is left, and reports whether
// it finished j's last part.
func (p *pool) work(j *job) (last bool) {
	for {
		part := j.next.Add(1) - 1
		if part >= j.parts {
			return last
		}
		j.fn(int(part))
		last = j.finished.Add(1) == j.parts
	}
}

// wait returns when every part of j is done, blocking on done, which the
// worker that finishes the last part signals.
func (p *pool) wait(j *job) {
	if poll(func() bool { return j.finished.Load() == j.parts }) {
		return
	}
	p.waiting.Store(j)
	if j.finished.Load() == j.parts && p.waiting.CompareAndSwap(j, nil) {
		return
	}
	<-p.done
}

// loop runs parts of each job after seen.
func (w *worker) loop(p *pool, seen *job) {
	for {
		j := w.next(p, seen)
		seen = j
		if p.work(j) && p.waiting.CompareAndSwap(j, nil) {
			p.done <- struct{}{}
		}
	}
}

// next returns the pool's job once it is not seen, blocking on wake until
// then.
func (w *worker) next(p *pool, seen *job) *job {
	var j *job
	if poll(func() bool { j = p.job.Load(); return j != seen }) {
		return j
	}
	for {
		if j := p.job.Load(); j != seen {
			return j
		}
		w.sleeping.Store(1)
		if j := p.job.Load(); j != seen {
			if !w.sleeping.CompareAndSwap(1, 0) {
				<-w.wake // the caller took the flag: take its signal
			}
			return j
		}
		<-w.wake
	}
}

// pollFor is how long a worker polls for the pool's next job, and a caller
// for its job's last part, before blocking (nanoseconds; 0 blocks at
// once). Atomic so that a benchmark may change it while workers poll.
var pollFor atomic.Int64

func init() { pollFor.Store(int64(200 * time.Microsecond)) }

// poll calls done until it reports true, for pollFor at most, and returns
// its last answer.
func poll(done func() bool) bool {
	limit := time.Duration(pollFor.Load())
	if limit <= 0 {
		return done()
	}
	var deadline time.Time
	for i := 0; ; i++ {
		if done() {
			return true
		}
		if i%64 == 63 {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(limit)
			} else if now.After(deadline) {
				return false
			}
			runtime.Gosched()
		}
	}
}
