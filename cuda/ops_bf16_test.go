//go:build cuda

package cuda

// Tests of the bf16 engine's memory-bound kernels (kernels/bf16_convert.cu
// and adamw_bf16) against host references. Every result but GELU's is
// exact: a cast is one rounding (leconv.BFloat16Bits rounds to nearest
// even as the kernels do), adamw_bf16 is adamw's arithmetic plus one
// rounding.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/nn"
)

// bf16Specials are values whose rounding is easy to get wrong: ties to
// even in both directions, the largest finite bf16 neighbourhood (rounds
// to infinity above it), subnormals, signed zero, infinities and NaN.
var bf16Specials = []float32{
	math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), math.Float32frombits(0x3f808001),
	math.Float32frombits(0x7f7f7fff), math.Float32frombits(0x7f7f8000), 1e-40, -1e-45,
	float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
}

func TestCastBF16(t *testing.T) {
	d := testDevice(t)
	rng := rand.New(rand.NewPCG(1, 16))
	x := append(randn(rng, 3000, 10), bf16Specials...)
	n := len(x)
	tail := 8 + n%2 // elements past n, to see that none is written; an even total, as Zero clears 4-byte words
	dst := devAlloc[uint16](t, d, n+tail)
	on(t, d, func() error { return d.drv.Zero(dst.p, int64(2*(n+tail))) })
	src := devCopy(t, d, x)
	on(t, d, func() error { return d.castBF16(dst, src, n) })
	got := fetch(t, d, dst)
	for i, v := range x {
		want := leconv.BFloat16Bits(v)
		if math.IsNaN(float64(v)) {
			if g := got[i]; g&0x7f80 != 0x7f80 || g&0x7f == 0 {
				t.Errorf("cast of NaN: %#04x, not a NaN", g)
			}
			continue
		}
		if got[i] != want {
			t.Fatalf("cast of %v (%#08x): %#04x, want %#04x", v, math.Float32bits(v), got[i], want)
		}
	}
	for i := n; i < n+tail; i++ {
		if got[i] != 0 {
			t.Fatalf("element %d past n written", i)
		}
	}
}

// TestAdamWBF16: adamw_bf16 updates p, m and v to the bits adamw gives
// (and nn.AdamW[float32]) and writes pb = bf16(p).
func TestAdamWBF16(t *testing.T) {
	d := testDevice(t)
	const n = 1500
	rng := rand.New(rand.NewPCG(4, 16))
	p, g, m, v := randn(rng, n, 0.1), randn(rng, n, 1e-3), randn(rng, n, 1e-4), make([]float32, n)
	for i := range v {
		v[i] = float32(math.Abs(1e-6 * rng.NormFloat64()))
	}
	gp, gg, gm, gv := devCopy(t, d, p), devCopy(t, d, g), devCopy(t, d, m), devCopy(t, d, v)
	pb := devAlloc[uint16](t, d, n)
	for _, s := range []nn.AdamWStep{
		{LR: 1e-3, Beta1: 0.95, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 1},
		{LR: 7e-3, Beta1: 0.85, Beta2: 0.98, Eps: 1e-6, WeightDecay: 0.1, Step: 40},
	} {
		nn.AdamW(p, g, m, v, s)
		on(t, d, func() error { return d.adamWBF16(gp, pb, gg, gm, gv, n, s) })
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
		for i, b := range fetch(t, d, pb) {
			if want := leconv.BFloat16Bits(p[i]); b != want {
				t.Fatalf("step %d: bf16 params[%d] = %#04x, want bf16(%v) = %#04x", s.Step, i, b, p[i], want)
			}
		}
	}
}

