package retrieval

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Block sizes of TopK. The product of one query block and one key block is
// the only score storage a goroutine holds.
//
// They are kept at or under gonum's own Sgemm tiling (64×64 tiles, which go
// parallel from 4 tiles up and then sum the inner dimension in 64-wide
// pieces): a 64×128 call stays on gonum's serial path, where every score is a
// single blas32.Dot of the two rows. Scores, and with them near-tie orders,
// then do not depend on where a block boundary falls, and the tests can check
// them bit for bit against blas32.Dot.
const (
	queryBlock = 64
	keyBlock   = 128
)

// blocking is how topK cuts the work: rows of queries and keys per block and
// the number of goroutines. Tests use small blocks to reach every edge case.
type blocking struct {
	queries, keys, workers int
}

// TopK returns, for each of the nQueries rows of queries, the k rows of keys
// with the largest dot products, best first. queries is nQueries×dim and keys
// is nKeys×dim, both row-major. TopK does not normalise: normalise both sides
// first (NormalizeRows) to rank by cosine.
//
// Each query gets kOut = min(k, nKeys) entries, so both results have length
// nQueries·kOut: indices[q*kOut+p] is the key at 0-based position p of query
// q's list and scores[q*kOut+p] its score. Lists are ordered by score, higher
// first, and equal scores by the lower key index (see the package
// documentation for the rank this implies).
//
// The score of query row q and key row j is the float32 dot product as
// blas32.Dot(query row, key row) computes it on the same slices, bit for bit
// (gonum's assembly picks its summation order from the key row's address
// modulo 16, which is fixed for given inputs). float32 rounding depends on
// the order of summation, so another implementation (a GPU kernel, say) that
// sums in another order can differ in the last bits and swap keys whose
// scores are that close. A parity test should therefore either
//   - use inputs whose dot products are exact in any order: integers of
//     magnitude at most 256 (exact in TF32 and bfloat16 too) with every
//     partial sum below 2²⁴ in magnitude; then indices and scores must be
//     identical, ties included, or
//   - on real-valued inputs, require identical indices except where the two
//     swapped keys' scores differ by less than a stated tolerance.
//
// Goroutines (up to GOMAXPROCS) split the queries in blocks of 64, so fewer
// than 64·GOMAXPROCS queries leave cores idle.
//
// TopK returns an error if a shape does not match its slice, if k < 1, if
// nKeys does not fit in an int32, or if an input holds a NaN or an infinity
// (which would leave the order undefined).
func TopK(queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error) {
	if err := checkMatrix("queries", queries, nQueries, dim); err != nil {
		return nil, nil, err
	}
	if err := checkMatrix("keys", keys, nKeys, dim); err != nil {
		return nil, nil, err
	}
	if k < 1 {
		return nil, nil, fmt.Errorf("retrieval: k = %d, need at least 1", k)
	}
	if nKeys > math.MaxInt32 {
		return nil, nil, fmt.Errorf("retrieval: %d keys do not fit int32 indices", nKeys)
	}
	indices, scores = topK(queries, keys, nQueries, nKeys, dim, k,
		blocking{queries: queryBlock, keys: keyBlock, workers: runtime.GOMAXPROCS(0)})
	return indices, scores, nil
}

// topK is TopK on validated inputs with the given blocking.
//
// Goroutines claim whole query blocks, so a query's list is only ever
// touched by one goroutine and no merging or locking is needed; within a
// block, key blocks are visited in index order.
func topK(queries, keys []float32, nQueries, nKeys, dim, k int, b blocking) ([]int32, []float32) {
	kOut := min(k, nKeys)
	indices := make([]int32, nQueries*kOut)
	scores := make([]float32, nQueries*kOut)

	nBlocks := (nQueries + b.queries - 1) / b.queries
	workers := max(1, min(b.workers, nBlocks))
	var nextBlock atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			tile := make([]float32, b.queries*b.keys)
			filled := make([]int, b.queries)
			for {
				blk := int(nextBlock.Add(1) - 1)
				if blk >= nBlocks {
					return
				}
				q0 := blk * b.queries
				qn := min(b.queries, nQueries-q0)
				clear(filled[:qn])
				qm := blas32.General{Rows: qn, Cols: dim, Stride: dim, Data: queries[q0*dim : (q0+qn)*dim]}
				for k0 := 0; k0 < nKeys; k0 += b.keys {
					kn := min(b.keys, nKeys-k0)
					km := blas32.General{Rows: kn, Cols: dim, Stride: dim, Data: keys[k0*dim : (k0+kn)*dim]}
					sm := blas32.General{Rows: qn, Cols: kn, Stride: kn, Data: tile[:qn*kn]}
					blas32.Gemm(blas.NoTrans, blas.Trans, 1, qm, km, 0, sm)
					for i := range qn {
						q := q0 + i
						list := topList{
							indices: indices[q*kOut : (q+1)*kOut],
							scores:  scores[q*kOut : (q+1)*kOut],
							n:       filled[i],
						}
						for j, s := range sm.Data[i*kn : (i+1)*kn] {
							list.offer(s, int32(k0+j))
						}
						filled[i] = list.n
					}
				}
			}
		})
	}
	wg.Wait()
	return indices, scores
}

// ranksBefore reports whether key i with score s precedes key j with score t
// under the package's order: higher score first, then lower index.
func ranksBefore(s float32, i int32, t float32, j int32) bool {
	return s > t || (s == t && i < j)
}

// topList is one query's best keys so far, best first, held in caller-owned
// slices whose length is the list's capacity. A sorted array beats a heap
// here: k is small (10 for recall@10), and nearly every offer is rejected by
// one comparison with the last entry.
type topList struct {
	indices []int32
	scores  []float32
	n       int // entries in use
}

// offer inserts key idx with score s if it belongs among the best.
func (l *topList) offer(s float32, idx int32) {
	if l.n == len(l.indices) {
		last := l.n - 1
		if !ranksBefore(s, idx, l.scores[last], l.indices[last]) {
			return
		}
		l.n-- // the last entry makes room
	}
	p := l.n
	for p > 0 && ranksBefore(s, idx, l.scores[p-1], l.indices[p-1]) {
		l.scores[p] = l.scores[p-1]
		l.indices[p] = l.indices[p-1]
		p--
	}
	l.scores[p] = s
	l.indices[p] = idx
	l.n++
}
