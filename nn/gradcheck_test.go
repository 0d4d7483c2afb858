package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Finite-difference checks of the float64 model and loss. A central
// difference with step h has truncation error O(h^2 f”') and rounding error
// O(eps_64 |f| / h); with h = 1e-6 both are ~1e-12 relative to the
// derivatives here, so a correct backward pass agrees to ~1e-9 and the bound
// 1e-7 ("well below 1e-6") still catches any wrong term, which shows up at
// O(1).
const gradcheckTol = 1e-7

// relError is the norm-wise relative difference of an analytic and a
// numerical gradient: +Inf where it is NaN (a NaN in either, or two
// empty gradients), which fails every bound.
func relError(analytic, numeric []float64) float64 {
	if len(analytic) != len(numeric) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range analytic {
		d := analytic[i] - numeric[i]
		num += d * d
		den += numeric[i] * numeric[i]
	}
	if e := math.Sqrt(num / den); !math.IsNaN(e) {
		return e
	}
	return math.Inf(1)
}

func randomModel(t *testing.T, c Config, seed uint64) *Model[float64] {
	t.Helper()
	m, err := NewModel[float64](c)
	if err != nil {
		t.Fatal(err)
	}
	copy(m.Params, InitParameters[float64](c, seed))
	// LayerNorm parameters off 1 and 0, so every term of their gradients
	// and of the LayerNorm backward matters.
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, tn := range m.Layout.Tensors {
		if tn.Kind == NormWeight || tn.Kind == NormBias {
			for i, v := range View(m.Params, tn) {
				View(m.Params, tn)[i] = v + 0.3*rng.NormFloat64()
			}
		}
	}
	return m
}

func randomRows(rng *rand.Rand, n, d int) []float64 {
	v := make([]float64, n*d)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return v
}

func TestGradientsFiniteDifference(t *testing.T) {
	for _, c := range []Config{
		{InputDim: 5, HiddenDim: 6, OutputDim: 4, Blocks: 2},
		{InputDim: 3, HiddenDim: 8, OutputDim: 7, Blocks: 0},
	} {
		t.Run(c.String(), func(t *testing.T) {
			const n = 3
			m := randomModel(t, c, 11)
			rng := rand.New(rand.NewPCG(12, 12))
			x, target := randomRows(rng, n, c.InputDim), randomRows(rng, n, c.OutputDim)
			loss := func() float64 {
				out, err := m.Forward(x, n)
				if err != nil {
					t.Fatal(err)
				}
				return UnitNormMSE(nil, out, target, n, c.OutputDim)
			}
			out, _ := m.Forward(x, n)
			dy := make([]float64, len(out))
			UnitNormMSE(dy, out, target, n, c.OutputDim)
			dx := make([]float64, len(x))
			if err := m.Backward(dy, dx); err != nil {
				t.Fatal(err)
			}
			numeric := func(v []float64) []float64 {
				const h = 1e-6
				g := make([]float64, len(v))
				for i := range v {
					orig := v[i]
					v[i] = orig + h
					up := loss()
					v[i] = orig - h
					down := loss()
					v[i] = orig
					g[i] = (up - down) / (2 * h)
				}
				return g
			}
			for _, tn := range m.Layout.Tensors {
				if e := relError(View(m.Grads, tn), numeric(View(m.Params, tn))); !(e <= gradcheckTol) {
					t.Errorf("%s: relative error %.3g > %g", tn.Name, e, gradcheckTol)
				}
			}
			if e := relError(dx, numeric(x)); !(e <= gradcheckTol) {
				t.Errorf("input: relative error %.3g > %g", e, gradcheckTol)
			}
		})
	}
}

