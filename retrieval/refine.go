package retrieval

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// Float32s decodes all key rows to one float32 matrix, for a device that
// ranks float32 keys held in its own memory, and returns the largest row
// norm (for the error bound of [Refine]). It is the one place a search
// makes a float32 copy of the keys, so it refuses more than maxBytes.
func (k *Keys) Float32s(maxBytes int64) ([]float32, float64, error) {
	n := k.Rows()
	if n*int64(k.Dim)*4 > maxBytes {
		return nil, 0, fmt.Errorf("retrieval: %d keys × %d as float32 are %d MiB, more than the %d MiB allowed", n, k.Dim, n*int64(k.Dim)*4>>20, maxBytes>>20)
	}
	out := make([]float32, n*int64(k.Dim))
	norms2 := make([]float64, keyTile)
	var maxNorm2 float64
	for s, seg := range k.Segments {
		off := k.offsets[s]
		for lo := 0; lo < seg.Rows; lo += keyTile {
			hi := min(lo+keyTile, seg.Rows)
			dst := out[(off+int64(lo))*int64(k.Dim) : (off+int64(hi))*int64(k.Dim)]
			if err := k.decode(dst, norms2[:hi-lo], s, lo, hi); err != nil {
				return nil, 0, err
			}
			maxNorm2 = max(maxNorm2, slices.Max(norms2[:hi-lo]))
		}
	}
	return out, math.Sqrt(maxNorm2), nil
}

// Refine turns a float32 top-width ranking made elsewhere (a GPU's) into
// the exact answer of the [Searcher] contract, as far as it can prove it.
//
// candRows holds, for each query, the width rows with the highest float32
// scores by that ranking, and candScores their float32 scores; every row
// left out scored at most the lowest of them in the same arithmetic.
// Refine re-scores the candidates with the reference score S and keeps the
// k best. Those are provably the exact answer when width covers all keys,
// or when the k-th of them beats every row left out: S_k > s_min + E,
// where s_min is the lowest candidate's float32 score and E the
// [ErrorBound] for the query's norm and maxKeyNorm (a left-out row has
// S ≤ s32 + E ≤ s_min + E). Queries for which this fails are listed in
// unproven (their rows in the answer are then not to be trusted); a
// caller re-runs them with an exact searcher (MergeQueries).
func Refine(queries []float32, nQueries int, keys *Keys, k int, candRows []int64, candScores []float32, width int, maxKeyNorm float64) (nb *Neighbors, unproven []int, err error) {
	if err := CheckSearch(queries, nQueries, keys, k); err != nil {
		return nil, nil, err
	}
	nKeys := keys.Rows()
	kOut := int(min(int64(k), nKeys))
	if width < kOut || len(candRows) != nQueries*width || len(candScores) != nQueries*width {
		return nil, nil, fmt.Errorf("retrieval: %d candidates and %d scores for %d queries of width %d (k = %d)", len(candRows), len(candScores), nQueries, width, kOut)
	}
	dim := keys.Dim
	rel, abs := ErrorBound(dim)
	nb = &Neighbors{Queries: nQueries, K: kOut, Rows: make([]int64, nQueries*kOut), Scores: make([]float32, nQueries*kOut)}
	row := make([]float32, dim)
	cands := make([]scored, width)
	for q := range nQueries {
		qv := queries[q*dim : (q+1)*dim]
		var qn2 float64
		for _, v := range qv {
			qn2 += float64(v) * float64(v)
		}
		sMin := math.Inf(1)
		for j := range width {
			r := candRows[q*width+j]
			if r < 0 || r >= nKeys {
				return nil, nil, fmt.Errorf("retrieval: query %d: candidate row %d of %d keys", q, r, nKeys)
			}
			cands[j] = scored{r, keys.exactScore(qv, r, row)}
			sMin = min(sMin, float64(candScores[q*width+j]))
		}
		slices.SortFunc(cands, func(a, b scored) int {
			if a.before(b) {
				return -1
			}
			return 1
		})
		for j := range kOut {
			nb.Rows[q*kOut+j] = cands[j].row
			nb.Scores[q*kOut+j] = float32(cands[j].score)
		}
		bound := sMin + rel*math.Sqrt(qn2)*maxKeyNorm + abs
		if int64(width) < nKeys && !(cands[kOut-1].score > bound) {
			unproven = append(unproven, q)
		}
	}
	return nb, unproven, nil
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
