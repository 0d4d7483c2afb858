package retrieval_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/retrieval/searchtest"
)

// The CPU searcher passes the implementation-agnostic suite with its
// defaults and with blockings that put block, tile and window edges
// everywhere (an odd number of key panels in a tile among them), on one
// and on several workers, with each set of panel kernels this CPU has.
func TestCPUSearcher(t *testing.T) {
	for _, kernels := range retrieval.Kernels() {
		t.Run(kernels, func(t *testing.T) {
			defer retrieval.UseKernels(kernels)()
			for _, s := range []*retrieval.CPUSearcher{
				{},
				retrieval.SmallSearcher(1, 1, 1),
				retrieval.SmallSearcher(5, 64, 2),
				retrieval.SmallSearcher(4, 1000, 3),
				retrieval.SmallSearcher(200, 1<<20, 4),
				retrieval.SmallSearcher(48, 1<<14, 2),
				retrieval.SmallSearcher(21, 1000, 2),
			} {
				name := "defaults"
				if s.Workers != 0 {
					name = fmt.Sprintf("workers%d", s.Workers)
				}
				t.Run(name, func(t *testing.T) { searchtest.Run(t, s) })
			}
		})
	}
}

// A budget too small for the candidate lists is an error naming the
// budget, not an allocation failure.
func TestCPUSearcherBudget(t *testing.T) {
	keys, _ := searchtest.Keys(t, 4, searchtest.Segment{Rows: 10, Data: make([]float32, 40)})
	s := &retrieval.CPUSearcher{MemoryBudget: 1 << 20}
	_, err := s.Search(context.Background(), make([]float32, 4), 1, keys, 1_000_000)
	if err != nil {
		t.Fatalf("k beyond the keys is cut to the keys: %v", err)
	}
	big, _ := searchtest.Keys(t, 4, searchtest.Segment{Rows: 100_000, Data: make([]float32, 400_000)})
	_, err = s.Search(context.Background(), make([]float32, 4), 1, big, 90_000)
	if err == nil || !strings.Contains(err.Error(), "memory budget") || !strings.Contains(err.Error(), "smaller k") {
		t.Fatalf("top-90000 in 1 MiB: error %v, want one about the memory budget, offering a smaller k", err)
	}
	// Keys too wide for the budget whatever k: no smaller k is offered.
	const dim = 1 << 16
	wide, _ := searchtest.Keys(t, dim, searchtest.Segment{Rows: 2, Data: make([]float32, 2*dim)})
	_, err = s.Search(context.Background(), make([]float32, dim), 1, wide, 1)
	if err == nil || !strings.Contains(err.Error(), "memory budget") || strings.Contains(err.Error(), "smaller k") {
		t.Fatalf("top-1 of %d-wide keys in 1 MiB: error %v, want one about the memory budget, offering no smaller k", dim, err)
	}
}

