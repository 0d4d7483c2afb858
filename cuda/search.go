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
	"time"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/internal/parallel"
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
	// searchBlocksPerSM is how many search_f16_topw blocks a
	// multiprocessor holds at once: one, as 177 registers x 256 threads
	// (kernels/budgets.tsv) leave no room for a second in 65536. The
	// launch's key splits are chosen for whole waves of that many blocks
	// per multiprocessor (searchWaveSplits).
	searchBlocksPerSM = 1
	// searchQueryBatch bounds the queries ranked together, and with them
	// the candidate lists held on the GPU.
	searchQueryBatch = 1 << 15
	// searchChunkBytes is the default float16 key chunk copied to the GPU
	// at a time (twice in pinned host memory).
	searchChunkBytes = 256 << 20
	// searchMaxChunk bounds the keys ranked in one launch, whatever
	// ChunkRows asks: search_f16_topw indexes keys with int (kbeg + kps,
	// n0 += 128), and a launch's splits cover up to twice its keys in
	// whole tiles, so 2^29 keys keep every index far below 2^31.
	searchMaxChunk = 1 << 29
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
// to the GPU in chunks through two pinned host buffers, the host
// converting one chunk while the GPU copies the other: once, whole, when
// they fit in GPU memory beside the search's buffers and a spare
// (residentSpare), and every batch of up to 32768 queries ranks them
// there; else streamed past the GPU for every batch, the host converting
// chunk i+1 while the GPU ranks chunk i. For every query the GPU
// returns its w = min(k+16, keys) best keys by the float16 score and their
// reference scores (search_rescore: in float64 in index order like the
// host, from the keys as stored; float32 segments send a float32 copy of
// the keys too); retrieval.Refine takes
// those and proves the k best exact when the k-th beats the w-th's score
// plus the error bound (searchErrorBound); the queries it cannot prove are
// re-run by Fallback. Pinned host memory: 2 chunks of float16 keys (and of
// float32 keys for float32 segments) and the result.
type Searcher struct {
	Dev *Device
	// ChunkRows is the number of keys copied to the GPU, and ranked, at a
	// time; 0 means as many as fit 256 MiB as float16. More than 2^29 is
	// 2^29 (searchMaxChunk).
	ChunkRows int
	// Fallback searches the queries that the GPU ranking cannot prove
	// exact; nil means a retrieval.CPUSearcher.
	Fallback retrieval.Searcher
	// NoResident streams the keys past the GPU for every batch of
	// queries even when they would fit in its memory.
	NoResident bool

	// Last describes the last search.
	Last SearchStats
}

// SearchStats counts a search's work.
type SearchStats struct {
	Queries  int  // queries searched
	Width    int  // candidates per query from the GPU
	Resident bool // the keys were copied to the GPU once, whole
	Chunks   int  // key chunks copied to the GPU (over all query batches)
	Unproven int  // queries re-run by the fallback
	// CheckFailed is why the GPU search failed its check (Check), when it
	// did: then every query ran on the fallback.
	CheckFailed string
	// UploadSeconds is the time it took to read the keys and copy them to
	// the GPU when they were resident (0 when streamed: each chunk's copy
	// then comes between the rankings of the chunks).
	UploadSeconds float64
}

// KeysUploaded says whether the last search held the keys in GPU memory,
// copied once, whole, and how long the copy took.
func (s *Searcher) KeysUploaded() (resident bool, seconds float64) {
	return s.Last.Resident, s.Last.UploadSeconds
}

// Check runs the check of the GPU search (search_check.go) unless the
// process has, and returns why the GPU search failed it ("" where it
// passed: searches run on the GPU; else they run on the Fallback). Search
// calls it; a caller that times its searches calls it first.
func (s *Searcher) Check(ctx context.Context) (failed string, err error) {
	if s.Dev == nil {
		return "", errors.New("cuda: search: no device")
	}
	return checkSearch(ctx, s.Dev)
}

// Unchecked is why the GPU search failed the process's check where it runs
// on the GPU anyway (DINOCLIP_CUDA_CHECK=warn), else "".
func (s *Searcher) Unchecked() string {
	if wrong, onGPU := searchFailed(); onGPU {
		return wrong
	}
	return ""
}

