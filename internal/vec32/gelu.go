package vec32

import "math"

// GELU in float32, x Φ(x) with Φ the standard normal distribution
// function (the erf form, Φ(x) = (1 + erf(x/√2))/2, as PyTorch's
// nn.GELU()), and its derivative Φ(x) + x φ(x).
//
// Both come from piecewise Taylor polynomials in |x|: interval i covers
// |x| in [i/64 - 1/128, i/64 + 1/128] and holds the degree-5 Taylor
// polynomials around c = i/64 of the upper tail Q(a) = 1 - Φ(a) and of the
// density φ(a). The coefficients are computed at start-up in float64 from
// their closed forms (φ^(k)(c) = (-1)^k He_k(c) φ(c), He the
// probabilists' Hermite polynomials, and Q' = -φ), so no table is copied
// from anywhere. With h = |x| - c exact (Sterbenz) and |h| <= 1/128, the
// truncation error, about (c h)^6/6!, is below 3e-9 relative for |x| < 14
// (narrow intervals and a low degree are faster than the reverse: 12 KiB
// of tables cover |x| < 4, and the dependency chain is 5 multiply-adds
// long); past that Q and φ
// are below float32's normal range and taken as 0. Using Q for x < 0
// keeps full relative accuracy in the left tail, where 1 + erf cancels.
//
// Error bounds, checked by the tests over ten million float32s in
// [-16, 16] against float64 references (math.Erfc, equal to the math.Erf
// form wherever that does not cancel): GELU within 3 ulp of the exact value
// (worst seen 2.16); the derivative within 3 ulp of max(|Φ(x)|, |x φ(x)|)
// (worst seen 2.79), since near its zero at x ≈ -0.75 the two terms cancel
// and no relative bound holds. Both hold where the value is above 2^-116
// in magnitude (|x| < 12.9); beyond, the tables' high-order coefficients
// are subnormal and the results, below 1e-35, have only absolute accuracy.
// The float64 GELU it replaces was within 0.5 ulp; PyTorch's float32 erf
// form is not within any ulp bound in the left tail, where 1 + erf cancels.
//
// Each operation is rounded to float32 explicitly (T(a*b)), so no compiler
// fuses it into an FMA and the bits are the same on every platform.

const (
	geluPerUnit = 64 // intervals per unit of |x|
	geluLimit   = 14 // |x| from which Q and φ are taken as 0
	geluDegree  = 5
)

type taylor [geluDegree + 1]float32

var geluUpperTail, geluDensity [geluLimit*geluPerUnit + 1]taylor

func init() {
	for i := range geluUpperTail {
		c := float64(i) / geluPerUnit
		phi := math.Exp(-c*c/2) / math.Sqrt(2*math.Pi)
		var he [geluDegree + 1]float64 // He_k(c)
		he[0], he[1] = 1, c
		for k := 1; k < geluDegree; k++ {
			he[k+1] = c*he[k] - float64(k)*he[k-1]
		}
		geluUpperTail[i][0] = float32(math.Erfc(c/math.Sqrt2) / 2)
		fact := 1.0 // k!
		for k := 0; k <= geluDegree; k++ {
			if k > 0 {
				fact *= float64(k)
			}
			dk := he[k] * phi / fact // φ^(k)(c)/k! up to the sign (-1)^k
			if k%2 == 1 {
				dk = -dk
			}
			geluDensity[i][k] = float32(dk)
			if k < geluDegree { // Q^(k+1)(c)/(k+1)! = -φ^(k)(c)/(k+1)!
				geluUpperTail[i][k+1] = float32(-dk / float64(k+1))
			}
		}
	}
}

// horner evaluates the polynomial t at h.
func horner(t *taylor, h float32) float32 {
	p := t[geluDegree]
	for k := geluDegree - 1; k >= 0; k-- {
		p = float32(p*h) + t[k]
	}
	return p
}

// interval returns |x|'s interval and the offset from its centre, or ok
// false when |x| >= geluLimit or x is NaN.
func interval(x float32) (i int, h float32, ok bool) {
	a := float32(math.Abs(float64(x)))
	if !(a < geluLimit) {
		return 0, 0, false
	}
	i = int(a*geluPerUnit + 0.5)
	return i, a - float32(i)/geluPerUnit, true
}

// GELU returns x Φ(x).
func GELU(x float32) float32 {
	i, h, ok := interval(x)
	if !ok {
		if x > 0 {
			return x
		}
		return x * 0 // -0 below -geluLimit, NaN for NaN and -Inf as x Φ(x) gives
	}
	q := horner(&geluUpperTail[i], h)
	if x < 0 {
		return x * q
	}
	return x * (1 - q)
}

// GELUGrad returns d GELU/dx = Φ(x) + x φ(x).
func GELUGrad(x float32) float32 {
	i, h, ok := interval(x)
	if !ok {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return 0
		}
		return x // NaN
	}
	phi := horner(&geluUpperTail[i], h)
	if x >= 0 {
		phi = 1 - phi
	}
	return phi + float32(x*horner(&geluDensity[i], h))
}
