package safetensors

import (
	"encoding/binary"
	"math"

	"github.com/x448/float16"
)

func isFloat(d DType) bool { return d == F16 || d == BF16 || d == F32 || d == F64 }

func isInt(d DType) bool {
	switch d {
	case I8, I16, I32, I64, U8, U16, U32:
		return true
	}
	return false
}

// The decoders assume len(src) == len(dst) × element size; callers
// guarantee it. encoding/binary keeps them correct at any alignment (the
// format does not align tensors) and compiles to plain loads.

func decodeFloat32(dst []float32, src []byte, dt DType) {
	switch dt {
	case F16:
		for i := range dst {
			dst[i] = float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32()
		}
	case BF16:
		for i := range dst {
			dst[i] = BFloat16Value(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	}
}

func decodeFloat64(dst []float64, src []byte, dt DType) {
	switch dt {
	case F64:
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))
		}
	default:
		// Every F16, BF16 and F32 value is exactly a float32.
		tmp := make([]float32, len(dst))
		decodeFloat32(tmp, src, dt)
		for i, v := range tmp {
			dst[i] = float64(v)
		}
	}
}

func decodeInt64(dst []int64, src []byte, dt DType) {
	for i := range dst {
		switch dt {
		case I8:
			dst[i] = int64(int8(src[i]))
		case U8:
			dst[i] = int64(src[i])
		case I16:
			dst[i] = int64(int16(binary.LittleEndian.Uint16(src[2*i:])))
		case U16:
			dst[i] = int64(binary.LittleEndian.Uint16(src[2*i:]))
		case I32:
			dst[i] = int64(int32(binary.LittleEndian.Uint32(src[4*i:])))
		case U32:
			dst[i] = int64(binary.LittleEndian.Uint32(src[4*i:]))
		case I64:
			dst[i] = int64(binary.LittleEndian.Uint64(src[8*i:]))
		}
	}
}

// BFloat16Value returns the float32 value of bfloat16 bits (exact: a
// bfloat16 is the top half of a float32).
func BFloat16Value(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// BFloat16Bits rounds f to bfloat16, nearest with ties to even (as
// PyTorch's .to(torch.bfloat16) does); values past the largest bfloat16
// round to ±Inf. NaN stays NaN: rounding could otherwise carry a NaN's
// payload into the exponent and make it Inf, so the quiet bit is forced.
func BFloat16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	// Add half an ulp of the result, minus one unless the result would be
	// odd, then truncate: this is round-half-to-even on the dropped bits.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Float16Bits rounds f to IEEE binary16, nearest with ties to even; beyond
// ±65504 it rounds to ±Inf and NaN stays NaN.
func Float16Bits(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// Float16Value returns the float32 value of binary16 bits (exact).
func Float16Value(h uint16) float32 { return float16.Frombits(h).Float32() }
