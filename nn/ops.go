package nn

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/dinoclip/dinoclip/internal/parallel"
	"github.com/dinoclip/dinoclip/internal/sgemm"
	"github.com/dinoclip/dinoclip/internal/vec32"
)

// Float is the element type of a CPU model: float64 for the oracle, float32
// for the engine that trains.
type Float interface{ float32 | float64 }

// LayerNormEps is the eps of every LayerNorm in the original model.
const LayerNormEps = 1e-5

var impl gonum.Implementation

// gemm computes C = op(A) op(B) + beta C for row-major matrices, beta 0 or
// 1. float32 goes through internal/sgemm (packed, assembly microkernels,
// bits independent of GOMAXPROCS); float64, the oracle, through gonum's
// Dgemm.
func gemm[T Float](tA, tB blas.Transpose, m, n, k int, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if beta != 0 && beta != 1 {
		panic(fmt.Sprintf("nn: gemm with beta %v, want 0 or 1", beta))
	}
	switch a := any(a).(type) {
	case []float32:
		sgemm.Gemm(tA == blas.Trans, tB == blas.Trans, m, n, k, a, lda, any(b).([]float32), ldb, any(c).([]float32), ldc, beta == 1)
	case []float64:
		impl.Dgemm(tA, tB, m, n, k, 1, a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// parallelFor runs fn over [0, n) split into one contiguous range per
// processor, on internal/parallel's workers. The split depends only on n
// and GOMAXPROCS, and each index is handled by exactly one call, so results
// do not depend on scheduling. Small problems (n*cost < 1<<15 element
// operations) run inline.
func parallelFor(n, cost int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 || n*cost < 1<<15 {
		fn(0, n)
		return
	}
	parallel.Ranges(n, workers, fn)
}

// parallelChunks runs fn over [0, n) in chunks of chunk indices (the last
// shorter), on internal/parallel's workers, each chunk taken by whichever
// thread is free; inline when n is one chunk or GOMAXPROCS is 1. Each index
// is handled by exactly one call.
func parallelChunks(n, chunk int, fn func(lo, hi int)) {
	if n <= chunk || runtime.GOMAXPROCS(0) == 1 {
		fn(0, n)
		return
	}
	parallel.Run((n+chunk-1)/chunk, func(c int) { fn(c*chunk, min((c+1)*chunk, n)) })
}

// LinearForward computes y[n,out] = x[n,in] W^T + b with W stored [out,in]
// as PyTorch stores it.
func LinearForward[T Float](y, x, w, b []T, n, in, out int) {
	gemm(blas.NoTrans, blas.Trans, n, out, in, x, in, w, in, 0, y, out)
	addBias(y, b, n, out)
}

// addBias adds b[out] to each of the n rows of y.
func addBias[T Float](y, b []T, n, out int) {
	if y32, ok := any(y).([]float32); ok {
		b32 := any(b).([]float32)
		parallelFor(n, out, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := y32[r*out : (r+1)*out]
				vec32.Add(row, row, b32)
			}
		})
		return
	}
	parallelFor(n, out, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := y[r*out : (r+1)*out]
			for j := range row {
				row[j] += b[j]
			}
		}
	})
}

// LinearBackward computes the weight gradient dW[out,in] = dy^T x, the bias
// gradient db[out] = column sums of dy, and, when dx is not nil,
// dx[n,in] = dy W + beta dx (beta 1 accumulates into a residual gradient).
func LinearBackward[T Float](dx, dw, db, dy, x, w []T, n, in, out int, beta T) {
	gemm(blas.Trans, blas.NoTrans, out, in, n, dy, out, x, in, 0, dw, in)
	ColumnSums(db, dy, n, out)
	if dx != nil {
		gemm(blas.NoTrans, blas.NoTrans, n, in, out, dy, out, w, in, beta, dx, in)
	}
}

// ColumnSums sets s[j] = sum over rows of a[r,j] for a [n,d], accumulated
// in float64. Columns are split across workers and each sum runs over rows
// in order, so the result is the same bits on every run, whatever
// GOMAXPROCS is and whether the vectorised loop ran.
func ColumnSums[T Float](s, a []T, n, d int) {
	a32, is32 := any(a).([]float32)
	parallelFor(d, n, func(lo, hi int) {
		forColumnBlocks(lo, hi, func(lo, hi int, acc []float64) {
			// Rows outer, so that a is read along its rows; each column's
			// sum still runs over the rows in order.
			for r := 0; r < n; r++ {
				if is32 {
					vec32.AddTo(acc, a32[r*d+lo:r*d+hi])
					continue
				}
				for j, v := range a[r*d+lo : r*d+hi] {
					acc[j] += float64(v)
				}
			}
			for j, v := range acc {
				s[lo+j] = T(v)
			}
		})
	})
}

