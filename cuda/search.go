//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// Launch geometry of kernels/search.cu.
const (
	searchBQ        = 128 // SEARCH_BQ: queries per block
	searchBN        = 128 // SEARCH_BN: keys per tile
	searchMaxW      = 64  // SEARCH_MAXW: candidates per query
	searchMaxLists  = 64  // SEARCH_MAXLISTS: lists search_merge merges
	searchMainBytes = 128 * 129 * 4
	// searchTargetBlocks is how many blocks a chunk's launch aims for
	// (about two per multiprocessor of an H100/H200), reached by cutting
	// the chunk's keys into splits when the queries make fewer blocks.
	searchTargetBlocks = 264
	// searchQueryBatch bounds the queries ranked together, and with them
	// the candidate lists held on the GPU.
	searchQueryBatch = 1 << 15
	// searchChunkBytes is the default float16 key chunk copied to the GPU
	// at a time (twice in pinned host memory).
	searchChunkBytes = 256 << 20
)

// MaxSearchK is the largest k the GPU searcher takes: it keeps k + 16
// candidates per query (searchMargin), at most 64.
const MaxSearchK = searchMaxW - searchMargin

// searchMargin is how many candidates beyond k the GPU returns, so that
// the exactness proof of retrieval.Refine holds unless the keys between
// the k-th and the (k+16)-th place all score within the error bound of
// each other (near-ties, duplicates), where the CPU re-runs the query.
const searchMargin = 16

// Searcher is retrieval.Searcher on the GPU: float16 tensor cores rank
// (kernels/search.cu), the host proves the answer exact (docs/RETRIEVAL.md,
// "Exact search on the GPU").
//
// Each query is scaled by a power of two (exact, and the ranking does not
// change) so that its largest value lies in [2^14, 2^15), and rounded to
// float16; float16 keys are used as stored and float32 keys rounded to
// float16 (a float32 key beyond float16's range is an error). The keys go
// to the GPU in chunks through two pinned host buffers, converted on the
// host while the GPU ranks the previous chunk. For every query the GPU
// returns its w = min(k+16, keys) best keys by the float16 score and their
// reference scores (search_rescore: in float64 in index order like the
// host, from the keys as stored, while their chunk is on the GPU; float32
// segments send a float32 copy of the chunk too); retrieval.Refine takes
// those and proves the k best exact when the k-th beats the w-th's score
// plus the error bound (searchErrorBound); the queries it cannot prove are
// re-run by Fallback. Pinned host memory: 2 chunks of float16 keys (and of
// float32 keys for float32 segments) and the result.
type Searcher struct {
	Dev *Device
	// ChunkRows is the number of keys copied to the GPU at a time; 0 means
	// as many as fit 256 MiB as float16.
	ChunkRows int
	// Fallback searches the queries that the GPU ranking cannot prove
	// exact; nil means a retrieval.CPUSearcher.
	Fallback retrieval.Searcher

	// Last describes the last search.
	Last SearchStats
}

// SearchStats counts a search's work.
type SearchStats struct {
	Queries  int // queries searched
	Width    int // candidates per query from the GPU
	Chunks   int // key chunks copied to the GPU (over all query batches)
	Unproven int // queries re-run by the fallback
}

