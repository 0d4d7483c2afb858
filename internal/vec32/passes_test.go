package vec32

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// bothPaths runs f once with the assembly loops (where this build and CPU
// have them) and once with the Go loops, and returns the two results.
func bothPaths[R any](t *testing.T, f func() R) (asm, pure R) {
	t.Helper()
	saved := useAsm
	defer func() { useAsm = saved }()
	asm = f()
	useAsm = false
	pure = f()
	return asm, pure
}

// lengths cover empty, shorter than a vector, whole vectors and tails.
var lengths = []int{0, 1, 7, 8, 9, 15, 16, 17, 27, 100, 440, 512, 2048 + 5}

// randomFloats returns n values of mixed sign and magnitude (1e-3 to 1e3),
// as activations and gradients have.
func randomFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * math.Pow(10, 3*(2*rng.Float64()-1)))
	}
	return v
}

func sameBits32(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

func sameBits64(a, b []float64) int {
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return i
		}
	}
	return -1
}

// exactSum is the sum of the terms with one rounding, to 200 bits.
func exactSum(terms func(add func(x, y float64))) float64 {
	s := new(big.Float).SetPrec(200)
	terms(func(x, y float64) {
		p := new(big.Float).SetPrec(200).SetFloat64(x)
		s.Add(s, p.Mul(p, new(big.Float).SetPrec(200).SetFloat64(y)))
	})
	f, _ := s.Float64()
	return f
}

// TestReductions checks Sum, Dot and SumSqDev: the
// assembly and the Go lanes give the same bits, and the value is within
// 1e-13 relative of the exactly rounded sum (float64 accumulation over at
// most 2053 terms of one sign mix: the error bound is about n*2^-53 times
// the sum of magnitudes, and these tests' sums are not cancelling).
func TestReductions(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range lengths {
		x, y := randomFloats(rng, n), randomFloats(rng, n)
		for i := range y {
			y[i] = float32(math.Abs(float64(y[i]))) // keep Dot(x, y)'s terms' signs x's
		}
		mean := 0.37
		type result [3]float64
		a, p := bothPaths(t, func() result {
			return result{Sum(x), Dot(x, y), SumSqDev(x, mean)}
		})
		for i := range a {
			if math.Float64bits(a[i]) != math.Float64bits(p[i]) {
				t.Errorf("n %d, reduction %d: assembly %v, Go %v", n, i, a[i], p[i])
			}
		}
		want := result{
			exactSum(func(add func(x, y float64)) {
				for _, v := range x {
					add(float64(v), 1)
				}
			}),
			exactSum(func(add func(x, y float64)) {
				for i, v := range x {
					add(float64(v), float64(y[i]))
				}
			}),
			exactSum(func(add func(x, y float64)) {
				for _, v := range x {
					d := float64(v) - mean
					add(d, d)
				}
			}),
		}
		var mag [3]float64 // sums of magnitudes, the scale of the error bound
		for i, v := range x {
			mag[0] += math.Abs(float64(v))
			mag[1] += math.Abs(float64(v) * float64(y[i]))
			mag[2] += (float64(v) - mean) * (float64(v) - mean)
		}
		for i := range want {
			if d := math.Abs(a[i] - want[i]); !(d <= 1e-13*mag[i]) {
				t.Errorf("n %d, reduction %d: %v, exact %v (difference %g, bound %g)", n, i, a[i], want[i], d, 1e-13*mag[i])
			}
		}
	}
}

// TestReductionOrder pins the lane order itself: a sum whose value depends
// on the order of its additions must come out as the definition orders
// them, on both paths.
func TestReductionOrder(t *testing.T) {
	x := make([]float32, 19)
	for i := range x {
		x[i] = 1
	}
	// A sequential float64 sum loses the 1s added to 2^60 (its ulp there
	// is 256) and gives 10; the lanes put +2^60 and -2^60 both in lane 0,
	// where they cancel exactly, so the definition gives 17.
	x[0], x[8] = 0x1p60, -0x1p60
	var l lanes
	for j := 0; j < 16; j++ {
		l[j%reduceLanes] += float64(x[j])
	}
	want := combineLanes(&l)
	for _, v := range x[16:] {
		want += float64(v)
	}
	a, p := bothPaths(t, func() float64 { return Sum(x) })
	if a != want || p != want {
		t.Errorf("Sum: assembly %v, Go %v, definition %v", a, p, want)
	}
	if want != 17 {
		t.Errorf("definition gives %v, want 17", want)
	}
}

