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
			run := func(b *testing.B) {
				s := &retrieval.CPUSearcher{}
				for b.Loop() {
					if _, err := s.Search(context.Background(), q, sz.nq, keys, 10); err != nil {
						b.Fatal(err)
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(sz.nq)/sec, "queries/s")
				b.ReportMetric(2*float64(sz.nq)*float64(sz.nk)*float64(sz.dim)/sec/1e9, "GFLOP/s")
			}
			b.Run(name, run)
			// The portable scoring path (gonum's Sgemm) on the same data, to
			// show what the amd64 kernel gains.
			b.Run(name+"_portable", func(b *testing.B) {
				defer retrieval.UseDot4x2(false)()
				run(b)
			})
		}
	}
}
