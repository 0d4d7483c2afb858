//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/retrieval/searchtest"
)

// The GPU searcher passes the contract suite (bit-equal rows and scores
// against a float64 brute force, duplicates and near-ties included) with
// chunks small enough that most cases take several, some a partial last
// tile, and the merge of running lists runs.
// Both ways of moving the keys: resident (copied once) and streamed
// (copied for every batch of queries).
func TestSearcherContract(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			s := &Searcher{Dev: testDevice(t), ChunkRows: 150, NoResident: stream}
			searchtest.Run(t, s)
			if s.Last.Resident == stream {
				t.Errorf("NoResident %v: the last search had Resident %v", stream, s.Last.Resident)
			}
		})
	}
}

// On random unit embeddings the GPU's float16 ranking proves every query
// (none falls back to the CPU), so the suite above tests the GPU path and
// not only the fallback; on near-ties and duplicates it cannot, and must
// fall back.
func TestSearcherProves(t *testing.T) {
	s := &Searcher{Dev: testDevice(t), ChunkRows: 300}
	rnd := rand.New(rand.NewPCG(3, 5))
	const nq, nk, dim, k = 40, 1000, 64, 10
	q := unitNormals(t, rnd, nq, dim)
	keys, _ := searchtest.Keys(t, dim, searchtest.Segment{Half: true, Rows: nk, Data: unitNormals(t, rnd, nk, dim)})
	if _, err := s.Search(context.Background(), q, nq, keys, k); err != nil {
		t.Fatal(err)
	}
	if s.Last.Unproven != 0 || s.Last.Chunks != 4 || s.Last.Width != k+searchMargin {
		t.Errorf("random data: %+v, want 0 unproven, 4 chunks, width %d", s.Last, k+searchMargin)
	}
	unproven := 0
	for _, c := range searchtest.Cases() {
		if strings.HasPrefix(c.Name, "near-ties") || c.Name == "duplicates" || c.Name == "all-equal-keys" {
			keys, _ := searchtest.Keys(t, c.Dim, c.Segments...)
			if _, err := s.Search(context.Background(), c.Queries, c.NQueries, keys, c.K); err != nil {
				t.Fatal(err)
			}
			unproven += s.Last.Unproven
		}
	}
	if unproven == 0 {
		t.Error("no adversarial query needed the fallback: the cases do not reach it")
	}
}

