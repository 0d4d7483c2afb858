//go:build cuda

package cuda

// Tests of the bf16 engine's memory-bound kernels (kernels/bf16_convert.cu
// and adamw_bf16) against host references. Every result but GELU's is
// exact: a cast is one rounding (leconv.BFloat16Bits rounds to nearest
// even as the kernels do), adamw_bf16 is adamw's arithmetic plus one
// rounding.

import (
	"math"
	"math/rand/v2"
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
	dst := devAlloc[uint16](t, d, n+8)
	on(t, d, func() error { return d.drv.Zero(dst.p, int64(2*(n+8))) })
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
	for i := n; i < n+8; i++ {
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
