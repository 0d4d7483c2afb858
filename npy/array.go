package npy

import (
	"fmt"
	"sync"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/internal/mmapfile"
	"github.com/edsrzf/mmap-go"
)

// Array is an opened .npy file. Its data stays in the file (memory-mapped)
// or in the caller's buffer (FromBytes) and is converted only on request.
//
// All read methods are safe for concurrent use, and may run concurrently
// with Close: Close waits for reads in progress, and reads after Close
// return ErrClosed.
type Array struct {
	name   string
	hdr    Header
	data   []byte // exactly hdr.DataSize() bytes
	rows   int    // length of axis 0 (1 for a 0-d array)
	rowLen int    // elements per row: product of shape[1:]

	mu     sync.RWMutex
	mm     mmap.MMap // nil unless opened with Open
	closed bool
}

// Open memory-maps the .npy file at path and validates its header and size.
// The returned Array must be closed to release the mapping.
func Open(path string) (*Array, error) {
	m, err := mmapfile.Map(path, func(size int64) error {
		if size == 0 {
			// mmap cannot map an empty file; report it as what it is.
			return errorf(ErrNotNPY, "empty file, not a .npy file")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	a, err := newArray(path, m)
	if err != nil {
		mmapfile.Unmap(m)
		return nil, err
	}
	a.mm = m
	return a, nil
}

// OpenMatrix opens path as Open does and requires a matrix of floats: 2-D,
// float16, float32 or float64, its rows at least one value wide (no model
// maps to or from nothing). shape names the matrix in the error, as
// "[n, input_dim]"; a 1-D float array is told how a single row is saved.
func OpenMatrix(path, shape string) (*Array, error) {
	a, err := Open(path)
	if err != nil {
		return nil, err
	}
	s := a.Shape()
	switch {
	case len(s) != 2 || !a.DType().IsFloat():
		hint := ""
		if len(s) == 1 && a.DType().IsFloat() {
			hint = fmt.Sprintf(" (save a single row as [1, %d])", s[0])
		}
		err = fmt.Errorf("%s: a %v array of %s, want a 2-D float16, float32 or float64 matrix %s%s", path, s, a.DType().Name(), shape, hint)
	case s[1] < 1:
		err = fmt.Errorf("%s: a %v array: its rows hold no values, want rows at least 1 wide", path, s)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// FromBytes validates b as the complete contents of a .npy file and returns
// an Array over it without copying; b must not be modified while the Array
// is in use. name is used in error messages only.
func FromBytes(name string, b []byte) (*Array, error) {
	return newArray(name, b)
}

func newArray(name string, b []byte) (*Array, error) {
	var h Header
	var err error
	// A file being truncated by another process while we parse the header
	// would fault; turn that into an error rather than a crash.
	faultErr := mmapfault.Guard(func() { h, err = parseHeader(b) })
	if faultErr != nil {
		return nil, fmt.Errorf("npy: %s: %w", name, faultErr)
	}
	if err != nil {
		return nil, fmt.Errorf("npy: %s: %w", name, err)
	}
	want, have := h.DataSize(), len(b)-h.DataOffset
	switch {
	case have < want:
		return nil, fmt.Errorf("npy: %s: %w", name, errorf(ErrSize,
			"file is truncated: header says shape %s of %s (%d data bytes) but only %d bytes follow the header",
			shapeRepr(h.Shape), h.DType, want, have))
	case have > want:
		return nil, fmt.Errorf("npy: %s: %w", name, errorf(ErrSize,
			"file has %d trailing bytes after the %d data bytes of shape %s of %s",
			have-want, want, shapeRepr(h.Shape), h.DType))
	}
	a := &Array{name: name, hdr: h, data: b[h.DataOffset:], rows: 1, rowLen: 1}
	if len(h.Shape) > 0 {
		a.rows = h.Shape[0]
		for _, d := range h.Shape[1:] {
			a.rowLen *= d
		}
	}
	return a, nil
}

// Name is the path (or name) the Array was opened with.
func (a *Array) Name() string { return a.name }

// Header returns the parsed header (with its own copy of the shape).
func (a *Array) Header() Header {
	h := a.hdr
	h.Shape = a.Shape()
	return h
}

// Shape returns a copy of the array's shape.
func (a *Array) Shape() []int { return append([]int{}, a.hdr.Shape...) }

// DType is the element type.
func (a *Array) DType() DType { return a.hdr.DType }

// Len is the total number of elements.
func (a *Array) Len() int { return a.hdr.Len() }

// Rows is the length of the first axis. A 0-d array counts as one row of
// one element.
func (a *Array) Rows() int { return a.rows }

// RowLen is the number of elements in one row: the product of all but the
// first dimension (1 for a 1-d array).
func (a *Array) RowLen() int { return a.rowLen }

// Close releases the memory mapping. It waits for reads in progress; reads
// after Close fail with ErrClosed. Closing twice is a no-op.
func (a *Array) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.data = nil
	if a.mm != nil {
		err := mmapfile.Unmap(a.mm)
		a.mm = nil
		if err != nil {
			return fmt.Errorf("npy: %s: unmap: %w", a.name, err)
		}
	}
	return nil
}

// ReadRows converts rows [start, end) of a float array to float32 into dst,
// which must hold exactly (end-start)*RowLen() elements. float16 and
// float32 convert exactly; float64 rounds to nearest even (overflowing to
// ±Inf). Integer arrays are refused: they are indices, not features.
func (a *Array) ReadRows(dst []float32, start, end int) error {
	if !a.hdr.DType.IsFloat() {
		return a.errf(ErrDType, "cannot read %s array as float32", a.hdr.DType)
	}
	return a.withRows(start, end, len(dst), func(src []byte) { decodeFloat32(dst, src, a.hdr.DType) })
}

// ReadRows64 converts rows [start, end) of a float array to float64 into
// dst, which must hold exactly (end-start)*RowLen() elements; every float
// dtype converts exactly. Integer arrays are refused, as by ReadRows.
func (a *Array) ReadRows64(dst []float64, start, end int) error {
	if !a.hdr.DType.IsFloat() {
		return a.errf(ErrDType, "cannot read %s array as float64", a.hdr.DType)
	}
	return a.withRows(start, end, len(dst), func(src []byte) { decodeFloat64(dst, src, a.hdr.DType) })
}

// RawRows returns the little-endian bytes of rows [start, end) without
// conversion, e.g. to upload float16 features to a GPU as they are. The
// slice aliases the mapping: it must not be written to, and it is valid
// only until Close.
func (a *Array) RawRows(start, end int) ([]byte, error) {
	var out []byte
	err := a.withRows(start, end, -1, func(src []byte) { out = src })
	return out, err
}

// Float32s returns the whole array as float32 (see ReadRows for the
// conversions).
func (a *Array) Float32s() ([]float32, error) {
	if !a.hdr.DType.IsFloat() {
		return nil, a.errf(ErrDType, "cannot read %s array as float32", a.hdr.DType)
	}
	out := make([]float32, a.Len())
	return out, a.withAll(func(src []byte) { decodeFloat32(out, src, a.hdr.DType) })
}

// Float64s returns the whole array as float64; every float dtype converts
// exactly.
func (a *Array) Float64s() ([]float64, error) {
	if !a.hdr.DType.IsFloat() {
		return nil, a.errf(ErrDType, "cannot read %s array as float64", a.hdr.DType)
	}
	out := make([]float64, a.Len())
	return out, a.withAll(func(src []byte) { decodeFloat64(out, src, a.hdr.DType) })
}

// Int64s returns an integer array as int64 ('<i4' widens exactly). Float
// arrays are refused rather than truncated.
func (a *Array) Int64s() ([]int64, error) {
	if !a.hdr.DType.IsInt() {
		return nil, a.errf(ErrDType, "cannot read %s array as int64", a.hdr.DType)
	}
	out := make([]int64, a.Len())
	return out, a.withAll(func(src []byte) { decodeInt64(out, src, a.hdr.DType) })
}

// withRows checks the range and the destination length (dstLen < 0: none)
// and runs f on the bytes of the rows under the read lock.
func (a *Array) withRows(start, end, dstLen int, f func(src []byte)) error {
	if start < 0 || end < start || end > a.rows {
		return a.errf(ErrRange, "rows [%d, %d) out of range for %d rows", start, end, a.rows)
	}
	n := (end - start) * a.rowLen
	if dstLen >= 0 && dstLen != n {
		return a.errf(ErrRange, "destination holds %d elements, rows [%d, %d) of %d need %d",
			dstLen, start, end, a.rowLen, n)
	}
	sz := a.hdr.DType.Size()
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return a.errf(ErrClosed, "array is closed")
	}
	src := a.data[start*a.rowLen*sz : end*a.rowLen*sz]
	if err := mmapfault.Guard(func() { f(src) }); err != nil {
		return fmt.Errorf("npy: %s: %w", a.name, err)
	}
	return nil
}

func (a *Array) withAll(f func(src []byte)) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return a.errf(ErrClosed, "array is closed")
	}
	if err := mmapfault.Guard(func() { f(a.data) }); err != nil {
		return fmt.Errorf("npy: %s: %w", a.name, err)
	}
	return nil
}

func (a *Array) errf(kind error, format string, args ...any) error {
	return fmt.Errorf("npy: %s: %w", a.name, errorf(kind, format, args...))
}

// ReadFloat32 reads a whole (small) float array as float32, with its shape.
func ReadFloat32(path string) ([]float32, []int, error) {
	a, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	v, err := a.Float32s()
	return v, a.Shape(), err
}

// ReadFloat64 reads a whole float array as float64, with its shape.
func ReadFloat64(path string) ([]float64, []int, error) {
	a, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	v, err := a.Float64s()
	return v, a.Shape(), err
}

// ReadInt64 reads a whole integer array as int64, with its shape.
func ReadInt64(path string) ([]int64, []int, error) {
	a, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	v, err := a.Int64s()
	return v, a.Shape(), err
}
