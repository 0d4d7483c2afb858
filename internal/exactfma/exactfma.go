package exactfma

import "math"

// Float32 is x*y + z rounded once to float32 (round to nearest even).
//
// The product of two float32s is exact in float64, so r = fl64(x*y + z) has
// one rounding, but rounding r again to float32 can be wrong when r lands
// exactly halfway between two float32s while x*y + z does not: then the
// error e of the float64 sum (exact, by TwoSum) says on which side the
// true value lies. Where r is not such a tie (its 29 bits below float32's
// precision are not exactly 1 followed by zeros, and it is in float32's
// normal range, where that is where float32's precision ends), it lies on
// the same side of every float32 tie as x*y + z, so it rounds as that does.
func Float32(x, y, z float32) float32 {
	p, zz := float64(x)*float64(y), float64(z)
	r := p + zz
	if math.Float64bits(r)&(1<<29-1) != 1<<28 && math.Abs(r) >= 0x1p-126 {
		return float32(r)
	}
	f := float32(r)
	if float64(f) == r || math.IsInf(r, 0) || math.IsNaN(r) {
		return f
	}
	// TwoSum: e = (p + zz) - r exactly.
	bv := r - p
	e := (p - (r - bv)) + (zz - bv)
	if e == 0 {
		return f
	}
	// f's value for the tie test: an overflow to ±Inf rounds from the tie
	// between ±MaxFloat32 and ±2^128, where float32's spacing would put the
	// next float.
	fv := float64(f)
	if math.IsInf(fv, 0) {
		fv = math.Copysign(0x1p128, fv)
	}
	// The float32 on the other side of r from f.
	g := math.Nextafter32(f, float32(math.Copysign(math.Inf(1), r-fv)))
	if (fv+float64(g))/2 != r {
		return f // r is not a tie, so it rounds as the true value does
	}
	// A tie in float64 that is not one in exact arithmetic: go to the side
	// of the true value r + e.
	if (e > 0) == (float64(g) > fv) {
		return g
	}
	return f
}