// Search implements retrieval.Searcher.
func (s *Searcher) Search(ctx context.Context, queries []float32, nq int, keys *retrieval.Keys, k int) (*retrieval.Neighbors, error) {
	if err := retrieval.CheckSearch(queries, nq, keys, k); err != nil {
		return nil, err
	}
	if k > MaxSearchK {
		return nil, fmt.Errorf("cuda: search: k = %d; the GPU search ranks at most %d per query (use the CPU)", k, MaxSearchK)
	}
	if s.Dev == nil {
		return nil, errors.New("cuda: search: no device")
	}
	nk := keys.Rows()
	if nk > math.MaxInt32 {
		return nil, fmt.Errorf("cuda: search: %d keys; the GPU search takes at most %d", nk, math.MaxInt32)
	}
	dim := keys.Dim
	dimp := (dim + 7) / 8 * 8
	w := int(min(int64(k+searchMargin), nk))
	chunk := int64(s.ChunkRows)
	if chunk <= 0 {
		chunk = max(searchBN, searchChunkBytes/int64(2*dimp))
	}
	chunk = min(chunk, nk)
	s.Last = SearchStats{Queries: nq, Width: w}

	half, exps, qNorms := halfQueries(queries, nq, dim, dimp)
	rows := make([]int64, nq*w)
	scores := make([]float32, nq*w)
	// The GPU also computes the candidates' reference scores
	// (search_rescore) while their chunk is on it: from the float16 keys,
	// or, when a segment is float32, from float32 copies of the keys sent
	// beside them (the float16 ones are roundings).
	exact := make([]float64, nq*w)
	wide := slices.ContainsFunc(keys.Segments, func(g retrieval.KeySegment) bool { return g.DType != npy.Float16 })
	var maxKeyNorm float64
	for q0 := 0; q0 < nq; q0 += searchQueryBatch {
		qn := min(searchQueryBatch, nq-q0)
		out := rankOut{rows: rows[q0*w : (q0+qn)*w], scores: scores[q0*w : (q0+qn)*w], exact: exact[q0*w : (q0+qn)*w]}
		norm, err := s.rank(ctx, half[q0*dimp:(q0+qn)*dimp], queries[q0*dim:(q0+qn)*dim], qn, keys, dimp, w, int(chunk), wide, out)
		if err != nil {
			return nil, err
		}
		maxKeyNorm = norm
	}
	// Back to the queries' own scale: multiplying by 2^-e is exact in
	// float64, and the bound is rounded up.
	approx := make([]float64, nq*w)
	bounds := make([]float64, nq)
	for q := range nq {
		for j := range w {
			approx[q*w+j] = math.Ldexp(float64(scores[q*w+j]), -exps[q])
		}
		e := searchErrorBound(math.Ldexp(qNorms[q], exps[q]), maxKeyNorm, dim)
		bounds[q] = math.Ldexp(math.Nextafter(e, math.Inf(1)), -exps[q])
	}
	nb, unproven, err := retrieval.Refine(queries, nq, keys, k, rows, approx, w, bounds, exact)
	if err != nil {
		return nil, err
	}
	s.Last.Unproven = len(unproven)
	fb := s.Fallback
	if fb == nil {
		fb = &retrieval.CPUSearcher{}
	}
	if err := retrieval.MergeQueries(ctx, fb, nb, queries, keys, k, unproven); err != nil {
		return nil, err
	}
	return nb, nil
}

// halfQueries scales each query row by a power of two 2^e (its largest
// magnitude then lies in [2^14, 2^15), far from float16's overflow at
// 65504 and its subnormals below 2^-14; e = 0 for a zero row) and rounds it
// to float16, dimp values a row (zero-padded). It returns the rows, e and
// each row's norm (unscaled, summed in float64), rows cut among the cores.
func halfQueries(queries []float32, nq, dim, dimp int) ([]uint16, []int, []float64) {
	half := make([]uint16, nq*dimp)
	exps := make([]int, nq)
	norms := make([]float64, nq)
	parallelRows(nq, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			row := queries[q*dim : (q+1)*dim]
			var m, n2 float64
			for _, v := range row {
				m = max(m, math.Abs(float64(v)))
				n2 += float64(v) * float64(v)
			}
			norms[q] = math.Sqrt(n2)
			if m == 0 {
				continue
			}
			_, e := math.Frexp(m) // m = f 2^e, f in [0.5, 1)
			exps[q] = 15 - e
			for i, v := range row {
				half[q*dimp+i] = leconv.Float16Bits(float32(math.Ldexp(float64(v), exps[q])))
			}
		}
	})
	return half, exps, norms
}

// parallelRows calls f on consecutive ranges of [0, n) from up to
// GOMAXPROCS goroutines and waits.
func parallelRows(n int, f func(lo, hi int)) {
	parts := min(runtime.GOMAXPROCS(0), max(1, n/256))
	per := (n + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		wg.Go(func() { f(lo, min(n, lo+per)) })
	}
	wg.Wait()
}

// Constants of the error bound (docs/RETRIEVAL.md, "GPU search").
const (
	unitRoundHalf = 0x1p-11 // float16's unit round-off
	// halfAbsErr bounds the error of rounding a value in float16's
	// subnormal range (half its spacing 2^-24), plus that of a float32
	// underflow when a query is scaled down.
	halfAbsErr = 0x1p-25 + 0x1p-149
	// unitRoundTC is the unit round-off assumed for the tensor cores'
	// float32 accumulation: 8 times float32's 2^-24, covering truncation
	// instead of rounding and the bits lost when products are aligned
	// (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA
	// tensor cores", PeerJ Computer Science 7:e330, 2021).
	unitRoundTC = 0x1p-21
	unitRound64 = 0x1p-53
	// boundSlack covers the rounding of the bound's own float64 arithmetic.
	boundSlack = 1 + 0x1p-20
)

