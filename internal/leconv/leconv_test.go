package leconv

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// bothPaths runs f with the copy fast path (where the host allows it) and
// with the portable element-by-element path.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	host := hostLittleEndian
	defer func() { hostLittleEndian = host }()
	for _, le := range []bool{host, false} {
		hostLittleEndian = le
		name := "portable"
		if le {
			name = "copy"
		}
		t.Run(name, f)
	}
}

// unaligned returns n zero bytes starting at an odd address, as data
// after a header of odd length would be.
func unaligned(n int) []byte { return make([]byte, n+1)[1:] }

// TestHalfTableMatchesX448 checks the table against an independent
// conversion: bit for bit, except that x448 quiets signalling NaNs while
// the table keeps every NaN's bits (as numpy's npy_half_to_float does).
func TestHalfTableMatchesX448(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := math.Float32bits(Float16Value(h))
		want := math.Float32bits(float16.Frombits(h).Float32())
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			got |= 0x00400000 // the quiet bit
		}
		if got != want {
			t.Fatalf("%#04x: got %#08x, x448 %#08x", h, got, want)
		}
	}
}

func TestDecodeFloats(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 1000
	h16 := make([]uint16, n) // float16 and bfloat16 bit patterns
	f32 := make([]float32, n)
	f64 := make([]float64, n)
	for i := range n {
		h16[i] = uint16(r.Uint32())
		f32[i] = math.Float32frombits(r.Uint32())
		f64[i] = math.Float64frombits(r.Uint64())
	}
	f32[0], f64[0] = float32(math.Copysign(0, -1)), math.Inf(-1)
	src16, src32, src64 := unaligned(2*n), unaligned(4*n), unaligned(8*n)
	for i := range n {
		binary.LittleEndian.PutUint16(src16[2*i:], h16[i])
		binary.LittleEndian.PutUint32(src32[4*i:], math.Float32bits(f32[i]))
		binary.LittleEndian.PutUint64(src64[8*i:], math.Float64bits(f64[i]))
	}
	type dec32 struct {
		name string
		f    func([]float32, []byte)
		src  []byte
		want func(i int) float32
	}
	type dec64 struct {
		name string
		f    func([]float64, []byte)
		src  []byte
		want func(i int) float64
	}
	bothPaths(t, func(t *testing.T) {
		for _, c := range []dec32{
			{"F16ToF32", F16ToF32, src16, func(i int) float32 { return half2float(h16[i]) }},
			{"BF16ToF32", BF16ToF32, src16, func(i int) float32 { return math.Float32frombits(uint32(h16[i]) << 16) }},
			{"F32ToF32", F32ToF32, src32, func(i int) float32 { return f32[i] }},
			{"F64ToF32", F64ToF32, src64, func(i int) float32 { return float32(f64[i]) }},
		} {
			dst := make([]float32, n)
			c.f(dst, c.src)
			for i, v := range dst {
				if w := c.want(i); math.Float32bits(v) != math.Float32bits(w) {
					t.Fatalf("%s: element %d = %#08x, want %#08x", c.name, i, math.Float32bits(v), math.Float32bits(w))
				}
			}
			c.f(nil, nil) // nothing to do, nothing to read
		}
		for _, c := range []dec64{
			{"F16ToF64", F16ToF64, src16, func(i int) float64 { return float64(half2float(h16[i])) }},
			{"BF16ToF64", BF16ToF64, src16, func(i int) float64 { return float64(math.Float32frombits(uint32(h16[i]) << 16)) }},
			{"F32ToF64", F32ToF64, src32, func(i int) float64 { return float64(f32[i]) }},
			{"F64ToF64", F64ToF64, src64, func(i int) float64 { return f64[i] }},
		} {
			dst := make([]float64, n)
			c.f(dst, c.src)
			for i, v := range dst {
				if w := c.want(i); math.Float64bits(v) != math.Float64bits(w) {
					t.Fatalf("%s: element %d = %#016x, want %#016x", c.name, i, math.Float64bits(v), math.Float64bits(w))
				}
			}
			c.f(nil, nil)
		}
	})
}

