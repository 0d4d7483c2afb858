package vec32

import (
	"math"

	"github.com/dinoclip/dinoclip/internal/exactfma"
)

//go:generate go run ./gelugen -go gelu_tables.go -h gelu_tables_amd64.h

// GELU in float32, x Φ(x) with Φ the standard normal distribution
// function (the erf form, Φ(x) = (1 + erf(x/√2))/2, as PyTorch's
// nn.GELU()), and its derivative Φ(x) + x φ(x), from polynomials with no
// lookup beyond one coefficient per piece: every step is a float32
// operation or fused multiply-add that 8-lane AVX2 code does the same way
// (gelu_body_amd64.s, passes_amd64.s).
//
// With a = |x| and Q(a) = 1 - Φ(a) the upper tail, GELU(x) is x Q(a) for
// x < 0 and x - x Q(a) for x >= 0 (Φ(-a) = Q(a)); taking Q for x < 0 keeps
// full relative accuracy in the left tail, where 1 + erf cancels.
//
// The body, a < 4 (where nearly every input of the engine falls): Q(a)
// is a degree-7 polynomial in h = a - centre on each of 8 pieces of width
// 1/2, piece j = int(2a), the centre 0 for the first and the piece's
// upper end for the others (h is exact: 0, or Sterbenz). Q decreases and
// is convex, so with h <= 0 the terms of degree 0 to 2 (3 to 6 on the
// outer pieces), which carry nearly all of the value, are positive, and
// only small high-order terms are not (on the last piece none is): Horner's
// rule cancels little. With centres mid-piece, where the linear term
// changes sign across the piece, GELU reached 2.9 ulp on the steep pieces.
// Then GELU(x) = -a Q(a) + (x, or 0 for x < 0), one FMA. The derivative
// the same way: E(a) = Q(a) - a φ(a) = GELU'(-a) on the same pieces, and
// GELU'(x) = E(a) for x < 0, 1 - E(a) otherwise. gelugen fits the
// polynomials (near-minimax, 2^-26 or better with float32 coefficients,
// E's relative to max(Q, a φ) as its zero at a ≈ 0.75 requires).
// Outside the body:
//
//	Q(a)            = exp(-a²/2) R(a)
//	Q(a) - a φ(a)   = exp(-a²/2) D(a),   D(a) = R(a) - a/√(2π)
//
// R and D are smooth and slowly varying (R(a) ≈ 1/(a√(2π)) for large a),
// so a degree-10 polynomial in h = a - centre on each of 4 pieces of
// [0, 13.2), [0, 1), [1, 3), [3, 7) and [7, 13.2), holds each to 2^-27 or
// better with its coefficients rounded to float32 (relative to R, and to
// max(R, a/√(2π)) for D; gelugen prints each piece's), the constant and
// linear terms each in two parts (hi + lo: on [0, 1), whose centre is 0,
// the linear term's rounding error is more than the other terms can
// absorb). Each centre is 0 or within a factor 2 of its piece, so h is
// exact. The piece is the low two bits of the exponent of float32(a + 1),
// and the 4 pieces' coefficients of one power, twice, fill one 8-float
// register, from which VPERMILPS picks each lane's within its 128-bit
// half (on Zen 3 much cheaper than VPERMPS across the halves). gelugen
// (go generate) fits the polynomials and writes gelu_tables.go.
//
// exp(-a²/2) = 2^-n exp(-t/2): a² = hi + lo exactly (lo by an FMA), n the
// integer nearest hi log2(e)/2, t = hi - 2n ln2 + lo with ln2 in two
// parts, and exp(-t/2) = 1 + w, w = -t/2 + t² g(t), |t| <= ln2, g a
// degree-4 polynomial. Then, with M = (P(h) + P(h) w) 2^-n, P being R or D
// (R by Horner's rule, its constant's high part added last, the rounding
// error of that addition carried into v w by an FMA; D as c0hi + c1hi h,
// one FMA, plus the rest, since near its zero at a ≈ 0.75, in the piece
// centred at 0, those two terms cancel),
//
//	GELU(x)  = x M for x < 0,  x - x M (one FMA) for x >= 0
//	GELU'(x) = M   for x < 0,  1 - M     for x >= 0
//
// since Φ(-a) = Q(a), Φ(a) = 1 - Q(a) and GELU'(±a) = 1/2 ± (1/2 - Q(a) +
// a φ(a)). From |x| = 13.2 on, Q and φ are taken as 0
// (GELU(x) is then x for x > 0 and -0 for x < 0, where its true value is
// below 2^-126 in magnitude; the derivative 1 or 0).
//
// Error bounds, checked by the tests over every 97th float32 in [-16, 16]
// (go test -run GELUBounds -gelu.stride=1 checks every one, 2.2 billion,
// in about 5 CPU-minutes) against float64 references (math.Erfc, equal to
// the math.Erf form wherever that does not cancel): GELU within 3 ulp of
// the exact value (worst over every float32: 2.39 ulp, at x = -3.0569918,
// in the body; 2.60 at -3.2429 before the body had its own formula); the
// derivative within 3 ulp of max(|Φ(x)|, |x φ(x)|) (worst 2.46, at
// -5.7029586, outside the body; 2.51 at -3.4288304 before), since near
// its zero at x ≈ -0.75 the two terms cancel and no relative bound
// holds. Both
// hold where that value is at least 2^-116 (|x| < 12.6 and 12.8); beyond,
// the results have only absolute accuracy (below 2^-116). The float64
// GELU the engine once used was within 0.5 ulp; PyTorch's float32 erf form
// is not within any ulp bound in the left tail, where 1 + erf cancels.
//
// The fused multiply-adds are exactfma.Float32 here, which rounds as the
// instruction does, and every other operation is a float32 operation, so
// the bits are the same on every platform and with or without assembly.

