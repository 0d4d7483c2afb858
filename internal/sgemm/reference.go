package sgemm

import "math"

// reference is the microkernel in pure Go, with an exactly rounded float32
// FMA: the definition the assembly kernels must match bit for bit. Its tile
// shape differs from theirs on purpose, so the tests also show that the
// result does not depend on the tiling.
var reference = &kernel{name: "reference-go", mr: 4, nr: 8, run: referenceKernel}

func referenceKernel(k int, a, b, c []float32, ldc int, load bool) {
	const mr, nr = 4, 8
	var acc [mr][nr]float32
	if load {
		for i := range mr {
			copy(acc[i][:], c[i*ldc:i*ldc+nr])
		}
	}
	for p := 0; p < k; p++ {
		ap, bp := a[p*mr:(p+1)*mr], b[p*nr:(p+1)*nr]
		for i := range mr {
			for j := range nr {
				acc[i][j] = fma32(ap[i], bp[j], acc[i][j])
			}
		}
	}
	for i := range mr {
		copy(c[i*ldc:i*ldc+nr], acc[i][:])
	}
}

// fma32 is x*y + z rounded once to float32 (round to nearest even), as
// VFMADD231PS computes it.
//
// The product of two float32s is exact in float64, so r = fl64(x*y + z) has
// one rounding, but rounding r again to float32 can be wrong when r lands
// exactly halfway between two float32s while x*y + z does not: then the
// error e of the float64 sum (exact, by TwoSum) says on which side the
// true value lies.
func fma32(x, y, z float32) float32 {
	p, zz := float64(x)*float64(y), float64(z)
	r := p + zz
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
	// The float32 on the other side of r from f.
	g := math.Nextafter32(f, float32(math.Copysign(math.Inf(1), r-float64(f))))
	if (float64(f)+float64(g))/2 != r {
		return f // r is not a tie, so it rounds as the true value does
	}
	// A tie in float64 that is not one in exact arithmetic: go to the side
	// of the true value r + e.
	if (e > 0) == (float64(g) > float64(f)) {
		return g
	}
	return f
}
