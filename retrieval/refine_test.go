package retrieval_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/retrieval/searchtest"
)

// float32Ranker is a Searcher built the way a device's is: a plain float32
// ranking (summed backwards, unlike the CPU's GEMM) of the width best rows,
// made exact by Refine, with the queries it cannot prove re-run on the CPU.
type float32Ranker struct {
	extra    int // width = k + extra
	unproven int // queries re-run on the CPU so far
}

func (f *float32Ranker) Search(ctx context.Context, queries []float32, nq int, keys *retrieval.Keys, k int) (*retrieval.Neighbors, error) {
	if err := retrieval.CheckSearch(queries, nq, keys, k); err != nil {
		return nil, err
	}
	dim, nk := keys.Dim, int(keys.Rows())
	x := make([]float32, nk*dim)
	maxNorm, err := keys.ReadRows(x, 0, int64(nk))
	if err != nil {
		return nil, err
	}
	rel, abs := retrieval.ErrorBound(dim)
	width := min(k+f.extra, nk)
	rows := make([]int64, 0, nq*width)
	leftOut := make([]float64, nq)
	s := make([]float32, nk)
	order := make([]int64, nk)
	for q := range nq {
		for j := range nk {
			var sum float32
			for i := dim - 1; i >= 0; i-- {
				sum += queries[q*dim+i] * x[j*dim+i]
			}
			s[j], order[j] = sum, int64(j)
		}
		slices.SortStableFunc(order, func(a, b int64) int {
			switch {
			case s[a] > s[b]:
				return -1
			case s[a] < s[b]:
				return 1
			}
			return 0
		})
		var qn2 float64
		for _, v := range queries[q*dim : (q+1)*dim] {
			qn2 += float64(v) * float64(v)
		}
		rows = append(rows, order[:width]...)
		leftOut[q] = float64(s[order[width-1]]) + rel*math.Sqrt(qn2)*maxNorm + abs
	}
	nb, unproven, err := retrieval.Refine(queries, nq, keys, k, rows, width, leftOut)
	if err != nil {
		return nil, err
	}
	f.unproven += len(unproven)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nb, retrieval.MergeQueries(ctx, &retrieval.CPUSearcher{}, nb, queries, keys, k, unproven)
}

// A device-style ranking refined by Refine passes the same suite as the
// CPU searcher; on the near-tie cases it must fall back for some queries,
// and on random data it must not need to.
func TestRefinedFloat32Ranking(t *testing.T) {
	f := &float32Ranker{extra: 4}
	searchtest.Run(t, f)
	if f.unproven == 0 {
		t.Error("no query needed the fallback: the near-tie cases do not reach it")
	}
	g := &float32Ranker{extra: 8}
	for _, c := range searchtest.Cases() {
		if c.Name == "gaussian/q9_k2000_d512_top10/half=true" {
			keys, _ := searchtest.Keys(t, c.Dim, c.Segments...)
			if _, err := g.Search(context.Background(), c.Queries, c.NQueries, keys, c.K); err != nil {
				t.Fatal(err)
			}
		}
	}
	if g.unproven != 0 {
		t.Errorf("random data: %d queries unproven, want 0", g.unproven)
	}
}

// Refine refuses candidates it cannot use: out of range, listed twice, or
// lists and bounds of the wrong length.
func TestRefineErrors(t *testing.T) {
	keys, _ := searchtest.Keys(t, 2, searchtest.Segment{Rows: 3, Data: []float32{1, 0, 0, 1, 1, 1}})
	q := []float32{1, 0, 0, 1}
	for _, c := range []struct {
		name    string
		rows    []int64
		width   int
		leftOut []float64
		want    string
	}{
		{"out of range", []int64{0, 3, 1, 2}, 2, []float64{0, 0}, "candidate row 3"},
		{"negative", []int64{-1, 0, 1, 2}, 2, []float64{0, 0}, "candidate row -1"},
		{"twice", []int64{0, 0, 1, 2}, 2, []float64{0, 0}, "twice"},
		{"short", []int64{0, 1, 2}, 2, []float64{0, 0}, "candidates"},
		{"bounds", []int64{0, 1, 1, 2}, 2, []float64{0}, "bounds"},
		{"width below k", []int64{0, 1}, 1, []float64{0, 0}, "width"},
	} {
		if _, _, err := retrieval.Refine(q, 2, keys, 2, c.rows, c.width, c.leftOut); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// A query whose k-th exact score does not beat its bound is unproven.
	_, unproven, err := retrieval.Refine(q, 2, keys, 1, []int64{2, 0}, 1, []float64{0.5, 1})
	if err != nil || !slices.Equal(unproven, []int{1}) {
		t.Errorf("unproven %v (err %v), want [1]", unproven, err)
	}
}
