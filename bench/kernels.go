package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"

	"gonum.org/v1/gonum/blas"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/internal/sgemm"
	"github.com/dinoclip/dinoclip/nn"
)

// KernelSpec is one operation of a training step at one shape: what it is,
// how often a step runs it, and its work.
type KernelSpec struct {
	Name  string
	Shape string
	Kind  string // "gemm" or "memory"
	// Calls is how many times one training step runs it.
	Calls int
	// FLOPs (GEMMs) and Bytes (the fewest bytes read plus written) of one
	// call.
	FLOPs, Bytes float64

	// GEMM dimensions (C[M,N] = op(A)[M,K] op(B)[K,N]) and transposes,
	// or the rows and width of a row-wise op, or the length of an
	// elementwise one.
	m, n, k  int
	tA, tB   blas.Transpose
	rows, d  int
	elements int
}

// StepKernels lists the operations of one training step of the CPU engine
// (nn.Model's forward and backward, the loss, AdamW) at batch rows, grouped
// by operation and shape. The GEMMs' FLOPs add up to what the engine
// executes: Config.FLOPsPerSample x batch less the input gradient of the
// first layer, which nobody needs. Bias adds, residual adds and the float32
// copies of the batch are not listed; they are what the accounting leaves
// over.
func StepKernels(c nn.Config, rows int) []KernelSpec {
	h, hd := c.HiddenDim, c.HeadDim()
	type linear struct{ in, out, count int }
	linears := []linear{{c.InputDim, h, 1}, {h, h, 2 * c.Blocks}, {h, hd, 1}, {hd, c.OutputDim, 1}}
	var specs []KernelSpec
	add := func(s KernelSpec) {
		if s.Calls == 0 {
			return
		}
		for i := range specs {
			if specs[i].Name == s.Name && specs[i].Shape == s.Shape {
				specs[i].Calls += s.Calls
				return
			}
		}
		specs = append(specs, s)
	}
	gemm := func(name string, tA, tB blas.Transpose, m, n, k, calls int) {
		add(KernelSpec{
			Name: name, Kind: "gemm", Calls: calls,
			Shape: fmt.Sprintf("M=%d N=%d K=%d", m, n, k),
			FLOPs: 2 * float64(m) * float64(n) * float64(k),
			Bytes: 4 * float64(m*k+k*n+m*n),
			m:     m, n: n, k: k, tA: tA, tB: tB,
		})
	}
	// Forward: Y[n,out] = X[n,in] W[out,in]^T.
	for _, l := range linears {
		gemm("gemm_fwd_nt", blas.NoTrans, blas.Trans, rows, l.out, l.in, l.count)
	}
	// Backward: dX[n,in] = dY[n,out] W[out,in] (not for the input layer),
	// dW[out,in] = dY^T X.
	for i, l := range linears {
		dx := l.count
		if i == 0 {
			dx = 0
		}
		gemm("gemm_dgrad_nn", blas.NoTrans, blas.NoTrans, rows, l.in, l.out, dx)
		gemm("gemm_wgrad_tn", blas.Trans, blas.NoTrans, l.out, l.in, rows, l.count)
	}
	rowwise := func(name string, d, calls int, bytesPerElem float64) {
		add(KernelSpec{
			Name: name, Kind: "memory", Calls: calls,
			Shape: fmt.Sprintf("[%d, %d]", rows, d),
			Bytes: bytesPerElem * float64(rows) * float64(d),
			rows:  rows, d: d,
		})
	}
	// LayerNorm forward reads x and writes y and the saved xhat; backward
	// reads dy and xhat and writes dx (dgamma and dbeta are d wide).
	rowwise("layernorm_fwd", h, 2*c.Blocks+1, 12)
	rowwise("layernorm_fwd", c.OutputDim, 1, 12)
	rowwise("layernorm_bwd", h, 2*c.Blocks+1, 12)
	rowwise("layernorm_bwd", c.OutputDim, 1, 12)
	// GELU forward reads x, writes y; backward reads dy and x, writes dx.
	rowwise("gelu_fwd", h, c.Blocks, 8)
	rowwise("gelu_fwd", hd, 1, 8)
	rowwise("gelu_bwd", h, c.Blocks, 12)
	rowwise("gelu_bwd", hd, 1, 12)
	// Bias gradients: column sums of dY, read once.
	for _, l := range linears {
		rowwise("bias_grad_colsum", l.out, l.count, 4)
	}
	// Loss and its gradient: reads p and t, writes dp.
	rowwise("unit_norm_mse", c.OutputDim, 1, 12)
	// AdamW reads θ, g, m, v and writes θ, m, v.
	p := c.NumParams()
	add(KernelSpec{
		Name: "adamw", Kind: "memory", Calls: 1, Shape: fmt.Sprintf("[%d]", p),
		Bytes: 28 * float64(p), elements: p,
	})
	return specs
}