// geluPiece returns, for 0 <= a < geluC.limit, a's piece j (the low two
// bits of the exponent of a+1) and h = a - centre, which is exact.
func geluPiece(a float32) (j uint32, h float32) {
	j = math.Float32bits(a+1) >> 23 & (geluPieces - 1)
	return j, a - geluC.centre[j]
}

// geluPoly returns, for 0 <= a < geluC.limit, a's piece j, h and s, the
// sum of P's terms of degree 2 and up over h² by Horner's rule (P's
// coefficients in poly, geluC.r or geluC.d).
func geluPoly(a float32, poly *[geluDegree + 3][8]float32) (j uint32, h, s float32) {
	j, h = geluPiece(a)
	s = poly[geluDegree][j]
	for k := geluDegree - 1; k >= 2; k-- {
		s = exactfma.Float32(s, h, poly[k][j])
	}
	return j, h, s
}

// geluLow returns P's low parts, c1lo h + c0lo.
func geluLow(j uint32, h float32, poly *[geluDegree + 3][8]float32) float32 {
	return exactfma.Float32(poly[geluDegree+2][j], h, poly[geluDegree+1][j])
}

// geluR returns R(a) = v + vLo: the linear term's high part goes into
// Horner's rule, the constant's high part is added last, and vLo is that
// addition's rounding error, exact by Fast2Sum as |r| <= |c0hi| (R is
// positive and varies slowly).
func geluR(a float32) (v, vLo float32) {
	j, h, s := geluPoly(a, &geluC.r)
	r := exactfma.Float32(s, h, geluC.r[1][j])
	r = exactfma.Float32(r, h, geluLow(j, h, &geluC.r))
	v = r + geluC.r[0][j]
	return v, (geluC.r[0][j] - v) + r
}

