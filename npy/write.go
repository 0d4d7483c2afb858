package npy

import (
	"fmt"
	"io"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/leconv"
)

// WriteFloat32 writes data with the given shape as a '<f4' .npy file.
func WriteFloat32(path string, shape []int, data []float32) error {
	return writeArray(path, Float32, shape, data, leconv.PutF32)
}

// WriteFloat16 rounds data to float16 (nearest, ties to even; beyond
// ±65504 rounds to ±Inf as numpy does) and writes a '<f2' .npy file.
func WriteFloat16(path string, shape []int, data []float32) error {
	return writeArray(path, Float16, shape, data, leconv.PutF16)
}

// WriteFloat64 writes data with the given shape as a '<f8' .npy file.
func WriteFloat64(path string, shape []int, data []float64) error {
	return writeArray(path, Float64, shape, data, leconv.PutF64)
}

// WriteInt64 writes data with the given shape as a '<i8' .npy file.
func WriteInt64(path string, shape []int, data []int64) error {
	return writeArray(path, Int64, shape, data, leconv.PutI64)
}

// chunkElems bounds the conversion buffer: large enough to amortise the
// write calls, small enough not to matter next to the data itself.
const chunkElems = 1 << 16

// WriteFloatsFunc writes a float16 or float32 (dt) .npy file of the given
// shape whose values fill gives, in row-major order, a chunk at a time:
// each call fills v with the next len(v) values. For arrays too large to
// hold whole (float16 rounds as WriteFloat16 does).
func WriteFloatsFunc(path string, dt DType, shape []int, fill func(v []float32)) error {
	put := leconv.PutF32
	switch dt {
	case Float16:
		put = leconv.PutF16
	case Float32:
	default:
		return fmt.Errorf("npy: write %s: WriteFloatsFunc writes float16 or float32, not %s", path, dt.Name())
	}
	v := make([]float32, chunkElems)
	return writeChunks(path, dt, shape, func(dst []byte, n int) {
		fill(v[:n])
		put(dst, v[:n])
	})
}

// writeArray validates shape against the elements of data and writes
// header + data atomically. put encodes a chunk of data as dt into the
// start of dst.
func writeArray[T any](path string, dt DType, shape []int, data []T, put func(dst []byte, src []T)) error {
	if _, err := EncodeHeader(dt, shape); err != nil { // (the shape's own error first)
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	if want, _ := elementCount(shape, dt.Size()); want != len(data) {
		return fmt.Errorf("npy: write %s: %w", path, errorf(ErrShape,
			"shape %s holds %d elements but %d were given", shapeRepr(shape), want, len(data)))
	}
	next := 0
	return writeChunks(path, dt, shape, func(dst []byte, n int) {
		put(dst, data[next:next+n])
		next += n
	})
}

// writeChunks writes a .npy file of dt and shape atomically: the header,
// then the elements a chunk of at most chunkElems at a time, each encoded
// by emit into the start of dst (n elements, in row-major order).
func writeChunks(path string, dt DType, shape []int, emit func(dst []byte, n int)) error {
	hdr, err := EncodeHeader(dt, shape)
	if err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	n, _ := elementCount(shape, dt.Size()) // (EncodeHeader checked it)
	// atomicfile writes a temporary file in the same directory, fsyncs it
	// and renames it over path, so a crash never leaves a partial file.
	err = atomicfile.Write(path, func(w io.Writer) error {
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		buf := make([]byte, min(n, chunkElems)*dt.Size())
		for i := 0; i < n; i += chunkElems {
			m := min(n-i, chunkElems)
			emit(buf, m)
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
