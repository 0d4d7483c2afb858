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

// AddProductsTo sets prod[j] += x[j]*y[j] (the product exact in float64)
// and sum[j] += x[j] for j < len(prod): LayerNorm's dgamma and dbeta, a
// row at a time. sum, x and y must be at least as long as prod.
func AddProductsTo(prod, sum []float64, x, y []float32) {
	n := 0
	if useAsm {
		n = len(prod) &^ 7
		if n > 0 {
			_, _, _ = sum[n-1], x[n-1], y[n-1]
			addProductsTo(n, &prod[0], &sum[0], &x[0], &y[0])
		}
	}
	sum, x, y = sum[:len(prod)], x[:len(prod)], y[:len(prod)]
	for j := n; j < len(prod); j++ {
		prod[j] += float64(x[j]) * float64(y[j])
		sum[j] += float64(x[j])
	}
}
