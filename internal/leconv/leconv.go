package leconv

import (
	"encoding/binary"
	"io"
	"math"
	"unsafe"
)

// hostLittleEndian selects the copy fast path: on little-endian hosts the
// file's bytes are already the in-memory representation. It is a variable
// so that tests can exercise the portable paths.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// bytesOf views s as its bytes in memory.
func bytesOf[T float32 | float64 | int64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// copyLE copies little-endian elements straight into dst when the host is
// little-endian (a memmove, several times faster than decoding element by
// element), and reports whether it did. It views dst as bytes rather than
// src as T, so src's alignment does not matter.
func copyLE[T float32 | float64 | int64](dst []T, src []byte) bool {
	if !hostLittleEndian {
		return false
	}
	b := bytesOf(dst)
	copy(b, src[:len(b)])
	return true
}

// putLE is copyLE's converse: it copies src's bytes to dst on
// little-endian hosts and reports whether it did.
func putLE[T float32 | float64 | int64](dst []byte, src []T) bool {
	if !hostLittleEndian {
		return false
	}
	b := bytesOf(src)
	copy(dst[:len(b)], b)
	return true
}

// The portable paths use encoding/binary rather than unsafe casts, so they
// are correct on any host and at any alignment, and compile to plain loads
// and stores.

// F16ToF32 decodes float16 (binary16) elements, exactly, through a table of
// all 65536 values.
func F16ToF32(dst []float32, src []byte) {
	t := halfTable()
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// F16ToF64 decodes float16 elements exactly.
func F16ToF64(dst []float64, src []byte) {
	t := halfTable()
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = float64(t[binary.LittleEndian.Uint16(src[2*i:])])
	}
}

// BF16ToF32 decodes bfloat16 elements exactly.
func BF16ToF32(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = BFloat16Value(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// BF16ToF64 decodes bfloat16 elements exactly.
func BF16ToF64(dst []float64, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = float64(BFloat16Value(binary.LittleEndian.Uint16(src[2*i:])))
	}
}

// F32ToF32 decodes float32 elements.
func F32ToF32(dst []float32, src []byte) {
	if copyLE(dst, src) {
		return
	}
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// F32ToF64 decodes float32 elements exactly.
func F32ToF64(dst []float64, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
	}
}

// F64ToF32 decodes float64 elements, rounding to nearest even (Go's
// conversion, like numpy's astype), overflowing to ±Inf.
func F64ToF32(dst []float32, src []byte) {
	src = src[:8*len(dst)]
	for i := range dst {
		dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
	}
}

// F64ToF64 decodes float64 elements.
func F64ToF64(dst []float64, src []byte) {
	if copyLE(dst, src) {
		return
	}
	src = src[:8*len(dst)]
	for i := range dst {
		dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))
	}
}

// I8ToI64 decodes int8 elements.
func I8ToI64(dst []int64, src []byte) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = int64(int8(src[i]))
	}
}

// U8ToI64 decodes uint8 elements.
func U8ToI64(dst []int64, src []byte) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = int64(src[i])
	}
}

// I16ToI64 decodes int16 elements.
func I16ToI64(dst []int64, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = int64(int16(binary.LittleEndian.Uint16(src[2*i:])))
	}
}

// U16ToI64 decodes uint16 elements.
func U16ToI64(dst []int64, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = int64(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// I32ToI64 decodes int32 elements.
func I32ToI64(dst []int64, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = int64(int32(binary.LittleEndian.Uint32(src[4*i:])))
	}
}

// U32ToI64 decodes uint32 elements.
func U32ToI64(dst []int64, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = int64(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// I64ToI64 decodes int64 elements.
func I64ToI64(dst []int64, src []byte) {
	if copyLE(dst, src) {
		return
	}
	src = src[:8*len(dst)]
	for i := range dst {
		dst[i] = int64(binary.LittleEndian.Uint64(src[8*i:]))
	}
}

// PutF16 encodes src as float16, rounding as Float16Bits does.
func PutF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], Float16Bits(v))
	}
}

// PutBF16 encodes src as bfloat16, rounding as BFloat16Bits does.
func PutBF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], BFloat16Bits(v))
	}
}

// PutF32 encodes src as float32.
func PutF32(dst []byte, src []float32) {
	if putLE(dst, src) {
		return
	}
	dst = dst[:4*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// WriteF32 writes src to w as little-endian float32, a block at a time
// (a hash of a model's parameters: no copy of them all).
func WriteF32(w io.Writer, src []float32) error {
	const block = 4096
	buf := make([]byte, 4*min(block, len(src)))
	for lo := 0; lo < len(src); lo += block {
		p := src[lo:min(lo+block, len(src))]
		PutF32(buf[:4*len(p)], p)
		if _, err := w.Write(buf[:4*len(p)]); err != nil {
			return err
		}
	}
	return nil
}

// PutF64 encodes src as float64.
func PutF64(dst []byte, src []float64) {
	if putLE(dst, src) {
		return
	}
	dst = dst[:8*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(v))
	}
}

// PutI64 encodes src as int64.
func PutI64(dst []byte, src []int64) {
	if putLE(dst, src) {
		return
	}
	dst = dst[:8*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint64(dst[8*i:], uint64(v))
	}
}