// TestColumns checks AddTo and Accumulate: the assembly and Go give the
// same bits, and each column is its accumulator plus its term.
func TestColumns(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range lengths {
		x, x64, acc0 := randomFloats(rng, n), make([]float64, n), make([]float64, n)
		for i := range acc0 {
			acc0[i], x64[i] = rng.NormFloat64(), rng.NormFloat64()*1e3
		}
		type result struct{ add, acc []float64 }
		a, p := bothPaths(t, func() result {
			r := result{append([]float64(nil), acc0...), append([]float64(nil), acc0...)}
			AddTo(r.add, x)
			Accumulate(r.acc, x64)
			return r
		})
		for _, c := range []struct {
			name    string
			a, p    []float64
			element func(i int) float64
		}{
			{"AddTo", a.add, p.add, func(i int) float64 { return acc0[i] + float64(x[i]) }},
			{"Accumulate", a.acc, p.acc, func(i int) float64 { return acc0[i] + x64[i] }},
		} {
			if i := sameBits64(c.a, c.p); i >= 0 {
				t.Errorf("%s n %d element %d: assembly %v, Go %v", c.name, n, i, c.a[i], c.p[i])
			}
			for i := range c.a {
				if c.a[i] != c.element(i) {
					t.Fatalf("%s n %d element %d: %v, want %v", c.name, n, i, c.a[i], c.element(i))
				}
			}
		}
	}
}

// TestElementwise checks LayerNormApply and AXPBY:
// the assembly and Go give the same bits, including with the output
// aliasing an input as the engine calls them, and the values are the
// formulas' (within 1 ulp of float32 of the float64 formula: each output
// is rounded from float64 once, after float64 work).
func TestElementwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range lengths {
		x, gamma, beta, dy := randomFloats(rng, n), randomFloats(rng, n), randomFloats(rng, n), randomFloats(rng, n)
		mean, rstd := 0.25, 1.5
		type result struct{ y, xhat, yAlias, axpby []float32 }
		a, p := bothPaths(t, func() result {
			r := result{y: make([]float32, n), xhat: make([]float32, n), axpby: make([]float32, n)}
			LayerNormApply(r.y, r.xhat, x, gamma, beta, mean, rstd)
			r.yAlias = append([]float32(nil), x...)
			LayerNormApply(r.yAlias, make([]float32, n), r.yAlias, gamma, beta, mean, rstd)
			AXPBY(r.axpby, x, dy, 0.75, -1.25)
			return r
		})
		check := func(name string, a, p []float32, want func(i int) float64) {
			t.Helper()
			if i := sameBits32(a, p); i >= 0 {
				t.Errorf("%s n %d element %d: assembly %v, Go %v", name, n, i, a[i], p[i])
			}
			for i := range a {
				if u := ulps(a[i], want(i)); !(u <= 1) {
					t.Fatalf("%s n %d element %d: %v is %.2f ulp from %v", name, n, i, a[i], u, want(i))
				}
			}
		}
		xhat := func(i int) float64 { return (float64(x[i]) - mean) * rstd }
		check("LayerNormApply xhat", a.xhat, p.xhat, xhat)
		// y is h*gamma + beta in float32 from the rounded h: compare
		// with that computed in float64 (two float32 roundings, and beta
		// may cancel: allow 1 ulp of the larger term).
		for i := range a.y {
			h := float64(a.xhat[i])
			want := h*float64(gamma[i]) + float64(beta[i])
			scale := math.Max(math.Abs(want), math.Abs(h*float64(gamma[i])))
			if d := math.Abs(float64(a.y[i]) - want); !(d <= ulpOf(scale)) {
				t.Fatalf("LayerNormApply y n %d element %d: %v, want %v", n, i, a.y[i], want)
			}
		}
		if i := sameBits32(a.y, p.y); i >= 0 {
			t.Errorf("LayerNormApply y n %d element %d: assembly %v, Go %v", n, i, a.y[i], p.y[i])
		}
		if i := sameBits32(a.y, a.yAlias); i >= 0 {
			t.Errorf("LayerNormApply n %d: y aliasing x differs at %d", n, i)
		}
		check("AXPBY", a.axpby, p.axpby, func(i int) float64 { return float64(x[i])*0.75 - float64(dy[i])*1.25 })
	}
}

// geluSweep is every stride-th float32 in [-16, 16], both signs, and the
// special values.
func geluSweep(stride uint32) []float32 {
	inf := float32(math.Inf(1))
	xs := []float32{0, float32(math.Copysign(0, -1)), inf, -inf, float32(math.NaN()), 14, -14,
		math.Nextafter32(14, 0), -math.Nextafter32(14, 0), 1e-40, -1e-40, 100, -100}
	for bits := uint32(0); bits <= math.Float32bits(16); bits += stride {
		x := math.Float32frombits(bits)
		xs = append(xs, x, -x)
	}
	return xs
}

