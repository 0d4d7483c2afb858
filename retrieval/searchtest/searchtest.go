package searchtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// Segment is the test data of one key segment: float32 values, stored as
// float16 (rounded here) when Half is set.
type Segment struct {
	Half bool
	Rows int
	Data []float32
}

// Keys builds retrieval.Keys from segments, and returns the values the
// search sees (float16 segments rounded), row after row.
func Keys(t testing.TB, dim int, segs ...Segment) (*retrieval.Keys, []float32) {
	t.Helper()
	var all []float32
	var ks []retrieval.KeySegment
	for i, s := range segs {
		seg := retrieval.KeySegment{Name: fmt.Sprintf("segment %d", i), Rows: s.Rows}
		if s.Half {
			seg.DType = npy.Float16
			seg.Data = make([]byte, 2*len(s.Data))
			leconv.PutF16(seg.Data, s.Data)
			vals := make([]float32, len(s.Data))
			leconv.F16ToF32(vals, seg.Data)
			all = append(all, vals...)
		} else {
			seg.DType = npy.Float32
			seg.Data = make([]byte, 4*len(s.Data))
			leconv.PutF32(seg.Data, s.Data)
			all = append(all, s.Data...)
		}
		ks = append(ks, seg)
	}
	keys, err := retrieval.NewKeys(dim, ks...)
	if err != nil {
		t.Fatal(err)
	}
	return keys, all
}

// Reference is the brute force: the min(k, nKeys) best rows of keys for
// every query with their float64 scores rounded to float32.
func Reference(queries []float32, nQueries int, keys []float32, dim, k int) ([]int64, []float32) {
	nKeys := len(keys) / dim
	kOut := min(k, nKeys)
	rows := make([]int64, 0, nQueries*kOut)
	scores := make([]float32, 0, nQueries*kOut)
	s := make([]float64, nKeys)
	order := make([]int, nKeys)
	for q := range nQueries {
		qv := queries[q*dim : (q+1)*dim]
		for j := range nKeys {
			var sum float64
			kv := keys[j*dim : (j+1)*dim]
			for i := range dim {
				sum += float64(qv[i]) * float64(kv[i])
			}
			s[j] = sum
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return s[order[a]] > s[order[b]] })
		for _, j := range order[:kOut] {
			rows = append(rows, int64(j))
			scores = append(scores, float32(s[j]))
		}
	}
	return rows, scores
}

// Compare returns the first difference between an answer and the
// reference, or "".
func Compare(got *retrieval.Neighbors, nQueries int, wantRows []int64, wantScores []float32) string {
	kOut := 0
	if nQueries > 0 {
		kOut = len(wantRows) / nQueries
	}
	if got.Queries != nQueries || got.K != kOut || len(got.Rows) != len(wantRows) || len(got.Scores) != len(wantScores) {
		return fmt.Sprintf("answer is %d queries × %d (%d rows, %d scores), want %d × %d",
			got.Queries, got.K, len(got.Rows), len(got.Scores), nQueries, kOut)
	}
	for i := range wantRows {
		if got.Rows[i] != wantRows[i] || math.Float32bits(got.Scores[i]) != math.Float32bits(wantScores[i]) {
			return fmt.Sprintf("query %d position %d: row %d score %v, want row %d score %v",
				i/kOut, i%kOut, got.Rows[i], got.Scores[i], wantRows[i], wantScores[i])
		}
	}
	return ""
}

func gaussian(rnd *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rnd.NormFloat64())
	}
	return x
}

// unitRows returns x (rows of width dim) with every row scaled to unit
// length by the product's rule (retrieval.NormalizeRows).
func unitRows(x []float32, dim int) []float32 {
	if len(x) == 0 {
		return x
	}
	u, err := retrieval.NormalizeRows(x, len(x)/dim, dim)
	if err != nil {
		panic(err) // the cases are finite and whole rows
	}
	return u
}

// nextUp returns x moved by n float32 ulps (towards +Inf for n > 0).
func nextUp(x float32, n int) float32 {
	for ; n > 0; n-- {
		x = math.Nextafter32(x, float32(math.Inf(1)))
	}
	for ; n < 0; n++ {
		x = math.Nextafter32(x, float32(math.Inf(-1)))
	}
	return x
}

// Case is one search to check.
type Case struct {
	Name     string
	Queries  []float32
	NQueries int
	Dim      int
	K        int
	Segments []Segment
}