// The kernels' candidate lists are the exact top-w by the GPU's score with
// ties by the lower row, through splits, chunks and merges: on small
// integers every score is exact in any order, and ties abound.
func TestSearchCandidatesTies(t *testing.T) {
	d := testDevice(t)
	for _, c := range []struct {
		nq, nk, dim, w, chunk int
		stream                bool
	}{
		{130, 700, 24, 20, 300, false}, // two query blocks, three chunks, splits
		{130, 700, 24, 20, 300, true},
		{5, 40, 8, 40, 17, false}, // w = all keys, chunks smaller than w
		{5, 40, 8, 40, 17, true},
		{3, 1000, 16, 64, 1000, false}, // the widest list, many splits
		// Splits of several key tiles (a block's next tile must not load
		// into the ring while its score tile is still being read): two
		// chunks of 32 splits of 2 tiles, one chunk of 63 splits of 4.
		{3, 16384, 8, 21, 8192, false},
		{3, 16384, 8, 21, 8192, true},
		{3, 32256, 8, 21, 32256, false},
		// One split, a tie at its w-th place: the kept row is the lower.
		{130, 100, 8, 10, 100, false},
	} {
		t.Run(fmt.Sprintf("q%d_k%d_d%d_w%d_c%d_stream=%v", c.nq, c.nk, c.dim, c.w, c.chunk, c.stream), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(uint64(c.nq), uint64(c.nk)))
			q := smallInts(rnd, c.nq*c.dim)
			kv := smallInts(rnd, c.nk*c.dim)
			keys, _ := searchtest.Keys(t, c.dim, searchtest.Segment{Rows: c.nk, Data: kv})
			dimp := (c.dim + 7) / 8 * 8
			half, exps, _ := halfQueries(q, c.nq, c.dim, dimp)
			rows := make([]int64, c.nq*c.w)
			scores := make([]float32, c.nq*c.w)
			exact := make([]float64, c.nq*c.w)
			s := &Searcher{Dev: d, NoResident: c.stream}
			out := rankOut{rows: rows, scores: scores, exact: exact}
			if _, err := s.rankAll(context.Background(), half, q, c.nq, keys, dimp, c.w, c.chunk, true, out); err != nil {
				t.Fatal(err)
			}
			for i := range c.nq {
				want := make([]int, c.nk)
				sc := make([]float64, c.nk)
				for j := range c.nk {
					want[j] = j
					for x := range c.dim {
						sc[j] += math.Ldexp(float64(q[i*c.dim+x]), exps[i]) * float64(kv[j*c.dim+x])
					}
				}
				sort.SliceStable(want, func(a, b int) bool { return sc[want[a]] > sc[want[b]] })
				for p := range c.w {
					if rows[i*c.w+p] != int64(want[p]) || float64(scores[i*c.w+p]) != sc[want[p]] {
						t.Fatalf("query %d place %d: row %d score %v, want row %d score %v", i, p, rows[i*c.w+p], scores[i*c.w+p], want[p], sc[want[p]])
					}
					// The reference score, in the queries' own scale.
					if ref := math.Ldexp(sc[want[p]], -exps[i]); exact[i*c.w+p] != ref {
						t.Fatalf("query %d place %d: reference score %v on the GPU, want %v", i, p, exact[i*c.w+p], ref)
					}
				}
			}
		})
	}
}

// Every GPU score lies within searchErrorBound of the reference score, on
// float32 keys (rounded to float16) and queries of very different scales.
func TestSearchErrorBound(t *testing.T) {
	d := testDevice(t)
	rnd := rand.New(rand.NewPCG(8, 9))
	const nq, nk, dim, w = 6, 300, 40, 64
	q := randn(rnd, nq*dim, 1)
	for i := range dim {
		q[i] *= 1e-9 // a tiny query: scaled up before rounding
		q[dim+i] *= 1e7
	}
	kv := randn(rnd, nk*dim, 1)
	kv[5] = 1e-7 // float16 subnormal range
	worst := boundErrors(t, d, q, kv, nq, nk, dim, w)
	// The bound is not vacuous: the float16 rounding uses a fair part of it.
	if worst < 0.01 {
		t.Errorf("largest error %.3g of the bound: the test does not exercise it", worst)
	}
	t.Logf("largest error: %.3g of the bound", worst)
}

// boundErrors ranks the keys kv (nk rows, float32) for the queries q on
// the GPU, fails the test where a score lies beyond searchErrorBound of its
// reference, and returns the largest error as a fraction of the bound.
func boundErrors(t *testing.T, d *Device, q, kv []float32, nq, nk, dim, w int) float64 {
	t.Helper()
	keys, _ := searchtest.Keys(t, dim, searchtest.Segment{Rows: nk, Data: kv})
	dimp := (dim + 7) / 8 * 8
	half, exps, norms := halfQueries(q, nq, dim, dimp)
	rows, scores := make([]int64, nq*w), make([]float32, nq*w)
	s := &Searcher{Dev: d}
	maxNorm, err := s.rankAll(context.Background(), half, q, nq, keys, dimp, w, 128, true, rankOut{rows: rows, scores: scores, exact: make([]float64, nq*w)})
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range nq {
		bound := searchErrorBound(math.Ldexp(norms[i], exps[i]), maxNorm, dim)
		for p := range w {
			r := rows[i*w+p]
			var ref float64
			for x := range dim {
				ref += float64(q[i*dim+x]) * float64(kv[int(r)*dim+x])
			}
			got := math.Ldexp(float64(scores[i*w+p]), -exps[i])
			e := math.Abs(got-ref) / math.Ldexp(bound, -exps[i])
			worst = max(worst, e)
			if !(e <= 1) {
				t.Fatalf("query %d row %d: GPU %v, reference %v: error %.3g of the bound", i, r, got, ref, e)
			}
		}
	}
	return worst
}

