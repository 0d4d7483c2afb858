package vec32

// The row reductions of the CPU engine: sums of float32 values, or of exact
// products of two, accumulated in float64.
//
// Each keeps reduceLanes float64 partial sums: element j of the prefix of
// length n&^(reduceLanes-1) goes to lane j mod reduceLanes, and each lane adds
// its elements in increasing j. The lanes are then combined by one fixed
// tree (combineLanes) and the elements past the prefix added after it, in
// order. That is the definition; the AVX2 code (four float64s in each of two
// YMM accumulators) and the Go loops below compute exactly it, so results
// are the same bits on every CPU, as the tests check.
const reduceLanes = 8

type lanes [reduceLanes]float64

// combineLanes is ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), the order the
// lanes of two 4-wide accumulators fold in: halves, then pairs.
func combineLanes(l *lanes) float64 {
	a0, a1, a2, a3 := l[0]+l[4], l[1]+l[5], l[2]+l[6], l[3]+l[7]
	return (a0 + a2) + (a1 + a3)
}

// prefix is the length of x the lanes take.
func prefix(n int) int { return n &^ (reduceLanes - 1) }

// Sum returns the sum of x, accumulated in float64.
func Sum(x []float32) float64 {
	var l lanes
	n := prefix(len(x))
	if n > 0 {
		if useAsm {
			sumLanes(n, &x[0], &l)
		} else {
			sumLanesGo(x[:n], &l)
		}
	}
	s := combineLanes(&l)
	for _, v := range x[n:] {
		s += float64(v)
	}
	return s
}

// Dot returns the sum of x[j]*y[j] over j < len(x), each product formed
// exactly in float64 and accumulated in float64. y must be at least as
// long as x.
func Dot(x, y []float32) float64 {
	var l lanes
	n := prefix(len(x))
	if n > 0 {
		_ = y[n-1]
		if useAsm {
			dotLanes(n, &x[0], &y[0], &l)
		} else {
			dotLanesGo(x[:n], y[:n], &l)
		}
	}
	s := combineLanes(&l)
	for j := n; j < len(x); j++ {
		s += float64(x[j]) * float64(y[j])
	}
	return s
}

// SumSqDev returns the sum of (x[j] - mean)^2, each difference and square
// rounded to float64 (the two-pass variance's second pass).
func SumSqDev(x []float32, mean float64) float64 {
	var l lanes
	n := prefix(len(x))
	if n > 0 {
		if useAsm {
			sqDevLanes(n, &x[0], mean, &l)
		} else {
			sqDevLanesGo(x[:n], mean, &l)
		}
	}
	s := combineLanes(&l)
	for _, v := range x[n:] {
		d := float64(v) - mean
		s += float64(d * d)
	}
	return s
}

// The lane loops in Go, the definition the assembly copies. float64(a*b)
// keeps the compiler from fusing a rounded product into the add (Go may
// fuse x*y + z into an FMA where it is not told otherwise); the products
// of two float32s are exact, so fusing those would change nothing.

func sumLanesGo(x []float32, l *lanes) {
	for j, v := range x {
		l[j%reduceLanes] += float64(v)
	}
}

func dotLanesGo(x, y []float32, l *lanes) {
	for j, v := range x {
		l[j%reduceLanes] += float64(v) * float64(y[j])
	}
}

func sqDevLanesGo(x []float32, mean float64, l *lanes) {
	for j, v := range x {
		d := float64(v) - mean
		l[j%reduceLanes] += float64(d * d)
	}
}
