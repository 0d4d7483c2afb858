package safetensors

import "github.com/dinoclip/dinoclip/internal/leconv"

func isFloat(d DType) bool { return d == F16 || d == BF16 || d == F32 || d == F64 }

func isInt(d DType) bool {
	switch d {
	case I8, I16, I32, I64, U8, U16, U32:
		return true
	}
	return false
}

// The decoders assume len(src) == len(dst) × element size; callers
// guarantee it. internal/leconv does the conversions, correctly at any
// alignment (the format does not align tensors) and with a plain copy
// where the types match on a little-endian host.

func decodeFloat32(dst []float32, src []byte, dt DType) {
	switch dt {
	case F16:
		leconv.F16ToF32(dst, src)
	case BF16:
		leconv.BF16ToF32(dst, src)
	case F32:
		leconv.F32ToF32(dst, src)
	case F64:
		leconv.F64ToF32(dst, src)
	}
}

// decodeFloat64 converts exactly: every F16, BF16 and F32 value is a
// float32, hence a float64.
func decodeFloat64(dst []float64, src []byte, dt DType) {
	switch dt {
	case F16:
		leconv.F16ToF64(dst, src)
	case BF16:
		leconv.BF16ToF64(dst, src)
	case F32:
		leconv.F32ToF64(dst, src)
	case F64:
		leconv.F64ToF64(dst, src)
	}
}

func decodeInt64(dst []int64, src []byte, dt DType) {
	switch dt {
	case I8:
		leconv.I8ToI64(dst, src)
	case U8:
		leconv.U8ToI64(dst, src)
	case I16:
		leconv.I16ToI64(dst, src)
	case U16:
		leconv.U16ToI64(dst, src)
	case I32:
		leconv.I32ToI64(dst, src)
	case U32:
		leconv.U32ToI64(dst, src)
	case I64:
		leconv.I64ToI64(dst, src)
	}
}
