package parallel

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// check runs Run(parts) with a part that counts its calls and fails
// unless each part ran once.
func check(t *testing.T, parts int) {
	t.Helper()
	counts := make([]atomic.Int32, max(parts, 0))
	Run(parts, func(p int) { counts[p].Add(1) })
	for p := range counts {
		if c := counts[p].Load(); c != 1 {
			t.Fatalf("%d parts: part %d ran %d times", parts, p, c)
		}
	}
}

// Every part runs exactly once: for part counts below, at and above the
// number of workers, back to back, after the workers have gone to sleep,
// and with counts shrinking and growing.
func TestRunEveryPartOnce(t *testing.T) {
	for _, parts := range []int{0, 1, 2, 3, 8, 2, 1, 5, 64} {
		check(t, parts)
	}
	for range 2000 {
		check(t, 2)
		check(t, 3)
	}
	for range 3 {
		time.Sleep(time.Millisecond) // the workers block
		check(t, 4)
	}
}

// Runs from several goroutines at once, and a Run inside a part, each
// still run every part once (the pool serves one, the others start
// goroutines).
func TestRunConcurrentAndNested(t *testing.T) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				check(t, 3)
			}
		})
	}
	wg.Wait()
	var inner atomic.Int32
	Run(3, func(int) { Run(2, func(int) { inner.Add(1) }) })
	if got := inner.Load(); got != 6 {
		t.Fatalf("nested runs ran %d inner parts, want 6", got)
	}
}

// Run returns only after every part has: the parts' writes are all
// visible to the caller (run under -race too).
func TestRunWaitsForAll(t *testing.T) {
	out := make([]int, 16)
	for i := range 200 {
		Run(len(out), func(p int) {
			if p%3 == 1 {
				time.Sleep(time.Duration(i%4) * 10 * time.Microsecond)
			}
			out[p] = i
		})
		for p, v := range out {
			if v != i {
				t.Fatalf("round %d: part %d's result missing after Run returned", i, p)
			}
		}
	}
}

// BenchmarkRun times a two-part Run of trivial parts after a gap of
// serial work, polling (pollFor as set) and blocking at once, against
// starting goroutines (what the engine did before): ns of the Run alone.
func BenchmarkRun(b *testing.B) {
	polled := pollFor.Load()
	defer pollFor.Store(polled)
	for _, gap := range []time.Duration{0, 20 * time.Microsecond, 200 * time.Microsecond} {
		for _, way := range []string{"poll", "block", "goroutines"} {
			b.Run(way+"/gap_"+gap.String(), func(b *testing.B) {
				pollFor.Store(polled)
				if way == "block" {
					pollFor.Store(0)
				}
				var x [2]int
				var in time.Duration
				for b.Loop() {
					for t0 := time.Now(); time.Since(t0) < gap; {
					}
					t1 := time.Now()
					if way == "goroutines" {
						runGoroutines(2, func(p int) { x[p]++ })
					} else {
						Run(2, func(p int) { x[p]++ })
					}
					in += time.Since(t1)
				}
				b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "ns/run")
			})
		}
	}
}

// Ranges covers [0, n) once, in ranges of sizes that differ by one at most.
func TestRangesCoverOnce(t *testing.T) {
	for _, c := range []struct{ n, parts int }{{10, 3}, {7, 7}, {1000, 16}, {5, 1}} {
		counts := make([]atomic.Int32, c.n)
		var mu sync.Mutex
		var sizes []int
		Ranges(c.n, c.parts, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				counts[i].Add(1)
			}
			mu.Lock()
			sizes = append(sizes, hi-lo)
			mu.Unlock()
		})
		for i := range counts {
			if n := counts[i].Load(); n != 1 {
				t.Fatalf("n %d in %d parts: index %d covered %d times", c.n, c.parts, i, n)
			}
		}
		if len(sizes) != c.parts || slices.Max(sizes)-slices.Min(sizes) > 1 {
			t.Errorf("n %d in %d parts: ranges of sizes %v", c.n, c.parts, sizes)
		}
	}
}
