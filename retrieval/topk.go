package retrieval

import (
	"context"
	"fmt"
	"math"
)

// TopK returns, for each of the nQueries rows of queries, the k rows of keys
// with the largest dot products, best first: the exact search of
// [CPUSearcher] (see [Searcher] for the scores and the order) on in-memory
// float32 matrices, with int32 row indices. queries is nQueries×dim and
// keys is nKeys×dim, both row-major. TopK does not normalise: normalise both
// sides first (NormalizeRows) to rank by cosine.
//
// Each query gets kOut = min(k, nKeys) entries, so both results have length
// nQueries·kOut: indices[q*kOut+p] is the key at 0-based position p of query
// q's list and scores[q*kOut+p] its score, the float64 reference score
// rounded to float32. Another implementation (a GPU kernel) whose scores are
// float32 sums in another order can differ in the last bits and swap keys
// whose scores are that close; a parity test should use inputs whose dot
// products are exact in any order (integers of magnitude at most 256 with
// partial sums below 2²⁴) or allow such swaps within a stated tolerance.
//
// TopK returns an error if a shape does not match its slice, if k < 1, if
// nKeys does not fit in an int32, or if an input holds a NaN or an infinity
// (which would leave the order undefined).
func TopK(queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error) {
	return TopKContext(context.Background(), queries, keys, nQueries, nKeys, dim, k)
}

// TopKContext is TopK stopped with ctx's error once ctx is done: the
// search looks at ctx between its tiles of keys (CPUSearcher.Search), so a
// ranking of minutes stops within a tile's work.
func TopKContext(ctx context.Context, queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error) {
	return TopKWith(ctx, &CPUSearcher{}, queries, keys, nQueries, nKeys, dim, k)
}

// TopKWith is TopKContext on the searcher s (a GPU's, say), which ranks the
// float32 keys as they are (Float32Keys) under [Searcher]'s contract; the
// arguments are checked as TopK checks them, whatever s is.
func TopKWith(ctx context.Context, s Searcher, queries, keys []float32, nQueries, nKeys, dim, k int) ([]int32, []float32, error) {
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
	km, err := Float32Keys("keys", keys, nKeys, dim)
	if err != nil {
		return nil, nil, err
	}
	nb, err := s.Search(ctx, queries, nQueries, km, k)
	if err != nil {
		return nil, nil, err
	}
	indices := make([]int32, len(nb.Rows))
	for i, r := range nb.Rows {
		indices[i] = int32(r)
	}
	return indices, nb.Scores, nil
}