// The loss on its own, including a prediction row whose norm is below the
// 1e-12 clamp and a zero target row. Steps are scaled to each row's norm so
// that the clamped row (where the loss is quadratic in p, scaled by 1e12) is
// differenced on its own scale.
func TestUnitNormMSEFiniteDifference(t *testing.T) {
	const n, d = 4, 5
	rng := rand.New(rand.NewPCG(3, 3))
	p, target := randomRows(rng, n, d), randomRows(rng, n, d)
	for j := 0; j < d; j++ {
		p[1*d+j] *= 1e-14 // |p| ~ 2e-14 < 1e-12: the clamped branch
		target[2*d+j] = 0 // a zero target normalises to zero
	}
	grad := make([]float64, n*d)
	UnitNormMSE(grad, p, target, n, d)
	numeric := make([]float64, n*d)
	for i := range p {
		h := 1e-6 * math.Abs(p[i])
		orig := p[i]
		p[i] = orig + h
		up := UnitNormMSE(nil, p, target, n, d)
		p[i] = orig - h
		down := UnitNormMSE(nil, p, target, n, d)
		p[i] = orig
		numeric[i] = (up - down) / (2 * h)
	}
	// Against a zero target the row's loss is |p^|^2 = 1 whatever p is, so
	// its gradient must vanish: compare it with the scale of the others.
	for j := 0; j < d; j++ {
		if g := grad[2*d+j]; !(math.Abs(g) <= 1e-15) {
			t.Errorf("row with zero target: gradient %v, want 0", g)
		}
	}
	for _, r := range []int{0, 1, 3} {
		if e := relError(grad[r*d:(r+1)*d], numeric[r*d:(r+1)*d]); !(e <= gradcheckTol) {
			t.Errorf("row %d: relative error %.3g > %g", r, e, gradcheckTol)
		}
	}
	if l := UnitNormMSE(nil, p, target, n, d); math.IsNaN(l) || math.IsInf(l, 0) {
		t.Fatalf("loss %v", l)
	}
}

// Per row the loss is 2(1 - cos)/d: check it on vectors with a known angle.
func TestUnitNormMSEKnownValue(t *testing.T) {
	p := []float64{3, 0, 0, 0, 2, 0}       // row 0 along x, row 1 along y
	target := []float64{1, 1, 0, 0, 0, -5} // 45 degrees; 90 degrees
	got := UnitNormMSE(nil, p, target, 2, 3)
	want := (2*(1-math.Sqrt(0.5))/3 + 2.0/3) / 2
	if !(math.Abs(got-want) <= 1e-15) {
		t.Fatalf("loss %v, want %v", got, want)
	}
}

// The float32 loss (unitNormMSE32, three dot products a row) against the
// float64 oracle on the same float32 values, with a clamped prediction
// row, a zero target row, a row parallel to its target and a width that
// is not a multiple of the vector width. Both compute in float64 from the
// same inputs: the loss agrees to 1e-12 relative (the float32 form
// cancels 1 + 1 - 2 cos, losing the digits of cos near 1), each gradient
// element to 1 float32 ulp of its value plus 1e-9 of the row's scale,
// 2/(n d max(|p|, eps)) (it is rounded to float32 once, from float64
// terms that can cancel: against a zero target the gradient is 0 in exact
// arithmetic and rounding noise in both).
func TestUnitNormMSEFloat32(t *testing.T) {
	const n, d = 5, 67
	rng := rand.New(rand.NewPCG(4, 4))
	p64, t64 := randomRows(rng, n, d), randomRows(rng, n, d)
	for j := 0; j < d; j++ {
		p64[1*d+j] *= 1e-14 // |p| < 1e-12: the clamped branch
		t64[2*d+j] = 0      // a zero target
		t64[3*d+j] = 2 * p64[3*d+j]
	}
	p32, t32 := make([]float32, n*d), make([]float32, n*d)
	for i := range p64 {
		p32[i], t32[i] = float32(p64[i]), float32(t64[i])
		p64[i], t64[i] = float64(p32[i]), float64(t32[i])
	}
	g32, g64 := make([]float32, n*d), make([]float64, n*d)
	l32, l64 := UnitNormMSE(g32, p32, t32, n, d), UnitNormMSE(g64, p64, t64, n, d)
	if l := UnitNormMSE(nil, p32, t32, n, d); l != l32 {
		t.Errorf("loss without gradient %v, with %v", l, l32)
	}
	if !(math.Abs(l32-l64) <= 1e-12*l64) {
		t.Errorf("loss %v, oracle %v", l32, l64)
	}
	for r := 0; r < n; r++ {
		rowScale := 2 / float64(n*d) / math.Max(math.Sqrt(sumSquares(p64[r*d:(r+1)*d])), NormalizeEps)
		for j := r * d; j < (r+1)*d; j++ {
			ulp := float64(math.Nextafter32(float32(math.Abs(g64[j])), float32(math.Inf(1)))) - math.Abs(float64(float32(g64[j])))
			if diff := math.Abs(float64(g32[j]) - g64[j]); !(diff <= ulp+1e-9*rowScale) {
				t.Fatalf("row %d element %d: gradient %v, oracle %v", r, j-r*d, g32[j], g64[j])
			}
		}
	}
}

func sumSquares(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return s
}
