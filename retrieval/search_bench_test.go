package retrieval_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// BenchmarkCPUSearch times CPUSearcher at k = 10 on random unit rows,
// named by queries × keys × dim and the keys' dtype. Sizes are set for a
// 2-core machine (1k × 100k × 512 is 0.1 TFLOP per search); bench/compare.py
// runs the 1k × 1M × 512 comparison with faiss and torch.
func BenchmarkCPUSearch(b *testing.B) {
	for _, sz := range []struct{ nq, nk, dim int }{
		{1000, 100_000, 512},
		{1, 1_000_000, 512},
		{100, 100_000, 512},
	} {
		rnd := rand.New(rand.NewPCG(1, uint64(sz.nk)))
		q := make([]float32, sz.nq*sz.dim)
		for i := range q {
			q[i] = float32(rnd.NormFloat64())
		}
		if err := retrieval.NormalizeQueries(q, sz.dim, "queries"); err != nil {
			b.Fatal(err)
		}
		x := make([]float32, sz.nk*sz.dim)
		for i := range x {
			x[i] = float32(rnd.NormFloat64())
		}
		if err := retrieval.NormalizeQueries(x, sz.dim, "keys"); err != nil {
			b.Fatal(err)
		}
		for _, dt := range []npy.DType{npy.Float16, npy.Float32} {
			data := make([]byte, len(x)*dt.Size())
			if dt == npy.Float16 {
				leconv.PutF16(data, x)
			} else {
				leconv.PutF32(data, x)
			}
			keys, err := retrieval.NewKeys(sz.dim, retrieval.KeySegment{Name: "keys", DType: dt, Rows: sz.nk, Data: data})
			if err != nil {
				b.Fatal(err)
			}
			name := fmt.Sprintf("q%d_k%d_d%d_%s", sz.nq, sz.nk, sz.dim, map[npy.DType]string{npy.Float16: "f16", npy.Float32: "f32"}[dt])
			// Each set of panel kernels this CPU has, on the same data, in
			// turn (-args -rounds n: n times over): an A/B in one process.
			for _, kernels := range retrieval.ABKernels() {
				b.Run(name+"_"+kernels, func(b *testing.B) {
					defer retrieval.UseKernels(kernels)()
					s := &retrieval.CPUSearcher{}
					for b.Loop() {
						if _, err := s.Search(context.Background(), q, sz.nq, keys, 10); err != nil {
							b.Fatal(err)
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(float64(sz.nq)/sec, "queries/s")
					b.ReportMetric(2*float64(sz.nq)*float64(sz.nk)*float64(sz.dim)/sec/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkRefine times the host's share of a GPU search at MSCOCO's
// text-to-image shape (25k queries over 5k float16 keys of 512, k = 10):
// re-scoring 26 candidates a query (k + the GPU's margin of 16) of which
// the 2E rule keeps about k, with the bound of a float16 ranking (1.2e-3).
// The candidates are each query's true 26 best, as the GPU would return.
func BenchmarkRefine(b *testing.B) {
	const nq, nk, dim, k, width = 25000, 5000, 512, 10, 26
	rnd := rand.New(rand.NewPCG(2, 3))
	unit := func(n int) []float32 {
		x := make([]float32, n*dim)
		for i := range x {
			x[i] = float32(rnd.NormFloat64())
		}
		if err := retrieval.NormalizeQueries(x, dim, "rows"); err != nil {
			b.Fatal(err)
		}
		return x
	}
	q, x := unit(nq), unit(nk)
	data := make([]byte, 2*len(x))
	leconv.PutF16(data, x)
	keys, err := retrieval.NewKeys(dim, retrieval.KeySegment{Name: "keys", DType: npy.Float16, Rows: nk, Data: data})
	if err != nil {
		b.Fatal(err)
	}
	nb, err := (&retrieval.CPUSearcher{}).Search(context.Background(), q, nq, keys, width)
	if err != nil {
		b.Fatal(err)
	}
	approx := make([]float64, len(nb.Scores))
	for i, s := range nb.Scores {
		approx[i] = float64(s)
	}
	bounds := make([]float64, nq)
	for i := range bounds {
		bounds[i] = 1.2e-3
	}
	for b.Loop() {
		if _, _, err := retrieval.Refine(q, nq, keys, k, nb.Rows, approx, width, bounds, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(nq)*float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
