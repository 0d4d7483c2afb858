package leconv

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refHalf computes the value of binary16 bits from the IEEE 754 definition
// with math.Ldexp, independently of the conversion under test.
func refHalf(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	case 0:
		return sign * math.Ldexp(frac, -24) // subnormal: frac × 2^-14 / 2^10
	}
	return sign * math.Ldexp(1024+frac, exp-25) // (1 + frac/2^10) × 2^(exp-15)
}

func TestFloat16DecodeAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := Float16Value(h)
		want := refHalf(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("%#04x: got %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("%#04x: got %v, want %v", h, got, want)
		}
	}
}

// halfValues holds the non-negative finite float16 values in increasing
// order, indexed by their bits (bits 0x0000..0x7bff are monotonic).
var halfValues = func() []float64 {
	v := make([]float64, 0x7c00)
	for i := range v {
		v[i] = refHalf(uint16(i))
	}
	return v
}()

// refEncode rounds x to float16 by searching the table of all values:
// nearest, ties to the even bit pattern, and ±Inf from the midpoint between
// 65504 and 65536 (the next value the exponent range cannot hold) upward.
func refEncode(x float32) uint16 {
	f := float64(x)
	if math.IsNaN(f) {
		return 0x7e00
	}
	var sign uint16
	if math.Signbit(f) {
		sign, f = 0x8000, -f
	}
	if f >= 65520 {
		return sign | 0x7c00
	}
	i := sort.SearchFloat64s(halfValues, f) // first value >= f
	if i < len(halfValues) && halfValues[i] == f {
		return sign | uint16(i)
	}
	lo, hi := i-1, i
	if hi == len(halfValues) {
		return sign | uint16(lo) // unreachable below 65520, kept for safety
	}
	dlo, dhi := f-halfValues[lo], halfValues[hi]-f
	switch {
	case dlo < dhi:
		return sign | uint16(lo)
	case dhi < dlo:
		return sign | uint16(hi)
	case lo%2 == 0:
		return sign | uint16(lo)
	}
	return sign | uint16(hi)
}

func checkEncode(t *testing.T, x float32) {
	t.Helper()
	got, want := Float16Bits(x), refEncode(x)
	if math.IsNaN(float64(x)) {
		if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
			t.Fatalf("NaN %#08x encoded as %#04x, not a NaN", math.Float32bits(x), got)
		}
		return
	}
	if got != want {
		t.Fatalf("%v (%#08x): got %#04x, want %#04x", x, math.Float32bits(x), got, want)
	}
}

func TestFloat16Encode(t *testing.T) {
	// Every float16 value, and both neighbours of every midpoint between
	// adjacent values (the midpoint itself is a float32, so ties are
	// exercised exactly).
	for i := 0; i < 0x7c00; i++ {
		for _, s := range []float32{1, -1} {
			v := s * float32(halfValues[i])
			checkEncode(t, v)
			if i+1 < 0x7c00 {
				mid := s * float32((halfValues[i]+halfValues[i+1])/2)
				checkEncode(t, mid)
				checkEncode(t, math.Nextafter32(mid, 0))
				checkEncode(t, math.Nextafter32(mid, s*float32(math.Inf(1))))
			}
		}
	}
	// The overflow boundary and below the smallest subnormal.
	for _, x := range []float32{65504, 65519.996, 65520, 65536, 1e10, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, math.SmallestNonzeroFloat32, 2.9802322e-08, 2.9802326e-08, 5.9604645e-08, 0} {
		checkEncode(t, x)
		checkEncode(t, -x)
	}
	for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0xffc00000, 0x7fbfffff} {
		checkEncode(t, math.Float32frombits(bits))
	}
	// Random float32 bit patterns, and random values in float16's range.
	r := rand.New(rand.NewPCG(1, 2))
	n := 500_000
	if testing.Short() {
		n = 50_000
	}
	for range n {
		checkEncode(t, math.Float32frombits(r.Uint32()))
		checkEncode(t, float32(r.NormFloat64()*math.Pow(2, float64(r.IntN(40)-25))))
	}
}

// TestFloat16EncodeBinades checks every float32 in a few whole binades —
// float16 subnormal output, the subnormal/normal boundary, 1..2 and the top
// binade, which overflows from 65520 — against a second reference: float16
// values are evenly spaced within a binade, so the nearest one is
// RoundToEven(x/ulp)*ulp (exact scalings by powers of two).
func TestFloat16EncodeBinades(t *testing.T) {
	for _, e := range []int{-25, -15, -14, 0, 15} {
		ulp := math.Ldexp(1, max(e, -14)-10)
		lo := math.Float32bits(float32(math.Ldexp(1, e)))
		hi := math.Float32bits(float32(math.Ldexp(1, e+1)))
		step := uint32(1)
		if testing.Short() {
			step = 97
		}
		for b := lo; b < hi; b += step {
			x := math.Float32frombits(b)
			want := math.RoundToEven(float64(x)/ulp) * ulp
			if want > 65504 {
				want = math.Inf(1)
			}
			got := Float16Bits(x)
			if float64(Float16Value(got)) != want || got&0x8000 != 0 {
				t.Fatalf("%v (%#08x): got %#04x = %v, want %v", x, b, got, Float16Value(got), want)
			}
			if neg := Float16Bits(-x); neg != got|0x8000 {
				t.Fatalf("-%v: got %#04x, want %#04x", x, neg, got|0x8000)
			}
		}
	}
}
