//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
)

// TestOutNormMSE checks outnorm_mse (with colsum_final and loss_sum, as
// the engine runs it) against the float64 references of package nn
// composed as the unfused path runs them: LayerNormForward, UnitNormMSE,
// LayerNormBackward, on the float32 inputs. Widths cover one lane's
// quad cut short (1, 3, 33), several quads per lane with a remainder (130,
// 333), exact multiples of 4 on the float4 path (96, 512) and, with views
// one float off 16-byte alignment, the scalar path at a multiple of 4;
// row counts cover one row, blocks cut short (5, 37, 70) and a full block.
//
// Tolerances, from the float32 roundings the kernel makes (u = 2^-24 =
// 6e-8) on data whose rows are far from degenerate (|beta| < |gamma xhat|,
// targets independent of the outputs, so 1 - cos = O(1)):
//   - y carries three roundings (xhat, xhat*gamma, + beta): 3u = 1.8e-7
//     of its scale, so the unit row y^ moves by <= 2 x 1.8e-7 = 3.6e-7.
//   - The row loss |y^ - t^|^2 moves by <= 2 |y^ - t^| |dy^| <= 1.4e-6
//     absolutely with |y^ - t^| <= 2; the rows' losses are about 2, so
//     7e-7 relative: 1e-6 on the loss.
//   - dL/dy = A y + B t inherits y^'s 3.6e-7 relative (the gradient's
//     scale is scale/|y|) plus three roundings (1.8e-7); the LayerNorm
//     backward is rstd times the projection of dy*gamma off (1, xhat),
//     which on random rows keeps at least 1/sqrt(3) of the norm (d = 3,
//     the narrowest width with a non-zero result): 1.7 x (5.4e-7 + 2u for
//     rstd and dx) = 1.1e-6, so 2e-6 on dx. (d = 1: xhat = 0 and dx = 0
//     exactly on both sides.)
//   - dgamma, dbeta are float64 sums of dy and dy*xhat over the rows,
//     each term as accurate as dy (5.4e-7 + u), rounded once: 2e-6.
//
// A wrong index, a lost row or a column partial summed into the wrong
// chunk moves a result by O(1).
func TestOutNormMSE(t *testing.T) {
	d := testDevice(t)
	for _, sz := range []struct {
		rows, dim int
		misalign  bool
	}{
		{1, 1, false}, {1, 3, false}, {5, 33, false}, {37, 130, false}, {70, 333, false},
		{32, 96, false}, {33, 512, false}, {37, 64, true},
	} {
		name := fmt.Sprintf("%dx%d", sz.rows, sz.dim)
		if sz.misalign {
			name += "/unaligned"
		}
		t.Run(name, func(t *testing.T) {
			rows, dim := sz.rows, sz.dim
			rng := rand.New(rand.NewPCG(uint64(rows), uint64(dim)))
			x := randn(rng, rows*dim, 2)
			for i := range x {
				x[i] += 5 // rows far from zero mean: the statistics must not cancel
			}
			tg := randn(rng, rows*dim, 1)
			gamma, beta := randn(rng, dim, 0.2), randn(rng, dim, 0.2)
			for i := range gamma {
				gamma[i]++
			}
			if rows == 1 && dim == 1 {
				// One column: the output is beta alone. Below 1e-12 its
				// norm is clamped, and the gradient through the norm
				// must take the clamp's branch.
				beta[0] = 1e-13
			}
			if rows >= 5 {
				for j := 0; j < dim; j++ {
					tg[3*dim+j] = 0 // a zero target: its norm is clamped
				}
			}
			n := rows * dim
			x64, t64, g64, b64 := f64s(x), f64s(tg), f64s(gamma), f64s(beta)
			y64, xhat64, rstd64 := make([]float64, n), make([]float64, n), make([]float64, rows)
			nn.LayerNormForward(y64, xhat64, rstd64, x64, g64, b64, rows, dim)
			dy64 := make([]float64, n)
			loss64 := nn.UnitNormMSE(dy64, y64, t64, rows, dim)
			dx64, dg64, db64 := make([]float64, n), make([]float64, dim), make([]float64, dim)
			nn.LayerNormBackward(dx64, dg64, db64, dy64, xhat64, rstd64, g64, rows, dim)

			// A view one float past an aligned allocation is 4 bytes off
			// 16-byte alignment: the kernel must take the scalar path.
			place := func(v []float32) buf[float32] {
				if !sz.misalign {
					return devCopy(t, d, v)
				}
				return devCopy(t, d, append([]float32{0}, v...)).at(1, len(v))
			}
			gx, gt, dx := place(x), place(tg), place(nanFill(n))
			gg, gb := devCopy(t, d, gamma), devCopy(t, d, beta)
			dgamma, dbeta := devCopy(t, d, nanFill(dim)), devCopy(t, d, nanFill(dim))
			chunks := outNormMSEChunks(rows)
			partial := devAlloc[float64](t, d, 2*chunks*dim)
			rowLoss, sum := devAlloc[float64](t, d, rows), devAlloc[float64](t, d, 1)
			var withGrad, lossOnly [1]float64
			var none buf[float32]
			on(t, d, func() error {
				if err := d.outNormMSE(dx, rowLoss, partial, gx, gt, gg, gb, rows, dim); err != nil {
					return err
				}
				if err := d.colSumFinal(dbeta, dgamma, partial, chunks, dim); err != nil {
					return err
				}
				if err := d.lossSum(sum, rowLoss, rows); err != nil {
					return err
				}
				if err := download(d, withGrad[:], sum); err != nil {
					return err
				}
				var nopartial buf[float64]
				if err := d.outNormMSE(none, rowLoss, nopartial, gx, gt, gg, gb, rows, dim); err != nil {
					return err
				}
				if err := d.lossSum(sum, rowLoss, rows); err != nil {
					return err
				}
				return download(d, lossOnly[:], sum)
			})
			loss := withGrad[0] / float64(n)
			// (Width 1: y = beta, cos = +-1 and the loss is exactly 0 or
			// 4 on both sides, hence no division.)
			if diff := math.Abs(loss - loss64); !(diff <= 1e-6*loss64) {
				t.Errorf("loss %v, float64 %v: difference %.3g > 1e-6 relative", loss, loss64, diff)
			} else {
				t.Logf("loss: difference %.3g of %.3g (tolerance 1e-6 relative)", diff, loss64)
			}
			if withGrad != lossOnly {
				t.Errorf("loss with gradient %v, without %v", withGrad[0], lossOnly[0])
			}
			within(t, "dx", fetch(t, d, dx), dx64, 2e-6)
			within(t, "dgamma", fetch(t, d, dgamma), dg64, 2e-6)
			within(t, "dbeta", fetch(t, d, dbeta), db64, 2e-6)
		})
	}
}

