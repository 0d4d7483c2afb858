package retrieval

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// scoreTile writes the float32 dot products of bn query rows q and kn key
// rows k (both dim wide, row-major) into dst, row i of dst holding query
// i's kn scores. With AVX2 and FMA (and dim a multiple of 8) blocks of
// 4 queries × 2 keys go through dot4x2, whose eight accumulators keep both
// FMA units busy, and the rows and column left over through blas32.Dot;
// otherwise the whole tile is one gonum Sgemm. The summation orders differ
// between the paths, which the exactness rule allows (see [ErrorBound]).
func scoreTile(dst, q []float32, bn int, k []float32, kn, dim int) {
	if !haveDot4x2 || dim%8 != 0 {
		qm := blas32.General{Rows: bn, Cols: dim, Stride: dim, Data: q[:bn*dim]}
		km := blas32.General{Rows: kn, Cols: dim, Stride: dim, Data: k[:kn*dim]}
		sm := blas32.General{Rows: bn, Cols: kn, Stride: kn, Data: dst[:bn*kn]}
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, qm, km, 0, sm)
		return
	}
	var out [8]float32
	stride := 4 * dim
	i := 0
	for ; i+4 <= bn; i += 4 {
		j := 0
		for ; j+2 <= kn; j += 2 {
			dot4x2(&q[i*dim], stride, &k[j*dim], stride, dim, &out)
			for r := range 4 {
				dst[(i+r)*kn+j] = out[2*r]
				dst[(i+r)*kn+j+1] = out[2*r+1]
			}
		}
		for ; j < kn; j++ {
			for r := range 4 {
				dst[(i+r)*kn+j] = dot(q[(i+r)*dim:(i+r+1)*dim], k[j*dim:(j+1)*dim])
			}
		}
	}
	for ; i < bn; i++ {
		for j := range kn {
			dst[i*kn+j] = dot(q[i*dim:(i+1)*dim], k[j*dim:(j+1)*dim])
		}
	}
}

func dot(a, b []float32) float32 {
	return blas32.Dot(blas32.Vector{N: len(a), Inc: 1, Data: a}, blas32.Vector{N: len(b), Inc: 1, Data: b})
}