// The bound holds where float16 rounding errs most and all one way: every
// component of queries and keys just below a rounding midpoint (1 +
// 0.999·2⁻¹¹), so that both roundings are near their largest and aligned
// (random data, above, stays far from that worst case).
func TestSearchErrorBoundAligned(t *testing.T) {
	d := testDevice(t)
	const nq, nk, dim, w = 2, 3, 40, 3
	v := float32(1 + 0.999*0x1p-11)
	q, kv := make([]float32, nq*dim), make([]float32, nk*dim)
	for i := range q {
		q[i] = v
	}
	for i := range kv {
		kv[i] = v
	}
	worst := boundErrors(t, d, q, kv, nq, nk, dim, w)
	// Near the bound (0.98 of it when written), not past it.
	if !(worst <= 1) || worst < 0.5 {
		t.Errorf("largest error %.3g of the bound, want within it and near it", worst)
	}
	t.Logf("largest error: %.3g of the bound", worst)
}

// The GPU's reference scores have the host's bits (the products summed in
// float64 in index order) on data where the order of the sum matters,
// not only on small integers, where every order is exact.
func TestSearchRescoreBits(t *testing.T) {
	d := testDevice(t)
	const nq, nk, dim, w = 7, 300, 100, 16
	for _, halfKeys := range []bool{false, true} { // (the rescore reads the float32 keys, or the float16 ones)
		rnd := rand.New(rand.NewPCG(3, 4))
		// Magnitudes over 2^-12 to 2^6, so that the float64 sum of the
		// products rounds, and its order shows in the bits.
		spread := func(x []float32) []float32 {
			for i := range x {
				x[i] = float32(math.Ldexp(float64(x[i]), rnd.IntN(19)-12))
			}
			return x
		}
		q := spread(randn(rnd, nq*dim, 1))
		keys, kv := searchtest.Keys(t, dim, searchtest.Segment{Half: halfKeys, Rows: nk, Data: spread(randn(rnd, nk*dim, 1))})
		dimp := (dim + 7) / 8 * 8
		half, _, _ := halfQueries(q, nq, dim, dimp)
		rows, exact := make([]int64, nq*w), make([]float64, nq*w)
		s := &Searcher{Dev: d}
		// (Float32 keys go to the GPU beside their float16 copies, as Search sends them.)
		if _, err := s.rankAll(context.Background(), half, q, nq, keys, dimp, w, 128, !halfKeys, rankOut{rows: rows, scores: make([]float32, nq*w), exact: exact}); err != nil {
			t.Fatal(err)
		}
		for i := range nq {
			for p := range w {
				r := rows[i*w+p]
				var ref float64
				for x := range dim {
					ref += float64(q[i*dim+x]) * float64(kv[int(r)*dim+x])
				}
				if math.Float64bits(exact[i*w+p]) != math.Float64bits(ref) {
					t.Fatalf("float16 keys %v, query %d row %d: GPU reference score %v, host %v", halfKeys, i, r, exact[i*w+p], ref)
				}
			}
		}
	}
}

// halfQueries' scaling is exact and puts each row's largest magnitude in
// [2^14, 2^15).
func TestHalfQueriesScale(t *testing.T) {
	q := []float32{3e-30, -1e-31, 0, 0, 1e30, 2, 0.5, -70000}
	half, exps, _ := halfQueries(q, 4, 2, 8)
	if exps[1] != 0 || slices.ContainsFunc(half[8:16], func(h uint16) bool { return h != 0 }) {
		t.Errorf("zero row: exponent %d, values %v", exps[1], half[8:16])
	}
	for r, row := range []int{0, 2, 3} {
		m := 0.0
		for i := range 2 {
			m = max(m, math.Abs(float64(leconv.Float16Value(half[row*8+i]))))
		}
		if m < 1<<14 || m >= 1<<15 {
			t.Errorf("row %d (%d): largest value %v after scaling by 2^%d", row, r, m, exps[row])
		}
	}
}

