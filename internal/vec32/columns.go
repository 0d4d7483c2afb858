package vec32

// Column reductions: a caller sums a matrix's columns by adding its rows,
// in order, into float64 accumulators, one per column. Each accumulator is
// independent of the others, so the vectorised and the Go loops give the
// same bits by construction; the tests check it anyway.

// AddTo sets acc[j] += x[j] for j < len(acc). x must be at least as long
// as acc.
func AddTo(acc []float64, x []float32) {
	n := 0
	if useAsm {
		n = len(acc) &^ 7
		if n > 0 {
			_ = x[n-1]
			addTo(n, &acc[0], &x[0])
		}
	}
	x = x[:len(acc)]
	for j := n; j < len(acc); j++ {
		acc[j] += float64(x[j])
	}
}

// Accumulate sets acc[j] += x[j] for j < len(acc), in float64: the sum of
// partial column sums. x must be at least as long as acc.
func Accumulate(acc, x []float64) {
	n := 0
	if useAsm {
		n = len(acc) &^ 7
		if n > 0 {
			_ = x[n-1]
			accumulate(n, &acc[0], &x[0])
		}
	}
	x = x[:len(acc)]
	for j := n; j < len(acc); j++ {
		acc[j] += x[j]
	}
}
