//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/nn"
)

// Per-kernel tests against the CPU references of package nn, on sizes that
// are not multiples of any tile. Each states its tolerance and why; the
// float64 CPU functions are the oracle.

// gemmTol: a float32 GEMM of depth K carries about sqrt(K) roundings of
// 6e-8 relative to the float64 product; K <= 130 here, so 2e-6 norm-wise
// leaves a margin of 10 while a wrong index moves the result by O(1).
const gemmTol = 2e-6

var gemmSizes = []struct{ rows, in, out int }{
	{37, 70, 53},   // under one tile in every direction
	{130, 129, 65}, // several tiles, K chunks with a remainder
	{1, 1, 1},
	{64, 16, 128}, // exact tiles
}

func TestGemm(t *testing.T) {
	d := testDevice(t)
	for _, sz := range gemmSizes {
		rows, in, out := sz.rows, sz.in, sz.out
		t.Run(fmt.Sprintf("%dx%dx%d", rows, in, out), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(rows), uint64(in*1000+out)))
			x, w, b := randn(rng, rows*in, 1), randn(rng, out*in, 0.3), randn(rng, out, 0.5)
			dy, dx0 := randn(rng, rows*out, 1), randn(rng, rows*in, 1)

			y64 := make([]float64, rows*out)
			nn.LinearForward(y64, f64s(x), f64s(w), f64s(b), rows, in, out)
			dw64, db64, dx64 := make([]float64, out*in), make([]float64, out), f64s(dx0)
			nn.LinearBackward(dx64, dw64, db64, f64s(dy), f64s(x), f64s(w), rows, in, out, 1)
			dxZero64 := make([]float64, rows*in)
			nn.LinearBackward(dxZero64, make([]float64, out*in), make([]float64, out), f64s(dy), f64s(x), f64s(w), rows, in, out, 0)

			gx, gw, gb, gdy := devCopy(t, d, x), devCopy(t, d, w), devCopy(t, d, b), devCopy(t, d, dy)
			y1, y2, act, y3 := devCopy(t, d, nanFill(rows*out)), devCopy(t, d, nanFill(rows*out)), devCopy(t, d, nanFill(rows*out)), devCopy(t, d, nanFill(rows*out))
			tiles := statsTiles(out)
			stats := devCopy(t, d, nanFill(rows*tiles*3))
			dxA, dxB, dw := devCopy(t, d, nanFill(rows*in)), devCopy(t, d, dx0), devCopy(t, d, nanFill(out*in))
			var none buf[float32]
			on(t, d, func() error {
				if err := d.linearForward(launch.KGemmNtBias, y1, none, none, gx, gw, gb, rows, in, out); err != nil {
					return err
				}
				if err := d.linearForward(launch.KGemmNtBiasGelu, y2, act, none, gx, gw, gb, rows, in, out); err != nil {
					return err
				}
				if err := d.linearForward(launch.KGemmNtBiasStats, y3, none, stats, gx, gw, gb, rows, in, out); err != nil {
					return err
				}
				// beta 0 must not read dx, which holds NaN.
				if err := d.gemmNN(dxA, gdy, gw, 0, rows, in, out); err != nil {
					return err
				}
				if err := d.gemmNN(dxB, gdy, gw, 1, rows, in, out); err != nil {
					return err
				}
				if err := d.gemmTN(dw, gdy, gx, rows, in, out); err != nil {
					return err
				}
				return d.sync()
			})
			gy1, gy2, gy3 := fetch(t, d, y1), fetch(t, d, y2), fetch(t, d, y3)
			within(t, "NT + bias", gy1, y64, gemmTol)
			// The three forward kernels share the main loop: their Y is
			// the same bits.
			for i := range gy1 {
				if math.Float32bits(gy1[i]) != math.Float32bits(gy2[i]) || math.Float32bits(gy1[i]) != math.Float32bits(gy3[i]) {
					t.Fatalf("element %d: bias %v, bias+GELU %v, bias+stats %v", i, gy1[i], gy2[i], gy3[i])
				}
			}
			// GELU of the stored pre-activation, float32 erfc against float64.
			gelu64 := make([]float64, len(gy2))
			for i, v := range gy2 {
				gelu64[i] = nn.GELU(float64(v))
			}
			within(t, "NT + bias + GELU", fetch(t, d, act), gelu64, 1e-6)
			checkStats(t, fetch(t, d, stats), gy3, rows, out)
			within(t, "NN beta 0", fetch(t, d, dxA), dxZero64, gemmTol)
			within(t, "NN beta 1", fetch(t, d, dxB), dx64, gemmTol)
			within(t, "TN", fetch(t, d, dw), dw64, gemmTol)
		})
	}
}

