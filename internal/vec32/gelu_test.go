package vec32

import (
	"math"
	"testing"
)

// ulps is the distance between a and b in units of the last place of b.
func ulps(a float32, b float64) float64 {
	ulp := float64(math.Nextafter32(float32(math.Abs(b)), float32(math.Inf(1)))) - math.Abs(float64(float32(b)))
	if ulp == 0 || math.IsInf(ulp, 0) {
		ulp = math.SmallestNonzeroFloat32
	}
	return math.Abs(float64(a)-b) / ulp
}

// phi64 is Φ(x) in float64 through math.Erfc, accurate to a few ulp in
// both tails (1 + math.Erf(x/√2) is the same value where it does not
// cancel, and the test checks that agreement too).
func phi64(x float64) float64 { return math.Erfc(-x/math.Sqrt2) / 2 }

// TestGELUBounds walks every 211th float32 in [-16, 16] (about 10 million
// values, both signs; -short: every 997th) and checks the bounds stated in
// gelu.go, through GELUs and GELUGradMul, the vectorised passes the engine
// calls (TestGELUSlices checks they equal GELU and GELUGrad bit for bit).
func TestGELUBounds(t *testing.T) {
	stride := uint32(211)
	if testing.Short() {
		stride = 997
	}
	var worstF, worstG float64
	var atF, atG float32
	xs := geluSweep(stride)
	f, g := make([]float32, len(xs)), make([]float32, len(xs))
	for i := range g {
		g[i] = 1
	}
	GELUs(f, xs)
	GELUGradMul(g, g, xs)
	for i, x := range xs {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			continue // TestGELUSpecialValues
		}
		xf := float64(x)
		p := phi64(xf)
		if xf > -5 {
			if d := math.Abs(p - (1+math.Erf(xf/math.Sqrt2))/2); d > 1e-15 {
				t.Fatalf("x %g: the references disagree by %g", x, d)
			}
		}
		want := xf * p
		if math.Abs(want) >= minResult {
			if u := ulps(f[i], want); u > worstF {
				worstF, atF = u, x
			}
		}
		dens := math.Exp(-xf*xf/2) / math.Sqrt(2*math.Pi)
		wantG := p + xf*dens
		scale := math.Max(p, math.Abs(xf*dens))
		if scale >= minResult {
			if u := math.Abs(float64(g[i])-wantG) / ulpOf(scale); u > worstG {
				worstG, atG = u, x
			}
		}
	}
	t.Logf("GELU: worst %.3f ulp at %g; derivative: worst %.3f ulp of max(|Φ|, |xφ|) at %g", worstF, atF, worstG, atG)
	if worstF > 3 {
		t.Errorf("GELU(%g) is %.3f ulp from the exact value, bound 3", atF, worstF)
	}
	if worstG > 3 {
		t.Errorf("GELUGrad(%g) is %.3f ulp of max(|Φ|, |xφ|) from the exact value, bound 3", atG, worstG)
	}
}

// ulpOf is the float32 ulp at |v|.
func ulpOf(v float64) float64 {
	f := float32(math.Abs(v))
	return float64(math.Nextafter32(f, float32(math.Inf(1)))) - float64(f)
}

func TestGELUSpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	for _, c := range []struct{ x, f, g float32 }{
		{0, 0, 0.5}, {inf, inf, 1}, {100, 100, 1}, {-100, 0, 0}, {14, 14, 1},
	} {
		if f, g := GELU(c.x), GELUGrad(c.x); f != c.f || g != c.g {
			t.Errorf("x %g: GELU %g, derivative %g; want %g, %g", c.x, f, g, c.f, c.g)
		}
	}
	if f, g := GELU(nan), GELUGrad(nan); f == f || g == g {
		t.Errorf("NaN: GELU %g, derivative %g; want NaN", f, g)
	}
	if f := GELU(-inf); f == f {
		t.Errorf("GELU(-Inf) = %g, want NaN as x Φ(x) = -Inf * 0", f)
	}
}

// minResult is where the bounds start: below it the tables' high-order
// coefficients are subnormal float32s and lose their relative precision
// (|x| > 12.9; GELU's value there is below 1e-35 in magnitude).
const minResult = 0x1p-116
