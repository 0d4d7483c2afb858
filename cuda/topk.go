//go:build cuda

package cuda

import (
	"context"
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/retrieval"
)

// MaxTopK is the largest k that TopK takes.
const MaxTopK = MaxSearchK

// TopK is retrieval.TopK on the GPU, with the same answer: for each of the
// nQueries rows of queries [nQueries, dim], the min(k, nKeys) rows of keys
// [nKeys, dim] with the largest dot products, best first, equal scores by
// the lower key index, and their float64 reference scores rounded to
// float32 (retrieval.Searcher's contract). It ranks with the fused
// tensor-core search (Searcher) and never forms the score matrix; it does
// not normalise (retrieval normalises on the host first).
//
// Errors: a shape that does not match its slice, k < 1 or k > MaxTopK, a
// NaN or an infinity in the inputs, a key beyond float16's range, or a
// failure on the GPU.
func (d *Device) TopK(queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error) {
	if err := checkMatrix("queries", queries, nQueries, dim); err != nil {
		return nil, nil, err
	}
	if err := checkMatrix("keys", keys, nKeys, dim); err != nil {
		return nil, nil, err
	}
	if k < 1 || k > MaxTopK {
		return nil, nil, fmt.Errorf("cuda: top-k: k = %d, need 1 to %d", k, MaxTopK)
	}
	if nKeys > math.MaxInt32 {
		return nil, nil, fmt.Errorf("cuda: top-k: %d keys do not fit int32 indices", nKeys)
	}
	km, err := retrieval.Float32Keys("keys", keys, nKeys, dim)
	if err != nil {
		return nil, nil, err
	}
	nb, err := (&Searcher{Dev: d}).Search(context.Background(), queries, nQueries, km, k)
	if err != nil {
		return nil, nil, err
	}
	indices = make([]int32, len(nb.Rows))
	for i, r := range nb.Rows {
		indices[i] = int32(r)
	}
	return indices, nb.Scores, nil
}

// checkMatrix is retrieval's check: x is an n x dim row-major matrix of
// finite values.
func checkMatrix(name string, x []float32, n, dim int) error {
	if n < 1 {
		return fmt.Errorf("cuda: %s has %d rows, need at least 1", name, n)
	}
	if dim < 1 {
		return fmt.Errorf("cuda: dimension %d, need at least 1", dim)
	}
	if len(x)%dim != 0 || len(x)/dim != n {
		return fmt.Errorf("cuda: %s has %d values, want %d rows x %d", name, len(x), n, dim)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("cuda: %s[%d][%d] is %v, need finite values", name, i/dim, i%dim, v)
		}
	}
	return nil
}
