package vec32

// The elementwise passes of the CPU engine. Each is defined by its Go loop;
// on amd64 with AVX2 an assembly loop does the longest prefix that is a
// whole number of 8-float vectors with the same operations in the same
// order (no fused multiply-add, float64 where the loop says float64), and
// the Go loop the rest. float32(...) and float64(...) around a product
// keep the compiler from fusing it into the next add.

// LayerNormApply sets, for j < len(x),
//
//	xhat[j] = float32((float64(x[j]) - mean) * rstd)
//	y[j]    = xhat[j]*gamma[j] + beta[j]   (in float32, not fused)
//
// y may alias x; xhat may not. The other slices must be at least as long
// as x.
func LayerNormApply(y, xhat, x, gamma, beta []float32, mean, rstd float64) {
	n := 0
	if useAsm {
		n = len(x) &^ 7
		if n > 0 {
			_, _, _, _ = y[n-1], xhat[n-1], gamma[n-1], beta[n-1]
			layerNormApply(n, &y[0], &xhat[0], &x[0], &gamma[0], &beta[0], mean, rstd)
		}
	}
	for j := n; j < len(x); j++ {
		h := float32((float64(x[j]) - mean) * rstd)
		xhat[j] = h
		y[j] = float32(h*gamma[j]) + beta[j]
	}
}

// AXPBY sets dst[j] = float32(x[j]*a + y[j]*b) for j < len(x), in
// float64 with each product rounded before the sum. dst may alias x or y.
func AXPBY(dst, x, y []float32, a, b float64) {
	n := 0
	if useAsm {
		n = len(x) &^ 7
		if n > 0 {
			_, _ = dst[n-1], y[n-1]
			axpby(n, &dst[0], &x[0], &y[0], a, b)
		}
	}
	for j := n; j < len(x); j++ {
		dst[j] = float32(float64(float64(x[j])*a) + float64(float64(y[j])*b))
	}
}

// GELUs sets y[j] = GELU(x[j]) for j < len(x), the same bits as GELU but
// for NaN: a NaN x gives a NaN, not always of x's sign. y may be x itself,
// but not overlap it otherwise.
func GELUs(y, x []float32) {
	n := 0
	if useAsm && haveFMA {
		n = len(x) &^ 7
		if n > 0 {
			_ = y[n-1]
			geluVectors(y[:n], x[:n])
		}
	}
	for j := n; j < len(x); j++ {
		y[j] = GELU(x[j])
	}
}

// geluBlock is the floats of x geluVectors hands the body pass at once
// (1 KiB), and so the room it keeps for the vectors out of the body: Go
// zeroes those buffers on every call, which short calls notice.
const geluBlock = 256

// geluVectors runs GELUs' assembly over x, whose length is a multiple of
// 8, a block at a time: the body (geluBodyAVX2, |x| < 4) for every
// vector, which sets aside the vectors with a lane out of the body; then
// the whole-range formula (geluAVX2) over those, packed together, and
// their results stored to the lanes out of the body. Each y is GELU's
// whatever its neighbours, and each formula runs on whole vectors without
// a break in its loops: inputs rarely out of the body cost little more
// than it, inputs always out little more than the whole-range formula.
func geluVectors(y, x []float32) {
	var outX [geluBlock]float32
	var outAt [geluBlock / 8]int32
	for len(x) > 0 {
		m := min(len(x), geluBlock)
		k := geluBodyAVX2(m, &y[0], &x[0], &geluC.centre[0], &outX[0], &outAt[0])
		if k > 0 {
			var outY [geluBlock]float32 // zeroed only here
			geluAVX2(8*k, &outY[0], &outX[0], &geluC.centre[0])
			geluScatterAVX2(k, &y[0], &outY[0], &outX[0], &outAt[0])
		}
		y, x = y[m:], x[m:]
	}
}

// geluGradVectors is geluVectors for GELUGradMul: the body's derivative
// (geluBodyGradMulAVX2) for every vector, then the whole-range formula
// (geluGradMulAVX2) over the vectors with a lane out of the body, with
// their dy, and its results stored to those lanes.
func geluGradVectors(dx, dy, x []float32) {
	var outX, outDy [geluBlock]float32
	var outAt [geluBlock / 8]int32
	for len(x) > 0 {
		m := min(len(x), geluBlock)
		k := geluBodyGradMulAVX2(m, &dx[0], &dy[0], &x[0], &geluC.centre[0], &outX[0], &outDy[0], &outAt[0])
		if k > 0 {
			var outDx [geluBlock]float32
			geluGradMulAVX2(8*k, &outDx[0], &outDy[0], &outX[0], &geluC.centre[0])
			geluScatterAVX2(k, &dx[0], &outDx[0], &outX[0], &outAt[0])
		}
		dx, dy, x = dx[m:], dy[m:], x[m:]
	}
}

// GELUGradMul sets dx[j] = dy[j] * GELUGrad(x[j]) for j < len(x), the
// backward pass through GELU, the same bits as GELUGrad but for NaN (as
// GELUs). dx may be dy itself, but not overlap it otherwise, nor x.
func GELUGradMul(dx, dy, x []float32) {
	n := 0
	if useAsm && haveFMA {
		n = len(x) &^ 7
		if n > 0 {
			_, _ = dx[n-1], dy[n-1]
			geluGradVectors(dx[:n], dy[:n], x[:n])
		}
	}
	for j := n; j < len(x); j++ {
		dx[j] = dy[j] * GELUGrad(x[j])
	}
}