// TestOutNormMSEChecks: the launch wrapper refuses what the kernel cannot
// take rather than launching it.
func TestOutNormMSEChecks(t *testing.T) {
	d := testDevice(t)
	const rows, dim = 4, 8
	x, tg := devAlloc[float32](t, d, rows*dim), devAlloc[float32](t, d, rows*dim)
	gamma, beta := devAlloc[float32](t, d, dim), devAlloc[float32](t, d, dim)
	dx := devAlloc[float32](t, d, rows*dim)
	rowLoss, partial := devAlloc[float64](t, d, rows), devAlloc[float64](t, d, 2*outNormMSEChunks(rows)*dim)
	var none buf[float64]
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"dx aliasing x", func() error { return d.outNormMSE(x, rowLoss, partial, x, tg, gamma, beta, rows, dim) }},
		{"dx overlapping t", func() error {
			return d.outNormMSE(tg.at(dim, rows*dim-dim), rowLoss, partial, x, tg, gamma, beta, rows-1, dim)
		}},
		{"no partials", func() error { return d.outNormMSE(dx, rowLoss, none, x, tg, gamma, beta, rows, dim) }},
		{"short partials", func() error {
			return d.outNormMSE(dx, rowLoss, partial.at(0, dim), x, tg, gamma, beta, rows, dim)
		}},
		{"short targets", func() error { return d.outNormMSE(dx, rowLoss, partial, x, tg.at(0, dim), gamma, beta, rows, dim) }},
		{"zero width", func() error { return d.outNormMSE(dx, rowLoss, partial, x, tg, gamma, beta, rows, 0) }},
	} {
		if err := d.do(c.f); err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}