// Many threads and a small budget: the search runs on fewer workers
// (no more than the tiles, and than the budget holds) and gives the
// reference answer, where one worker per thread was refused (16 MiB
// held 31 of them; 512 MiB, about a thousand).
func TestCPUSearcherFewerWorkersThanThreads(t *testing.T) {
	const dim, nKeys, nq, k = 33, 40_000, 50, 10
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]float32, nKeys*dim)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	queries := make([]float32, nq*dim)
	for i := range queries {
		queries[i] = float32(rng.NormFloat64())
	}
	keys, vals := searchtest.Keys(t, dim, searchtest.Segment{Rows: nKeys, Data: data})
	wantRows, wantScores := searchtest.Reference(queries, nq, vals, dim, k)
	squeezed := retrieval.SmallSearcher(16, 1<<14, 4096) // a tile per 16 keys: 2500 tiles
	squeezed.MemoryBudget = 1 << 20
	if w, _, err := retrieval.Planned(squeezed, nq, keys, k); err != nil || w < 1 || w >= nKeys/16 {
		t.Fatalf("1 MiB over %d tiles: %d workers planned (%v), want fewer than the tiles: the budget's cap", nKeys/16, w, err)
	}
	// Many queries in a small budget: fewer workers, each pass over the
	// keys for many queries, rather than as many workers as fit and a
	// pass per query. With room for every query, the workers stay.
	many := &retrieval.CPUSearcher{Workers: 32, MemoryBudget: 16 << 20}
	if w, q, err := retrieval.Planned(many, 100_000, keys, 100); err != nil || q < 24 || w < 2 {
		t.Errorf("100,000 queries for the top 100 in 16 MiB on 32 threads: %d workers, %d queries a pass (%v); want at least 24 queries a pass on several workers", w, q, err)
	}
	// By default, a worker per thread, but no more than the CPUs.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 64))
	// (Tiles of 16 keys: 2,500, more than any machine's CPUs.)
	if w, _, err := retrieval.Planned(retrieval.SmallSearcher(16, 1<<20, 0), 1000, keys, 10); err != nil || w > runtime.NumCPU() {
		t.Errorf("GOMAXPROCS %d on %d CPUs: %d workers (%v)", runtime.GOMAXPROCS(0), runtime.NumCPU(), w, err)
	}
	roomy := &retrieval.CPUSearcher{Workers: 8, MemoryBudget: 512 << 20}
	if w, q, err := retrieval.Planned(roomy, 1000, keys, 10); err != nil || q != 1000 || w != 8 {
		t.Errorf("1,000 queries for the top 10 in 512 MiB on 8 threads: %d workers, %d queries a pass (%v); want 8 and all", w, q, err)
	}
	for _, s := range []*retrieval.CPUSearcher{
		{Workers: 4096, MemoryBudget: 16 << 20},
		{Workers: 100_000, MemoryBudget: 512 << 20},
		squeezed,
	} {
		got, err := s.Search(context.Background(), queries, nq, keys, k)
		if err != nil {
			t.Fatalf("%d workers in %d MiB: %v", s.Workers, s.MemoryBudget>>20, err)
		}
		if diff := searchtest.Compare(got, nq, wantRows, wantScores); diff != "" {
			t.Errorf("%d workers in %d MiB: %s", s.Workers, s.MemoryBudget>>20, diff)
		}
	}
}

