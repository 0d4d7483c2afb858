package npy

import "github.com/dinoclip/dinoclip/internal/leconv"

// The decoders assume len(src) == len(dst)*dt.Size(); callers guarantee it.
// internal/leconv does the conversions, correctly at any alignment (a
// header of unusual length leaves the data unaligned) and with a plain
// copy where the types match on a little-endian host.

func decodeFloat32(dst []float32, src []byte, dt DType) {
	switch dt {
	case Float16:
		leconv.F16ToF32(dst, src)
	case Float32:
		leconv.F32ToF32(dst, src)
	case Float64:
		// Go's conversion rounds to nearest even, like numpy's astype.
		leconv.F64ToF32(dst, src)
	}
}

func decodeFloat64(dst []float64, src []byte, dt DType) {
	switch dt {
	case Float16:
		leconv.F16ToF64(dst, src)
	case Float32:
		leconv.F32ToF64(dst, src)
	case Float64:
		leconv.F64ToF64(dst, src)
	}
}

func decodeInt64(dst []int64, src []byte, dt DType) {
	switch dt {
	case Int32:
		leconv.I32ToI64(dst, src)
	case Int64:
		leconv.I64ToI64(dst, src)
	}
}

// Float16Bits rounds f to the nearest binary16 value (ties to even, as
// numpy's astype(np.float16) does) and returns its bits. Values beyond the
// float16 range become ±Inf; NaN stays NaN.
func Float16Bits(f float32) uint16 { return leconv.Float16Bits(f) }

// Float16Finite is Float16Bits and whether its result is finite: false for
// NaN, ±Inf, and finite values beyond Float16Range, which round to ±Inf
// (as numpy's astype(np.float16) rounds them). It is the one rule by which
// every writer of float16 refuses a value.
func Float16Finite(f float32) (h uint16, ok bool) {
	h = leconv.Float16Bits(f)
	return h, h&0x7c00 != 0x7c00
}

// Float16Range names the values Float16Finite takes, for messages: those
// that round to a finite float16, whose largest is 65504 (a magnitude
// below 65520, 65504 plus half an ulp, rounds to it).
const Float16Range = "float16's range (±65504, and what rounds to it)"

// Float16Value returns the float32 value of the binary16 bits h (exact:
// every float16 is a float32). It is the conversion the readers use.
func Float16Value(h uint16) float32 { return leconv.Float16Value(h) }
