//go:build !purego

package retrieval

import "golang.org/x/sys/cpu"

// dot4x2 is the AVX2 + FMA kernel of dot_amd64.s: out[2i+j] = q_i · k_j
// for the four query rows from q and the two key rows from k (strides in
// bytes), n a positive multiple of 8.
//
//go:noescape
func dot4x2(q *float32, qStride int, k *float32, kStride int, n int, out *[8]float32)

// haveDot4x2 says whether this CPU runs dot4x2 (a variable so that tests
// can take the portable path too).
var haveDot4x2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