// A float32 key beyond float16's range is refused (not turned into an
// infinity), and so is k beyond MaxSearchK.
func TestSearcherRefuses(t *testing.T) {
	s := &Searcher{Dev: testDevice(t)}
	keys, _ := searchtest.Keys(t, 2, searchtest.Segment{Rows: 2, Data: []float32{1, 2, 70000, 4}})
	if _, err := s.Search(context.Background(), []float32{1, 0}, 1, keys, 1); err == nil || !strings.Contains(err.Error(), "float16's range") {
		t.Errorf("key of 70000: error %v", err)
	}
	if _, err := s.Search(context.Background(), []float32{1, 0}, 1, keys, MaxSearchK+1); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("k = %d: error %v", MaxSearchK+1, err)
	}
	// A NaN in a later chunk stops the stream with the converter's error
	// (and frees the pinned buffers it was writing only after it stops).
	kv := make([]float32, 1000*4)
	for i := range kv {
		kv[i] = 1
	}
	kv[4*777+2] = float32(math.NaN())
	nanKeys, _ := searchtest.Keys(t, 4, searchtest.Segment{Rows: 1000, Data: kv})
	s.ChunkRows = 200
	if _, err := s.Search(context.Background(), []float32{1, 0, 0, 0}, 1, nanKeys, 3); err == nil || !strings.Contains(err.Error(), "row 777, column 2 is NaN") {
		t.Errorf("NaN in key row 777: error %v", err)
	}
	var _ retrieval.Searcher = s
}

// The GPU's reference scores are the host's bit for bit: the float64 sum
// in index order. Keys with large cancelling values make the order show
// (the test checks that the reversed order gives other bits).
func TestSearchRescoreOrder(t *testing.T) {
	const nq, nk, dim, w = 5, 40, 16, 40
	rnd := rand.New(rand.NewPCG(21, 22))
	kv := make([]float32, nk*dim)
	for r := range nk {
		row := kv[r*dim : (r+1)*dim]
		row[0], row[dim-1] = 32768, -32768
		for i := 1; i < dim-1; i++ {
			row[i] = float32(math.Ldexp(float64(rnd.IntN(2047)-1023), -24-rnd.IntN(4))) // float16 subnormals
		}
	}
	q := randn(rnd, nq*dim, 1)
	keys, vals := searchtest.Keys(t, dim, searchtest.Segment{Half: true, Rows: nk, Data: kv})
	dimp := (dim + 7) / 8 * 8
	half, _, _ := halfQueries(q, nq, dim, dimp)
	out := rankOut{rows: make([]int64, nq*w), scores: make([]float32, nq*w), exact: make([]float64, nq*w)}
	if _, err := (&Searcher{Dev: testDevice(t)}).rankAll(context.Background(), half, q, nq, keys, dimp, w, 16, false, out); err != nil {
		t.Fatal(err)
	}
	differs := 0
	for e, r := range out.rows {
		qv, kr := q[e/w*dim:(e/w+1)*dim], vals[int(r)*dim:(int(r)+1)*dim]
		var fwd, rev float64
		for i := range dim {
			fwd += float64(qv[i]) * float64(kr[i])
			rev += float64(qv[dim-1-i]) * float64(kr[dim-1-i])
		}
		if math.Float64bits(out.exact[e]) != math.Float64bits(fwd) {
			t.Fatalf("entry %d (row %d): GPU %v, host %v", e, r, out.exact[e], fwd)
		}
		if rev != fwd {
			differs++
		}
	}
	if differs == 0 {
		t.Error("the summation order changes no score: the test cannot tell orders apart")
	}
}