// geluD returns D(a) = (c0hi + c1hi h) + (h s h + low parts). D has its
// zero (that of GELU'(-a)) at a ≈ 0.75, inside the piece [0, 1) whose
// centre is 0, where c0 and c1 h are each near ±0.5 and cancel: one FMA
// adds them with one rounding, at most half an ulp of their sum, smaller
// than the scale of the derivative's bound.
func geluD(a float32) float32 {
	j, h, s := geluPoly(a, &geluC.d)
	z := exactfma.Float32(float32(s*h), h, geluLow(j, h, &geluC.d))
	return exactfma.Float32(geluC.d[1][j], h, geluC.d[0][j]) + z
}

// geluExp returns, for 0 <= a < geluC.limit, w = exp(-t/2) - 1 and
// scale = 2^-n, so that exp(-a²/2) = (1 + w) scale; g by Horner's rule.
func geluExp(a float32) (w, scale float32) {
	fma := exactfma.Float32
	hi := float32(a * a)
	lo := fma(a, a, -hi)
	n := float32(math.RoundToEven(float64(float32(hi * geluC.halfLog2e[0]))))
	t := fma(n, geluC.negTwoLn2Hi[0], hi)
	t = fma(n, geluC.negTwoLn2Lo[0], t)
	t += lo // a² - 2n ln2
	t2 := float32(t * t)
	g := geluC.exp[geluExpDegree][0]
	for k := geluExpDegree - 1; k >= 0; k-- {
		g = fma(g, t, geluC.exp[k][0])
	}
	w = fma(t2, g, float32(t*geluC.negHalf[0]))
	scale = math.Float32frombits(math.Float32bits(geluC.one[0]) - uint32(int32(n))<<23) // 2^-n, n <= 126
	return w, scale
}

// geluBodyPoly returns, for a < geluBodyLimit, the body polynomial poly
// (geluC.body, Q, or geluC.bodyGrad, E) at a, by Horner's rule on a's
// piece.
func geluBodyPoly(a float32, poly *[geluBodyDegree + 1][geluBodyPieces]float32) float32 {
	j := int32(a * 2) // exact: 2a is, and the conversion truncates
	h := a - geluC.bodyCentre[j]
	p := poly[geluBodyDegree][j]
	for k := geluBodyDegree - 1; k >= 0; k-- {
		p = exactfma.Float32(p, h, poly[k][j])
	}
	return p
}

// geluBody returns GELU(x) for a = |x| < geluBodyLimit: x Q(a) for x < 0
// and x - x Q(a) otherwise, as one FMA, -a Q(a) + (x, or 0 for x < 0).
func geluBody(x, a float32) float32 {
	q := geluBodyPoly(a, &geluC.body)
	pos := x
	if x < 0 {
		pos = 0
	}
	return exactfma.Float32(-a, q, pos)
}

// GELU returns x Φ(x).
func GELU(x float32) float32 {
	a := float32(math.Abs(float64(x)))
	if a < geluBodyLimit {
		return geluBody(x, a)
	}
	if !(a < geluC.limit[0]) {
		if x > 0 {
			return x
		}
		return x * 0 // -0 below -limit, NaN for NaN and -Inf as x Φ(x) gives
	}
	v, vLo := geluR(a)
	w, scale := geluExp(a)
	m := (v + exactfma.Float32(v, w, vLo)) * scale // Q(a), v's low part kept to the end
	if math.Signbit(float64(x)) {
		return x * m
	}
	return exactfma.Float32(-x, m, x)
}

// GELUGrad returns d GELU/dx = Φ(x) + x φ(x).
func GELUGrad(x float32) float32 {
	a := float32(math.Abs(float64(x)))
	if a < geluBodyLimit {
		e := geluBodyPoly(a, &geluC.bodyGrad) // E(a) = GELU'(-a)
		if math.Signbit(float64(x)) {
			return e
		}
		return 1 - e
	}
	if !(a < geluC.limit[0]) {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return 0
		}
		return x // NaN
	}
	v := geluD(a)
	w, scale := geluExp(a)
	m := exactfma.Float32(v, w, v) * scale // Q(a) - a φ(a)
	if math.Signbit(float64(x)) {
		return m
	}
	return 1 - m
}
