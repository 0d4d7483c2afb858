package safetensors

import "github.com/dinoclip/dinoclip/internal/leconv"

// Tensors of the dtypes dinoclip reads but never writes, for the tests of
// the reader.

// NewFloat16 makes an F16 tensor, rounding data to nearest even.
func NewFloat16(name string, shape []int, data []float32) Tensor {
	return newTensor(name, F16, shape, data, leconv.PutF16)
}

// NewBFloat16 makes a BF16 tensor, rounding data to nearest even.
func NewBFloat16(name string, shape []int, data []float32) Tensor {
	return newTensor(name, BF16, shape, data, leconv.PutBF16)
}

// NewInt64 makes an I64 tensor from data (copied).
func NewInt64(name string, shape []int, data []int64) Tensor {
	return newTensor(name, I64, shape, data, leconv.PutI64)
}
