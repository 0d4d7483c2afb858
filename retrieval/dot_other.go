//go:build !amd64 || purego

package retrieval

// Without the amd64 kernel every tile goes through gonum's Sgemm.
var haveDot4x2 = false

func dot4x2(q *float32, qStride int, k *float32, kStride int, n int, out *[8]float32) {
	panic("retrieval: dot4x2 without its kernel")
}