// TestGELUSlices checks that GELUs and GELUGradMul give, for every input
// of a dense sweep, the same bits as the scalar GELU and GELUGrad (which
// TestGELUBounds holds to the stated ulp bounds), on both paths, and with
// the output aliasing the input.
func TestGELUSlices(t *testing.T) {
	stride := uint32(499)
	if testing.Short() {
		stride = 1999
	}
	xs := geluSweep(stride)
	rng := rand.New(rand.NewPCG(9, 10))
	dy := randomFloats(rng, len(xs))
	type result struct{ f, g, fAlias, gAlias []float32 }
	a, p := bothPaths(t, func() result {
		r := result{f: make([]float32, len(xs)), g: make([]float32, len(xs))}
		GELUs(r.f, xs)
		GELUGradMul(r.g, dy, xs)
		r.fAlias = append([]float32(nil), xs...)
		GELUs(r.fAlias, r.fAlias)
		r.gAlias = append([]float32(nil), dy...)
		GELUGradMul(r.gAlias, r.gAlias, xs)
		return r
	})
	// Every length of lengths: no vector, whole blocks of the assembly
	// (192 floats) and a part of one, with a remainder or none for each of
	// its loops (4, 3 and 2 vectors a step: 440 floats leave 7 vectors,
	// 1, 1 and 1 over), a tail for the Go loop.
	for _, n := range lengths {
		n = min(n, len(xs))
		a, p := bothPaths(t, func() [2][]float32 {
			f, g := make([]float32, n), make([]float32, n)
			GELUs(f, xs[:n])
			GELUGradMul(g, dy[:n], xs[:n])
			return [2][]float32{f, g}
		})
		for k := range a {
			if i := sameBits32(a[k], p[k]); i >= 0 {
				t.Fatalf("length %d, pass %d, element %d: assembly %g, Go %g", n, k, i, a[k][i], p[k][i])
			}
		}
	}
	for i, x := range xs {
		wf, wg := GELU(x), dy[i]*GELUGrad(x)
		for _, c := range []struct {
			name      string
			got, want float32
		}{{"GELUs", a.f[i], wf}, {"GELUs (Go)", p.f[i], wf}, {"GELUs aliased", a.fAlias[i], wf},
			{"GELUGradMul", a.g[i], wg}, {"GELUGradMul (Go)", p.g[i], wg}, {"GELUGradMul aliased", a.gAlias[i], wg}} {
			same := math.Float32bits(c.got) == math.Float32bits(c.want) || (c.got != c.got && c.want != c.want)
			if !same {
				t.Fatalf("%s(%g): %g (%#x), scalar %g (%#x)", c.name, x, c.got, math.Float32bits(c.got), c.want, math.Float32bits(c.want))
			}
		}
	}
}

// TestGELUsBodyAndOutside checks GELUs and GELUGradMul against the
// scalar GELU and GELUGrad, bit for bit, where inputs inside the body (|x|
// < 4, the fast formulas) and outside it (the whole-range ones) alternate
// at every density: a lone outlier among thousands, runs of each, every
// lane outside, NaN and ±Inf among them, at lengths and offsets that start
// and end runs inside vectors and inside the assembly's four-vector
// steps, and with y aliasing x (dx aliasing dy).
func TestGELUsBodyAndOutside(t *testing.T) {
	if !useAsm || !haveFMA {
		t.Skip("no assembly on this CPU: GELUs is the scalar GELU")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 4, -4, 100}
	for _, outside := range []float64{0, 1e-4, 0.003, 0.05, 0.3, 0.9, 1} {
		for round := range 6 {
			n := 1 + rng.IntN(6000)
			off := rng.IntN(9)
			x := make([]float32, off+n)
			for i := range x {
				switch {
				case rng.Float64() >= outside:
					x[i] = float32(rng.NormFloat64()) // inside: halved when not
					if x[i] <= -4 || x[i] >= 4 {
						x[i] /= 2
					}
				case round%2 == 1 && rng.IntN(8) == 0:
					x[i] = specials[rng.IntN(len(specials))]
				default:
					x[i] = float32(math.Copysign(4+rng.ExpFloat64()*3, rng.NormFloat64()))
				}
			}
			x = x[off:]
			dy := randomFloats(rng, n)
			y, dx := make([]float32, n), make([]float32, n)
			GELUs(y, x)
			GELUGradMul(dx, dy, x)
			alias, dxAlias := append([]float32(nil), x...), append([]float32(nil), dy...)
			GELUs(alias, alias)
			GELUGradMul(dxAlias, dxAlias, x)
			for i, v := range x {
				want, wantG := GELU(v), dy[i]*GELUGrad(v)
				for _, c := range []struct {
					name      string
					got, want float32
				}{{"GELUs", y[i], want}, {"GELUs aliased", alias[i], want},
					{"GELUGradMul", dx[i], wantG}, {"GELUGradMul aliased", dxAlias[i], wantG}} {
					if math.Float32bits(c.got) != math.Float32bits(c.want) && !(c.got != c.got && c.want != c.want) {
						t.Fatalf("outside %g, length %d, offset %d, element %d: %s(%g) = %g (%#x), scalar %g (%#x)",
							outside, n, off, i, c.name, v, c.got, math.Float32bits(c.got), c.want, math.Float32bits(c.want))
					}
				}
			}
		}
	}
}