func TestDecodeInts(t *testing.T) {
	src := unaligned(8 * 6)
	for i := range src {
		src[i] = byte(0x80 + 37*i)
	}
	le := binary.LittleEndian
	cases := []struct {
		name string
		f    func([]int64, []byte)
		size int
		want func(b []byte) int64
	}{
		{"I8ToI64", I8ToI64, 1, func(b []byte) int64 { return int64(int8(b[0])) }},
		{"U8ToI64", U8ToI64, 1, func(b []byte) int64 { return int64(b[0]) }},
		{"I16ToI64", I16ToI64, 2, func(b []byte) int64 { return int64(int16(le.Uint16(b))) }},
		{"U16ToI64", U16ToI64, 2, func(b []byte) int64 { return int64(le.Uint16(b)) }},
		{"I32ToI64", I32ToI64, 4, func(b []byte) int64 { return int64(int32(le.Uint32(b))) }},
		{"U32ToI64", U32ToI64, 4, func(b []byte) int64 { return int64(le.Uint32(b)) }},
		{"I64ToI64", I64ToI64, 8, func(b []byte) int64 { return int64(le.Uint64(b)) }},
	}
	bothPaths(t, func(t *testing.T) {
		for _, c := range cases {
			dst := make([]int64, len(src)/c.size)
			c.f(dst, src)
			for i, v := range dst {
				if w := c.want(src[c.size*i:]); v != w {
					t.Fatalf("%s: element %d = %d, want %d", c.name, i, v, w)
				}
			}
			c.f(nil, nil)
		}
	})
	// Sign extension at the extremes.
	d := make([]int64, 2)
	I32ToI64(d, []byte{0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0x7f})
	if d[0] != math.MinInt32 || d[1] != math.MaxInt32 {
		t.Errorf("I32ToI64 extremes: %v", d)
	}
	U32ToI64(d[:1], []byte{0xff, 0xff, 0xff, 0xff})
	if d[0] != math.MaxUint32 {
		t.Errorf("U32ToI64 max: %v", d)
	}
}

func TestEncode(t *testing.T) {
	v32 := []float32{1, -2.5, 65504, 65520, 1e-8, float32(math.Inf(-1)), float32(math.NaN()), 1.0 / 3}
	v64 := []float64{math.Pi, math.Copysign(0, -1), 1e300, math.SmallestNonzeroFloat64}
	i64 := []int64{0, -1, math.MinInt64, math.MaxInt64, 1 << 40}
	le := binary.LittleEndian
	bothPaths(t, func(t *testing.T) {
		b := unaligned(2 * len(v32))
		PutF16(b, v32)
		for i, v := range v32 {
			if got := le.Uint16(b[2*i:]); got != Float16Bits(v) {
				t.Errorf("PutF16[%d] = %#04x, want %#04x", i, got, Float16Bits(v))
			}
		}
		PutBF16(b, v32)
		for i, v := range v32 {
			if got := le.Uint16(b[2*i:]); got != BFloat16Bits(v) {
				t.Errorf("PutBF16[%d] = %#04x, want %#04x", i, got, BFloat16Bits(v))
			}
		}
		b = unaligned(4*len(v32) + 3) // longer than needed: the rest is left alone
		b[len(b)-1] = 0xaa
		PutF32(b, v32)
		for i, v := range v32 {
			if got := le.Uint32(b[4*i:]); got != math.Float32bits(v) {
				t.Errorf("PutF32[%d] = %#08x, want %#08x", i, got, math.Float32bits(v))
			}
		}
		if b[len(b)-1] != 0xaa {
			t.Error("PutF32 wrote past the encoded elements")
		}
		b = unaligned(8 * len(v64))
		PutF64(b, v64)
		for i, v := range v64 {
			if got := le.Uint64(b[8*i:]); got != math.Float64bits(v) {
				t.Errorf("PutF64[%d] = %#016x, want %#016x", i, got, math.Float64bits(v))
			}
		}
		b = unaligned(8 * len(i64))
		PutI64(b, i64)
		for i, v := range i64 {
			if got := int64(le.Uint64(b[8*i:])); got != v {
				t.Errorf("PutI64[%d] = %d, want %d", i, got, v)
			}
		}
		PutF32(nil, nil)
		PutI64(nil, nil)
	})
}

// TestShortBuffersPanic: a source or destination too short for the
// elements is a caller's bug, caught rather than half-converted.
func TestShortBuffersPanic(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		for name, f := range map[string]func(){
			"F32ToF32": func() { F32ToF32(make([]float32, 2), make([]byte, 7)) },
			"F16ToF32": func() { F16ToF32(make([]float32, 2), make([]byte, 3)) },
			"I64ToI64": func() { I64ToI64(make([]int64, 1), make([]byte, 7)) },
			"PutF64":   func() { PutF64(make([]byte, 15), make([]float64, 2)) },
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s with a short buffer did not panic", name)
					}
				}()
				f()
			}()
		}
	})
}

// WriteF32 writes what PutF32 encodes, across its blocks.
func TestWriteF32(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 10000} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(i) * -1.5
		}
		want := make([]byte, 4*n)
		PutF32(want, src)
		var got bytes.Buffer
		if err := WriteF32(&got, src); err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("WriteF32 of %d values: %d bytes (%v), not PutF32's %d", n, got.Len(), err, len(want))
		}
	}
}
