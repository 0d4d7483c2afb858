package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"math"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

const (
	pieces    = 4
	degree    = 10 // R and D, in h = a - centre
	expDegree = 4  // g(t) = (exp(-t/2) - 1 + t/2)/t²; exp(-t/2) = 1 - t/2 + t² g(t)
	// limit is the |x| from which R and D are not used (Q and φ taken as
	// 0): below it the exponent n of the scale 2^-n is at most 126.
	limit = float32(13.2)

	// The body, |x| < bodyLimit: Q itself (and for the derivative E = Q -
	// a φ) on bodyPieces pieces of width
	// 1/2, piece j = int(2|x|), each a polynomial of degree bodyDegree in
	// h = |x| - centre, the centre 0 for [0, 1/2) and the piece's upper end
	// for the others. Q decreases and is convex there, so with h <= 0 the
	// low-order terms, which carry nearly all of the value, have Q's sign
	// (every term does from |x| = 3.32 on, where Q's derivatives up to
	// order bodyDegree all alternate) and Horner's rule cancels little: GELU
	// within 2.4 ulp where centres mid-piece gave 2.9 on the steep pieces.
	bodyPieces = 8
	bodyDegree = 7
	bodyLimit  = float32(bodyPieces / 2)
)

// piece j of |x| is the one with j = (bits(float32(|x|+1)) >> 23) & 3, the
// low two bits of the exponent of |x|+1: 3 [0, 1), 0 [1, 3), 1 [3, 7),
// 2 [7, 15) (used up to limit). The centre of each is 0 (for [0, 1)) or a
// float32 within a factor 2 of every point of it, also of the points
// within an ulp outside it that |x|+1's rounding may put in it, so h =
// |x| - centre is exact (Sterbenz; TestGELUPieceOffsetExact checks).
var bounds = [pieces]struct{ lo, hi, centre float64 }{
	0: {1, 3, 1.75}, 1: {3, 7, 5}, 2: {7, float64(limit), 10}, 3: {0, 1, 0},
}

const invSqrt2Pi = 0.3989422804014327 // 1/√(2π)

// q is Q(a) = 1 - Φ(a), the upper tail, measured relative to itself.
func q(a float64) (float64, float64) {
	v := math.Erfc(a/math.Sqrt2) / 2
	return v, v
}

// e is E(a) = Q(a) - a φ(a), GELU'(-a), measured against max(Q, a φ), the
// scale of the derivative's bound (E has a zero at a ≈ 0.75).
func e(a float64) (float64, float64) {
	v, _ := q(a)
	p := a * math.Exp(-a*a/2) * invSqrt2Pi
	return v - p, math.Max(v, p)
}

// r is R(a) = Q(a) exp(a²/2), Q the upper tail of the standard normal
// distribution, with the scale its relative error is measured against.
func r(a float64) (float64, float64) {
	v := math.Erfc(a/math.Sqrt2) / 2 * math.Exp(a*a/2)
	return v, v
}

// d is D(a) = R(a) - a/√(2π); GELU'(-a) = exp(-a²/2) D(a). Its error is
// measured against max(R, a/√(2π)), the scale of the derivative's bound.
func d(a float64) (float64, float64) {
	v, _ := r(a)
	return v - a*invSqrt2Pi, math.Max(v, a*invSqrt2Pi)
}

// g is (exp(-t/2) - 1 + t/2)/t², its error measured as that of
// 1 - t/2 + t² g(t) relative to exp(-t/2).
func g(t float64) (float64, float64) {
	if math.Abs(t) < 0x1p-10 { // the series, where the difference cancels
		return 1.0/8 - t/48 + t*t/384 - t*t*t/3840, math.Exp(-t/2) / (t * t)
	}
	return (math.Expm1(-t/2) + t/2) / (t * t), math.Exp(-t/2) / (t * t)
}

