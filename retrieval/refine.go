package retrieval

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Refine turns a ranking made elsewhere, in faster and less exact
// arithmetic (a GPU's float16 tensor cores), into the exact answer of the
// [Searcher] contract, as far as it can prove it.
//
// For each query q, candRows[q*width:] holds width distinct candidate rows,
// the width best by that ranking, and approx their approximate scores, in
// the units of the reference score S; errBound[q] bounds |approx − S| for
// every key of the index (for float32 arithmetic, [ErrorBound]). Every row
// left out thus has S ≤ s_min + errBound[q], s_min the lowest candidate's
// approximate score.
//
// Refine re-scores with S the candidates that can be among the k best (a
// candidate whose approximate score is more than 2·errBound[q] below the
// k-th highest cannot) and keeps the k best. Those are provably the exact
// answer when width covers all keys, or when the k-th of them beats every
// row left out: S_k > s_min + errBound[q]. Queries for which this fails are
// listed in unproven (their rows in the answer are then not to be
// trusted); a caller re-runs them with an exact searcher (MergeQueries).
//
// exact, when not nil, holds the candidates' reference scores S, computed
// elsewhere in S's own arithmetic (a GPU's float64, in index order), and
// Refine takes them instead of re-scoring on the host.
func Refine(queries []float32, nQueries int, keys *Keys, k int, candRows []int64, approx []float64, width int, errBound []float64, exact []float64) (nb *Neighbors, unproven []int, err error) {
	if err := CheckSearch(queries, nQueries, keys, k); err != nil {
		return nil, nil, err
	}
	nKeys := keys.Rows()
	kOut := int(min(int64(k), nKeys))
	if width < kOut || int64(width) > nKeys || len(candRows) != nQueries*width || len(approx) != nQueries*width || len(errBound) != nQueries ||
		exact != nil && len(exact) != nQueries*width {
		return nil, nil, fmt.Errorf("retrieval: %d candidates, %d scores and %d bounds for %d queries of width %d (k = %d, %d keys)",
			len(candRows), len(approx), len(errBound), nQueries, width, kOut, nKeys)
	}
	for i, v := range approx {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("retrieval: query %d: candidate score %v", i/width, v)
		}
	}
	for q, e := range errBound {
		if !(e >= 0) || math.IsInf(e, 1) {
			return nil, nil, fmt.Errorf("retrieval: query %d: error bound %v", q, e)
		}
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
			cands := make([]scored, 0, width)
			sorted := make([]float64, width)
			rows := make([]int64, width)
			var qerr error
			ferr := keys.guard(func() {
				for {
					q0 := int(next.Add(block)) - block
					if q0 >= nQueries {
						return
					}
					for q := q0; q < min(q0+block, nQueries); q++ {
						c := candidates{candRows[q*width : (q+1)*width], approx[q*width : (q+1)*width], errBound[q], nil}
						if exact != nil {
							c.exact = exact[q*width : (q+1)*width]
						}
						if qerr = c.refine(nb, proven, q, queries[q*dim:(q+1)*dim], keys, kOut, row, cands, sorted, rows); qerr != nil {
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

// candidates are one query's input to Refine.
type candidates struct {
	rows   []int64
	approx []float64
	bound  float64
	exact  []float64 // reference scores computed elsewhere, or nil
}

// refine is Refine for query q: it re-scores the candidates that can be
// among the k best, writes the k best to nb and sets proven[q] when they
// are provably the answer. row, cands, sorted and rows are scratch.
func (c candidates) refine(nb *Neighbors, proven []bool, q int, qv []float32, keys *Keys, kOut int, row []float32, cands []scored, sorted []float64, rows []int64) error {
	nKeys := keys.Rows()
	copy(rows, c.rows)
	slices.Sort(rows)
	for j, r := range rows {
		if r < 0 || r >= nKeys {
			return fmt.Errorf("retrieval: query %d: candidate row %d of %d keys", q, r, nKeys)
		}
		if j > 0 && r == rows[j-1] {
			return fmt.Errorf("retrieval: query %d: candidate row %d listed twice", q, r)
		}
	}
	copy(sorted, c.approx)
	slices.Sort(sorted)
	width := len(c.rows)
	// The kOut best by approximate score have S ≥ sK − bound; a candidate
	// with approx + bound below that cannot beat them.
	cut := math.Nextafter(sorted[width-kOut]-2*c.bound, math.Inf(-1))
	for j, r := range c.rows {
		if c.approx[j] < cut {
			continue
		}
		if c.exact != nil {
			if math.IsNaN(c.exact[j]) || math.IsInf(c.exact[j], 0) {
				return fmt.Errorf("retrieval: query %d: candidate row %d has reference score %v", q, r, c.exact[j])
			}
			cands = append(cands, scored{r, c.exact[j]})
		} else {
			cands = append(cands, scored{r, keys.exactScore(qv, r, row)})
		}
	}
	sortRanked(cands)
	for j := range kOut {
		nb.Rows[q*kOut+j] = cands[j].row
		nb.Scores[q*kOut+j] = float32(cands[j].score)
	}
	proven[q] = int64(width) == nKeys || cands[kOut-1].score > math.Nextafter(sorted[0]+c.bound, math.Inf(1))
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
