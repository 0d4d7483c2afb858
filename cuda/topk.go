//go:build cuda

package cuda

import (
	"context"

	"github.com/dinoclip/dinoclip/retrieval"
)

// TopK is retrieval.TopK on the GPU, with the same answer: for each of the
// nQueries rows of queries [nQueries, dim], the min(k, nKeys) rows of keys
// [nKeys, dim] with the largest dot products, best first, equal scores by
// the lower key index, and their float64 reference scores rounded to
// float32 (retrieval.Searcher's contract). It ranks with the fused
// tensor-core search (Searcher) and never forms the score matrix; it does
// not normalise (retrieval normalises on the host first).
//
// Errors: those of retrieval.TopK (a shape that does not match its slice,
// k < 1, a NaN or an infinity in the inputs), a key beyond float16's
// range, k > MaxSearchK, or a failure on the GPU.
func (d *Device) TopK(queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error) {
	return retrieval.TopKWith(context.Background(), &Searcher{Dev: d}, queries, keys, nQueries, nKeys, dim, k)
}
