//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/nn"
)

// infoNCEBF16Reference is the bf16 engine's InfoNCE in float64 from the
// operands its GEMMs see: the unit rows as unit_rows_bf16 computes them
// (the float32 quotient, then rounded to bf16), the cosines as exact sums
// of their products, the softmax statistics and the loss in float64, dL/dcos
// rounded to float32 and then bf16 as infonce_grad_bf16 stores it, dL/dp^ =
// dcos t^ exact, and dL/dp through the float32 unit rows. It returns the
// loss, dL/dlogitScale and dL/dp [n, d].
func infoNCEBF16Reference(p, tg []float32, n, d int, logitScale float64) (loss, dLogitScale float64, grad []float64) {
	unitRows := func(a []float32) (u []float32, norms []float64) {
		u, norms = make([]float32, n*d), make([]float64, n)
		for r := range n {
			var ss float64
			for _, v := range a[r*d : (r+1)*d] {
				ss += float64(v) * float64(v)
			}
			norms[r] = math.Sqrt(ss)
			den := math.Max(norms[r], nn.NormalizeEps)
			for j, v := range a[r*d : (r+1)*d] {
				u[r*d+j] = float32(float64(v) / den)
			}
		}
		return u, norms
	}
	ph, pn := unitRows(p)
	th, _ := unitRows(tg)
	_, phb := bf16Round(ph)
	_, thb := bf16Round(th)
	s := math.Min(math.Exp(logitScale), nn.MaxLogitScale)
	cos := make([]float64, n*n)
	for i := range n {
		for j := range n {
			var c float64
			for k := range d {
				c += phb[i*d+k] * thb[j*d+k]
			}
			cos[i*n+j] = c
		}
	}
	rowSum, colSum := make([]float64, n), make([]float64, n)
	for i := range n {
		for j := range n {
			e := math.Exp(s * cos[i*n+j])
			rowSum[i] += e
			colSum[j] += e
		}
	}
	var ds float64
	dcos := make([]float64, n*n)
	for i := range n {
		loss += math.Log(rowSum[i]) + math.Log(colSum[i]) - 2*s*cos[i*n+i]
		for j := range n {
			g := math.Exp(s*cos[i*n+j]) * (1/rowSum[i] + 1/colSum[j]) / float64(2*n)
			if i == j {
				g -= 1 / float64(n)
			}
			ds += g * cos[i*n+j]
			dcos[i*n+j] = float64(leconv.BFloat16Value(leconv.BFloat16Bits(float32(s * g))))
		}
	}
	loss /= float64(2 * n)
	if math.Exp(logitScale) <= nn.MaxLogitScale {
		dLogitScale = s * ds
	}
	grad = make([]float64, n*d)
	for i := range n {
		dph := make([]float64, d)
		for j := range n {
			for k := range d {
				dph[k] += dcos[i*n+j] * thb[j*d+k]
			}
		}
		var dot float64
		for k := range d {
			dot += float64(ph[i*d+k]) * dph[k]
		}
		for k := range d {
			if pn[i] >= nn.NormalizeEps {
				grad[i*d+k] = (dph[k] - float64(ph[i*d+k])*dot) / pn[i]
			} else {
				grad[i*d+k] = dph[k] / nn.NormalizeEps
			}
		}
	}
	return loss, dLogitScale, grad
}

// objectiveOnGPU runs e's objective on outputs p and targets tg (n rows)
// placed directly in the engine's output and target buffers, and returns
// the loss, dL/dlogitScale, dL/dp and the names of the kernels launched.
func objectiveOnGPU(t *testing.T, e *Engine, p, tg []float32, n int) (loss, dls float64, grad []float32, kernels []string) {
	t.Helper()
	o := e.cfg.OutputDim
	if err := e.ResetKernelTimings(); err != nil {
		t.Fatal(err)
	}
	grad = make([]float32, n*o)
	on(t, e.dev, func() error {
		if err := e.reserve(n); err != nil {
			return err
		}
		if err := upload(e.dev, e.out, p); err != nil {
			return err
		}
		if err := upload(e.dev, e.t, tg); err != nil {
			return err
		}
		dy := e.dy.at(0, n*o)
		var err error
		if loss, err = e.objectiveLoss(n, dy); err != nil {
			return err
		}
		dls = e.objective.dLogitScale
		return download(e.dev, grad, dy)
	})
	timings, err := e.KernelTimings()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range timings {
		kernels = append(kernels, k.Name)
	}
	return loss, dls, grad, kernels
}