// checkStats compares the GEMM's per-tile row statistics with float64
// statistics of the stored values. The kernel accumulates in float32 over
// at most 64 values (4 per thread, then a 16-way Chan merge): the mean is
// good to a few ulps of the values' magnitude and M2 to ~1e-6 relative.
func checkStats(t *testing.T, stats, y []float32, rows, cols int) {
	t.Helper()
	tiles := statsTiles(cols)
	for r := 0; r < rows; r++ {
		for tl := 0; tl < tiles; tl++ {
			lo, hi := tl*statsTile, min(cols, (tl+1)*statsTile)
			var sum, absMax float64
			for j := lo; j < hi; j++ {
				v := float64(y[r*cols+j])
				sum += v
				absMax = max(absMax, math.Abs(v))
			}
			n := float64(hi - lo)
			mean := sum / n
			var m2 float64
			for j := lo; j < hi; j++ {
				dv := float64(y[r*cols+j]) - mean
				m2 += dv * dv
			}
			s := stats[(r*tiles+tl)*3:]
			if float64(s[0]) != n {
				t.Fatalf("row %d tile %d: count %v, want %v", r, tl, s[0], n)
			}
			if !(math.Abs(float64(s[1])-mean) <= 1e-6*absMax) {
				t.Errorf("row %d tile %d: mean %v, want %v", r, tl, s[1], mean)
			}
			if !(math.Abs(float64(s[2])-m2) <= 1e-5*m2+1e-6*absMax*absMax) {
				t.Errorf("row %d tile %d: M2 %v, want %v", r, tl, s[2], m2)
			}
		}
	}
}

func TestColumnSums(t *testing.T) {
	d := testDevice(t)
	// 1300 rows: 21 chunks of 64, more than the 8 warps that sum them.
	for _, sz := range []struct{ rows, dim int }{{1, 1}, {37, 333}, {130, 257}, {200, 64}, {1300, 40}} {
		t.Run(fmt.Sprintf("%dx%d", sz.rows, sz.dim), func(t *testing.T) {
			rows, dim := sz.rows, sz.dim
			rng := rand.New(rand.NewPCG(uint64(rows), uint64(dim)))
			a := randn(rng, rows*dim, 1)
			want := make([]float64, dim)
			nn.ColumnSums(want, f64s(a), rows, dim)
			ga, sum := devCopy(t, d, a), devCopy(t, d, nanFill(dim))
			partial := devAlloc[float64](t, d, 2*colChunks(rows)*dim)
			var none buf[float32]
			on(t, d, func() error { return d.colSums(sum, none, ga, none, partial, rows, dim) })
			// Double accumulation rounded once: at most an ulp from the
			// float64 sum.
			within(t, "column sums", fetch(t, d, sum), want, 1e-7)
		})
	}
}

// At 333 columns (6 statistics tiles, fewer than the 32 lanes that merge
// them in ln_apply) and 2600 (41 tiles: some lanes merge two).
func TestLayerNormForward(t *testing.T) {
	for _, dim := range []int{333, 2600} {
		t.Run(fmt.Sprintf("dim=%d", dim), func(t *testing.T) { testLayerNormForward(t, dim) })
	}
}

