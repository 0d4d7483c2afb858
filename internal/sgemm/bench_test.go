package sgemm

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// rounds is how many times BenchmarkGemm runs each kernel at each shape
// (go test's -count is per benchmark: it repeats the first kernel n times,
// then the next).
var rounds = flag.Int("rounds", 1, "BenchmarkGemm: `n` turns of every kernel at each shape")

// BenchmarkGemm times the three layouts of the engine at the default
// model's shapes (hidden 2048, input 768, head 1024, output 512) for
// batches 64 and 256 and at the small model's (hidden 256, head 128) for
// batch 256, and reports GFLOP/s (2 m n k per product): with each
// microkernel this CPU runs (named by it; Gemm uses the first of
// kernels()), one after the other on the same operands, -rounds times in
// turn (go test -bench Gemm -args -rounds 5), so that they can be compared
// within one process on a noisy machine; for the two whose B is the
// weight, also with B packed beforehand (name-prepacked); and once with
// gonum.
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
				name := fmt.Sprintf("%s/b%d_%dx%d", layout, batch, l.in, l.out)
				for _, kern := range slices.Repeat(kernels(), *rounds) {
					b.Run(name+"/"+kern.name, func(b *testing.B) {
						for b.Loop() {
							gemmWith(kern, runtime.GOMAXPROCS(0), tA, tB, m, n, k, a, lda, bb, ldb, c, n, acc)
						}
						gflops(b, m, n, k)
					})
					// The weight packed once (PackedB), as for batches
					// that reuse it: what packing B costs a product.
					if layout != "wgrad_tn" {
						b.Run(name+"/"+kern.name+"-prepacked", func(b *testing.B) {
							var pb PackedB
							pb.pack(kern, operand(bb, ldb, tB, k, n, "B"), k, n, runtime.GOMAXPROCS(0))
							for b.Loop() {
								GemmPacked(tA, m, a, lda, &pb, c, n, acc)
							}
							gflops(b, m, n, k)
						})
					}
				}
				// gonum's Sgemm, which the engine used before, on the
				// same operands: the ratio of the two, measured side by
				// side.
				b.Run(name+"/gonum", func(b *testing.B) {
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
					gflops(b, m, n, k)
				})
			}
		}
	}
}

// BenchmarkKernel times each microkernel on one goroutine on a product
// that stays in cache: the rate the packing and threading start from.
func BenchmarkKernel(b *testing.B) {
	ks := kernels()
	if len(ks) == 0 {
		b.Skip("no assembly kernel on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	m, n, k := 96, 256, 256
	a, bb, c := randMat(rng, m*k), randMat(rng, k*n), make([]float32, m*n)
	for _, kern := range ks {
		b.Run(kern.name, func(b *testing.B) {
			for b.Loop() {
				gemmWith(kern, 1, false, false, m, n, k, a, k, bb, n, c, n, false)
			}
			gflops(b, m, n, k)
		})
	}
}

// gflops reports the rate of b's products of m x k by k x n, 2 m n k
// flops each.
func gflops(b *testing.B, m, n, k int) {
	b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