// Cases returns the cases Run checks: random data at several shapes and
// dtypes, and adversarial data where float32 scores cannot order the keys.
func Cases() []Case {
	rnd := rand.New(rand.NewPCG(13, 17))
	var cs []Case
	add := func(name string, nq, dim, k int, q []float32, segs ...Segment) {
		cs = append(cs, Case{Name: name, Queries: q, NQueries: nq, Dim: dim, K: k, Segments: segs})
	}
	seg := func(half bool, rows, dim int, unit bool) Segment {
		d := gaussian(rnd, rows*dim)
		if unit {
			d = unitRows(d, dim)
		}
		return Segment{Half: half, Rows: rows, Data: d}
	}
	for _, sz := range []struct{ nq, nk, dim, k int }{
		{1, 1, 1, 1},
		{1, 1, 3, 10}, // k beyond the keys
		{17, 3, 5, 10},
		{50, 37, 8, 5},
		{130, 301, 33, 10},
		{67, 520, 100, 7},
		{200, 10, 16, 10}, // k equal to the keys
		{9, 2000, 512, 10},
	} {
		for _, half := range []bool{false, true} {
			add(fmt.Sprintf("gaussian/q%d_k%d_d%d_top%d/half=%v", sz.nq, sz.nk, sz.dim, sz.k, half),
				sz.nq, sz.dim, sz.k, gaussian(rnd, sz.nq*sz.dim), seg(half, sz.nk, sz.dim, false))
		}
	}
	// Several segments of both dtypes, one of them empty; unit rows.
	{
		const dim = 24
		add("segments/mixed", 21, dim, 12, unitRows(gaussian(rnd, 21*dim), dim),
			seg(true, 70, dim, true), seg(false, 0, dim, true), seg(false, 131, dim, true), seg(true, 1, dim, true), seg(true, 64, dim, true))
	}
	// Duplicates: every key appears four times, in four segments, so
	// every score ties with three others and the lower rows must win.
	{
		const dim, n = 16, 50
		base := gaussian(rnd, n*dim)
		var segs []Segment
		for range 4 {
			segs = append(segs, Segment{Half: true, Rows: n, Data: append([]float32(nil), base...)})
		}
		add("duplicates", 30, dim, 9, gaussian(rnd, 30*dim), segs...)
	}
	// All scores equal: a zero query, and keys all equal.
	{
		const dim = 8
		q := gaussian(rnd, 3*dim)
		clear(q[dim : 2*dim])
		add("zero-query", 3, dim, 5, q, seg(false, 200, dim, false))
		same := gaussian(rnd, dim)
		var d []float32
		for range 300 {
			d = append(d, same...)
		}
		add("all-equal-keys", 4, dim, 7, gaussian(rnd, 4*dim), Segment{Rows: 300, Data: d})
	}
	// Near ties: keys one to a few float32 ulps apart in one column, too
	// close for any float32 sum of 512 products to order, in shuffled order.
	{
		const dim, n = 512, 400
		base := unitRows(gaussian(rnd, dim), dim)
		q := unitRows(append(append([]float32(nil), base...), gaussian(rnd, 5*dim)...), dim)
		d := make([]float32, 0, n*dim)
		for j := range n {
			row := append([]float32(nil), base...)
			col := rnd.IntN(dim)
			row[col] = nextUp(row[col], rnd.IntN(7)-3)
			if j%5 == 0 {
				row[(col+1)%dim] = nextUp(row[(col+1)%dim], 1)
			}
			d = append(d, row...)
		}
		add("near-ties/float32", 6, dim, 10, q, Segment{Rows: n, Data: d})
	}
	// Near ties in float16: keys one float16 ulp apart, and large
	// cancelling values whose float32 sums lose the small terms.
	{
		const dim, n = 64, 300
		base := unitRows(gaussian(rnd, dim), dim)
		d := make([]float32, 0, n*dim)
		for range n {
			row := append([]float32(nil), base...)
			c := rnd.IntN(dim)
			row[c] += float32(rnd.IntN(3)-1) * float32(math.Ldexp(1, -14))
			d = append(d, row...)
		}
		add("near-ties/float16", 5, dim, 8, unitRows(gaussian(rnd, 5*dim), dim), Segment{Half: true, Rows: n, Data: d})
		big := make([]float32, 0, 200*4)
		for j := range 200 {
			big = append(big, 3e4, -3e4, float32(j%7)*1e-3, 1)
		}
		add("cancellation", 2, 4, 6, []float32{1, 1, 1, 1e-4, 0.5, 0.5, 0.25, 0}, Segment{Rows: 200, Data: big})
	}
	return cs
}