func testLayerNormForward(t *testing.T, dim int) {
	d := testDevice(t)
	const rows, in = 5, 29
	rng := rand.New(rand.NewPCG(5, uint64(dim)))
	x, w := randn(rng, rows*in, 1), randn(rng, dim*in, 0.3)
	bias := randn(rng, dim, 1)
	for i := range bias {
		bias[i] += 10 // rows far from zero mean: the statistics must not cancel
	}
	gamma, beta, resid := randn(rng, dim, 0.2), randn(rng, dim, 0.2), randn(rng, rows*dim, 1)
	for i := range gamma {
		gamma[i]++
	}
	gx, gw, gbias := devCopy(t, d, x), devCopy(t, d, w), devCopy(t, d, bias)
	gg, gbeta, gres := devCopy(t, d, gamma), devCopy(t, d, beta), devCopy(t, d, resid)
	pre := devCopy(t, d, nanFill(rows*dim))
	stats := devCopy(t, d, nanFill(rows*statsTiles(dim)*3))
	var none buf[float32]
	on(t, d, func() error {
		return d.linearForward(launch.KGemmNtBiasStats, pre, none, stats, gx, gw, gbias, rows, in, dim)
	})
	xs := fetch(t, d, pre) // the LayerNorm input, as stored

	y64, xhat64, rstd64 := make([]float64, rows*dim), make([]float64, rows*dim), make([]float64, rows)
	nn.LayerNormForward(y64, xhat64, rstd64, f64s(xs), f64s(gamma), f64s(beta), rows, dim)
	gelu64, res64 := make([]float64, rows*dim), make([]float64, rows*dim)
	for i := range y64 {
		gelu64[i] = nn.GELU(float64(float32(y64[i])))
		res64[i] = float64(resid[i]) + y64[i]
	}

	// ln_forward computes the statistics in float64 like the CPU: xhat and
	// y are the CPU's up to the order of the row sums, 1e-7. ln_apply
	// merges float32 tile statistics: the mean is good to a few ulps of
	// the values (~10 here), so xhat moves by ~1e-6 of its scale; 5e-6.
	for _, c := range []struct {
		name string
		tol  float64
	}{{"ln_forward", 2e-7}, {"ln_apply", 5e-6}} {
		for _, mode := range []int{lnPlain, lnGELU, lnResidual} {
			t.Run(fmt.Sprintf("%s/mode%d", c.name, mode), func(t *testing.T) {
				y, y2 := devCopy(t, d, nanFill(rows*dim)), devCopy(t, d, nanFill(rows*dim))
				xhat, rstd := devCopy(t, d, nanFill(rows*dim)), devCopy(t, d, nanFill(rows))
				r := none
				if mode == lnResidual {
					r = gres
				}
				yy2 := none
				if mode == lnGELU {
					yy2 = y2
				}
				run := func(out lnOutputs) {
					t.Helper()
					out.xhat, out.rstd = xhat, rstd
					on(t, d, func() error {
						if c.name == "ln_forward" {
							return d.lnForward(mode, out, pre, gg, gbeta, r, rows, dim)
						}
						return d.lnApply(mode, out, pre, buf[uint16]{}, stats, gg, gbeta, r, rows, dim)
					})
				}
				run(lnOutputs{y: y, y2: yy2})
				within(t, "xhat", fetch(t, d, xhat), xhat64, c.tol)
				within(t, "rstd", fetch(t, d, rstd), rstd64, c.tol)
				switch mode {
				case lnPlain:
					within(t, "y", fetch(t, d, y), y64, c.tol)
				case lnGELU:
					within(t, "y", fetch(t, d, y), y64, c.tol)
					within(t, "GELU(y)", fetch(t, d, y2), gelu64, c.tol+1e-6)
				case lnResidual:
					within(t, "resid + y", fetch(t, d, y), res64, c.tol)
				}

				// The bf16 copy for the next Linear: bf16 of GELU(y) in
				// mode lnGELU, of y otherwise, with or without the float32
				// outputs it can replace (y2; y in mode lnPlain), which
				// keep their bits.
				next := y
				if mode == lnGELU {
					next = y2
				}
				wantY, wantNext := fetch(t, d, y), fetch(t, d, next)
				for _, alone := range []bool{false, true} {
					yb := devAlloc[uint16](t, d, rows*dim)
					out := lnOutputs{y: y, y2: yy2, yb: yb}
					if alone {
						out.y2 = none
						if mode == lnPlain {
							out.y = none
						}
					}
					on(t, d, func() error { return upload(d, y, nanFill(rows*dim)) })
					run(out)
					for i, b := range fetch(t, d, yb) {
						if w := leconv.BFloat16Bits(wantNext[i]); b != w {
							t.Fatalf("alone %v: yb[%d] = %#04x, want bf16(%v) = %#04x", alone, i, b, wantNext[i], w)
						}
					}
					if out.y.p != 0 {
						for i, v := range fetch(t, d, y) {
							if math.Float32bits(v) != math.Float32bits(wantY[i]) {
								t.Fatalf("alone %v: y[%d] = %v, without yb %v", alone, i, v, wantY[i])
							}
						}
					}
				}
			})
		}
	}

	// In place: y aliases x (as the output LayerNorm runs).
	t.Run("in place", func(t *testing.T) {
		xy := devCopy(t, d, xs)
		xhat, rstd := devCopy(t, d, nanFill(rows*dim)), devCopy(t, d, nanFill(rows))
		on(t, d, func() error {
			return d.lnForward(lnPlain, lnOutputs{y: xy, xhat: xhat, rstd: rstd}, xy, gg, gbeta, none, rows, dim)
		})
		within(t, "y", fetch(t, d, xy), y64, 2e-7)
	})
}

