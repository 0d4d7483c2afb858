package leconv

import (
	"math"
	"sync"

	"github.com/x448/float16"
)

// half2float is the exact float16 -> float32 conversion. em<<13 places the
// float16 exponent and mantissa in the float32 fields; read as a float32
// that is the value scaled by 2^-112 (the difference of the exponent
// biases, 127-15), for normal and subnormal halves alike, so one exact
// multiplication by 2^112 finishes the job. Only Inf and NaN (exponent all
// ones) need the exponent set separately; a NaN keeps its payload, as in
// numpy's npy_half_to_float.
func half2float(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	bits := math.Float32bits(math.Float32frombits(em<<13) * 0x1p112)
	if em >= 0x7c00 {
		bits = 0x7f800000 | (em&0x3ff)<<13
	}
	return math.Float32frombits(bits | sign)
}

// halfTable maps every float16 bit pattern to its float32 value. Training
// shards are float16, and a lookup in this 256 KiB table converts them
// about three times as fast as computing each value; it is built on first
// use so programs that never read float16 do not pay for it.
var halfTable = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = half2float(uint16(i))
	}
	return &t
})

// Float16Bits rounds f to the nearest binary16 value (ties to even, as
// numpy's astype(np.float16) does) and returns its bits. Values beyond the
// float16 range (±65504) become ±Inf; NaN stays NaN.
func Float16Bits(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// Float16Value returns the float32 value of the binary16 bits h (exact:
// every float16 is a float32). It is the conversion the decoders use.
func Float16Value(h uint16) float32 { return halfTable()[h] }

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