// columnBlock is how many columns a column-wise reduction sums at once:
// its float64 accumulators (16 KiB) stay in L1, and at the model's widths
// a thread's whole range of columns is one block, so each row's part is
// read in one run. (Against blocks of 256 columns, ColumnSums at
// [256, 2048] on 2 threads measured 25 GB/s against 20, best of 1000
// interleaved; a block changes no bit, each column being summed over the
// rows in order either way.)
const columnBlock = 2048

// forColumnBlocks calls fn on [lo, hi) in blocks of at most columnBlock
// columns with zeroed accumulators, one per column of the block.
func forColumnBlocks(lo, hi int, fn func(lo, hi int, acc []float64)) {
	var acc [columnBlock]float64
	for b := lo; b < hi; b += columnBlock {
		e := min(b+columnBlock, hi)
		clear(acc[:e-b])
		fn(b, e, acc[:e-b])
	}
}

// LayerNormForward normalises each row of x[n,d] over its d entries:
// xhat = (x - mean) * rstd with rstd = 1/sqrt(var + eps) (biased variance),
// then y = xhat * gamma + beta. It keeps xhat and rstd for the backward pass.
// Row statistics are accumulated in float64 with two passes, xhat is
// rounded to T from float64 once. y may alias x.
//
// For float32 the passes are vec32's (Sum, SumSqDev, LayerNormApply): the
// same formulas with the row sums taken in vec32's fixed lane order, and
// y = xhat*gamma + beta in float32, so the bits do not depend on the CPU.
func LayerNormForward[T Float](y, xhat, rstd, x, gamma, beta []T, n, d int) {
	if x32, ok := any(x).([]float32); ok {
		layerNormForward32(any(y).([]float32), any(xhat).([]float32), any(rstd).([]float32), x32, any(gamma).([]float32), any(beta).([]float32), n, d)
		return
	}
	parallelFor(n, d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, hr, yr := x[r*d:(r+1)*d], xhat[r*d:(r+1)*d], y[r*d:(r+1)*d]
			var sum float64
			for _, v := range xr {
				sum += float64(v)
			}
			mean := sum / float64(d)
			var sq float64
			for _, v := range xr {
				dv := float64(v) - mean
				sq += dv * dv
			}
			rs := 1 / math.Sqrt(sq/float64(d)+LayerNormEps)
			rstd[r] = T(rs)
			for j, v := range xr {
				h := T((float64(v) - mean) * rs)
				hr[j] = h
				yr[j] = h*gamma[j] + beta[j]
			}
		}
	})
}

func layerNormForward32(y, xhat, rstd, x, gamma, beta []float32, n, d int) {
	parallelFor(n, d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := x[r*d : (r+1)*d]
			mean := vec32.Sum(xr) / float64(d)
			rs := 1 / math.Sqrt(vec32.SumSqDev(xr, mean)/float64(d)+LayerNormEps)
			rstd[r] = float32(rs)
			vec32.LayerNormApply(y[r*d:(r+1)*d], xhat[r*d:(r+1)*d], xr, gamma, beta, mean, rs)
		}
	})
}

// LayerNormBackward computes dx[n,d] from dy, the saved xhat and rstd and
// gamma: with g = dy*gamma, dx = rstd (g - mean(g) - xhat mean(g xhat)).
// It also sets dgamma = sum_rows dy*xhat and dbeta = sum_rows dy. Sums are
// accumulated in float64. dx may alias dy.
//
// float64, the oracle, sums the columns over the rows in order. float32
// goes through vec32.LayerNormBackwardRows (the same formulas, the row
// sums in vec32's fixed lane order) in one sweep over the rows: see
// layerNormBackward32 for the order of its column sums.
func LayerNormBackward[T Float](dx, dgamma, dbeta, dy, xhat, rstd, gamma []T, n, d int) {
	if dy32, ok := any(dy).([]float32); ok {
		layerNormBackward32(any(dx).([]float32), any(dgamma).([]float32), any(dbeta).([]float32), dy32, any(xhat).([]float32), any(rstd).([]float32), any(gamma).([]float32), n, d)
		return
	}
	parallelFor(d, n, func(lo, hi int) {
		forColumnBlocks(lo, hi, func(lo, hi int, sg []float64) {
			var sb [columnBlock]float64
			for r := 0; r < n; r++ {
				dyr, hr := dy[r*d+lo:r*d+hi], xhat[r*d+lo:r*d+hi]
				for j, v := range dyr {
					sg[j] += float64(v) * float64(hr[j])
					sb[j] += float64(v)
				}
			}
			for j := range sg {
				dgamma[lo+j], dbeta[lo+j] = T(sg[j]), T(sb[j])
			}
		})
	})
	parallelFor(n, d, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dyr, hr, dxr := dy[r*d:(r+1)*d], xhat[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			var s1, s2 float64
			for j, v := range dyr {
				g := float64(v) * float64(gamma[j])
				s1 += g
				s2 += g * float64(hr[j])
			}
			s1 /= float64(d)
			s2 /= float64(d)
			rs := float64(rstd[r])
			for j, v := range dyr {
				g := float64(v) * float64(gamma[j])
				dxr[j] = T(rs * (g - s1 - float64(hr[j])*s2))
			}
		}
	})
}

