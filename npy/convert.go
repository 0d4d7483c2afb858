package npy

import (
	"encoding/binary"
	"math"
	"sync"
	"unsafe"

	"github.com/x448/float16"
)

// hostLittleEndian selects the copy fast path: on little-endian hosts the
// file's bytes are already the in-memory representation.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// copyLE copies little-endian elements straight into dst when the host is
// little-endian (a memmove, several times faster than decoding element by
// element), and reports whether it did. It views dst as bytes rather than
// src as T, so src's alignment does not matter.
func copyLE[T float32 | float64 | int64](dst []T, src []byte) bool {
	if !hostLittleEndian || len(dst) == 0 {
		return false
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(src)), src)
	return true
}

// half2float is the exact float16 -> float32 conversion. em<<13 places the
// float16 exponent and mantissa in the float32 fields; read as a float32
// that is the value scaled by 2^-112 (the difference of the exponent
// biases, 127-15), for normal and subnormal halves alike, so one exact
// multiplication by 2^112 finishes the job. Only Inf and NaN (exponent all
// ones) need the exponent set separately.
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

// The decoders assume len(src) == len(dst)*dt.Size(); callers guarantee it.
// The slow paths use encoding/binary rather than unsafe casts so that they
// are correct on any host and at any alignment (a header of unusual length
// leaves the data unaligned).

func decodeFloat32(dst []float32, src []byte, dt DType) {
	switch dt {
	case Float16:
		t := halfTable()
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
		}
	case Float32:
		if copyLE(dst, src) {
			return
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case Float64:
		for i := range dst {
			// Go's conversion rounds to nearest even, like numpy's astype.
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	}
}

func decodeFloat64(dst []float64, src []byte, dt DType) {
	switch dt {
	case Float16:
		t := halfTable()
		for i := range dst {
			dst[i] = float64(t[binary.LittleEndian.Uint16(src[2*i:])])
		}
	case Float32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case Float64:
		if copyLE(dst, src) {
			return
		}
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))
		}
	}
}

func decodeInt64(dst []int64, src []byte, dt DType) {
	switch dt {
	case Int32:
		for i := range dst {
			dst[i] = int64(int32(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case Int64:
		if copyLE(dst, src) {
			return
		}
		for i := range dst {
			dst[i] = int64(binary.LittleEndian.Uint64(src[8*i:]))
		}
	}
}

// Float16Bits rounds f to the nearest binary16 value (ties to even, as
// numpy's astype(np.float16) does) and returns its bits. Values beyond the
// float16 range become ±Inf; NaN stays NaN.
func Float16Bits(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// Float16Value returns the float32 value of the binary16 bits h (exact:
// every float16 is a float32). It is the conversion the readers use.
func Float16Value(h uint16) float32 { return halfTable()[h] }