// MeasureCPUKernels times each operation of StepKernels(c, rows) on its own
// with the CPU engine's code (internal/sgemm as nn calls it, nn's LayerNorm,
// GELU, column sums, loss and AdamW), on random data. copyBPS and peak, when
// positive, give each kernel's fraction of them.
func MeasureCPUKernels(configName string, c nn.Config, rows int, t Timing, copyBPS, peakTFLOPs float64, seed uint64) (KernelReport, error) {
	rep := KernelReport{
		Status: Measured, Source: "nn's CPU operations timed one by one at the shapes of one training step",
		ConfigName: configName, Config: c, Batch: rows,
		CopyBytesPerSecond: copyBPS, PeakTFLOPs: peakTFLOPs,
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b))
	randSlice := func(n int) []float32 {
		v := make([]float32, n)
		fillNormal(rng, v)
		return v
	}
	for _, s := range StepKernels(c, rows) {
		var run func()
		switch s.Name {
		case "gemm_fwd_nt", "gemm_dgrad_nn", "gemm_wgrad_tn":
			lda := s.k
			if s.tA == blas.Trans {
				lda = s.m
			}
			ldb := s.n
			if s.tB == blas.Trans {
				ldb = s.k
			}
			a, b, cc := randSlice(s.m*s.k), randSlice(s.k*s.n), make([]float32, s.m*s.n)
			run = func() {
				sgemm.Gemm(s.tA == blas.Trans, s.tB == blas.Trans, s.m, s.n, s.k, a, lda, b, ldb, cc, s.n, false)
			}
		case "layernorm_fwd":
			x, xhat, y := randSlice(s.rows*s.d), make([]float32, s.rows*s.d), make([]float32, s.rows*s.d)
			rstd, gamma, beta := make([]float32, s.rows), randSlice(s.d), randSlice(s.d)
			run = func() { nn.LayerNormForward(y, xhat, rstd, x, gamma, beta, s.rows, s.d) }
		case "layernorm_bwd":
			dy, xhat, dx := randSlice(s.rows*s.d), randSlice(s.rows*s.d), make([]float32, s.rows*s.d)
			rstd, gamma := randSlice(s.rows), randSlice(s.d)
			dgamma, dbeta := make([]float32, s.d), make([]float32, s.d)
			run = func() { nn.LayerNormBackward(dx, dgamma, dbeta, dy, xhat, rstd, gamma, s.rows, s.d) }
		case "gelu_fwd":
			x, y := randSlice(s.rows*s.d), make([]float32, s.rows*s.d)
			run = func() { nn.GELUForward(y, x) }
		case "gelu_bwd":
			x, dy, dx := randSlice(s.rows*s.d), randSlice(s.rows*s.d), make([]float32, s.rows*s.d)
			run = func() { nn.GELUBackward(dx, dy, x) }
		case "bias_grad_colsum":
			a, sum := randSlice(s.rows*s.d), make([]float32, s.d)
			run = func() { nn.ColumnSums(sum, a, s.rows, s.d) }
		case "unit_norm_mse":
			p, tt, g := randSlice(s.rows*s.d), randSlice(s.rows*s.d), make([]float32, s.rows*s.d)
			run = func() { nn.UnitNormMSE(g, p, tt, s.rows, s.d) }
		case "adamw":
			p, g := randSlice(s.elements), randSlice(s.elements)
			m, v := make([]float32, s.elements), make([]float32, s.elements)
			hp := nn.AdamWStep{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
			step := 0
			run = func() { step++; hp.Step = step; nn.AdamW(p, g, m, v, hp) }
		default:
			return rep, fmt.Errorf("kernel %s: no CPU implementation to time", s.Name)
		}
		stats, err := repeat(t, nil, func(int) error { run(); return nil })
		if err != nil {
			return rep, fmt.Errorf("kernel %s %s: %w", s.Name, s.Shape, err)
		}
		rep.Kernels = append(rep.Kernels, KernelResult{
			KernelTiming: enginehooks.KernelTiming{
				Name: s.Name, Shape: s.Shape, Calls: len(stats.Samples),
				Seconds: stats.Mean * float64(len(stats.Samples)), FLOPs: s.FLOPs, Bytes: s.Bytes,
			},
			Kind: s.Kind, CallsPerStep: float64(s.Calls), SecondsPerCall: stats.Median,
		})
		runtime.GC() // free this kernel's buffers before the next one's
	}
	FinishKernels(&rep)
	return rep, nil
}

