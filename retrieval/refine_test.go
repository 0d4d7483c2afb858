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
	approx := make([]float64, 0, nq*width)
	bounds := make([]float64, nq)
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
		for _, j := range order[:width] {
			approx = append(approx, float64(s[j]))
		}
		bounds[q] = rel*math.Sqrt(qn2)*maxNorm + abs
	}
	nb, unproven, err := retrieval.Refine(queries, nq, keys, k, rows, approx, width, bounds, nil)
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

// Refine refuses candidates it cannot use: out of range, listed twice,
// lists and bounds of the wrong length, non-finite scores or bounds.
func TestRefineErrors(t *testing.T) {
	keys, _ := searchtest.Keys(t, 2, searchtest.Segment{Rows: 3, Data: []float32{1, 0, 0, 1, 1, 1}})
	q := []float32{1, 0, 0, 1}
	ok4 := []float64{1, 0, 1, 0}
	for _, c := range []struct {
		name   string
		rows   []int64
		approx []float64
		width  int
		bounds []float64
		want   string
	}{
		{"out of range", []int64{0, 3, 1, 2}, ok4, 2, []float64{0, 0}, "candidate row 3"},
		{"negative", []int64{-1, 0, 1, 2}, ok4, 2, []float64{0, 0}, "candidate row -1"},
		{"twice", []int64{0, 0, 1, 2}, ok4, 2, []float64{0, 0}, "twice"},
		{"short", []int64{0, 1, 2}, ok4, 2, []float64{0, 0}, "candidates"},
		{"short scores", []int64{0, 1, 1, 2}, ok4[:3], 2, []float64{0, 0}, "scores"},
		{"bounds", []int64{0, 1, 1, 2}, ok4, 2, []float64{0}, "bounds"},
		{"width below k", []int64{0, 1}, ok4[:2], 1, []float64{0, 0}, "width"},
		{"NaN score", []int64{0, 1, 1, 2}, []float64{1, math.NaN(), 1, 0}, 2, []float64{0, 0}, "NaN"},
		{"negative bound", []int64{0, 1, 1, 2}, ok4, 2, []float64{0, -1}, "bound -1"},
		{"NaN bound", []int64{0, 1, 1, 2}, ok4, 2, []float64{math.NaN(), 0}, "bound NaN"},
	} {
		if _, _, err := retrieval.Refine(q, 2, keys, 2, c.rows, c.approx, c.width, c.bounds, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// A query whose k-th exact score does not beat the lowest candidate's
	// score plus its bound is unproven.
	_, unproven, err := retrieval.Refine([]float32{1, 0.5, 0, 1}, 2, keys, 1, []int64{2, 0, 1, 2}, []float64{1.5, 1, 1, 1}, 2, []float64{0.2, 0.2}, nil)
	if err != nil || !slices.Equal(unproven, []int{1}) {
		t.Errorf("unproven %v (err %v), want [1]", unproven, err)
	}
	// A k-th exact score equal to the best an unlisted row could reach
	// (the lowest listed score plus the bound) proves nothing: unlisted
	// row 0 ties it, and ranks first.
	ties, _ := searchtest.Keys(t, 1, searchtest.Segment{Rows: 2, Data: []float32{1, 1}})
	nb, unproven, err := retrieval.Refine([]float32{1}, 1, ties, 1, []int64{1}, []float64{0.5}, 1, []float64{0.5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(unproven) == 0 {
		t.Errorf("rows %v proven: unlisted row 0 ties and ranks first", nb.Rows)
	}
}

// Candidates whose approximate score lies more than twice the bound below
// the k-th cannot be among the k best and are not re-scored; one within
// reach is. (Row 2's approximate scores here break the bound on purpose,
// so that the answer shows whether it was re-scored.)
func TestRefineSkipsHopeless(t *testing.T) {
	keys, _ := searchtest.Keys(t, 1, searchtest.Segment{Rows: 4, Data: []float32{4, 3, 5, 1}})
	q := []float32{1}
	// k = 2, bound 0.1: the cut is 3 - 0.2; row 2 claimed at 2 is skipped.
	nb, _, err := retrieval.Refine(q, 1, keys, 2, []int64{0, 1, 2}, []float64{4, 3, 2}, 3, []float64{0.1}, nil)
	if err != nil || !slices.Equal(nb.Rows, []int64{0, 1}) {
		t.Fatalf("rows %v (err %v), want [0 1]", nb.Rows, err)
	}
	// Claimed at 2.85 (within twice the bound, not within once) it is
	// re-scored, and its exact score ranks it first.
	nb, _, err = retrieval.Refine(q, 1, keys, 2, []int64{0, 2, 1}, []float64{4, 2.85, 3}, 3, []float64{0.1}, nil)
	if err != nil || !slices.Equal(nb.Rows, []int64{2, 0}) || nb.Scores[0] != 5 {
		t.Fatalf("rows %v scores %v (err %v), want [2 0] [5 4]", nb.Rows, nb.Scores, err)
	}
}