// fit returns the near-minimax polynomial of degree deg for f on [lo, hi]
// in powers of h = a - centre (coefficient k of h^k), and its worst error
// relative to f's scale at 600 Chebyshev nodes.
func fit(f func(float64) (float64, float64), lo, hi, centre float64, deg int) ([]float64, float64) {
	const nodes = 600
	mid, half := (lo+hi)/2, (hi-lo)/2
	zs := make([]float64, nodes)
	fs, ss, ws := make([]float64, nodes), make([]float64, nodes), make([]float64, nodes)
	for i := range zs {
		zs[i] = math.Cos(math.Pi * (float64(i) + 0.5) / nodes)
		fs[i], ss[i] = f(mid + half*zs[i])
		ws[i] = 1
	}
	cheb := func(z float64, t []float64) {
		t[0] = 1
		if len(t) > 1 {
			t[1] = z
		}
		for k := 2; k < len(t); k++ {
			t[k] = 2*z*t[k-1] - t[k-2]
		}
	}
	n := deg + 1
	t := make([]float64, n)
	var c []float64
	var worst float64
	for iter := 0; iter < 60; iter++ {
		// Weighted least squares: normal equations in the Chebyshev basis.
		a := make([][]float64, n)
		for i := range a {
			a[i] = make([]float64, n+1)
		}
		for i, z := range zs {
			cheb(z, t)
			w := ws[i] / (ss[i] * ss[i])
			for p := 0; p < n; p++ {
				for q := 0; q < n; q++ {
					a[p][q] += w * t[p] * t[q]
				}
				a[p][n] += w * t[p] * fs[i]
			}
		}
		c = solve(a)
		// Lawson's update: weight each node by its error.
		worst = 0
		var sum float64
		for i, z := range zs {
			cheb(z, t)
			var v float64
			for k := range c {
				v += c[k] * t[k]
			}
			e := math.Abs(v-fs[i]) / ss[i]
			worst = math.Max(worst, e)
			ws[i] *= e
			sum += ws[i]
		}
		for i := range ws {
			ws[i] /= sum
		}
	}
	// z = (a - mid)/half = alpha + beta h: expand each T_k(z) in powers
	// of h by the recurrence, with polynomials as coefficient slices.
	alpha, beta := (centre-mid)/half, 1/half
	mono := make([]float64, n)
	tPrev, tCur := []float64{1}, []float64{alpha, beta}
	addScaled := func(dst, p []float64, s float64) {
		for k, v := range p {
			dst[k] += s * v
		}
	}
	addScaled(mono, tPrev, c[0])
	if n > 1 {
		addScaled(mono, tCur, c[1])
	}
	for k := 2; k < n; k++ {
		next := make([]float64, k+1)
		for i, v := range tCur { // 2 (alpha + beta h) T_{k-1}
			next[i] += 2 * alpha * v
			next[i+1] += 2 * beta * v
		}
		addScaled(next, tPrev, -1)
		addScaled(mono, next, c[k])
		tPrev, tCur = tCur, next
	}
	return mono, worst
}

// fitRounded fits f as fit does and rounds the coefficients to float32
// one at a time from the highest power down, refitting the lower ones
// after each so that they absorb its rounding error. The constant and
// linear terms are each split in two float32s, hi + lo (the linear term's
// rounding error, a multiple of h, is more than the constant can absorb
// where the centre is 0 and h reaches 1), the linear one only if
// splitLinear. It returns the coefficients (k of h^k, hi at 0 and 1), the
// two lo parts (the linear one 0 unless split), and the worst error of the
// rounded polynomial (evaluated in float64) relative to f's scale.
func fitRounded(f func(float64) (float64, float64), lo, hi, centre float64, deg int, splitLinear bool) ([]float32, float32, float32, float64) {
	c32 := make([]float32, deg+1)
	var c1Lo float32
	rest := func(a float64) (float64, float64) { // f less the rounded terms
		v, s := f(a)
		h := a - centre
		for k := deg; k >= 1 && c32[k] != 0; k-- {
			v -= float64(c32[k]) * math.Pow(h, float64(k))
		}
		return v - float64(c1Lo)*h, s
	}
	for k := deg; k >= 1; k-- {
		mono, _ := fit(rest, lo, hi, centre, k)
		c32[k] = float32(mono[k])
		if c32[k] == 0 {
			log.Fatalf("gelugen: coefficient %d rounds to 0", k)
		}
		if k == 1 && splitLinear {
			c1Lo = float32(mono[1] - float64(c32[1]))
		}
	}
	mono, _ := fit(rest, lo, hi, centre, 0)
	c32[0] = float32(mono[0])
	c0Lo := float32(mono[0] - float64(c32[0]))
	var worst float64
	for i := 0; i <= 4000; i++ {
		a := lo + (hi-lo)*float64(i)/4000
		v, s := f(a)
		h := a - centre
		p := float64(c0Lo) + float64(c1Lo)*h
		for k := deg; k >= 0; k-- {
			p += float64(c32[k]) * math.Pow(h, float64(k))
		}
		worst = math.Max(worst, math.Abs(p-v)/s)
	}
	return c32, c0Lo, c1Lo, worst
}

// solve solves the augmented system a by Gaussian elimination with partial
// pivoting.
func solve(a [][]float64) []float64 {
	n := len(a)
	for p := 0; p < n; p++ {
		best := p
		for i := p + 1; i < n; i++ {
			if math.Abs(a[i][p]) > math.Abs(a[best][p]) {
				best = i
			}
		}
		a[p], a[best] = a[best], a[p]
		for i := p + 1; i < n; i++ {
			m := a[i][p] / a[p][p]
			for q := p; q <= n; q++ {
				a[i][q] -= m * a[p][q]
			}
		}
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := a[i][n]
		for q := i + 1; q < n; q++ {
			s -= a[i][q] * x[q]
		}
		x[i] = s / a[i][i]
	}
	return x
}

