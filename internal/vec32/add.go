package vec32

// Add sets dst[j] = x[j] + y[j] for j < len(x), each sum rounded to
// float32. dst may alias x or y. It is the bias add after a linear layer's
// product and the residual add of a block.
func Add(dst, x, y []float32) {
	n := 0
	if useAsm {
		n = len(x) &^ 7
		if n > 0 {
			_, _ = dst[n-1], y[n-1]
			add(n, &dst[0], &x[0], &y[0])
		}
	}
	for j := n; j < len(x); j++ {
		dst[j] = x[j] + y[j]
	}
}