// searchErrorBound bounds |s − S| for a query of norm qNorm (as scaled)
// and any key of norm at most keyNorm (as stored), width dim: s the GPU's
// score of the float16-rounded query and key, S the float64 reference
// score of the unrounded ones (also in the query's scale).
//
// With q̂ = q + δq, |δq_i| ≤ u_h|q_i| + η (likewise k̂):
//
//	|s − q̂·k̂|  ≤ γ_n(u_tc)·‖q̂‖·‖k̂‖            (tensor-core sum)
//	|q̂·k̂ − q·k| ≤ ‖δq‖·‖k̂‖ + ‖q‖·‖δk‖         (input rounding)
//	|q·k − S|   ≤ γ_n(u_64)·‖q‖·‖k‖            (the reference's own sum)
//
// with ‖δq‖ ≤ u_h‖q‖ + η√n and ‖q̂‖ ≤ (1+u_h)‖q‖ + η√n; γ_n(u) = nu/(1−nu)
// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1).
func searchErrorBound(qNorm, keyNorm float64, dim int) float64 {
	n := float64(dim)
	gamma := func(u float64) float64 { return n * u / (1 - n*u) }
	eta := halfAbsErr * math.Sqrt(n)
	dq, dk := unitRoundHalf*qNorm+eta, unitRoundHalf*keyNorm+eta
	qh, kh := qNorm+dq, keyNorm+dk
	return (gamma(unitRoundTC)*qh*kh + dq*kh + qNorm*dk + gamma(unitRound64)*qNorm*keyNorm) * boundSlack
}

// searchBuffers is the device memory of one search.
type searchBuffers struct {
	queries, keys   buf[uint16]
	partS, outS     buf[float32]
	partID, outID   buf[int64]
	splitsMax, nq   int
	chunkRows, dimp int
	w               int
	// The float32 queries, the exact scores of the running lists and of
	// the merge's output, and float32 keys when a segment is float32.
	queriesF, keysF    buf[float32]
	runExact, outExact buf[float64]
	dim                int
}

// layoutSearch carves the buffers of a search; wide adds float32 keys.
func layoutSearch(a *arena, nq, chunkRows, dim, dimp, w, splits int, wide bool) searchBuffers {
	b := searchBuffers{
		queries: carve[uint16](a, nq*dimp), keys: carve[uint16](a, chunkRows*dimp),
		partS: carve[float32](a, (splits+1)*nq*w), partID: carve[int64](a, (splits+1)*nq*w),
		outS: carve[float32](a, nq*w), outID: carve[int64](a, nq*w),
		queriesF: carve[float32](a, nq*dim), runExact: carve[float64](a, nq*w), outExact: carve[float64](a, nq*w),
		splitsMax: splits, nq: nq, chunkRows: chunkRows, dimp: dimp, w: w, dim: dim,
	}
	if wide {
		b.keysF = carve[float32](a, chunkRows*dim)
	}
	return b
}

// rankOut is where rank writes each query's w candidates: rows, float16
// scores and reference scores.
type rankOut struct {
	rows   []int64
	scores []float32
	exact  []float64
}

// searchSplits cuts nk keys into splits of kps keys (a multiple of the key
// tile) so that a launch has about searchTargetBlocks blocks.
func searchSplits(nq, nk int) (splits, kps int) {
	tiles := (nk + searchBN - 1) / searchBN
	want := min(max(1, searchTargetBlocks/((nq+searchBQ-1)/searchBQ)), tiles, searchMaxLists-1)
	perSplit := (tiles + want - 1) / want
	return (tiles + perSplit - 1) / perSplit, perSplit * searchBN
}

// keyChunk is a chunk of keys converted on the host into pinned buffer
// pair buf.
type keyChunk struct {
	first, rows int64
	buf         int
	half        []uint16  // float16 rows of dimp values
	wide        []float32 // float32 rows of dim values, or nil
	norm        float64
	err         error
}