// layerNormBackwardBlock is how many rows one part of the float32
// LayerNorm backward pass takes. It fixes the order of dgamma's and
// dbeta's sums, so it must not depend on the machine: each column is
// summed over the rows of each block in order, from zero, in float64, and
// the blocks' sums are then added in block order, from the first. (With
// n <= layerNormBackwardBlock rows that is the sum over all rows in order.)
const layerNormBackwardBlock = 32

// layerNormPartials holds the float64 column sums of the blocks of
// layerNormBackward32 between calls (a *[]float64), so that a training
// step does not allocate them for every LayerNorm.
var layerNormPartials sync.Pool

// layerNormBackward32 is LayerNormBackward for float32: the blocks of rows
// run in parallel, each one sweep of vec32.LayerNormBackwardRows that
// writes its rows of dx and its column sums (2d float64s) to partials,
// which are then added in block order.
func layerNormBackward32(dx, dgamma, dbeta, dy, xhat, rstd, gamma []float32, n, d int) {
	if n <= 0 || d <= 0 {
		clear(dgamma[:d])
		clear(dbeta[:d])
		return
	}
	blocks := (n + layerNormBackwardBlock - 1) / layerNormBackwardBlock
	buf, _ := layerNormPartials.Get().(*[]float64)
	if buf == nil || cap(*buf) < (2*blocks+1)*d {
		s := make([]float64, (2*blocks+1)*d)
		buf = &s
	}
	defer layerNormPartials.Put(buf)
	partials, gamma64 := (*buf)[:2*blocks*d], (*buf)[2*blocks*d:(2*blocks+1)*d]
	for j, v := range gamma[:d] {
		gamma64[j] = float64(v)
	}
	part := func(b int) {
		lo, hi := b*layerNormBackwardBlock, min((b+1)*layerNormBackwardBlock, n)
		prod, sum := partials[2*d*b:2*d*b+d], partials[2*d*b+d:2*d*(b+1)]
		clear(prod)
		clear(sum)
		vec32.LayerNormBackwardRows(dx[lo*d:hi*d], dy[lo*d:hi*d], xhat[lo*d:hi*d], rstd[lo:hi], gamma64, hi-lo, d, prod, sum)
	}
	if runtime.GOMAXPROCS(0) == 1 || n*d < 1<<15 {
		for b := range blocks {
			part(b)
		}
	} else {
		parallel.Run(blocks, part)
	}
	sums := partials[:2*d] // block 0's, then the others' added to it
	for b := 1; b < blocks; b++ {
		vec32.Accumulate(sums, partials[2*d*b:2*d*(b+1)])
	}
	for j := range d {
		dgamma[j], dbeta[j] = float32(sums[j]), float32(sums[d+j])
	}
}

// GELU is the exact erf form, x Phi(x) = x/2 (1 + erf(x/sqrt 2)), as
// PyTorch's nn.GELU() by default (not the tanh approximation).
func GELU(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

// GELUGrad is d GELU/dx = Phi(x) + x phi(x).
func GELUGrad(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

// geluChunk is the float32 GELU passes' unit of work among threads (128
// KiB of x): in chunks that the threads take in turn, the caller works
// while a worker is still waking, where halves made it wait for the
// worker's half. Measured on 2 vCPUs at [256, 2048] (2026-12-02, A/B in
// one process): the derivative 13.8 -> 16.5 GB/s, GELU 9.4 -> 10.9; 8K
// and 16K chunks gained less, 64K about as much. Elementwise: the split
// changes no bit.
const geluChunk = 1 << 15

// GELUForward sets y = GELU(x) elementwise: in float64 for float64, and
// for float32 with vec32.GELUs (vec32.GELU, within 3 ulp, vectorised).
// y may alias x.
func GELUForward[T Float](y, x []T) {
	if y32, ok := any(y).([]float32); ok {
		x32 := any(x).([]float32)
		parallelChunks(len(x), geluChunk, func(lo, hi int) { vec32.GELUs(y32[lo:hi], x32[lo:hi]) })
		return
	}
	parallelFor(len(x), 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y[i] = T(GELU(float64(x[i])))
		}
	})
}

// GELUBackward sets dx = dy * GELU'(x) elementwise, in float64 for float64
// and with vec32.GELUGradMul for float32; dx may alias dy.
func GELUBackward[T Float](dx, dy, x []T) {
	if dx32, ok := any(dx).([]float32); ok {
		dy32, x32 := any(dy).([]float32), any(x).([]float32)
		parallelChunks(len(x), geluChunk, func(lo, hi int) { vec32.GELUGradMul(dx32[lo:hi], dy32[lo:hi], x32[lo:hi]) })
		return
	}
	parallelFor(len(x), 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dx[i] = T(float64(dy[i]) * GELUGrad(float64(x[i])))
		}
	})
}
