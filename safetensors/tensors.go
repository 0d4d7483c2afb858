package safetensors

// Access to an opened file's tensors: their descriptions, the metadata,
// raw bytes, and conversions to float32, float64 and int64.

import (
	"fmt"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are the tensor's byte range in the data buffer (the
	// header's data_offsets, relative to the end of the header).
	Begin, End int
}

// Len is the number of elements (1 for a scalar, shape []).
func (t TensorInfo) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Names lists the tensor names in file order (by data offset).
func (f *File) Names() []string {
	out := make([]string, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t.Name
	}
	return out
}

// Tensors describes all tensors in file order.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t
		out[i].Shape = append([]int{}, t.Shape...)
	}
	return out
}

// Info describes the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.tensors[i]
	t.Shape = append([]int{}, t.Shape...)
	return t, true
}

// Metadata returns a copy of the __metadata__ map (nil if the file has none),
// as the file has it: with SHA256Key when the file records one, which a
// caller writing other tensors under this metadata must drop or recompute
// (WithSHA256); checkpoint's Model.Meta leaves it out.
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Raw returns the named tensor's little-endian bytes without conversion.
// The slice aliases the file's mapping (or the buffer given to Read): it
// must not be written to and is valid only until Close.
func (f *File) Raw(name string) ([]byte, TensorInfo, error) {
	var out []byte
	t, err := f.with(name, func(t TensorInfo, src []byte) error { out = src; return nil })
	return out, t, err
}

// Float32 returns a copy of the named tensor as float32 and its shape. F32,
// F16 and BF16 convert exactly; F64 rounds to nearest even (overflowing to
// ±Inf). Other dtypes are refused.
func (f *File) Float32(name string) ([]float32, []int, error) {
	var out []float32
	t, err := f.with(name, func(t TensorInfo, src []byte) error {
		if !isFloat(t.DType) {
			return errorf(ErrDType, "tensor %q is %s, not convertible to float32", name, t.DType)
		}
		out = make([]float32, t.Len())
		decodeFloat32(out, src, t.DType)
		return nil
	})
	return out, t.Shape, err
}

// Float32Into converts the named tensor into dst, which must hold exactly
// its number of elements — for loading a checkpoint into buffers that
// already exist. Conversions are those of Float32.
func (f *File) Float32Into(name string, dst []float32) error {
	_, err := f.with(name, func(t TensorInfo, src []byte) error {
		if !isFloat(t.DType) {
			return errorf(ErrDType, "tensor %q is %s, not convertible to float32", name, t.DType)
		}
		if len(dst) != t.Len() {
			return errorf(ErrShape, "tensor %q has shape %v (%d elements) but the destination holds %d",
				name, t.Shape, t.Len(), len(dst))
		}
		decodeFloat32(dst, src, t.DType)
		return nil
	})
	return err
}

// Float64 returns a copy of the named tensor as float64 and its shape; every
// float dtype (F16, BF16, F32, F64) converts exactly.
func (f *File) Float64(name string) ([]float64, []int, error) {
	var out []float64
	t, err := f.with(name, func(t TensorInfo, src []byte) error {
		if !isFloat(t.DType) {
			return errorf(ErrDType, "tensor %q is %s, not convertible to float64", name, t.DType)
		}
		out = make([]float64, t.Len())
		decodeFloat64(out, src, t.DType)
		return nil
	})
	return out, t.Shape, err
}

// Int64 returns a copy of the named tensor as int64 and its shape. I64,
// I32, I16, I8, U32, U16 and U8 convert exactly; U64 (which may not fit)
// and float dtypes are refused.
func (f *File) Int64(name string) ([]int64, []int, error) {
	var out []int64
	t, err := f.with(name, func(t TensorInfo, src []byte) error {
		if !isInt(t.DType) {
			return errorf(ErrDType, "tensor %q is %s, not convertible to int64", name, t.DType)
		}
		out = make([]int64, t.Len())
		decodeInt64(out, src, t.DType)
		return nil
	})
	return out, t.Shape, err
}

// with looks the tensor up and runs fn on its bytes under the read lock,
// once the data buffer has matched its recorded SHA-256 (if any).
func (f *File) with(name string, fn func(TensorInfo, []byte) error) (TensorInfo, error) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("safetensors: %s: %w", f.name, errorf(ErrNotFound, "no tensor named %q", name))
	}
	t := f.tensors[i]
	t.Shape = append([]int{}, t.Shape...)
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return t, fmt.Errorf("safetensors: %s: %w", f.name, ErrClosed)
	}
	if err := f.verify(); err != nil {
		return t, fmt.Errorf("safetensors: %s: %w", f.name, err)
	}
	var err error
	if ferr := mmapfault.Guard(func() { err = fn(t, f.buf[t.Begin:t.End]) }); ferr != nil {
		err = ferr
	}
	if err != nil {
		return t, fmt.Errorf("safetensors: %s: %w", f.name, err)
	}
	return t, nil
}