// Run checks s on every case of Cases and on the errors of the contract.
func Run(t *testing.T, s retrieval.Searcher) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			keys, vals := Keys(t, c.Dim, c.Segments...)
			got, err := s.Search(context.Background(), c.Queries, c.NQueries, keys, c.K)
			if err != nil {
				t.Fatal(err)
			}
			wantRows, wantScores := Reference(c.Queries, c.NQueries, vals, c.Dim, c.K)
			if diff := Compare(got, c.NQueries, wantRows, wantScores); diff != "" {
				t.Error(diff)
			}
		})
	}
	t.Run("errors", func(t *testing.T) { runErrors(t, s) })
	t.Run("unit keys within their bound", func(t *testing.T) {
		// Unit rows rounded to float16, the longest the rounding makes
		// them, pass the bound an index sets.
		const dim, rows = 512, 100
		data := make([]float32, rows*dim)
		rng := rand.New(rand.NewPCG(7, 7))
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		unit, err := retrieval.NormalizeRows(data, rows, dim)
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := Keys(t, dim, Segment{Half: true, Rows: rows, Data: unit})
		keys.MaxNorm = retrieval.UnitNormLimit
		if _, err := s.Search(context.Background(), unit[:dim], 1, keys, 3); err != nil {
			t.Errorf("unit-length float16 keys: %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		keys, _ := Keys(t, 4, Segment{Rows: 100, Data: make([]float32, 400)})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Search(ctx, make([]float32, 4), 1, keys, 1); !errors.Is(err, context.Canceled) {
			t.Errorf("canceled context: error %v, want context.Canceled", err)
		}
	})
}

func runErrors(t *testing.T, s retrieval.Searcher) {
	keys, _ := Keys(t, 2, Segment{Rows: 3, Data: []float32{1, 2, 3, 4, 5, 6}})
	empty, _ := Keys(t, 2, Segment{Rows: 0})
	nanKey, _ := Keys(t, 2, Segment{Rows: 2, Data: []float32{1, 2, float32(math.NaN()), 4}})
	infKey, _ := Keys(t, 2, Segment{Half: true, Rows: 2, Data: []float32{1, 2, 1e6, 4}}) // 1e6 is Inf in float16
	// Keys bounded to unit length (an index's), one row of 40 (a whole
	// panel and more) longer: in a float16 and in a float32 segment.
	longKey := func(half bool) *retrieval.Keys {
		data := make([]float32, 40*2)
		for r := range 40 {
			data[2*r] = 1
		}
		data[2*33], data[2*33+1] = 0.8, 0.61 // ‖·‖ ≈ 1.006, past float16's rounding
		keys, _ := Keys(t, 2, Segment{Half: half, Rows: 40, Data: data})
		keys.MaxNorm = retrieval.UnitNormLimit
		return keys
	}
	for _, tc := range []struct {
		name    string
		queries []float32
		nq      int
		keys    *retrieval.Keys
		k       int
		want    string
	}{
		{"k zero", []float32{1, 0}, 1, keys, 0, "k = 0"},
		{"k negative", []float32{1, 0}, 1, keys, -3, "k = -3"},
		{"no queries", nil, 0, keys, 1, "queries"},
		{"width mismatch", []float32{1, 0, 0}, 1, keys, 1, "wide"},
		{"short queries", []float32{1, 0, 0}, 2, keys, 1, "values"},
		{"NaN query", []float32{1, float32(math.NaN())}, 1, keys, 1, "NaN"},
		{"Inf query", []float32{float32(math.Inf(1)), 0}, 1, keys, 1, "Inf"},
		{"no keys", []float32{1, 0}, 1, empty, 1, "no rows"},
		{"nil keys", []float32{1, 0}, 1, nil, 1, "no keys"},
		{"NaN key", []float32{1, 0}, 1, nanKey, 1, "NaN"},
		{"Inf key", []float32{1, 0}, 1, infKey, 1, "Inf"},
		{"long float16 key", []float32{1, 0}, 1, longKey(true), 1, "row 33 is 1.00"},
		{"long float32 key", []float32{1, 0}, 1, longKey(false), 1, "row 33 is 1.00"},
	} {
		nb, err := s.Search(context.Background(), tc.queries, tc.nq, tc.keys, tc.k)
		if err == nil {
			t.Errorf("%s: no error (answer %+v)", tc.name, nb)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
	}
}