// TestInfoNCEBF16 runs the bf16 engine's InfoNCE objectives (infonce and
// mse+infonce) on each GEMM path at ragged batch sizes: tiny ones (1, 2, 3;
// the gradient GEMM's K = the batch padded to 8), one that is not a
// multiple of 8 (13) and one more than a 128-row tile (133: two tiles each
// way in the cosine GEMM, K = 136 in the gradient GEMM), output width 24
// (one ragged K chunk in the cosine GEMM). Three checks:
//
//   - The kernels: the cosine and gradient GEMMs are the bf16 ones (nt and
//     nn layouts, on the path the device takes), the unit rows and dL/dcos
//     the bf16 variants, and no float32 GEMM runs. A silent fallback to the
//     float32 path fails here.
//
//   - Against infoNCEBF16Reference (float64 from the same bf16 operands),
//     which leaves only the float32 accumulation of the cosines: each is a
//     sum of d exact products (bf16 x bf16 fits a float32) of total size
//     sum |p_k t_k| <= 1 (unit rows, Cauchy-Schwarz), so it errs by at
//     most d 2^-24 = 1.4e-6 (d = 24). The loss's terms are logsumexps of s
//     cos, 1-Lipschitz in the largest change of their arguments, so the
//     loss and the logit scale's gradient move by at most 2 s d 2^-24
//     (4e-5 at s = 14.3) absolute: lossTol below. dL/dcos = s G changes by
//     s times that relative before its bf16 rounding (4e-5 at most, and
//     sqrt(d) smaller typically: random rounding errors), which moves the
//     stored bf16 value to its neighbour (2^-7 relative away) for about
//     that fraction of a spacing, 1e-3 of the elements: a norm-wise error
//     near sqrt(1e-3) 2^-7 = 2.5e-4; gradTol = 5e-4 leaves a factor 2
//     (measured: 2e-7, no element straddled a boundary). An operand layout
//     mistake moves the gradient by O(1), float32 operands by the 2.4e-3
//     to 3.7e-3 of the last check.
//
//   - Against the float64 CPU engine's objective (nn.ObjectiveLoss, no
//     rounding) with nn.BF16Tolerances's bounds: rounding a unit row to bf16
//     moves each element by at most u = 2^-8 relative, a cosine by at most
//     2u (2^-7) and by about u sqrt(2/3)/sqrt(d) root mean square (random,
//     independent errors over d products of size 1/d); times s = 14.3 the
//     logits move by ~1e-2, and the loss, a mean of 2n logsumexp
//     differences, by less: Forward = 2e-2 relative. dL/dcos rounds to
//     bf16 as well (u relative), and dL/dp sums n such terms: Gradient =
//     5e-2 norm-wise relative. The measured differences are logged.
//
//     The last check is that the second one can tell float32 operands
//     from bf16 ones: at n = 133 the float64 results of the unrounded and
//     of the bf16 operands differ by more than 3 times the gradient bound
//     and 2 times the loss bound, so a GPU that computed in float32 would
//     fail the second check (as well as the first).
func TestInfoNCEBF16(t *testing.T) {
	const o = 24
	c := nn.Config{InputDim: 8, HiddenDim: 16, OutputDim: o, Blocks: 0}
	objectives := []nn.Objective{
		{Loss: nn.LossInfoNCE, LogitScale: nn.InitLogitScale},
		{Loss: nn.LossMSEInfoNCE, InfoNCEWeight: 0.3, LogitScale: 1.1},
	}
	for _, wgmma := range gemmPaths(t, testDevice(t)) {
		path := map[bool]string{true: "wgmma", false: "mma.sync"}[wgmma]
		t.Run(path, func(t *testing.T) {
			e, err := NewBF16Engine(c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			on(t, e.dev, func() error { e.dev.tc.wgmma = wgmma; return nil })
			want := []string{"gemm_bf16_nt_f32", "gemm_bf16_nn_f32", "unit_rows_bf16", "infonce_grad_bf16", "unit_rows_backward"}
			if !wgmma {
				want[0], want[1] = "gemm_bf16_nt_mma_f32", "gemm_bf16_nn_mma_f32"
			}
			for _, obj := range objectives {
				if err := e.SetObjective(obj); err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{1, 2, 3, 13, 133} {
					rng := rand.New(rand.NewPCG(uint64(n), 5))
					p, tg := randn(rng, n*o, 1), randn(rng, n*o, 1)
					// A target that is the prediction plus noise makes the
					// diagonal stand out, as in training.
					for i := range tg {
						tg[i] = 0.6*p[i] + 0.8*tg[i]
					}
					loss, dls, grad, kernels := objectiveOnGPU(t, e, p, tg, n)
					name := fmt.Sprintf("%s n=%d", obj.Loss, n)
					ran := "," + strings.Join(kernels, ",") + ","
					for _, k := range want {
						if !strings.Contains(ran, ","+k+",") {
							t.Errorf("%s: kernel %s did not run (ran %v)", name, k, kernels)
						}
					}
					for _, k := range []string{"gemm_nt_bias", "gemm_nn", "unit_rows", "infonce_grad"} {
						if strings.Contains(ran, ","+k+",") {
							t.Errorf("%s: the float32 kernel %s ran in the bf16 engine", name, k)
						}
					}

					// The bf16 reference, combined with the MSE as
					// nn.ObjectiveLoss combines them.
					refLoss, refDLS, refGrad := infoNCEBF16Reference(p, tg, n, o, obj.LogitScale)
					w := 1.0
					if obj.Loss == nn.LossMSEInfoNCE {
						w = obj.InfoNCEWeight
						mseGrad := make([]float64, n*o)
						mse := nn.UnitNormMSE(mseGrad, f64s(p), f64s(tg), n, o)
						refLoss, refDLS = mse+w*refLoss, w*refDLS
						for i := range refGrad {
							refGrad[i] = mseGrad[i] + w*refGrad[i]
						}
					} else {
						for i := range refGrad {
							refGrad[i] *= w
						}
					}
					s := math.Min(math.Exp(obj.LogitScale), nn.MaxLogitScale)
					lossTol := 2 * w * s * o * 0x1p-24
					const gradTol = 5e-4
					if d := math.Abs(loss - refLoss); !(d <= lossTol) {
						t.Errorf("%s: loss %v, bf16 reference %v: difference %.3g > %.3g", name, loss, refLoss, d, lossTol)
					} else {
						t.Logf("%s: loss against the bf16 reference: difference %.3g (tolerance %.3g)", name, d, lossTol)
					}
					if d := math.Abs(dls - refDLS); !(d <= lossTol) {
						t.Errorf("%s: logit scale gradient %v, bf16 reference %v: difference %.3g > %.3g", name, dls, refDLS, d, lossTol)
					}
					within(t, name+": gradient against the bf16 reference", grad, refGrad, gradTol)

					// The float64 CPU objective, unrounded.
					cpuGrad := make([]float64, n*o)
					cpuLoss, cpuDLS := nn.ObjectiveLoss(obj, cpuGrad, f64s(p), f64s(tg), n, o)
					tol := nn.BF16Tolerances
					if d := math.Abs(loss-cpuLoss) / math.Max(math.Abs(cpuLoss), 1); !(d <= tol.Forward) {
						t.Errorf("%s: loss %v, float64 CPU %v: relative difference %.3g > %g", name, loss, cpuLoss, d, tol.Forward)
					}
					if d := math.Abs(dls-cpuDLS) / math.Max(math.Abs(cpuDLS), 1e-3); !(d <= tol.Gradient) {
						t.Errorf("%s: logit scale gradient %v, float64 CPU %v: relative difference %.3g > %g", name, dls, cpuDLS, d, tol.Gradient)
					}
					within(t, name+": gradient against the float64 CPU", grad, cpuGrad, tol.Gradient)

					if n == 133 {
						if d := math.Abs(cpuLoss - refLoss); d < 2*lossTol {
							t.Errorf("%s: the unrounded and bf16 references' losses differ by %.3g, not above 2 x %.3g: the check cannot tell float32 operands", name, d, lossTol)
						}
						if d := nn.RelDiff(cpuGrad, refGrad); d < 3*gradTol {
							t.Errorf("%s: the unrounded and bf16 references' gradients differ by %.3g, not above 3 x %g: the check cannot tell float32 operands", name, d, gradTol)
						}
					}
				}
			}
		})
	}
}

// TestInfoNCEFP32Kernels: the float32 engine's InfoNCE stays on its float32
// path (the SIMT GEMMs and the float32 unit rows and dL/dcos), the parity
// mode the bf16 path must not leak into.
func TestInfoNCEFP32Kernels(t *testing.T) {
	const n, o = 13, 24
	c := nn.Config{InputDim: 8, HiddenDim: 16, OutputDim: o, Blocks: 0}
	e, err := NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.SetObjective(nn.Objective{Loss: nn.LossInfoNCE, LogitScale: nn.InitLogitScale}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	p, tg := randn(rng, n*o, 1), randn(rng, n*o, 1)
	_, _, _, kernels := objectiveOnGPU(t, e, p, tg, n)
	ran := "," + strings.Join(kernels, ",") + ","
	for _, k := range []string{"gemm_nt_bias", "gemm_nn", "unit_rows", "infonce_grad"} {
		if !strings.Contains(ran, ","+k+",") {
			t.Errorf("kernel %s did not run (ran %v)", k, kernels)
		}
	}
	for _, k := range kernels {
		if strings.Contains(k, "bf16") {
			t.Errorf("the bf16 kernel %s ran in the float32 engine", k)
		}
	}
	// Predictions too short to normalise (a zero row, one under 1e-12):
	// their gradient goes through the clamp, g / 1e-12, as the float64
	// CPU objective's does; float32 arithmetic, FP32Tolerances.Gradient.
	for j := range o {
		p[3*o+j] = 0
		p[7*o+j] = float32(1e-14 * rng.NormFloat64())
	}
	loss, _, grad, _ := objectiveOnGPU(t, e, p, tg, n)
	cpuGrad := make([]float64, n*o)
	cpuLoss, _ := nn.ObjectiveLoss(nn.Objective{Loss: nn.LossInfoNCE, LogitScale: nn.InitLogitScale}, cpuGrad, f64s(p), f64s(tg), n, o)
	if d := math.Abs(loss-cpuLoss) / cpuLoss; !(d <= nn.FP32Tolerances.Forward) {
		t.Errorf("rows under 1e-12: loss %v, float64 CPU %v", loss, cpuLoss)
	}
	within(t, "rows under 1e-12: gradient against the float64 CPU", grad, cpuGrad, nn.FP32Tolerances.Gradient)
}
