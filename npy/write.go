package npy

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

// WriteFloat32 writes data with the given shape as a '<f4' .npy file.
func WriteFloat32(path string, shape []int, data []float32) error {
	return writeArray(path, Float32, shape, len(data), func(dst []byte, i int) {
		for k := 0; k*4 < len(dst); k++ {
			binary.LittleEndian.PutUint32(dst[4*k:], math.Float32bits(data[i+k]))
		}
	})
}

// WriteFloat16 rounds data to float16 (nearest, ties to even; beyond
// ±65504 rounds to ±Inf as numpy does) and writes a '<f2' .npy file.
func WriteFloat16(path string, shape []int, data []float32) error {
	return writeArray(path, Float16, shape, len(data), func(dst []byte, i int) {
		for k := 0; k*2 < len(dst); k++ {
			binary.LittleEndian.PutUint16(dst[2*k:], Float16Bits(data[i+k]))
		}
	})
}

// WriteFloat64 writes data with the given shape as a '<f8' .npy file.
func WriteFloat64(path string, shape []int, data []float64) error {
	return writeArray(path, Float64, shape, len(data), func(dst []byte, i int) {
		for k := 0; k*8 < len(dst); k++ {
			binary.LittleEndian.PutUint64(dst[8*k:], math.Float64bits(data[i+k]))
		}
	})
}

// WriteInt64 writes data with the given shape as a '<i8' .npy file.
func WriteInt64(path string, shape []int, data []int64) error {
	return writeArray(path, Int64, shape, len(data), func(dst []byte, i int) {
		for k := 0; k*8 < len(dst); k++ {
			binary.LittleEndian.PutUint64(dst[8*k:], uint64(data[i+k]))
		}
	})
}

// chunkElems bounds the conversion buffer: large enough to amortise the
// write calls, small enough not to matter next to the data itself.
const chunkElems = 1 << 16

// writeArray validates shape against n elements and writes header + data
// atomically. enc fills dst (a whole number of elements) with the encoding
// of elements i, i+1, ....
func writeArray(path string, dt DType, shape []int, n int, enc func(dst []byte, i int)) error {
	hdr, err := EncodeHeader(dt, shape)
	if err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	if want, _ := elementCount(shape, dt.Size()); want != n {
		return fmt.Errorf("npy: write %s: %w", path, errorf(ErrShape,
			"shape %s holds %d elements but %d were given", shapeRepr(shape), want, n))
	}
	// atomicfile writes a temporary file in the same directory, fsyncs it
	// and renames it over path, so a crash never leaves a partial file.
	err = atomicfile.Write(path, func(w io.Writer) error {
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		buf := make([]byte, min(n, chunkElems)*dt.Size())
		for i := 0; i < n; i += chunkElems {
			m := min(n-i, chunkElems)
			enc(buf[:m*dt.Size()], i)
			if _, err := w.Write(buf[:m*dt.Size()]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	return nil
}