// Search implements retrieval.Searcher. The process's first search checks
// the GPU's (Check); where it failed, every search runs on the Fallback,
// and Last says so.
func (s *Searcher) Search(ctx context.Context, queries []float32, nq int, keys *retrieval.Keys, k int) (*retrieval.Neighbors, error) {
	if err := retrieval.CheckSearch(queries, nq, keys, k); err != nil {
		return nil, err
	}
	if k > MaxSearchK {
		return nil, fmt.Errorf("cuda: search: k = %d; the GPU search ranks at most %d per query (use the CPU)", k, MaxSearchK)
	}
	failed, err := s.Check(ctx)
	if err != nil {
		return nil, err
	}
	if failed != "" {
		s.Last = SearchStats{Queries: nq, Unproven: nq, CheckFailed: failed}
		return s.fallback().Search(ctx, queries, nq, keys, k)
	}
	return s.search(ctx, queries, nq, keys, k)
}

// fallback is the Fallback, or the CPU search.
func (s *Searcher) fallback() retrieval.Searcher {
	if s.Fallback == nil {
		return &retrieval.CPUSearcher{}
	}
	return s.Fallback
}

// search is Search on the GPU, its arguments checked.
func (s *Searcher) search(ctx context.Context, queries []float32, nq int, keys *retrieval.Keys, k int) (*retrieval.Neighbors, error) {
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
	chunk = min(chunk, nk, searchMaxChunk)
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
	maxKeyNorm, err := s.rankAll(ctx, half, queries, nq, keys, dimp, w, int(chunk), wide, rankOut{rows: rows, scores: scores, exact: exact})
	if err != nil {
		return nil, err
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
	if err := retrieval.MergeQueries(ctx, s.fallback(), nb, queries, keys, k, unproven); err != nil {
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

// parallelRows calls f on consecutive ranges of [0, n), of 256 rows or
// more, on up to GOMAXPROCS threads (internal/parallel), and waits.
func parallelRows(n int, f func(lo, hi int)) {
	parallel.Ranges(n, min(runtime.GOMAXPROCS(0), max(1, n/256)), f)
}

// Constants of the error bound (docs/RETRIEVAL.md, "Exact search on the
// GPU", "The error bound").
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
// with ‖δq‖ ≤ u_h‖q‖ + η√n and ‖q̂‖ ≤ (1+u_h)‖q‖ + η√n; γ_n is
// retrieval.Gamma.
func searchErrorBound(qNorm, keyNorm float64, dim int) float64 {
	eta := halfAbsErr * math.Sqrt(float64(dim))
	dq, dk := unitRoundHalf*qNorm+eta, unitRoundHalf*keyNorm+eta
	qh, kh := qNorm+dq, keyNorm+dk
	return (retrieval.Gamma(dim, unitRoundTC)*qh*kh + dq*kh + qNorm*dk + retrieval.Gamma(dim, retrieval.UnitRound64)*qNorm*keyNorm) * retrieval.BoundSlack
}

// searchBuffers is the device memory of one search: the keys (all of them
// when resident, else one chunk), the queries of a batch and the
// candidate lists.
type searchBuffers struct {
	queries, keys buf[uint16]
	partS, outS   buf[float32]
	partID, outID buf[int64]
	nq, dimp, w   int
	// The float32 queries, the exact scores of the running lists and of
	// the merge's output, and float32 keys when a segment is float32.
	queriesF, keysF    buf[float32]
	runExact, outExact buf[float64]
	dim                int
	slots              int // blocks the GPU runs at once, for searchSplits
}

// layoutSearch carves the buffers of a search of batches of up to nq
// queries against keyRows keys at a time, with parts candidate list
// entries for the kernel's splits and the running lists; wide adds float32
// keys.
func layoutSearch(a *arena, nq, keyRows, dim, dimp, w, parts int, wide bool) searchBuffers {
	b := searchBuffers{
		queries: carve[uint16](a, nq*dimp), keys: carve[uint16](a, keyRows*dimp),
		partS: carve[float32](a, parts), partID: carve[int64](a, parts),
		outS: carve[float32](a, nq*w), outID: carve[int64](a, nq*w),
		queriesF: carve[float32](a, nq*dim), runExact: carve[float64](a, nq*w), outExact: carve[float64](a, nq*w),
		nq: nq, dimp: dimp, w: w, dim: dim,
	}
	if wide {
		b.keysF = carve[float32](a, keyRows*dim)
	}
	return b
}

// keysAt is the chunk of rows [first, first+rows) of the keys: where it
// lies in b when all keys are resident, else the start of b's chunk.
func (b searchBuffers) keysAt(resident bool, first int64, rows int) (buf[uint16], buf[float32]) {
	if !resident {
		first = 0
	}
	half := b.keys.at(int(first)*b.dimp, rows*b.dimp)
	if b.keysF.p == 0 {
		return half, buf[float32]{}
	}
	return half, b.keysF.at(int(first)*b.dim, rows*b.dim)
}

// rankOut is where rank writes each query's w candidates: rows, float16
// scores and reference scores.
type rankOut struct {
	rows   []int64
	scores []float32
	exact  []float64
}

// searchSplits cuts nk keys into splits of kps keys (a multiple of the key
// tile) for a launch of nq queries on a GPU that runs slots blocks at once
// (searchWaveSplits): at most searchMaxSplits(nq, nk, slots).
func searchSplits(nq, nk, slots int) (splits, kps int) {
	tiles := (nk + searchBN - 1) / searchBN
	most := searchWaveSplits((nq+searchBQ-1)/searchBQ, tiles, slots)
	perSplit := (tiles + most - 1) / most
	return (tiles + perSplit - 1) / perSplit, perSplit * searchBN
}

// searchMaxSplits bounds the splits of a launch of nq queries over up to
// nk keys: the most searchWaveSplits gives for any key count up to nk. It
// never decreases as nk grows, so the bound for a whole chunk holds for
// the shorter last one too.
func searchMaxSplits(nq, nk, slots int) int {
	qb, most := (nq+searchBQ-1)/searchBQ, 1
	for tiles := 1; tiles <= (nk+searchBN-1)/searchBN && most < searchMaxLists-1; tiles++ {
		most = max(most, searchWaveSplits(qb, tiles, slots))
	}
	return most
}

// searchWaveSplits is the number of splits s, 1 to min(tiles,
// searchMaxLists-1), of tiles key tiles for qb blocks of queries on a GPU
// that runs slots blocks at once, by a simple model of the launch's time:
// its qb*s blocks run in ceil(qb*s/slots) waves, and a block's time is its
// ceil(tiles/s) key tiles plus about one tile's worth for loading its
// queries and writing its list. More splits also mean more lists to merge
// and to hold, which the model leaves out: so the fewest splits whose
// modelled time is within 10% of the least. On 132 slots, 196 query
// blocks over 40 tiles (25,000 queries x 5,000 keys) take 2 splits, 3
// waves of 21 tiles' time rather than 2 of 41; 79 blocks over 2048 tiles
// take 5; 256 blocks (a full batch) 1, their 2 waves nearly whole.
func searchWaveSplits(qb, tiles, slots int) int {
	most := min(tiles, searchMaxLists-1)
	cost := func(s int) int { return (qb*s + slots - 1) / slots * ((tiles+s-1)/s + 1) }
	least := cost(1)
	for s := 2; s <= most; s++ {
		least = min(least, cost(s))
	}
	for s := 1; ; s++ {
		if 10*cost(s) <= 11*least {
			return s
		}
	}
}

// searchParts is the number of candidate list entries the kernel's splits
// and the running lists need for chunks of up to chunkRows keys, over
// batches of searchQueryBatch queries and the last, smaller one (fewer
// queries cut the keys into more splits).
func searchParts(nq, chunkRows, w, slots int) int {
	parts := 0
	for _, qn := range []int{min(nq, searchQueryBatch), nq % searchQueryBatch} {
		if qn > 0 {
			parts = max(parts, (searchMaxSplits(qn, chunkRows, slots)+1)*qn*w)
		}
	}
	return parts
}

// keyChunk is a chunk of keys converted on the host into pinned buffer
// pair buf.
type keyChunk struct {
	first, rows int64
	buf         int
	half        []byte // float16 rows of dimp values
	wide        []byte // float32 rows of dim values, or nil
	norm        float64
	err         error
}

// keyStage is the host side of moving keys to the GPU: two pinned buffer
// pairs (float16 rows, and float32 rows when a segment is float32), which
// a converter fills chunk by chunk while the GPU copies the other pair,
// and for each pair an event recorded after its upload: the converter may
// write a pair again only once its event has passed.
type keyStage struct {
	half, wide [2][]byte
	copied     [2]driver.Event
}

// newKeyStage allocates a keyStage for chunks of chunkRows keys (on the
// worker thread); st.free releases what it got, also after an error.
func (d *Device) newKeyStage(ext driver.Extended, chunkRows, dim, dimp int, wide bool) (*keyStage, error) {
	st := &keyStage{}
	halfBytes, wideBytes := chunkRows*dimp*2, chunkRows*dim*4
	for i := range 2 {
		var err error
		if st.half[i], err = ext.HostAlloc(halfBytes); err != nil {
			return st, fmt.Errorf("cuda: search: %d MiB of pinned host memory: %w", halfBytes>>20, err)
		}
		if wide {
			if st.wide[i], err = ext.HostAlloc(wideBytes); err != nil {
				return st, fmt.Errorf("cuda: search: %d MiB of pinned host memory: %w", wideBytes>>20, err)
			}
		}
		if st.copied[i], err = d.drv.NewEvent(); err != nil {
			return st, fmt.Errorf("cuda: search: %w", err)
		}
	}
	return st, nil
}

// free releases the stage's memory and events, on the worker thread, once
// the stream has been waited for (a copy may still read the buffers).
func (st *keyStage) free(d *Device, ext driver.Extended) error {
	var errs []error
	for i := range 2 {
		for _, b := range [][]byte{st.half[i], st.wide[i]} {
			if b != nil {
				errs = append(errs, ext.HostFree(b))
			}
		}
		if st.copied[i] != nil {
			errs = append(errs, d.drv.DestroyEvent(st.copied[i]))
		}
	}
	return errors.Join(errs...)
}

// upload queues the copies of chunk c into half and wide (nil when the
// keys are all float16) and records c's event after them, on the worker
// thread.
func (st *keyStage) upload(ext driver.Extended, c keyChunk, half buf[uint16], wide buf[float32]) error {
	if err := ext.UploadAsync(half.p, c.half, st.copied[c.buf]); err != nil {
		return fmt.Errorf("cuda: search: copy to the GPU: %w", err)
	}
	if c.wide == nil {
		return nil
	}
	if err := ext.UploadAsync(wide.p, c.wide, st.copied[c.buf]); err != nil {
		return fmt.Errorf("cuda: search: copy to the GPU: %w", err)
	}
	return nil
}

// stream converts the keys into the stage chunk by chunk on a goroutine of
// its own, the host converting chunk i+1 while the GPU takes chunk i, and
// calls enqueue on the worker thread for each chunk in order: enqueue must
// queue the chunk's upload (st.upload) and may queue work on it. stream
// then waits for the upload's event before the converter may reuse the
// buffers. It returns the largest key norm and the number of chunks.
func (st *keyStage) stream(ctx context.Context, d *Device, keys *retrieval.Keys, dimp, chunkRows int, enqueue func(keyChunk) error) (float64, int, error) {
	nk, dim := keys.Rows(), keys.Dim
	free := make(chan int, 2)
	free <- 0
	free <- 1
	ready := make(chan keyChunk, 1)
	stop := make(chan struct{})
	// Stop the converter and wait for it before the pinned buffers it
	// writes can be freed.
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
			c.half = st.half[c.buf][:c.rows*int64(dimp)*2]
			half := unsafe.Slice((*uint16)(unsafe.Pointer(&c.half[0])), len(c.half)/2)
			c.norm, c.err = halfRowsParallel(keys, half, dimp, c.first, c.first+c.rows)
			if st.wide[c.buf] != nil && c.err == nil {
				c.wide = st.wide[c.buf][:c.rows*int64(dim)*4]
				_, c.err = keys.ReadRows(unsafe.Slice((*float32)(unsafe.Pointer(&c.wide[0])), len(c.wide)/4), c.first, c.first+c.rows)
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
			return 0, chunks, c.err
		}
		if err := ctx.Err(); err != nil {
			return 0, chunks, err
		}
		maxNorm = max(maxNorm, c.norm)
		// The wait returns once the GPU has copied the chunk (after the
		// work queued before it), while the converter fills the other
		// buffers.
		err := d.do(func() error {
			if err := enqueue(c); err != nil {
				return err
			}
			return d.drv.WaitEvent(st.copied[c.buf])
		})
		if err != nil {
			return 0, chunks, err
		}
		free <- c.buf
		chunks++
	}
	return maxNorm, chunks, nil
}

// rankAll writes each of the nq float16 queries q's w best keys by the
// float16 score, best first, with their reference scores for the float32
// queries qf, to out, in batches of up to searchQueryBatch queries. When
// all keys fit in GPU memory (allocSearch decides) they are copied there once,
// through the stage, and each batch ranks them in chunks of chunkRows;
// else the keys stream past the GPU once per batch, chunkRows at a time.
// wide sends float32 keys beside the float16 ones, for the reference
// scores. It returns the largest key norm.
func (s *Searcher) rankAll(ctx context.Context, q []uint16, qf []float32, nq int, keys *retrieval.Keys, dimp, w, chunkRows int, wide bool, out rankOut) (float64, error) {
	d := s.Dev
	nk, dim := keys.Rows(), keys.Dim
	qb := min(nq, searchQueryBatch)
	var parts int
	var bufs searchBuffers
	var st *keyStage
	var ext driver.Extended
	var mem uintptr
	var result []byte
	resident := false
	err := d.do(func() error {
		var ok bool
		if ext, ok = d.drv.(driver.Extended); !ok {
			return errors.New("cuda: search: the driver lacks the extended calls (dynamic shared memory, pinned memory)")
		}
		if err := ext.SetMaxDynamicShared(int(launch.KSearchF16Topw), searchMainBytes+searchBQ*w*8); err != nil {
			return launchError{fmt.Errorf("cuda: search: %w", err)}
		}
		slots := max(1, ext.Multiprocessors()) * searchBlocksPerSM
		parts = searchParts(nq, chunkRows, w, slots)
		var err error
		if mem, resident, err = s.allocSearch(qb, nk, chunkRows, dim, dimp, w, parts, wide); err != nil {
			return err
		}
		keyRows := chunkRows
		if resident {
			keyRows = int(nk)
		}
		a := arena{base: mem}
		bufs = layoutSearch(&a, qb, keyRows, dim, dimp, w, parts, wide)
		bufs.slots = slots
		if st, err = d.newKeyStage(ext, chunkRows, dim, dimp, wide); err != nil {
			return err
		}
		if result, err = ext.HostAlloc(qb * w * 20); err != nil {
			return fmt.Errorf("cuda: search: pinned host memory for the result: %w", err)
		}
		return nil
	})
	defer d.do(func() error {
		errs := []error{d.drv.Sync()} // before anything the stream may still use is freed
		if st != nil {
			errs = append(errs, st.free(d, ext))
		}
		if result != nil {
			errs = append(errs, ext.HostFree(result))
		}
		if mem != 0 {
			errs = append(errs, d.free(mem))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return 0, err
	}
	s.Last.Resident = resident

	var maxNorm float64
	if resident {
		start := time.Now()
		norm, chunks, err := st.stream(ctx, d, keys, dimp, chunkRows, func(c keyChunk) error {
			half, wide := bufs.keysAt(true, c.first, int(c.rows))
			return st.upload(ext, c, half, wide)
		})
		if err != nil {
			return 0, err
		}
		if err := d.do(d.sync); err != nil {
			return 0, err
		}
		maxNorm = norm
		s.Last.Chunks = chunks
		s.Last.UploadSeconds = time.Since(start).Seconds()
	}
	for q0 := 0; q0 < nq; q0 += qb {
		qn := min(qb, nq-q0)
		err := d.do(func() error {
			if err := upload(d, bufs.queriesF, qf[q0*dim:(q0+qn)*dim]); err != nil {
				return err
			}
			return upload(d, bufs.queries, q[q0*dimp:(q0+qn)*dimp])
		})
		if err != nil {
			return 0, err
		}
		if resident {
			for first := int64(0); first < nk; first += int64(chunkRows) {
				if err := ctx.Err(); err != nil {
					return 0, err
				}
				rows := int(min(int64(chunkRows), nk-first))
				half, wide := bufs.keysAt(true, first, rows)
				if err := d.do(func() error { return d.searchChunk(bufs, half, wide, qn, rows, first, first == 0) }); err != nil {
					return 0, err
				}
			}
		} else {
			norm, chunks, err := st.stream(ctx, d, keys, dimp, chunkRows, func(c keyChunk) error {
				half, wide := bufs.keysAt(false, c.first, int(c.rows))
				if err := st.upload(ext, c, half, wide); err != nil {
					return err
				}
				return d.searchChunk(bufs, half, wide, qn, int(c.rows), c.first, c.first == 0)
			})
			if err != nil {
				return 0, err
			}
			maxNorm = norm
			s.Last.Chunks += chunks
		}
		batch := rankOut{rows: out.rows[q0*w : (q0+qn)*w], scores: out.scores[q0*w : (q0+qn)*w], exact: out.exact[q0*w : (q0+qn)*w]}
		if err := d.do(func() error { return fetchRanked(d, ext, bufs, qn, result, batch) }); err != nil {
			return 0, err
		}
	}
	return maxNorm, nil
}

// allocSearch allocates the device memory of a search, on the worker
// thread: with all nk keys resident when they fit beside the rest and
// residentSpare (and s.NoResident is not set), else with one chunk of
// chunkRows keys. It returns the allocation and whether the keys are
// resident.
func (s *Searcher) allocSearch(qb int, nk int64, chunkRows, dim, dimp, w, parts int, wide bool) (uintptr, bool, error) {
	d := s.Dev
	size := func(keyRows int) int64 {
		var a arena
		layoutSearch(&a, qb, keyRows, dim, dimp, w, parts, wide)
		return a.off
	}
	if !s.NoResident {
		free, total, err := d.drv.MemInfo()
		if err != nil {
			return 0, false, fmt.Errorf("cuda: querying free memory: %w", err)
		}
		if bytes := size(int(nk)); bytes+residentSpare(total) <= free {
			p, err := d.alloc(bytes)
			if err == nil {
				return p, true, nil
			}
			if !d.drv.IsOutOfMemory(err) {
				return 0, false, err
			}
		}
	}
	bytes := size(chunkRows)
	p, err := d.alloc(bytes)
	if err != nil {
		return 0, false, d.oom(err, bytes, fmt.Sprintf("search of %d queries at a time, keys in chunks of %d", qb, chunkRows), "", "use a smaller chunk")
	}
	return p, false, nil
}

// fetchRanked copies the ranked lists of the batch's qn queries back
// through the pinned result buffer into out, on the worker thread.
func fetchRanked(d *Device, ext driver.Extended, bufs searchBuffers, qn int, result []byte, out rankOut) error {
	n := qn * bufs.w
	for _, c := range []struct {
		dst []byte
		src uintptr
	}{{result[:4*n], bufs.outS.p}, {result[4*n : 12*n], bufs.outID.p}, {result[12*n : 20*n], bufs.outExact.p}} {
		if err := ext.ToHostAsync(c.dst, c.src); err != nil {
			return fmt.Errorf("cuda: search: copy from the GPU: %w", err)
		}
	}
	if err := d.sync(); err != nil {
		return err
	}
	leconv.F32ToF32(out.scores, result[:4*n])
	leconv.I64ToI64(out.rows, result[4*n:12*n])
	leconv.F64ToF64(out.exact, result[12*n:20*n])
	return nil
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

// searchChunk launches the ranking of the nk keys half (rows first.. of
// the index; wide their float32 copy, or nothing) for the qn queries,
// merging into the running best lists (b.outS/outID), which it starts
// when fresh.
func (d *Device) searchChunk(b searchBuffers, half buf[uint16], wide buf[float32], qn, nk int, first int64, fresh bool) error {
	splits, kps := searchSplits(qn, nk, b.slots)
	list := qn * b.w
	if (splits+1)*list > b.partS.n || nk*b.dimp > half.n || qn > b.nq || b.w > searchMaxW ||
		int64(splits)*int64(kps)+searchBN > math.MaxInt32 {
		return fmt.Errorf("cuda: search: chunk of %d keys in %d splits, %d queries, width %d: beyond its buffers", nk, splits, qn, b.w)
	}
	cfg := driver.LaunchConfig{Grid: [3]int{(qn + searchBQ - 1) / searchBQ, splits, 1}, Block: [3]int{threads, 1, 1},
		SharedBytes: searchMainBytes + searchBQ*b.w*8}
	wk := work{shape: fmt.Sprintf("%d queries x %d keys x %d", qn, nk, b.dimp), flops: 2 * float64(qn) * float64(nk) * float64(b.dimp)}
	// Slot 0 of the parts holds the running lists; the chunk's splits go
	// to slots 1..splits.
	if err := launch.SearchF16Topw(d.with(wk), cfg, b.partS.at(list, splits*list).ptr(), b.partID.at(list, splits*list).ptr(),
		b.queries.cptr(), half.cptr(), int32(qn), int32(nk), int32(b.dimp), int32(b.w), int32(kps), first); err != nil {
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
	if err := launch.SearchRescore(d.with(rw), rcfg, b.outExact.ptr(), b.outID.cptr(), b.queriesF.cptr(), half.cptr(),
		wide.cptr(), int32(qn), int32(b.w), int32(b.dim), int32(b.dimp), int32(nk), first); err != nil {
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