// rank streams all keys past the GPU for the qn float16 queries q and
// writes each query's w best keys by the float16 score, best first, with
// their reference scores for the float32 queries qf, to out; wide sends
// float32 keys beside the float16 ones, for the reference scores. It
// returns the largest key norm.
func (s *Searcher) rank(ctx context.Context, q []uint16, qf []float32, qn int, keys *retrieval.Keys, dimp, w, chunkRows int, wide bool, out rankOut) (float64, error) {
	d := s.Dev
	nk := keys.Rows()
	splitsMax, _ := searchSplits(qn, chunkRows)
	var bufs searchBuffers
	var pinned, pinnedWide [2][]byte
	var result []byte
	var ext driver.Extended
	var mem uintptr
	dim := keys.Dim
	chunkBytes, wideBytes := chunkRows*dimp*2, 0
	if wide {
		wideBytes = chunkRows * dim * 4
	}
	resultBytes := qn * w * 20
	err := d.do(func() error {
		var ok bool
		if ext, ok = d.drv.(driver.Extended); !ok {
			return errors.New("cuda: search: the driver lacks the extended calls (dynamic shared memory, pinned memory)")
		}
		if err := ext.SetMaxDynamicShared(int(launch.KSearchF16Topw), searchMainBytes+searchBQ*w*8); err != nil {
			return fmt.Errorf("cuda: search: %w", err)
		}
		var a arena
		layoutSearch(&a, qn, chunkRows, dim, dimp, w, splitsMax, wide)
		p, err := d.alloc(a.off)
		if err != nil {
			return d.oom(err, a.off, fmt.Sprintf("search of %d queries, keys in chunks of %d", qn, chunkRows), "", "use a smaller chunk")
		}
		mem = p
		a = arena{base: p}
		bufs = layoutSearch(&a, qn, chunkRows, dim, dimp, w, splitsMax, wide)
		for i := range pinned {
			if pinned[i], err = ext.HostAlloc(chunkBytes); err != nil {
				return fmt.Errorf("cuda: search: %d MiB of pinned host memory: %w", chunkBytes>>20, err)
			}
			if wide {
				if pinnedWide[i], err = ext.HostAlloc(wideBytes); err != nil {
					return fmt.Errorf("cuda: search: %d MiB of pinned host memory: %w", wideBytes>>20, err)
				}
			}
		}
		if result, err = ext.HostAlloc(resultBytes); err != nil {
			return fmt.Errorf("cuda: search: pinned host memory for the result: %w", err)
		}
		if err := upload(d, bufs.queriesF, qf); err != nil {
			return err
		}
		return upload(d, bufs.queries, q)
	})
	defer d.do(func() error {
		for _, b := range append(append(pinned[:], pinnedWide[:]...), result) {
			if b != nil {
				ext.HostFree(b)
			}
		}
		return d.free(mem)
	})
	if err != nil {
		return 0, err
	}

	// The host converts chunk i+1 while the GPU ranks chunk i: two pinned
	// buffers go round between the converter and the device.
	free := make(chan int, 2)
	free <- 0
	free <- 1
	ready := make(chan keyChunk, 1)
	stop := make(chan struct{})
	// Stop the converter and wait for it before the pinned buffers it
	// writes are freed (the deferred calls run in reverse order).
	defer func() {
		close(stop)
		for range ready {
		}
	}()
	go func() {
		defer close(ready)
		for first := int64(0); first < nk; first += int64(chunkRows) {
			c := keyChunk{first: first, rows: min(int64(chunkRows), nk-first)}
			select {
			case c.buf = <-free:
			case <-stop:
				return
			}
			b := pinned[c.buf]
			c.half = unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)[:c.rows*int64(dimp)]
			c.norm, c.err = halfRowsParallel(keys, c.half, dimp, c.first, c.first+c.rows)
			if wide && c.err == nil {
				b := pinnedWide[c.buf]
				c.wide = unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)[:c.rows*int64(dim)]
				_, c.err = keys.ReadRows(c.wide, c.first, c.first+c.rows)
			}
			select {
			case ready <- c:
			case <-stop:
				return
			}
			if c.err != nil {
				return
			}
		}
	}()

	var maxNorm float64
	chunks := 0
	for c := range ready {
		if c.err != nil {
			return 0, c.err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		maxNorm = max(maxNorm, c.norm)
		err := d.do(func() error {
			if err := upload(d, bufs.keys, c.half); err != nil {
				return err
			}
			if err := upload(d, bufs.keysF, c.wide); err != nil {
				return err
			}
			return d.searchChunk(bufs, qn, int(c.rows), c.first, chunks == 0)
		})
		// ToDevice has read the buffers when it returns.
		free <- c.buf
		if err != nil {
			return 0, err
		}
		chunks++
	}
	s.Last.Chunks += chunks
	n := qn * w
	err = d.do(func() error {
		for _, c := range []struct {
			dst []byte
			src uintptr
		}{{result[:4*n], bufs.outS.p}, {result[4*n : 12*n], bufs.outID.p}, {result[12*n:], bufs.outExact.p}} {
			if err := ext.ToHostAsync(c.dst, c.src); err != nil {
				return fmt.Errorf("cuda: search: copy from the GPU: %w", err)
			}
		}
		return d.sync()
	})
	if err != nil {
		return 0, err
	}
	leconv.F32ToF32(out.scores, result[:4*n])
	leconv.I64ToI64(out.rows, result[4*n:12*n])
	leconv.F64ToF64(out.exact, result[12*n:])
	return maxNorm, nil
}

