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

// writeArray validates shape against the elements of data and writes
// header + data atomically. put encodes a chunk of data as dt into the
// start of dst.
func writeArray[T any](path string, dt DType, shape []int, data []T, put func(dst []byte, src []T)) error {
	n := len(data)
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
			put(buf, data[i:i+m])
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