// Keys in a memory-mapped .npy file, with Mapped set so that windows are
// evicted as they are searched, give the same answer as in memory, over
// many small windows (each evicted) and a second search of the same
// mapping (its pages read back in).
func TestCPUSearcherMappedKeys(t *testing.T) {
	c := searchtest.Cases()[0]
	for _, cc := range searchtest.Cases() {
		if strings.HasPrefix(cc.Name, "gaussian/q130") {
			c = cc
		}
	}
	_, vals := searchtest.Keys(t, c.Dim, c.Segments...)
	path := filepath.Join(t.TempDir(), "keys.npy")
	if err := npy.WriteFloat16(path, []int{len(vals) / c.Dim, c.Dim}, vals); err != nil {
		t.Fatal(err)
	}
	a, err := npy.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	raw, err := a.RawRows(0, a.Rows())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := retrieval.NewKeys(c.Dim, retrieval.KeySegment{Name: path, DType: npy.Float16, Rows: a.Rows(), Data: raw, Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRows, wantScores := searchtest.Reference(c.Queries, c.NQueries, vals, c.Dim, c.K)
	s := retrieval.SmallSearcher(8, 4096, 2)
	for round := range 2 {
		got, err := s.Search(context.Background(), c.Queries, c.NQueries, keys, c.K)
		if err != nil {
			t.Fatal(err)
		}
		if diff := searchtest.Compare(got, c.NQueries, wantRows, wantScores); diff != "" {
			t.Errorf("round %d: %s", round, diff)
		}
	}
}

// A key whose float32 score lies below the k-th reference score found so
// far, while its own reference score lies above it, must still be found:
// the kernel's threshold keeps the error bound's margin. Key 0 scores
// exactly 1; key 16 (in the next tile and window, so key 0 is re-scored
// first) scores 1 + 2⁻²³, but its float32 chain loses every one of its
// sixteen 2⁻²⁶ terms and ends two float32 steps below 1.
func TestCPUSearcherThresholdMargin(t *testing.T) {
	const dim, n = 24, 40
	keys := make([]float32, n*dim)
	keys[0] = 1
	b := keys[16*dim : 17*dim]
	b[0] = 1 - 0x1p-23
	for i := 1; i <= 16; i++ {
		b[i] = 0x1p-26
	}
	q := make([]float32, dim)
	for i := range 17 {
		q[i] = 1
	}
	for _, s := range []*retrieval.CPUSearcher{retrieval.SmallSearcher(16, 16*dim*4, 1), {}} {
		km, err := retrieval.Float32Keys("keys", keys, n, dim)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Search(context.Background(), q, 1, km, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got.Rows[0] != 16 || got.Scores[0] != 1+0x1p-23 {
			t.Errorf("workers %d: top-1 is row %d with %v, want row 16 with %v", s.Workers, got.Rows[0], got.Scores[0], float32(1+0x1p-23))
		}
	}
}

// Float32 sums that overflow (values near 1e30 times 1e20, summed over 16
// columns) carry no error bound: their keys are re-scored in float64 like
// any candidate, and the answer is still the reference's (its scores
// float32(S) = ±Inf, its order that of the float64 sums).
func TestCPUSearcherOverflow(t *testing.T) {
	const dim, n, nq = 16, 40, 2
	keys := make([]float32, n*dim)
	for i := range keys {
		keys[i] = float32((i*7919)%13-6) * 1e30
	}
	q := make([]float32, nq*dim)
	for i := range q {
		q[i] = float32((i*31)%5-2) * 1e20
	}
	wantRows, wantScores := searchtest.Reference(q, nq, keys, dim, 5)
	km, err := retrieval.Float32Keys("keys", keys, n, dim)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*retrieval.CPUSearcher{{}, retrieval.SmallSearcher(16, 16*dim*4, 1)} {
		got, err := s.Search(context.Background(), q, nq, km, 5)
		if err != nil {
			t.Fatal(err)
		}
		if diff := searchtest.Compare(got, nq, wantRows, wantScores); diff != "" {
			t.Errorf("workers %d: %s", s.Workers, diff)
		}
	}
}

// countdownCtx is a context whose Err turns to context.Canceled at its
// n-th call. Its count is not synchronised: a search with one worker only.
type countdownCtx struct {
	context.Context
	calls, n int
}

func (c *countdownCtx) Err() error {
	if c.calls++; c.calls >= c.n {
		return context.Canceled
	}
	return nil
}

// A search stops within its window once its context is done: an index
// that is one window (as under the default budget) must not run to the end
// after Ctrl-C. The countdown passes the check before the window and one
// tile; the window must then stop, before its progress is reported.
func TestCPUSearcherCancelWithinWindow(t *testing.T) {
	const nq, nk, dim = 8, 2000, 16
	q := make([]float32, nq*dim)
	kv := make([]float32, nk*dim)
	for i := range kv {
		kv[i] = float32(i%7) - 3
	}
	for i := range q {
		q[i] = float32(i%5) - 2
	}
	keys, _ := searchtest.Keys(t, dim, searchtest.Segment{Rows: nk, Data: kv})
	s := retrieval.SmallSearcher(50, 1<<20, 1) // 40 tiles, one window
	progressed := false
	s.Progress = func(done, total int64) { progressed = true }
	ctx := &countdownCtx{Context: context.Background(), n: 3}
	_, err := s.Search(ctx, q, nq, keys, 5)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if progressed {
		t.Error("the window ran to its end after the context was done")
	}
	if ctx.calls != 3 {
		t.Errorf("Err called %d times, want 3 (before the window, then at each tile until it is done)", ctx.calls)
	}
}