// FinishKernels fills each kernel's achieved rates and fractions from its
// seconds per call and the report's copy bandwidth and peak, sorts the
// kernels by their time per step (largest first), and sums that time.
func FinishKernels(rep *KernelReport) {
	rep.AccountedSeconds = 0
	for i := range rep.Kernels {
		k := &rep.Kernels[i]
		if k.SecondsPerCall <= 0 {
			continue
		}
		if k.FLOPs > 0 {
			k.TFLOPs = k.FLOPs / k.SecondsPerCall / 1e12
			if rep.PeakTFLOPs > 0 {
				k.FractionOfPeak = k.TFLOPs / rep.PeakTFLOPs
			}
		}
		if k.Bytes > 0 {
			k.BytesPerSecond = k.Bytes / k.SecondsPerCall
			if rep.CopyBytesPerSecond > 0 && k.Kind == "memory" {
				k.FractionOfCopy = k.BytesPerSecond / rep.CopyBytesPerSecond
			}
		}
		rep.AccountedSeconds += k.SecondsPerCall * k.CallsPerStep
	}
	sort.SliceStable(rep.Kernels, func(i, j int) bool {
		a, b := rep.Kernels[i], rep.Kernels[j]
		return a.SecondsPerCall*a.CallsPerStep > b.SecondsPerCall*b.CallsPerStep
	})
}

// MeasureCopyBandwidth times copying a buffer of bytes (rounded down to
// whole float32s) into another, split across GOMAXPROCS goroutines as the
// engine's elementwise operations are; the rate counts bytes read plus
// bytes written.
func MeasureCopyBandwidth(bytes int64, t Timing) (CopyBandwidth, error) {
	n := int(bytes / 4)
	if n < 1 {
		return CopyBandwidth{}, fmt.Errorf("copy bandwidth: buffer of %d bytes", bytes)
	}
	src, dst := make([]float32, n), make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	clear(dst) // touch the pages before timing
	workers := runtime.GOMAXPROCS(0)
	stats, err := repeat(t, nil, func(int) error {
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := n*w/workers, n*(w+1)/workers
			wg.Go(func() { copy(dst[lo:hi], src[lo:hi]) })
		}
		wg.Wait()
		return nil
	})
	if err != nil {
		return CopyBandwidth{}, err
	}
	return CopyBandwidth{
		Status: Measured, Source: fmt.Sprintf("Go copy() of a float32 buffer, split across %d goroutines", workers),
		Bytes: int64(n) * 4, Seconds: stats, BytesPerSecond: 2 * float64(n) * 4 / stats.Median,
	}, nil
}
