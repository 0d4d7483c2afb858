package retrieval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// naiveTopK is the reference for TopK: it scores every key of a query in
// float64 (products summed in column order), sorts all of them (a stable
// sort on descending score keeps equal scores in index order) and keeps the
// first min(k, nKeys), with their scores rounded to float32.
func naiveTopK(queries, keys []float32, nQueries, nKeys, dim, k int) ([]int32, []float32) {
	kOut := min(k, nKeys)
	indices := make([]int32, 0, nQueries*kOut)
	scores := make([]float32, 0, nQueries*kOut)
	all := make([]float64, nKeys)
	order := make([]int, nKeys)
	for q := range nQueries {
		for j := range nKeys {
			var s float64
			for i := range dim {
				s += float64(queries[q*dim+i]) * float64(keys[j*dim+i])
			}
			all[j] = s
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return all[order[a]] > all[order[b]] })
		for _, j := range order[:kOut] {
			indices = append(indices, int32(j))
			scores = append(scores, float32(all[j]))
		}
	}
	return indices, scores
}

// randomGaussian returns n×dim standard normal values.
func randomGaussian(rnd *rand.Rand, n, dim int) []float32 {
	x := make([]float32, n*dim)
	for i := range x {
		x[i] = float32(rnd.NormFloat64())
	}
	return x
}

// randomSmallInts returns n×dim integers in [-2, 2]: their dot products are
// exact in float32 and tie often, which exercises the tie rule across block
// edges.
func randomSmallInts(rnd *rand.Rand, n, dim int) []float32 {
	x := make([]float32, n*dim)
	for i := range x {
		x[i] = float32(rnd.IntN(5) - 2)
	}
	return x
}

// equalTopK reports the first difference between two top-k results, or "".
// Scores are compared bit for bit.
func equalTopK(gotIdx []int32, gotScores []float32, wantIdx []int32, wantScores []float32, kOut int) string {
	if len(gotIdx) != len(wantIdx) || len(gotScores) != len(wantScores) {
		return fmt.Sprintf("lengths %d, %d; want %d, %d", len(gotIdx), len(gotScores), len(wantIdx), len(wantScores))
	}
	for i := range wantIdx {
		if gotIdx[i] != wantIdx[i] || math.Float32bits(gotScores[i]) != math.Float32bits(wantScores[i]) {
			return fmt.Sprintf("query %d position %d: key %d score %v, want key %d score %v",
				i/kOut, i%kOut, gotIdx[i], gotScores[i], wantIdx[i], wantScores[i])
		}
	}
	return ""
}

var topKSizes = []struct{ nQueries, nKeys, dim, k int }{
	{1, 1, 1, 1},
	{1, 1, 3, 10},  // one key, k beyond it
	{17, 3, 5, 10}, // fewer keys than k
	{50, 37, 8, 5},
	{130, 301, 33, 10},
	{67, 129, 100, 7}, // dim over gonum's 64-wide inner blocks
	{200, 10, 16, 10}, // k equal to the number of keys
}

// searchers are blockings that put panel, tile and window edges
// everywhere, on one and on several workers, and the defaults.
var searchers = []*CPUSearcher{
	{keyTile: 1, windowBytes: 1, Workers: 1},
	{keyTile: 5, windowBytes: 100, Workers: 2},
	{keyTile: 4, windowBytes: 1000, Workers: 3},
	{keyTile: 200, Workers: 4},
	{keyTile: 32, windowBytes: 3000, Workers: 2},
	{},
}

// TestTopKMatchesNaive compares the blocked, parallel top-k with a full sort
// for sizes that are not multiples of the block sizes, on real-valued data
// and on small integers full of ties.
func TestTopKMatchesNaive(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, sz := range topKSizes {
		for _, data := range []struct {
			name string
			gen  func(*rand.Rand, int, int) []float32
		}{{"gaussian", randomGaussian}, {"ints", randomSmallInts}} {
			queries := data.gen(rnd, sz.nQueries, sz.dim)
			keys := data.gen(rnd, sz.nKeys, sz.dim)
			wantIdx, wantScores := naiveTopK(queries, keys, sz.nQueries, sz.nKeys, sz.dim, sz.k)
			kOut := min(sz.k, sz.nKeys)
			for _, b := range searchers {
				name := fmt.Sprintf("%s/q%d_k%d_d%d_top%d/tile%d_w%d",
					data.name, sz.nQueries, sz.nKeys, sz.dim, sz.k, b.keyTile, b.Workers)
				gotIdx, gotScores, err := TopKWith(context.Background(), b, queries, keys, sz.nQueries, sz.nKeys, sz.dim, sz.k)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if diff := equalTopK(gotIdx, gotScores, wantIdx, wantScores, kOut); diff != "" {
					t.Errorf("%s: %s", name, diff)
				}
			}
		}
	}
}

