package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/leconv"
)

// Tensor is one tensor to write: its little-endian bytes in C order.
// NewFloat32 and NewFloat64 build one from a Go slice; dinoclip writes no
// other dtype (the tests of the reader make the others).
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// NewFloat32 makes an F32 tensor from data (copied).
func NewFloat32(name string, shape []int, data []float32) Tensor {
	return newTensor(name, F32, shape, data, leconv.PutF32)
}

// NewFloat64 makes an F64 tensor from data (copied): the full-precision
// state of a float64 training run.
func NewFloat64(name string, shape []int, data []float64) Tensor {
	return newTensor(name, F64, shape, data, leconv.PutF64)
}

// newTensor encodes data as dt with put into a new buffer.
func newTensor[T any](name string, dt DType, shape []int, data []T, put func(dst []byte, src []T)) Tensor {
	b := make([]byte, dt.Size()*len(data))
	put(b, data)
	return Tensor{Name: name, DType: dt, Shape: shape, Data: b}
}

// EncodeHeader returns the 8-byte length and the JSON header (padded with
// spaces to a multiple of 8 bytes) for tensors laid out in the given order,
// after validating them. Metadata is written first, with sorted keys, and
// omitted when empty.
func EncodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var js bytes.Buffer
	js.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
				return nil, errorf(ErrHeader, "metadata %q is not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeJSONString(&js, metadataKey)
		js.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				js.WriteByte(',')
			}
			writeJSONString(&js, k)
			js.WriteByte(':')
			writeJSONString(&js, metadata[k])
		}
		js.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	off := 0
	for i, t := range tensors {
		if err := checkTensor(t, seen); err != nil {
			return nil, err
		}
		if js.Len() > 1 {
			js.WriteByte(',')
		}
		writeJSONString(&js, t.Name)
		js.WriteString(`:{"dtype":`)
		writeJSONString(&js, string(t.DType))
		js.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				js.WriteByte(',')
			}
			js.WriteString(strconv.Itoa(d))
		}
		if off > math.MaxInt-len(t.Data) {
			return nil, errorf(ErrOffsets, "tensor %d (%q): total data size overflows", i, t.Name)
		}
		fmt.Fprintf(&js, `],"data_offsets":[%d,%d]}`, off, off+len(t.Data))
		off += len(t.Data)
	}
	js.WriteByte('}')
	for js.Len()%8 != 0 {
		js.WriteByte(' ')
	}
	if js.Len() > MaxHeaderSize {
		return nil, errorf(ErrSize, "header of %d bytes exceeds the %d-byte limit", js.Len(), MaxHeaderSize)
	}
	out := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+js.Len()), uint64(js.Len()))
	return append(out, js.Bytes()...), nil
}

func checkTensor(t Tensor, seen map[string]bool) error {
	switch {
	case t.Name == metadataKey:
		return errorf(ErrHeader, "tensor name %q is reserved for metadata", t.Name)
	case !utf8.ValidString(t.Name):
		return errorf(ErrHeader, "tensor name %q is not valid UTF-8", t.Name)
	case seen[t.Name]:
		return errorf(ErrHeader, "duplicate tensor name %q", t.Name)
	case !t.DType.Valid():
		return errorf(ErrDType, "tensor %q has unknown dtype %q", t.Name, t.DType)
	}
	seen[t.Name] = true
	n, err := byteSize(t.DType, t.Shape)
	if err != nil {
		return errorf(ErrShape, "tensor %q: %v", t.Name, err)
	}
	if n != len(t.Data) {
		return errorf(ErrShape, "tensor %q: shape %v of %s needs %d bytes but %d were given", t.Name, t.Shape, t.DType, n, len(t.Data))
	}
	return nil
}

// writeJSONString writes s as a JSON string. encoding/json is used for the
// escaping, but without its HTML escaping of <, > and &, which is legal
// JSON yet needlessly differs from what other writers produce.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode appends '\n'
}

// Marshal returns the complete file contents (see Write).
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	if err := encode(&b, tensors, metadata); err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return b.Bytes(), nil
}

func encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr, err := EncodeHeader(tensors, metadata)
	if err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// Write writes tensors, in the given order, and metadata to path. The format
// allows no padding between tensors, so a tensor is aligned to its element
// size only if the ones before it leave it so: the buffer starts 8-byte
// aligned, and an all-F32 checkpoint is always aligned; when mixing dtypes,
// putting wider ones first (as the Python package does) keeps every tensor
// aligned for readers that map the file directly.
//
// Write writes a temporary file in the same directory, fsyncs it and renames
// it over path, so path holds either its old contents or the complete new
// file, never a partial one — even if the process or machine dies midway.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	// Validate before creating anything.
	if _, err := EncodeHeader(tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := atomicfile.Write(path, func(w io.Writer) error { return encode(w, tensors, metadata) }); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
