package exactfma

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exact rounds x*y + z computed exactly with math/big to float32.
func exact(x, y, z float32) float32 {
	p := new(big.Float).SetPrec(200).SetFloat64(float64(x))
	p.Mul(p, new(big.Float).SetFloat64(float64(y)))
	p.Add(p, new(big.Float).SetFloat64(float64(z)))
	f, _ := p.Float32()
	return f
}

func TestFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(x, y, z float32) {
		t.Helper()
		got, want := Float32(x, y, z), exact(x, y, z)
		if math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("Float32(%g, %g, %g) = %g (%#x), exact rounding %g (%#x)", x, y, z, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	// Double-rounding cases: x*y exactly halfway between two float32s
	// (x = 1 + 2^-12, y = 1 + 2^-12 gives 1 + 2^-11 + 2^-24) plus a z far
	// too small to move the float64 sum but deciding the float32 one.
	for _, z := range []float32{0x1p-60, -0x1p-60, 0x1p-80, -0x1p-100, 0} {
		check(1+0x1p-12, 1+0x1p-12, z)
		check(-(1 + 0x1p-12), 1+0x1p-12, z)
		check(1+0x1p-12+0x1p-23, 1+0x1p-12, z)
	}
	// The overflow tie: x*y = 2^128 - 2^103, halfway between MaxFloat32 and
	// 2^128. IEEE 754 rounds to Inf a result of magnitude at least that
	// (2^emax (2 - 2^-p/2)) and to MaxFloat32 one below it, so a z of
	// either sign decides, and z = 0 is a tie that goes to the even Inf.
	// (big.Float's Float32, the reference above, gives Inf for anything
	// above MaxFloat32, so these are checked against IEEE's rule.)
	for _, c := range []struct {
		z    float32
		want float32
	}{{-0x1p-149, math.MaxFloat32}, {0x1p-149, float32(math.Inf(1))}, {0, float32(math.Inf(1))}} {
		for _, sign := range []float32{1, -1} {
			if got, want := Float32(sign*31*0x1p50, 1082401*0x1p53, sign*c.z), sign*c.want; got != want {
				t.Errorf("Float32(%g, %g, %g) = %g, IEEE rounding %g", sign*31*0x1p50, float32(1082401*0x1p53), sign*c.z, got, want)
			}
		}
	}
	// Results in and near float32's subnormal range, where its ties sit
	// at other bit positions.
	for range 200000 {
		x, y := float32(rng.NormFloat64()*0x1p-63), float32(rng.NormFloat64()*0x1p-63)
		z := float32(rng.NormFloat64() * math.Exp2(float64(-120-rng.IntN(29))))
		check(x, y, z)
	}
	for range 200000 {
		x, y := float32(rng.NormFloat64()), float32(rng.NormFloat64())
		z := float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(80)-40)))
		check(x, y, z)
	}
}