// A launch's splits never exceed searchMaxSplits of the whole chunk, for
// any shorter chunk (the last one), and they cover the keys in tiles:
// the candidate buffers are sized by that bound. Up to the largest chunk
// (searchMaxChunk), the kernel's key indices stay within int.
func TestSearchSplitsBound(t *testing.T) {
	for _, slots := range []int{1, 108, 132} {
		for _, nq := range []int{1, 3, 128, 129, 1000, 5000, 25000, searchQueryBatch} {
			for _, chunk := range []int{1, 127, 128, 300, 8192, 139264} {
				bound := searchMaxSplits(nq, chunk, slots)
				for nk := 1; nk <= chunk; nk += max(1, chunk/997) {
					splits, kps := searchSplits(nq, nk, slots)
					if splits > bound || splits < 1 || kps%searchBN != 0 || splits*kps < nk || (splits-1)*kps >= nk {
						t.Fatalf("%d slots, %d queries, %d keys of chunks of %d: %d splits of %d keys (bound %d)", slots, nq, nk, chunk, splits, kps, bound)
					}
				}
			}
			for _, nk := range []int{searchMaxChunk / 3, searchMaxChunk/2 + 1, searchMaxChunk - 1, searchMaxChunk} {
				if splits, kps := searchSplits(nq, nk, slots); splits*kps+searchBN > math.MaxInt32 {
					t.Fatalf("%d slots, %d queries, %d keys: %d splits of %d keys overflow the kernel's int key indices", slots, nq, nk, splits, kps)
				}
			}
		}
	}
}

// The splits fill the GPU's slots in whole waves where that pays: the
// cases of searchWaveSplits's comment, and the ends of the range.
func TestSearchWaveSplits(t *testing.T) {
	for _, c := range []struct{ qb, tiles, slots, want int }{
		{196, 40, 132, 2},   // 25,000 queries x 5,000 keys: 392 blocks, 3 waves of 21 tiles
		{79, 2048, 132, 5},  // 10,000 queries x a 256 MiB chunk: 395 blocks, 3 waves
		{256, 2048, 132, 1}, // a full batch: 2 waves, 97% whole (18 splits would gain 2%)
		{1, 40, 132, 40},    // one query block: a split per tile
		{1, 2048, 132, 57},  // 63 (searchMaxLists-1) would gain under 10%
		{264, 1, 132, 1},    // one tile: one split
	} {
		if got := searchWaveSplits(c.qb, c.tiles, c.slots); got != c.want {
			t.Errorf("searchWaveSplits(%d query blocks, %d tiles, %d slots) = %d, want %d", c.qb, c.tiles, c.slots, got, c.want)
		}
	}
}

// The last chunk of 8064 keys takes 63 splits where the whole chunk of
// 8192 takes 32: the search still fits its buffers, resident or streamed.
func TestSearcherShortLastChunk(t *testing.T) {
	rnd := rand.New(rand.NewPCG(4, 4))
	const nq, nk, dim, k = 3, 16256, 8, 5
	q := unitNormals(t, rnd, nq, dim)
	kv := unitNormals(t, rnd, nk, dim)
	keys, _ := searchtest.Keys(t, dim, searchtest.Segment{Half: true, Rows: nk, Data: kv})
	want, err := (&retrieval.CPUSearcher{}).Search(context.Background(), q, nq, keys, k)
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{false, true} {
		s := &Searcher{Dev: testDevice(t), ChunkRows: 8192, NoResident: stream}
		got, err := s.Search(context.Background(), q, nq, keys, k)
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if !slices.Equal(got.Rows, want.Rows) || !slices.Equal(got.Scores, want.Scores) {
			t.Errorf("stream=%v: rows %v, want %v", stream, got.Rows, want.Rows)
		}
	}
}