// halfRowsParallel is keys.HalfRows over [lo, hi) cut among the cores.
func halfRowsParallel(keys *retrieval.Keys, dst []uint16, pitch int, lo, hi int64) (float64, error) {
	var mu sync.Mutex
	var maxNorm float64
	var errs []error
	parallelRows(int(hi-lo), func(a, b int) {
		n, err := keys.HalfRows(dst[a*pitch:b*pitch], pitch, lo+int64(a), lo+int64(b))
		mu.Lock()
		defer mu.Unlock()
		maxNorm = max(maxNorm, n)
		errs = append(errs, err)
	})
	return maxNorm, errors.Join(errs...)
}

// searchChunk launches the ranking of the first nk keys of b.keys (rows
// first.. of the index) for the qn queries, merging into the running best
// lists (b.outS/outID), which it starts when fresh.
func (d *Device) searchChunk(b searchBuffers, qn, nk int, first int64, fresh bool) error {
	splits, kps := searchSplits(qn, nk)
	if splits > b.splitsMax || nk > b.chunkRows || qn > b.nq || b.w > searchMaxW {
		return fmt.Errorf("cuda: search: chunk of %d keys in %d splits, %d queries, width %d: beyond its buffers", nk, splits, qn, b.w)
	}
	list := qn * b.w
	cfg := driver.LaunchConfig{Grid: [3]int{(qn + searchBQ - 1) / searchBQ, splits, 1}, Block: [3]int{threads, 1, 1},
		SharedBytes: searchMainBytes + searchBQ*b.w*8}
	wk := work{shape: fmt.Sprintf("%d queries x %d keys x %d", qn, nk, b.dimp), flops: 2 * float64(qn) * float64(nk) * float64(b.dimp)}
	// Slot 0 of the parts holds the running lists; the chunk's splits go
	// to slots 1..splits.
	if err := launch.SearchF16Topw(d.with(wk), cfg, b.partS.at(list, splits*list).ptr(), b.partID.at(list, splits*list).ptr(),
		b.queries.cptr(), b.keys.cptr(), int32(qn), int32(nk), int32(b.dimp), int32(b.w), int32(kps), first); err != nil {
		return err
	}
	lists, from := splits+1, 0
	if fresh {
		lists, from = splits, list
	}
	mcfg := driver.LaunchConfig{Grid: [3]int{(qn + threads - 1) / threads, 1, 1}, Block: [3]int{threads, 1, 1}}
	run := b.runExact.cptr()
	if fresh {
		run = 0
	}
	if err := launch.SearchMerge(d.with(work{shape: fmt.Sprintf("%d queries x %d lists x %d", qn, lists, b.w)}), mcfg,
		b.outS.ptr(), b.outID.ptr(), b.outExact.ptr(), b.partS.at(from, lists*list).cptr(), b.partID.at(from, lists*list).cptr(),
		run, int32(qn), int32(lists), int32(b.w)); err != nil {
		return err
	}
	rcfg := driver.LaunchConfig{Grid: [3]int{(list + threads - 1) / threads, 1, 1}, Block: [3]int{threads, 1, 1}}
	rw := work{shape: fmt.Sprintf("%d candidates x %d", list, b.dim), flops: 2 * float64(list) * float64(b.dim)}
	if err := launch.SearchRescore(d.with(rw), rcfg, b.outExact.ptr(), b.outID.cptr(), b.queriesF.cptr(), b.keys.cptr(),
		b.keysF.cptr(), int32(qn), int32(b.w), int32(b.dim), int32(b.dimp), int32(nk), first); err != nil {
		return err
	}
	if err := d.drv.CopyDevice(b.runExact.p, b.outExact.p, int64(list*8)); err != nil {
		return fmt.Errorf("cuda: search: %w", err)
	}
	if err := d.drv.CopyDevice(b.partS.p, b.outS.p, int64(list*4)); err != nil {
		return fmt.Errorf("cuda: search: %w", err)
	}
	if err := d.drv.CopyDevice(b.partID.p, b.outID.p, int64(list*8)); err != nil {
		return fmt.Errorf("cuda: search: %w", err)
	}
	return nil
}