// TestTopKPublicDefaults runs the exported TopK, with its default blocks and
// goroutines, on sizes spanning several blocks each way with a dim above
// gonum's inner tile; scores must equal the float64 reference bit for bit.
func TestTopKPublicDefaults(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	const nQueries, nKeys, dim, k = 150, 300, 200, 10
	queries := randomGaussian(rnd, nQueries, dim)
	keys := randomGaussian(rnd, nKeys, dim)
	gotIdx, gotScores, err := TopK(queries, keys, nQueries, nKeys, dim, k)
	if err != nil {
		t.Fatal(err)
	}
	wantIdx, wantScores := naiveTopK(queries, keys, nQueries, nKeys, dim, k)
	if diff := equalTopK(gotIdx, gotScores, wantIdx, wantScores, k); diff != "" {
		t.Error(diff)
	}
}

// TestTopKTies checks the tie rule on hand-made scores: higher score first,
// equal scores by lower key index.
func TestTopKTies(t *testing.T) {
	// One-dimensional keys make the scores the key values times the query.
	keys := []float32{2, 3, 3, 1, 3, 2}
	for _, tc := range []struct {
		query      float32
		k          int
		wantIdx    []int32
		wantScores []float32
	}{
		{1, 6, []int32{1, 2, 4, 0, 5, 3}, []float32{3, 3, 3, 2, 2, 1}},
		{1, 2, []int32{1, 2}, []float32{3, 3}},
		{1, 4, []int32{1, 2, 4, 0}, []float32{3, 3, 3, 2}},
		{-1, 3, []int32{3, 0, 5}, []float32{-1, -2, -2}},
		{0, 4, []int32{0, 1, 2, 3}, []float32{0, 0, 0, 0}}, // zero query: all tie
	} {
		for _, b := range searchers {
			idx, scores, err := TopKWith(context.Background(), b, []float32{tc.query}, keys, 1, len(keys), 1, tc.k)
			if err != nil {
				t.Fatal(err)
			}
			if diff := equalTopK(idx, scores, tc.wantIdx, tc.wantScores, len(tc.wantIdx)); diff != "" {
				t.Errorf("query %v k %d block %v: %s", tc.query, tc.k, b, diff)
			}
		}
	}
}

// TestTopKRankFormula checks the documented rank: key j is at position
// rank(j)-1 of a query's list when rank(j) <= k, and absent otherwise, with
// rank(j) = 1 + #{greater scores} + #{equal scores at lower indices}.
func TestTopKRankFormula(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	const nQueries, nKeys, dim, k = 40, 97, 3, 12
	queries := randomSmallInts(rnd, nQueries, dim)
	keys := randomSmallInts(rnd, nKeys, dim)
	idx, _, err := TopK(queries, keys, nQueries, nKeys, dim, k)
	if err != nil {
		t.Fatal(err)
	}
	for q := range nQueries {
		list := idx[q*k : (q+1)*k]
		score := make([]float32, nKeys)
		for j := range nKeys {
			var s float32
			for i := range dim {
				s += queries[q*dim+i] * keys[j*dim+i] // exact: small integers
			}
			score[j] = s
		}
		for j := range nKeys {
			rank := 1
			for other := range nKeys {
				if score[other] > score[j] || (score[other] == score[j] && other < j) {
					rank++
				}
			}
			pos := -1
			for p, key := range list {
				if int(key) == j {
					pos = p
				}
			}
			if rank <= k && pos != rank-1 || rank > k && pos != -1 {
				t.Fatalf("query %d key %d: rank %d but list position %d (list %v)", q, j, rank, pos, list)
			}
		}
	}
}