func TestLayerNormBackward(t *testing.T) {
	d := testDevice(t)
	const rows, dim = 130, 333 // three row chunks of the column reduction
	rng := rand.New(rand.NewPCG(130, 333))
	dy, xhat, gamma := randn(rng, rows*dim, 1), randn(rng, rows*dim, 1), randn(rng, dim, 0.5)
	rstd := make([]float32, rows)
	for i := range rstd {
		rstd[i] = float32(0.5 + rng.Float64())
	}
	dx64, dg64, db64 := make([]float64, rows*dim), make([]float64, dim), make([]float64, dim)
	nn.LayerNormBackward(dx64, dg64, db64, f64s(dy), f64s(xhat), f64s(rstd), f64s(gamma), rows, dim)

	gdy, gxhat, grstd, ggamma := devCopy(t, d, dy), devCopy(t, d, xhat), devCopy(t, d, rstd), devCopy(t, d, gamma)
	dx, dgamma, dbeta := devCopy(t, d, nanFill(rows*dim)), devCopy(t, d, nanFill(dim)), devCopy(t, d, nanFill(dim))
	partial := devAlloc[float64](t, d, 2*colChunks(rows)*dim)
	on(t, d, func() error {
		if err := d.colSums(dbeta, dgamma, gdy, gxhat, partial, rows, dim); err != nil {
			return err
		}
		return d.lnBackward(dx, gdy, gxhat, grstd, ggamma, rows, dim)
	})
	// All reductions in float64, each result rounded once: the CPU's
	// values up to an ulp.
	within(t, "dx", fetch(t, d, dx), dx64, 1e-7)
	within(t, "dgamma", fetch(t, d, dgamma), dg64, 1e-7)
	within(t, "dbeta", fetch(t, d, dbeta), db64, 1e-7)

	// In place, dx aliasing dy, as the engine runs it.
	on(t, d, func() error { return d.lnBackward(gdy, gdy, gxhat, grstd, ggamma, rows, dim) })
	within(t, "dx in place", fetch(t, d, gdy), dx64, 1e-7)
}

