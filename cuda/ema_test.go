//go:build cuda

package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
)

// emaDecays are decays whose products with float32 values round in
// float64: 0.999 (inexact in binary), 0.5 (exact), 1-2^-30 (1-decay tiny).
var emaDecays = []float64{0.999, 0.5, 1 - 0x1p-30}

// emaValues are n weights with awkward values among random ones:
// subnormals, zeros of both signs, the largest float32 (whose blend with
// a decay near 1 rounds at the edge of overflow) and tiny normals.
func emaValues(rng *rand.Rand, n int, scale float64) []float32 {
	v := randn(rng, n, scale)
	copy(v, []float32{1e-45, -3e-41, 0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32, 1e38, 0x1p-126, -7e-39})
	return v
}

// contractionTraps finds n pairs (average, weight) whose blend with decay
// rounds to a different float32 when the first product is fused into the
// sum (an FMA) than when each is rounded on its own: an average whose
// product with decay lies within 2^-29 of a float32 midpoint, and a small
// weight whose product with 1-decay brings the sum within a float64
// rounding of that midpoint. For a decay whose products round (0.999) one
// try in about a hundred is such a pair.
func contractionTraps(t *testing.T, rng *rand.Rand, decay float64, n int) (ema, w []float32) {
	omd := 1 - decay
	for try := 0; len(ema) < n && try < 1_000_000; try++ {
		e := float32(1 + rng.Float64())
		p := decay * float64(e)
		lo := float32(p)
		if float64(lo) > p {
			lo = math.Nextafter32(lo, 0)
		}
		mid := (float64(lo) + float64(math.Nextafter32(lo, 2))) / 2
		wi := float32((mid - p) / omd)
		separate := float32(float64(decay*float64(e)) + float64(omd*float64(wi)))
		fused := float32(math.FMA(decay, float64(e), float64(omd*float64(wi))))
		if separate != fused {
			ema, w = append(ema, e), append(w, wi)
		}
	}
	if len(ema) < n {
		t.Fatalf("decay %v: found %d of %d pairs an FMA would round differently", decay, len(ema), n)
	}
	return ema, w
}

// TestEMAUpdate: ema_update equals nn.BlendEMA, the trainer's host
// formula, bit for bit, over several steps with weights that change
// between them: both compute the same explicitly rounded float64 products
// and sum and round to float32 once, so no tolerance is right but 0. For
// the decay 0.999 the first step includes pairs on which a contracted
// (FMA) blend would round differently (contractionTraps), so that a
// compiler's contraction fails the test rather than pass unnoticed.
func TestEMAUpdate(t *testing.T) {
	d := testDevice(t)
	const n = 1000
	for _, decay := range emaDecays {
		rng := rand.New(rand.NewPCG(1000, math.Float64bits(decay)))
		ema := emaValues(rng, n, 1)
		gema := devCopy(t, d, ema)
		for step := range 4 {
			w := emaValues(rng, n, math.Pow(10, float64(step)-2))
			if step == 3 {
				w = slices.Clone(ema) // weights equal to the average: a fixed point up to rounding
			}
			if step == 0 && decay == 0.999 {
				te, tw := contractionTraps(t, rng, decay, 50)
				copy(ema[100:], te)
				copy(w[100:], tw)
				gema = devCopy(t, d, ema)
			}
			gw := devCopy(t, d, w)
			nn.BlendEMA(ema, w, decay)
			on(t, d, func() error { return d.emaUpdate(gema, gw, n, decay) })
			got := fetch(t, d, gema)
			for i := range ema {
				if math.Float32bits(got[i]) != math.Float32bits(ema[i]) {
					t.Fatalf("decay %v step %d: ema[%d] = %v (%#08x), host %v (%#08x)", decay, step, i,
						got[i], math.Float32bits(got[i]), ema[i], math.Float32bits(ema[i]))
				}
			}
		}
	}
	g := devAlloc[float32](t, d, n)
	for _, decay := range []float64{0, 1, -0.5, math.NaN(), math.Inf(1)} {
		if err := d.do(func() error { return d.emaUpdate(g, g, n, decay) }); err == nil {
			t.Errorf("decay %v accepted", decay)
		}
	}
	if err := d.do(func() error { return d.emaUpdate(g, g, n+1, 0.9) }); err == nil {
		t.Error("buffers shorter than n accepted")
	}
}

// TestEngineEMA: the engine's average follows nn.BlendEMA of its weights
// bit for bit through training steps and a restart, and the methods refuse
// misuse with an error.
func TestEngineEMA(t *testing.T) {
	c := nn.Config{InputDim: 12, HiddenDim: 16, OutputDim: 10, Blocks: 1}
	e, _ := newPair(t, c, 5)
	np := c.NumParams()
	host := make([]float32, np)
	for _, err := range []error{e.UpdateEMA(), e.EMA(host)} {
		if err == nil || !strings.Contains(err.Error(), "before StartEMA") {
			t.Fatalf("before StartEMA: error %v", err)
		}
	}
	if err := e.StartEMA(host[:np-1], 0.9); err == nil {
		t.Error("StartEMA with too few values accepted")
	}
	if err := e.StartEMA(host, 1); err == nil {
		t.Error("StartEMA with decay 1 accepted")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	x, tg := randn(rng, 6*c.InputDim, 1), randn(rng, 6*c.OutputDim, 1)
	w := make([]float32, np)
	for _, decay := range emaDecays {
		if err := e.Parameters(host); err != nil {
			t.Fatal(err)
		}
		if err := e.StartEMA(host, decay); err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 3; step++ {
			if _, err := e.ForwardBackward(x, tg, 6); err != nil {
				t.Fatal(err)
			}
			if err := e.Step(nn.AdamWStep{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step}); err != nil {
				t.Fatal(err)
			}
			if err := e.UpdateEMA(); err != nil {
				t.Fatal(err)
			}
			if err := e.Parameters(w); err != nil {
				t.Fatal(err)
			}
			nn.BlendEMA(host, w, decay)
		}
		got := make([]float32, np)
		if err := e.EMA(got); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(host[i]) {
				t.Fatalf("decay %v: ema[%d] = %v, host %v", decay, i, got[i], host[i])
			}
		}
		if err := e.EMA(got[:1]); err == nil {
			t.Error("EMA into a short buffer accepted")
		}
	}
}
