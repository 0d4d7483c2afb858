package retrieval

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
)

// Refine turns a ranking made elsewhere, in faster and less exact
// arithmetic (a GPU's float16 tensor cores), into the exact answer of the
// [Searcher] contract, as far as it can prove it.
//
// candRows holds, for each query, width candidate rows: the width best by
// that ranking. leftOut[q] is an upper bound, in the units of the reference
// score S, on S of every row left out of query q's candidates: the lowest
// candidate's approximate score plus the bound on that arithmetic's error
// (for float32, [ErrorBound]). Refine re-scores the candidates with S and
// keeps the k best. Those are provably the exact answer when width covers
// all keys, or when the k-th of them beats every row left out:
// S_k > leftOut[q]. Queries for which this fails are listed in unproven
// (their rows in the answer are then not to be trusted); a caller re-runs
// them with an exact searcher (MergeQueries).
func Refine(queries []float32, nQueries int, keys *Keys, k int, candRows []int64, width int, leftOut []float64) (nb *Neighbors, unproven []int, err error) {
	if err := CheckSearch(queries, nQueries, keys, k); err != nil {
		return nil, nil, err
	}
	nKeys := keys.Rows()
	kOut := int(min(int64(k), nKeys))
	if width < kOut || int64(width) > nKeys || len(candRows) != nQueries*width || len(leftOut) != nQueries {
		return nil, nil, fmt.Errorf("retrieval: %d candidates and %d bounds for %d queries of width %d (k = %d, %d keys)", len(candRows), len(leftOut), nQueries, width, kOut, nKeys)
	}
	dim := keys.Dim
	nb = &Neighbors{Queries: nQueries, K: kOut, Rows: make([]int64, nQueries*kOut), Scores: make([]float32, nQueries*kOut)}
	proven := make([]bool, nQueries)
	// Queries are independent: workers take blocks of them in turn.
	const block = 64
	var next atomic.Int64
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			row := make([]float32, dim)
			cands := make([]scored, width)
			var qerr error
			ferr := mmapfault.Guard(func() {
				for {
					q0 := int(next.Add(block)) - block
					if q0 >= nQueries {
						return
					}
					for q := q0; q < min(q0+block, nQueries); q++ {
						if qerr = refineQuery(nb, proven, q, queries[q*dim:(q+1)*dim], keys, kOut, candRows[q*width:(q+1)*width], leftOut[q], row, cands); qerr != nil {
							return
						}
					}
				}
			})
			errs[w] = cmp.Or(qerr, ferr)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	for q, ok := range proven {
		if !ok {
			unproven = append(unproven, q)
		}
	}
	return nb, unproven, nil
}

// refineQuery is Refine for query q: it re-scores the candidates, writes
// the k best to nb and sets proven[q] when they are provably the answer.
func refineQuery(nb *Neighbors, proven []bool, q int, qv []float32, keys *Keys, kOut int, candRows []int64, leftOut float64, row []float32, cands []scored) error {
	nKeys := keys.Rows()
	for j, r := range candRows {
		if r < 0 || r >= nKeys {
			return fmt.Errorf("retrieval: query %d: candidate row %d of %d keys", q, r, nKeys)
		}
		cands[j] = scored{r, keys.exactScore(qv, r, row)}
	}
	slices.SortFunc(cands, func(a, b scored) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	for j := 1; j < len(cands); j++ {
		if cands[j].row == cands[j-1].row {
			return fmt.Errorf("retrieval: query %d: candidate row %d listed twice", q, cands[j].row)
		}
	}
	for j := range kOut {
		nb.Rows[q*kOut+j] = cands[j].row
		nb.Scores[q*kOut+j] = float32(cands[j].score)
	}
	proven[q] = int64(len(cands)) == nKeys || cands[kOut-1].score > leftOut
	return nil
}

// MergeQueries re-runs the listed queries of nb with s and puts their
// answers in place: the fallback of a device ranking that Refine could not
// prove exact.
func MergeQueries(ctx context.Context, s Searcher, nb *Neighbors, queries []float32, keys *Keys, k int, which []int) error {
	if len(which) == 0 {
		return nil
	}
	dim := keys.Dim
	sub := make([]float32, 0, len(which)*dim)
	for _, q := range which {
		sub = append(sub, queries[q*dim:(q+1)*dim]...)
	}
	again, err := s.Search(ctx, sub, len(which), keys, k)
	if err != nil {
		return err
	}
	if again.K != nb.K {
		return fmt.Errorf("retrieval: re-run answers %d per query, not %d", again.K, nb.K)
	}
	for i, q := range which {
		copy(nb.Rows[q*nb.K:(q+1)*nb.K], again.Rows[i*nb.K:(i+1)*nb.K])
		copy(nb.Scores[q*nb.K:(q+1)*nb.K], again.Scores[i*nb.K:(i+1)*nb.K])
	}
	return nil
}