func TestGELUBackward(t *testing.T) {
	d := testDevice(t)
	const n = 1001
	rng := rand.New(rand.NewPCG(1, 1001))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(-12 + 24*float64(i)/(n-1) + 0.01*rng.NormFloat64())
	}
	dy := randn(rng, n, 1)
	dx64 := make([]float64, n)
	for i, v := range x {
		dx64[i] = float64(dy[i]) * nn.GELUGrad(float64(v))
	}
	gx, gdy := devCopy(t, d, x), devCopy(t, d, dy)
	on(t, d, func() error { return d.geluBackward(gdy, gdy, gx, n) }) // in place
	// float32 erfcf/expf are within a few ulps; norm-wise 1e-6.
	within(t, "GELU backward", fetch(t, d, gdy), dx64, 1e-6)

	// Value by value in the left tail, where the norm-wise bound above is
	// all the large values' and the gradient is small: erfc keeps its
	// relative accuracy there, 1 + erf cancels (to 3e-2 at x = -8).
	// The reference is erfc's (nn.GELUGrad is PyTorch's 1 + erf, itself
	// off by up to 1.4% there). A few float32 ulps of erfcf and expf:
	// 1e-5.
	const tail = 1000
	xt, ones := make([]float32, tail), make([]float32, tail)
	for i := range xt {
		xt[i] = float32(-12 + 10*float64(i)/tail) // [-12, -2)
		ones[i] = 1
	}
	gxt, gdyt := devCopy(t, d, xt), devCopy(t, d, ones)
	on(t, d, func() error { return d.geluBackward(gdyt, gdyt, gxt, tail) })
	for i, g := range fetch(t, d, gdyt) {
		x := float64(xt[i])
		want := 0.5*math.Erfc(-x/math.Sqrt2) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
		if e := math.Abs(float64(g)-want) / math.Abs(want); !(e <= 1e-5) {
			t.Fatalf("GELU backward at %v: %v, want %v (relative error %.3g)", x, g, want, e)
		}
	}
}

