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

// AddProductsTo adds rows rows of x and y, row r starting at r*stride,
// in order: for r < rows and j < len(prod),
//
//	prod[j] += x[r*stride+j]*y[r*stride+j]   (the product exact in float64)
//	sum[j]  += x[r*stride+j]
//
// LayerNorm's dgamma and dbeta over a block of columns. The assembly keeps
// 16 columns' sums in registers across all the rows, so each accumulator
// is loaded and stored once, not once a row. sum must be at least as long
// as prod, and x and y hold rows rows of stride (the last one at least
// len(prod) long).
func AddProductsTo(prod, sum []float64, x, y []float32, rows, stride int) {
	if rows <= 0 {
		return
	}
	end := (rows-1)*stride + len(prod)
	sum, x, y = sum[:len(prod)], x[:end], y[:end]
	n := 0
	if useAsm {
		n = len(prod) &^ 15
		if n > 0 {
			addProductsTo(n, rows, stride, &prod[0], &sum[0], &x[0], &y[0])
		}
	}
	for r := range rows {
		xr, yr := x[r*stride:r*stride+len(prod)], y[r*stride:r*stride+len(prod)]
		for j := n; j < len(prod); j++ {
			prod[j] += float64(xr[j]) * float64(yr[j])
			sum[j] += float64(xr[j])
		}
	}
}