// TestEngineBF16WeightCopy: the engine's bf16 weight copy is bf16 of its
// parameters after SetParameters and after an optimizer step.
func TestEngineBF16WeightCopy(t *testing.T) {
	c := nn.Config{InputDim: 16, HiddenDim: 32, OutputDim: 8, Blocks: 1}
	e, err := NewBF16Engine(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	check := func(when string) {
		t.Helper()
		params := make([]float32, c.NumParams())
		if err := e.Parameters(params); err != nil {
			t.Fatal(err)
		}
		for i, b := range fetch(t, e.dev, e.paramsBF16) {
			if want := leconv.BFloat16Bits(params[i]); b != want {
				t.Fatalf("%s: bf16 copy [%d] = %#04x, want bf16(%v) = %#04x", when, i, b, params[i], want)
			}
		}
	}
	if err := e.SetParameters(nn.InitParameters[float32](c, 5)); err != nil {
		t.Fatal(err)
	}
	check("after SetParameters")
	x := randn(rand.New(rand.NewPCG(5, 5)), 8*c.InputDim, 1)
	tg := randn(rand.New(rand.NewPCG(6, 6)), 8*c.OutputDim, 1)
	if _, err := e.ForwardBackward(x, tg, 8); err != nil {
		t.Fatal(err)
	}
	if err := e.Step(nn.AdamWStep{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 1}); err != nil {
		t.Fatal(err)
	}
	check("after a step")
}

// TestGradRows: grad_rows and grad_cols against the float32 engine's
// unfused kernels and a float64 sum, in every combination the bf16
// backward pass uses (GELU' or not, LayerNorm or not; bf16 and/or float32
// out, in place), on row counts that leave a ragged last chunk and widths
// that are not multiples of the block (with the LayerNorm, 2456 needs
// 49,120 bytes of dynamic shared memory: under 48 KiB, but not beside the
// kernel's 1 KiB of static shared memory, so the limit must be raised
// there too; 4100 needs more than 48 KiB).
//
// dx must have exactly the bits of gelu_backward then ln_backward (the
// same operations in the same order) and dxb = bf16(dx). The column sums:
// each is float within a chunk of gradChunkRows rows (at most that many
// roundings of a partial no larger than the sum of the magnitudes S), one
// more for dgamma's float product, double across chunks, then one
// rounding: |error| <= (gradChunkRows + 2) 2^-24 S. A sum over the wrong
// rows, a lost chunk or a misplaced array errs by a whole term or more.
func TestGradRows(t *testing.T) {
	d := testDevice(t)
	type shape struct{ rows, dim int }
	for _, sh := range []shape{{37, 48}, {70, 300}, {300, 40}, {3, 2456}, {5, 4100}} { // 300 rows: 19 chunks, more than grad_cols's 8 warps
		for _, mode := range []struct {
			name          string
			gelu, ln      bool
			inPlace, both bool
		}{
			{"cast", false, false, false, false},
			{"gelu", true, false, false, true},
			{"ln", false, true, false, false},
			{"gelu+ln", true, true, false, true},
			{"ln in place", false, true, true, false},
		} {
			t.Run(fmt.Sprintf("%dx%d/%s", sh.rows, sh.dim, mode.name), func(t *testing.T) {
				n, dim := sh.rows, sh.dim
				rng := rand.New(rand.NewPCG(uint64(n), uint64(dim)))
				dyHost := randn(rng, n*dim, 1)
				dy := devCopy(t, d, dyHost)
				// The reference: g = dy GELU'(pre), then dx = LN backward of g.
				g := devCopy(t, d, dyHost)
				p := gradPass{dy: dy, db: devCopy(t, d, nanFill(dim)), rows: n, dim: dim}
				if mode.gelu {
					p.pre = devCopy(t, d, randn(rng, n*dim, 1.5))
					on(t, d, func() error { return d.geluBackward(g, dy, p.pre, n*dim) })
				}
				ref := g
				if mode.ln {
					p.xhat = devCopy(t, d, randn(rng, n*dim, 1))
					rstd := make([]float32, n)
					for i := range rstd {
						rstd[i] = float32(0.5 + rng.Float64())
					}
					p.rstd, p.gamma = devCopy(t, d, rstd), devCopy(t, d, randn(rng, dim, 1))
					p.dbeta, p.dgamma = devCopy(t, d, nanFill(dim)), devCopy(t, d, nanFill(dim))
					ref = devAlloc[float32](t, d, n*dim)
					on(t, d, func() error { return d.lnBackward(ref, g, p.xhat, p.rstd, p.gamma, n, dim) })
				}
				switch {
				case mode.inPlace:
					p.dx = dy
				case mode.both:
					p.dx, p.dxb = devCopy(t, d, nanFill(n*dim)), devAlloc[uint16](t, d, n*dim)
				default:
					p.dxb = devAlloc[uint16](t, d, n*dim)
				}
				p.partial = devCopy(t, d, nanFill(gradPartialLen(n, dim)))
				on(t, d, func() error { return d.gradRows(p) })

				want, gs := fetch(t, d, ref), fetch(t, d, g)
				if p.dx.p != 0 {
					for i, v := range fetch(t, d, p.dx) {
						if math.Float32bits(v) != math.Float32bits(want[i]) {
							t.Fatalf("dx[%d] = %v, the unfused kernels' %v", i, v, want[i])
						}
					}
				}
				if p.dxb.p != 0 {
					for i, b := range fetch(t, d, p.dxb) {
						if w := leconv.BFloat16Bits(want[i]); b != w {
							t.Fatalf("dxb[%d] = %#04x, want bf16(%v) = %#04x", i, b, want[i], w)
						}
					}
				}
				var xhat []float32
				if mode.ln {
					xhat = fetch(t, d, p.xhat)
				}
				check := func(name string, got buf[float32], term func(i int) float64) {
					t.Helper()
					sums := fetch(t, d, got)
					for j := 0; j < dim; j++ {
						var s, mag float64
						for r := 0; r < n; r++ {
							v := term(r*dim + j)
							s += v
							mag += math.Abs(v)
						}
						tol := float64(gradChunkRows+2) * math.Ldexp(mag, -24)
						if e := math.Abs(float64(sums[j]) - s); !(e <= tol) {
							t.Fatalf("%s[%d] = %v, want %v within %.3g", name, j, sums[j], s, tol)
						}
					}
				}
				check("db", p.db, func(i int) float64 { return float64(want[i]) })
				if mode.ln {
					check("dbeta", p.dbeta, func(i int) float64 { return float64(gs[i]) })
					check("dgamma", p.dgamma, func(i int) float64 { return float64(gs[i]) * float64(xhat[i]) })
				}
			})
		}
	}
}

// TestGradRowsChecks: grad_rows refuses a pass without an output, with
// LayerNorm buffers but no xhat, with both a saved xhat and a mean to
// recompute it, with two GELU inputs, and with too short a buffer.
func TestGradRowsChecks(t *testing.T) {
	d := testDevice(t)
	const n, dim = 20, 16
	dy, out := devAlloc[float32](t, d, n*dim), devAlloc[uint16](t, d, n*dim)
	gamma := devAlloc[float32](t, d, dim)
	partial := devAlloc[float32](t, d, gradPartialLen(n, dim))
	for _, c := range []struct {
		name, want string
		p          gradPass
	}{
		{"no output", "neither", gradPass{dy: dy, partial: partial, rows: n, dim: dim}},
		{"gamma without xhat", "without xhat", gradPass{dy: dy, dxb: out, gamma: gamma, partial: partial, rows: n, dim: dim}},
		{"short partial", "partial: buffer", gradPass{dy: dy, dxb: out, partial: partial.at(0, dim), rows: n, dim: dim}},
		{"short dy", "dy: buffer", gradPass{dy: dy.at(0, n), dxb: out, partial: partial, rows: n, dim: dim}},
		{"xhat and mean", "both a saved xhat", gradPass{dy: dy, dxb: out, xhat: dy, mean: gamma, rstd: gamma, gamma: gamma,
			dbeta: gamma, dgamma: gamma, partial: partial, rows: n, dim: dim}},
		{"two GELU inputs", "two GELU inputs", gradPass{dy: dy, dxb: out, pre: dy, xhat: dy, rstd: gamma, gamma: gamma,
			geluBeta: gamma, dbeta: gamma, dgamma: gamma, partial: partial, rows: n, dim: dim}},
	} {
		err := d.do(func() error { return d.gradRows(c.p) })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// lnBF16Case is a LayerNorm over a bf16 GEMM output, as the bf16 engine's
// blocks run one: x bf16 [rows, dim] and its tile statistics from
// gemm_bf16_nt_bf16_stats (a bias of +10 puts the rows' means far from
// zero, so the statistics must not cancel), gamma, beta and a residual.
type lnBF16Case struct {
	rows, dim                 int
	x                         buf[uint16]
	xs                        []float64 // x's values
	stats, gamma, beta, resid buf[float32]
	gammaHost, betaHost       []float32
	residHost                 []float32
}

func newLNBF16Case(t *testing.T, d *Device, rows, dim int) lnBF16Case {
	t.Helper()
	const k = 24
	rng := rand.New(rand.NewPCG(uint64(rows), uint64(dim)))
	aBits, _ := bf16Round(randn(rng, rows*k, 1))
	wBits, _ := bf16Round(randn(rng, dim*k, 0.3))
	bias := randn(rng, dim, 1)
	for i := range bias {
		bias[i] += 10
	}
	c := lnBF16Case{rows: rows, dim: dim, x: devAlloc[uint16](t, d, rows*dim), stats: devAlloc[float32](t, d, rows*statsTiles(dim)*3)}
	da, dw, dbias := devCopy(t, d, aBits), devCopy(t, d, wBits), devCopy(t, d, bias)
	on(t, d, func() error { return d.gemmBF16BF16Stats(c.x, c.stats, da, dw, dbias, rows, dim, k) })
	for _, b := range fetch(t, d, c.x) {
		c.xs = append(c.xs, float64(leconv.BFloat16Value(b)))
	}
	c.gammaHost, c.betaHost, c.residHost = randn(rng, dim, 0.2), randn(rng, dim, 0.2), randn(rng, rows*dim, 1)
	for i := range c.gammaHost {
		c.gammaHost[i]++
	}
	c.gamma, c.beta, c.resid = devCopy(t, d, c.gammaHost), devCopy(t, d, c.betaHost), devCopy(t, d, c.residHost)
	return c
}

// TestLayerNormBF16Input: ln_apply_bf16 is the LayerNorm of its bf16 input
// (the float64 CPU LayerNorm of the same values), in each mode, saving the
// row means and rstds rounded to float and xhat computed from them.
//
// Tolerance: as ln_apply's over float32 input (TestLayerNormForward,
// 5e-6: the merged float32 tile statistics), plus the float rounding of
// the mean and rstd (2^-24 of |mean| rstd ~ 10 rstd in xhat, ~1e-6).
func TestLayerNormBF16Input(t *testing.T) {
	d := testDevice(t)
	const rows, dim, tol = 5, 333, 6e-6
	c := newLNBF16Case(t, d, rows, dim)
	y64, xhat64, rstd64 := make([]float64, rows*dim), make([]float64, rows*dim), make([]float64, rows)
	nn.LayerNormForward(y64, xhat64, rstd64, c.xs, f64s(c.gammaHost), f64s(c.betaHost), rows, dim)
	mean64 := make([]float64, rows)
	for r := range rows {
		for j := range dim {
			mean64[r] += c.xs[r*dim+j] / dim
		}
	}
	gelu64, res64 := make([]float64, rows*dim), make([]float64, rows*dim)
	for i := range y64 {
		gelu64[i] = nn.GELU(y64[i])
		res64[i] = float64(c.residHost[i]) + y64[i]
	}
	for _, mode := range []int{lnPlain, lnGELU, lnResidual} {
		t.Run(fmt.Sprintf("mode%d", mode), func(t *testing.T) {
			out := lnOutputs{y: devCopy(t, d, nanFill(rows*dim)), xhat: devCopy(t, d, nanFill(rows*dim)),
				mean: devCopy(t, d, nanFill(rows)), rstd: devCopy(t, d, nanFill(rows))}
			var resid buf[float32]
			if mode == lnGELU {
				out.y2 = devCopy(t, d, nanFill(rows*dim))
			}
			if mode == lnResidual {
				resid = c.resid
			}
			on(t, d, func() error {
				return d.lnApply(mode, out, buf[float32]{}, c.x, c.stats, c.gamma, c.beta, resid, rows, dim)
			})
			// A float32 input's LayerNorm saves xhat: no mean.
			f32 := devCopy(t, d, make([]float32, rows*dim))
			if err := d.do(func() error {
				return d.lnApply(mode, out, f32, buf[uint16]{}, c.stats, c.gamma, c.beta, resid, rows, dim)
			}); err == nil || !strings.Contains(err.Error(), "not the mean") {
				t.Errorf("ln_apply of a float32 input saving the mean: error %v", err)
			}
			within(t, "xhat", fetch(t, d, out.xhat), xhat64, tol)
			within(t, "mean", fetch(t, d, out.mean), mean64, tol)
			within(t, "rstd", fetch(t, d, out.rstd), rstd64, tol)
			switch mode {
			case lnPlain:
				within(t, "y", fetch(t, d, out.y), y64, tol)
			case lnGELU:
				within(t, "y", fetch(t, d, out.y), y64, tol)
				within(t, "GELU(y)", fetch(t, d, out.y2), gelu64, tol+1e-6)
			case lnResidual:
				within(t, "resid + y", fetch(t, d, out.y), res64, tol)
			}
		})
	}
}

// TestGradRowsRecompute: grad_rows recomputing xhat from the bf16
// LayerNorm input and the saved mean and rstd (and LN1's output, the GELU
// input, from xhat) gives the bits it gives from the xhat and output
// ln_apply_bf16 stored in the same forward pass: every output, dx, dxb
// and the three column sums, bit for bit. With TestGradRows (the stored
// path has the unfused kernels' bits) this proves the recomputing pass.
func TestGradRowsRecompute(t *testing.T) {
	d := testDevice(t)
	for _, sh := range []struct{ rows, dim int }{{37, 48}, {70, 300}} {
		for _, gelu := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dx%d/gelu=%v", sh.rows, sh.dim, gelu), func(t *testing.T) {
				n, dim := sh.rows, sh.dim
				c := newLNBF16Case(t, d, n, dim)
				mode := lnResidual
				if gelu {
					mode = lnGELU
				}
				out := lnOutputs{y: devAlloc[float32](t, d, n*dim), xhat: devAlloc[float32](t, d, n*dim),
					mean: devAlloc[float32](t, d, n), rstd: devAlloc[float32](t, d, n)}
				var resid buf[float32]
				if gelu {
					out.y2 = devAlloc[float32](t, d, n*dim)
				} else {
					resid = c.resid
				}
				on(t, d, func() error {
					return d.lnApply(mode, out, buf[float32]{}, c.x, c.stats, c.gamma, c.beta, resid, n, dim)
				})
				dy := devCopy(t, d, randn(rand.New(rand.NewPCG(7, uint64(dim))), n*dim, 1))
				run := func(p gradPass) (dx []float32, dxb []uint16, sums [][]float32) {
					t.Helper()
					p.dy, p.rstd, p.gamma, p.rows, p.dim = dy, out.rstd, c.gamma, n, dim
					p.dx, p.dxb = devCopy(t, d, nanFill(n*dim)), devAlloc[uint16](t, d, n*dim)
					p.db, p.dbeta, p.dgamma = devCopy(t, d, nanFill(dim)), devCopy(t, d, nanFill(dim)), devCopy(t, d, nanFill(dim))
					p.partial = devCopy(t, d, nanFill(gradPartialLen(n, dim)))
					on(t, d, func() error { return d.gradRows(p) })
					return fetch(t, d, p.dx), fetch(t, d, p.dxb), [][]float32{fetch(t, d, p.db), fetch(t, d, p.dbeta), fetch(t, d, p.dgamma)}
				}
				stored, recomputed := gradPass{xhat: out.xhat}, gradPass{xin: c.x, mean: out.mean}
				if gelu {
					stored.pre, recomputed.geluBeta = out.y, c.beta
				}
				dx1, dxb1, sums1 := run(stored)
				dx2, dxb2, sums2 := run(recomputed)
				for i := range dx1 {
					if math.Float32bits(dx1[i]) != math.Float32bits(dx2[i]) || dxb1[i] != dxb2[i] {
						t.Fatalf("element %d: recomputed dx %v (bf16 %#04x), from the stored xhat %v (%#04x)", i, dx2[i], dxb2[i], dx1[i], dxb1[i])
					}
				}
				for k, name := range []string{"db", "dbeta", "dgamma"} {
					for j := range dim {
						if math.Float32bits(sums1[k][j]) != math.Float32bits(sums2[k][j]) {
							t.Fatalf("%s[%d]: recomputed %v, from the stored xhat %v", name, j, sums2[k][j], sums1[k][j])
						}
					}
				}
			})
		}
	}
}