func TestUnitNormMSE(t *testing.T) {
	d := testDevice(t)
	const rows, dim = 7, 300 // more columns than threads
	rng := rand.New(rand.NewPCG(7, 300))
	p, tg := randn(rng, rows*dim, 1), randn(rng, rows*dim, 2)
	for j := 0; j < dim; j++ {
		p[2*dim+j] = 0                                  // |p| = 0: the clamp branch
		p[4*dim+j] = float32(1e-14 * rng.NormFloat64()) // 0 < |p| < 1e-12: the clamp branch
		tg[5*dim+j] = 0                                 // zero target
		tg[6*dim+j] = 3 * p[6*dim+j]                    // same direction: zero loss
	}
	grad64 := make([]float64, rows*dim)
	loss64 := nn.UnitNormMSE(grad64, f64s(p), f64s(tg), rows, dim)

	gp, gt := devCopy(t, d, p), devCopy(t, d, tg)
	grad := devCopy(t, d, nanFill(rows*dim))
	rowLoss, sum := devAlloc[float64](t, d, rows), devAlloc[float64](t, d, 1)
	var none buf[float32]
	var withGrad, lossOnly [1]float64
	on(t, d, func() error {
		if err := d.unitNormMSE(grad, rowLoss, gp, gt, rows, dim); err != nil {
			return err
		}
		if err := d.lossSum(sum, rowLoss, rows); err != nil {
			return err
		}
		if err := download(d, withGrad[:], sum); err != nil {
			return err
		}
		if err := d.unitNormMSE(none, rowLoss, gp, gt, rows, dim); err != nil {
			return err
		}
		if err := d.lossSum(sum, rowLoss, rows); err != nil {
			return err
		}
		return download(d, lossOnly[:], sum)
	})
	loss := withGrad[0] / float64(rows*dim)
	// Everything in float64, only the summation order differs: 1e-12.
	if r := math.Abs(loss-loss64) / loss64; !(r <= 1e-12) {
		t.Errorf("loss %v, CPU %v: relative difference %.3g", loss, loss64, r)
	}
	if withGrad != lossOnly {
		t.Errorf("loss with gradient %v, without %v", withGrad[0], lossOnly[0])
	}
	// The gradient is float64 rounded once: per row, an ulp of the
	// scale of its terms, |g|/max(|p|, eps) with g = 2(p^ - t^)/(n d). (For
	// a zero target the two terms cancel exactly and both sides hold
	// rounding noise, hence not the norm of the result itself.)
	g := fetch(t, d, grad)
	for r := 0; r < rows; r++ {
		pr, tr := f64s(p[r*dim:(r+1)*dim]), f64s(tg[r*dim:(r+1)*dim])
		pn, tn := math.Sqrt(dot64(pr, pr)), math.Sqrt(dot64(tr, tr))
		var num, scale float64
		for j := range pr {
			e := 2 * (pr[j]/math.Max(pn, 1e-12) - tr[j]/math.Max(tn, 1e-12)) / float64(rows*dim)
			scale += e * e
			dv := float64(g[r*dim+j]) - grad64[r*dim+j]
			num += dv * dv
		}
		scale = math.Sqrt(scale) / math.Max(pn, 1e-12)
		if rel := math.Sqrt(num) / scale; !(rel <= 1e-7) {
			t.Errorf("gradient row %d: difference %.3g of the gradient's scale %.3g", r, rel, scale)
		}
	}
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func TestAdamW(t *testing.T) {
	d := testDevice(t)
	const n = 2000
	rng := rand.New(rand.NewPCG(2000, 1))
	p, g, m, v := randn(rng, n, 0.1), randn(rng, n, 1e-3), randn(rng, n, 1e-4), make([]float32, n)
	for i := range v {
		v[i] = float32(math.Abs(1e-6 * rng.NormFloat64()))
	}
	g[0], m[0], v[0] = 0, 0, 0 // a parameter that never had a gradient
	g[1] = 1e-40               // subnormal: no flush to zero
	g[2] = -3                  // large
	gp, gg, gm, gv := devCopy(t, d, p), devCopy(t, d, g), devCopy(t, d, m), devCopy(t, d, v)
	steps := []nn.AdamWStep{
		{LR: 1e-3, Beta1: 0.95, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 1},
		{LR: 3e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 2},
		{LR: 7e-3, Beta1: 0.85, Beta2: 0.98, Eps: 1e-6, WeightDecay: 0.1, Step: 1000},
	}
	for _, s := range steps {
		nn.AdamW(p, g, m, v, s)
		on(t, d, func() error { return d.adamW(gp, gg, gm, gv, n, s) })
		// Explicitly rounded float32 operations in the CPU's order, IEEE
		// division and square root: the same bits.
		for _, c := range []struct {
			name      string
			got, want []float32
		}{{"params", fetch(t, d, gp), p}, {"m", fetch(t, d, gm), m}, {"v", fetch(t, d, gv), v}} {
			for i := range c.want {
				if math.Float32bits(c.got[i]) != math.Float32bits(c.want[i]) {
					t.Fatalf("step %d: %s[%d] = %v, CPU %v", s.Step, c.name, i, c.got[i], c.want[i])
				}
			}
		}
	}
}

// TestLaunchChecks: the wrappers refuse buffers too small for the shapes.
func TestLaunchChecks(t *testing.T) {
	d := testDevice(t)
	small := devAlloc[float32](t, d, 10)
	var none buf[float32]
	err := d.do(func() error {
		return d.linearForward(launch.KGemmNtBias, small, none, none, small, small, small, 4, 4, 4)
	})
	if err == nil {
		t.Error("GEMM with short buffers: no error")
	}
	err = d.do(func() error { return d.lnBackward(small, small, small, small, small, 0, 4) })
	if err == nil {
		t.Error("LayerNorm backward with 0 rows: no error")
	}
	err = d.do(func() error { return d.geluBackward(none, small, small, 4) })
	if err == nil {
		t.Error("GELU into a null buffer: no error")
	}
}