func main() {
	goOut := flag.String("go", "gelu_tables.go", "Go file to write")
	hOut := flag.String("h", "gelu_tables_amd64.h", "assembly header to write")
	flag.Parse()
	log.SetFlags(0)

	var centre [pieces]float32
	var rc, dc [degree + 3][pieces]float32 // power k at k, then the constant's and the linear term's low parts
	for j, b := range bounds {
		centre[j] = float32(b.centre)
		// Widen each interval a little: |x|+1 is rounded to float32
		// before its piece is chosen, so a point within an ulp of a
		// boundary may land in the neighbouring piece.
		lo, hi := b.lo*(1-0x1p-20), b.hi*(1+0x1p-20)
		for _, fn := range []struct {
			name string
			f    func(float64) (float64, float64)
			dst  *[degree + 3][pieces]float32
		}{{"R", r, &rc}, {"D", d, &dc}} {
			_, fitted := fit(fn.f, lo, hi, b.centre, degree)
			c, c0Lo, c1Lo, rounded := fitRounded(fn.f, lo, hi, b.centre, degree, true)
			log.Printf("%s on [%g, %g]: worst relative error %.3g (2^%.1f), with float32 coefficients %.3g (2^%.1f)", fn.name, b.lo, b.hi, fitted, math.Log2(fitted), rounded, math.Log2(rounded))
			for k, v := range c {
				fn.dst[k][j] = v
			}
			fn.dst[degree+1][j] = c0Lo
			fn.dst[degree+2][j] = c1Lo
		}
	}
	var bodyCentre [bodyPieces]float32
	var bq, be [bodyDegree + 1][bodyPieces]float32 // Q and E on the body
	for j := range bodyCentre {
		lo, hi := float64(j)/2, float64(j+1)/2
		centre := hi
		if j == 0 {
			centre = 0
		}
		bodyCentre[j] = float32(centre)
		for _, fn := range []struct {
			name string
			f    func(float64) (float64, float64)
			dst  *[bodyDegree + 1][bodyPieces]float32
		}{{"Q", q, &bq}, {"E", e, &be}} {
			_, fitted := fit(fn.f, lo, hi, centre, bodyDegree)
			c, _, _, rounded := fitRounded(fn.f, lo, hi, centre, bodyDegree, false) // no low parts: see bodyDegree
			log.Printf("%s on [%g, %g]: worst relative error %.3g (2^%.1f), with float32 coefficients %.3g (2^%.1f)", fn.name, lo, hi, fitted, math.Log2(fitted), rounded, math.Log2(rounded))
			for k, v := range c {
				fn.dst[k][j] = v
			}
		}
	}
	// t = a² - 2n ln2 is within ln2 of 0, plus the rounding of
	// a² log2(e)/2 to float32 (n at most 126) and a²'s low part.
	tMax := math.Ln2 + 0x1p-11
	_, worst := fit(g, -tMax, tMax, 0, expDegree)
	gm, _, _, rounded := fitRounded(g, -tMax, tMax, 0, expDegree, false) // g's constant, 1/8, needs no low part
	log.Printf("exp(-t/2) on [%g, %g]: worst relative error %.3g (2^%.1f), with float32 coefficients %.3g (2^%.1f)", -tMax, tMax, worst, math.Log2(worst), rounded, math.Log2(rounded))
	ln2Hi := float32(math.Ln2)
	ln2Lo := float32(math.Ln2 - float64(ln2Hi))

	var src bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&src, format, a...) }
	p("// Code generated by gelugen (go generate); DO NOT EDIT.\n\npackage vec32\n\n")
	p("const (\n\tgeluPieces = %d\n\tgeluDegree = %d\n\tgeluExpDegree = %d\n", pieces, degree, expDegree)
	p("\tgeluBodyPieces = %d\n\tgeluBodyDegree = %d\n\tgeluBodyLimit = %d\n)\n\n", bodyPieces, bodyDegree, int(bodyLimit))
	p("// geluC holds the coefficients and constants of GELU and GELUGrad, each\n")
	p("// as 8 float32s: a table indexed by piece, its %d entries twice (once for\n", pieces)
	p("// each 128-bit lane, from which VPERMILPS selects), a table of the %d\n", bodyPieces)
	p("// pieces of the body (VPERMPS selects across the lanes), or one value repeated\n")
	p("// (an operand of the vector instructions). gelugen's\n")
	p("// gelu_tables_amd64.h gives the assembly each field's offset.\n")
	p("var geluC = struct {\n")
	p("\tcentre [8]float32\n")
	p("\t// R and D: the coefficient of h^k at k (the high part for k = 0\n")
	p("\t// and 1), then the low parts of the constant and of h's coefficient\n")
	p("\tr, d [geluDegree + 3][8]float32\n")
	p("\texp [geluExpDegree + 1][8]float32 // g, the coefficient of t^k at k\n")
	p("\tone, negHalf, halfLog2e, negTwoLn2Hi, negTwoLn2Lo, limit [8]float32\n")
	p("\tbodyCentre [geluBodyPieces]float32\n")
	p("\t// Q and E = Q - a φ (GELU'(-a)) on the body: the coefficient of h^k at k\n")
	p("\tbody, bodyGrad [geluBodyDegree + 1][geluBodyPieces]float32\n")
	p("}{\n")
	row := func(v [8]float32) string {
		s := "{"
		for i, x := range v {
			if i > 0 {
				s += ", "
			}
			s += fmt.Sprintf("%#x", float64(x)) // hex: exact
		}
		return s + "}"
	}
	twice := func(v [pieces]float32) string { // a table, in both 128-bit lanes
		var r [8]float32
		for i := range r {
			r[i] = v[i%pieces]
		}
		return row(r)
	}
	splat := func(x float32) string {
		var v [8]float32
		for i := range v {
			v[i] = x
		}
		return row(v)
	}
	p("\tcentre: [8]float32%s,\n", twice(centre))
	for _, t := range []struct {
		name string
		c    *[degree + 3][pieces]float32
	}{{"r", &rc}, {"d", &dc}} {
		p("\t%s: [geluDegree + 3][8]float32{\n", t.name)
		for _, v := range t.c {
			p("\t\t%s,\n", twice(v))
		}
		p("\t},\n")
	}
	p("\texp: [geluExpDegree + 1][8]float32{\n")
	for k := 0; k <= expDegree; k++ {
		p("\t\t%s,\n", splat(gm[k]))
	}
	p("\t},\n")
	for _, c := range []struct {
		name string
		v    float32
	}{{"one", 1}, {"negHalf", -0.5}, {"halfLog2e", math.Log2E / 2}, {"negTwoLn2Hi", -2 * ln2Hi}, {"negTwoLn2Lo", -2 * ln2Lo}, {"limit", limit}} {
		p("\t%s: [8]float32%s,\n", c.name, splat(c.v))
	}
	p("\tbodyCentre: [geluBodyPieces]float32%s,\n", row(bodyCentre))
	for _, t := range []struct {
		name string
		c    *[bodyDegree + 1][bodyPieces]float32
	}{{"body", &bq}, {"bodyGrad", &be}} {
		p("\t%s: [geluBodyDegree + 1][geluBodyPieces]float32{\n", t.name)
		for _, v := range t.c {
			p("\t\t%s,\n", row(v))
		}
		p("\t},\n")
	}
	p("}\n")
	formatted, err := format.Source(src.Bytes())
	if err != nil {
		log.Fatalf("gelugen: %v", err)
	}
	if err := atomicfile.WriteBytes(*goOut, formatted); err != nil {
		log.Fatal(err)
	}

	var h bytes.Buffer
	fmt.Fprintf(&h, "// Code generated by gelugen (go generate); DO NOT EDIT.\n\n")
	fmt.Fprintf(&h, "// Byte offsets of geluC's fields (gelu_tables.go), 32 bytes a row.\n")
	off := 0
	def := func(name string, rows int) {
		fmt.Fprintf(&h, "#define %s %d\n", name, off)
		off += 32 * rows
	}
	def("GELU_CENTRE", 1)
	def("GELU_R", degree+3)
	def("GELU_D", degree+3)
	def("GELU_EXP", expDegree+1)
	for _, name := range []string{"GELU_ONE", "GELU_NEG_HALF", "GELU_HALF_LOG2E", "GELU_NEG_TWO_LN2_HI", "GELU_NEG_TWO_LN2_LO", "GELU_LIMIT"} {
		def(name, 1)
	}
	def("GELU_BODY_CENTRE", 1)
	def("GELU_BODY", bodyDegree+1)
	def("GELU_BODY_GRAD", bodyDegree+1)
	fmt.Fprintf(&h, "#define GELU_DEGREE %d\n#define GELU_EXP_DEGREE %d\n#define GELU_BODY_DEGREE %d\n", degree, expDegree, bodyDegree)
	if err := atomicfile.WriteBytes(*hOut, h.Bytes()); err != nil {
		log.Fatal(err)
	}
}