func TestTopKZeroRows(t *testing.T) {
	// Key 1 is zero, so it scores 0 for every query; query 1 is zero, so
	// every key scores 0 for it and the list is in index order.
	keys := []float32{
		1, 0,
		0, 0,
		-1, 0,
		0, 1,
	}
	queries := []float32{
		1, 0,
		0, 0,
	}
	idx, scores, err := TopK(queries, keys, 2, 4, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantIdx := []int32{0, 1, 3, 2, 0, 1, 2, 3}
	wantScores := []float32{1, 0, 0, -1, 0, 0, 0, 0}
	if diff := equalTopK(idx, scores, wantIdx, wantScores, 4); diff != "" {
		t.Error(diff)
	}
}

func TestTopKErrors(t *testing.T) {
	ok := []float32{1, 2, 3, 4, 5, 6} // 3×2 or 2×3
	for _, tc := range []struct {
		name                  string
		queries, keys         []float32
		nQueries, nKeys, d, k int
	}{
		{"no queries", nil, ok, 0, 3, 2, 1},
		{"no keys", ok, nil, 3, 0, 2, 1},
		{"zero dim", ok, ok, 3, 3, 0, 1},
		{"negative dim", ok, ok, 3, 3, -2, 1},
		{"queries too short", ok[:5], ok, 3, 3, 2, 1},
		{"keys too long", ok, append(ok, 7, 8), 3, 3, 2, 1},
		{"rows mismatch", ok, ok, 2, 3, 2, 1},
		{"k zero", ok, ok, 3, 3, 2, 0},
		{"k negative", ok, ok, 3, 3, 2, -1},
		{"NaN query", []float32{1, float32(math.NaN())}, ok, 1, 3, 2, 1},
		{"Inf key", ok, []float32{1, 2, float32(math.Inf(-1)), 4}, 3, 2, 2, 1},
	} {
		idx, scores, err := TopK(tc.queries, tc.keys, tc.nQueries, tc.nKeys, tc.d, tc.k)
		if err == nil {
			t.Errorf("%s: no error (got %v, %v)", tc.name, idx, scores)
		}
	}
}

func TestNormalizeRows(t *testing.T) {
	x := []float32{
		3, 4,
		0, 0,
		1e-20, 0,
		-2, 0,
	}
	orig := append([]float32(nil), x...)
	got, err := NormalizeRows(x, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	// The tiny row is divided by the 1e-12 floor, as F.normalize does.
	want := []float32{0.6, 0.8, 0, 0, 1e-8, 0, -1, 0}
	for i := range want {
		if !(math.Abs(float64(got[i]-want[i])) <= 1e-7*math.Abs(float64(want[i]))) {
			t.Errorf("value %d = %v, want %v", i, got[i], want[i])
		}
	}
	for i := range x {
		if x[i] != orig[i] {
			t.Fatalf("input modified at %d", i)
		}
	}
	if _, err := NormalizeRows(x, 3, 2); err == nil {
		t.Error("shape mismatch: no error")
	}
	if _, err := NormalizeRows([]float32{float32(math.NaN()), 1}, 1, 2); err == nil {
		t.Error("NaN: no error")
	}
}

// benchSizes are the retrieval workloads of docs/RETRIEVAL.md at CLIP's 512
// dimensions: Flickr (1,000 images × 5,000 captions) and MSCOCO (5,000 images
// × 25,000 captions), each direction.
var benchSizes = []struct{ nQueries, nKeys int }{
	{5000, 1000},  // Flickr text->image
	{1000, 5000},  // Flickr image->text
	{25000, 5000}, // MSCOCO text->image
	{5000, 25000}, // MSCOCO image->text
}

func BenchmarkTopK(b *testing.B) {
	const dim, k = 512, 10
	rnd := rand.New(rand.NewPCG(7, 8))
	for _, sz := range benchSizes {
		queries := randomGaussian(rnd, sz.nQueries, dim)
		keys := randomGaussian(rnd, sz.nKeys, dim)
		b.Run(fmt.Sprintf("q%d_k%d_d%d", sz.nQueries, sz.nKeys, dim), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := TopK(queries, keys, sz.nQueries, sz.nKeys, dim, k); err != nil {
					b.Fatal(err)
				}
			}
			seconds := b.Elapsed().Seconds()
			b.ReportMetric(float64(sz.nQueries*b.N)/seconds, "queries/s")
			b.ReportMetric(2*float64(sz.nQueries)*float64(sz.nKeys)*dim*float64(b.N)/seconds/1e9, "GFLOP/s")
		})
	}
}

// TopKContext answers as TopK, and a cancellation in the middle of its
// search (here from the searcher's progress report, after its first
// window of keys) ends it with the context's error.
func TestTopKContextStops(t *testing.T) {
	const nq, nk, dim, k = 40, 3000, 16, 5
	r := rand.New(rand.NewPCG(5, 6))
	queries, keys := make([]float32, nq*dim), make([]float32, nk*dim)
	for i := range queries {
		queries[i] = float32(r.IntN(9) - 4)
	}
	for i := range keys {
		keys[i] = float32(r.IntN(5) - 2) // coarse values: many ties
	}
	wantIdx, wantScores := naiveTopK(queries, keys, nq, nk, dim, k)
	idx, scores, err := TopKContext(context.Background(), queries, keys, nq, nk, dim, k)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(idx, scores) != fmt.Sprint(wantIdx, wantScores) {
		t.Fatal("TopKContext's answer differs from the reference")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := 0
	s := &CPUSearcher{keyTile: 64, windowBytes: 64 * dim * 2, Progress: func(done, total int64) {
		reports++
		cancel()
	}}
	if _, _, err := TopKWith(ctx, s, queries, keys, nq, nk, dim, k); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during the search: %v, want context.Canceled", err)
	}
	if reports != 1 {
		t.Errorf("the search went on for %d windows after it was cancelled", reports-1)
	}
}