// tightDriver is the device's own driver with less memory than it has:
// MemInfo reports free bytes free, and allocFail may refuse an allocation.
type tightDriver struct {
	fullDriver
	free      int64
	allocFail func(bytes int64) error
}

func (d *tightDriver) MemInfo() (free, total int64, err error) {
	_, total, err = d.fullDriver.MemInfo()
	return d.free, total, err
}

func (d *tightDriver) Alloc(bytes int64) (uintptr, error) {
	if err := d.allocFail(bytes); err != nil {
		return 0, err
	}
	return d.fullDriver.Alloc(bytes)
}

// The keys stay on the GPU when they fit beside the search's buffers and
// the spare, to the byte. When they do not, or fit by the count of free
// memory but their allocation fails for lack of it, the searcher streams
// them and gives the same answer; an allocation failing for another
// reason is an error, not a fallback.
func TestSearcherMemoryFallback(t *testing.T) {
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	searchChecked(t, d)
	var inner fullDriver
	var oomErr error
	on(t, d, func() error {
		var ok bool
		if inner, ok = d.drv.(fullDriver); !ok {
			return fmt.Errorf("driver %T does not implement Extended", d.drv)
		}
		// The driver's own out-of-memory error, from an allocation no
		// device can make.
		if _, oomErr = inner.Alloc(1 << 62); oomErr == nil || !inner.IsOutOfMemory(oomErr) {
			return fmt.Errorf("allocating 4 EiB: %v, want the driver's out-of-memory error", oomErr)
		}
		return nil
	})
	rnd := rand.New(rand.NewPCG(8, 13))
	const nq, nk, dim, k, chunk = 30, 2000, 48, 7, 300
	q := unitNormals(t, rnd, nq, dim)
	keys, all := searchtest.Keys(t, dim, searchtest.Segment{Half: true, Rows: nk, Data: unitNormals(t, rnd, nk, dim)})
	wantRows, wantScores := searchtest.Reference(q, nq, all, dim, k)
	// The first search, with plenty of memory, measures the resident
	// allocation (the largest it makes: all keys and the buffers); the
	// others put the free memory on either side of it plus the spare, or
	// fail it.
	var resBytes, total int64
	on(t, d, func() (err error) { _, total, err = inner.MemInfo(); return err })
	spare := residentSpare(total)
	const plenty = int64(1) << 40
	ok := func(int64) error { return nil }
	refuse := func(err error) func(int64) error {
		return func(b int64) error {
			if b >= resBytes {
				return err
			}
			return nil
		}
	}
	for _, c := range []struct {
		name      string
		free      func() int64
		allocFail func(int64) error
		resident  bool
		err       string
	}{
		{"fits", func() int64 { return plenty }, func(b int64) error { resBytes = max(resBytes, b); return nil }, true, ""},
		{"fits-with-the-spare", func() int64 { return resBytes + spare }, ok, true, ""},
		{"one-byte-short", func() int64 { return resBytes + spare - 1 },
			refuse(errors.New("allocated the resident keys after MemInfo said they do not fit")), false, ""},
		{"out-of-memory", func() int64 { return plenty }, refuse(oomErr), false, ""},
		{"other-error", func() int64 { return plenty }, refuse(errors.New("the driver is on fire")), false, "on fire"},
	} {
		t.Run(c.name, func(t *testing.T) {
			on(t, d, func() error { d.drv = &tightDriver{inner, c.free(), c.allocFail}; return nil })
			defer on(t, d, func() error { d.drv = inner; return nil })
			s := &Searcher{Dev: d, ChunkRows: chunk}
			got, err := s.Search(context.Background(), q, nq, keys, k)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Last.Resident != c.resident {
				t.Errorf("free %d bytes (resident allocation %d, spare %d): Resident %v, want %v",
					c.free(), resBytes, spare, s.Last.Resident, c.resident)
			}
			if diff := searchtest.Compare(got, nq, wantRows, wantScores); diff != "" {
				t.Error(diff)
			}
		})
	}
}
