package sgemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BenchmarkGemm times the three layouts of the engine at the default
// model's shapes (hidden 2048, input 768, head 1024, output 512) for
// batches 64 and 256 and at the small model's (hidden 256, head 128) for
// batch 256, and reports GFLOP/s (2 m n k per product); for the two whose
// B is the weight, also with B packed beforehand (prepacked).
//
//	fwd_nt:   Y[batch,out] = X[batch,in] W[out,in]^T
//	wgrad_tn: dW[out,in] = dY[batch,out]^T X[batch,in]
//	dgrad_nn: dX[batch,in] += dY[batch,out] W[out,in]
func BenchmarkGemm(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	type layer struct{ in, out int }
	defaultLayers := []layer{{768, 2048}, {2048, 2048}, {2048, 1024}, {1024, 512}}
	smallLayers := []layer{{768, 256}, {256, 256}, {256, 128}, {128, 512}}
	for _, bl := range []struct {
		batch  int
		layers []layer
	}{{64, defaultLayers}, {256, defaultLayers}, {256, smallLayers}} {
		batch := bl.batch
		for _, l := range bl.layers {
			for _, layout := range []string{"fwd_nt", "wgrad_tn", "dgrad_nn"} {
				var m, n, k int
				var tA, tB, acc bool
				switch layout {
				case "fwd_nt":
					m, n, k, tB = batch, l.out, l.in, true
				case "wgrad_tn":
					m, n, k, tA = l.out, l.in, batch, true
				case "dgrad_nn":
					m, n, k, acc = batch, l.in, l.out, true
				}
				a, bb, c := randMat(rng, m*k), randMat(rng, k*n), make([]float32, m*n)
				lda, ldb := k, n
				if tA {
					lda = m
				}
				if tB {
					ldb = k
				}
				b.Run(fmt.Sprintf("%s/b%d_%dx%d", layout, batch, l.in, l.out), func(b *testing.B) {
					for b.Loop() {
						Gemm(tA, tB, m, n, k, a, lda, bb, ldb, c, n, acc)
					}
					b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
				// The weight packed once (PackedB), as for batches
				// that reuse it: what packing B costs a product.
				if layout != "wgrad_tn" {
					b.Run(fmt.Sprintf("%s/b%d_%dx%d/prepacked", layout, batch, l.in, l.out), func(b *testing.B) {
						var pb PackedB
						if !pb.Pack(tB, k, n, bb, ldb) {
							b.Skip("no packed kernel")
						}
						for b.Loop() {
							GemmPacked(tA, m, a, lda, &pb, c, n, acc)
						}
						b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
				// gonum's Sgemm, which the engine used before, on the
				// same operands: the ratio of the two, measured side by
				// side.
				b.Run(fmt.Sprintf("%s/b%d_%dx%d/gonum", layout, batch, l.in, l.out), func(b *testing.B) {
					tr := func(t bool) blas.Transpose {
						if t {
							return blas.Trans
						}
						return blas.NoTrans
					}
					beta := float32(0)
					if acc {
						beta = 1
					}
					for b.Loop() {
						gonum.Implementation{}.Sgemm(tr(tA), tr(tB), m, n, k, 1, a, lda, bb, ldb, beta, c, n)
					}
					b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkKernel times the fastest microkernel on one goroutine on a
// product that stays in cache: the rate the packing and threading start
// from.
func BenchmarkKernel(b *testing.B) {
	ks := kernels()
	if len(ks) == 0 {
		b.Skip("no assembly kernel on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	m, n, k := 96, 256, 256
	a, bb, c := randMat(rng, m*k), randMat(rng, k*n), make([]float32, m*n)
	for b.Loop() {
		gemmWith(ks[0], 1, false, false, m, n, k, a, k, bb, n, c, n, false)
	}
	b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
