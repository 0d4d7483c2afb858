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
	"sync"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/internal/mmapfile"
	"github.com/edsrzf/mmap-go"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation
// does (100 MB), so a corrupt length cannot make us parse or allocate
// gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the string metadata.
const metadataKey = "__metadata__"

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

// File is an opened safetensors file. Its tensors stay in the file
// (memory-mapped) or in the caller's buffer (Read) until asked for.
//
// All methods are safe for concurrent use, including Close, which waits
// for reads in progress; reads after Close return ErrClosed.
type File struct {
	name      string
	tensors   []TensorInfo // in buffer order
	index     map[string]int
	metadata  map[string]string
	headerLen int    // N, the JSON header's length in bytes
	buf       []byte // the data buffer

	mu     sync.RWMutex
	mm     mmap.MMap // nil unless opened with Open
	closed bool
}

// Open memory-maps and validates the safetensors file at path. The File
// must be closed to release the mapping.
func Open(path string) (*File, error) {
	m, err := mmapfile.Map(path, func(size int64) error {
		if size < 8 {
			// Also covers the empty file, which mmap cannot map.
			return errorf(ErrSize, "file is %d bytes, too short for the 8-byte header length", size)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	sf, err := parse(path, m)
	if err != nil {
		m.Unmap()
		return nil, err
	}
	sf.mm = m
	return sf, nil
}

// Read validates b as the complete contents of a safetensors file and
// returns a File over it without copying; b must not be modified while
// the File is in use.
func Read(b []byte) (*File, error) { return parse("<memory>", b) }

func parse(name string, b []byte) (*File, error) {
	var f *File
	var err error
	// The file being truncated by another process while we read it would
	// fault; make that an error rather than a crash.
	if ferr := mmapfault.Guard(func() { f, err = parseBytes(name, b) }); ferr != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", name, ferr)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", name, err)
	}
	return f, nil
}

func parseBytes(name string, b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, errorf(ErrSize, "file is %d bytes, too short for the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeaderSize {
		return nil, errorf(ErrSize, "header length %d exceeds the %d-byte limit (not a safetensors file?)", n, MaxHeaderSize)
	}
	if n > uint64(len(b)-8) {
		return nil, errorf(ErrSize, "header length %d exceeds the %d bytes that follow it (file truncated?)", n, len(b)-8)
	}
	hdr := b[8 : 8+n]
	buf := b[8+n:]
	tensors, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(tensors, len(buf)); err != nil {
		return nil, err
	}
	f := &File{name: name, tensors: tensors, metadata: meta, headerLen: int(n), buf: buf,
		index: make(map[string]int, len(tensors))}
	for i, t := range tensors {
		f.index[t.Name] = i
	}
	return f, nil
}

// parseHeader decodes the JSON header token by token rather than into a
// map, because encoding/json silently keeps the last of duplicate keys and
// the format forbids duplicates.
func parseHeader(hdr []byte) ([]TensorInfo, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, errorf(ErrHeader, "header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if err := expectDelim(dec, '{', "the header"); err != nil {
		return nil, nil, err
	}
	var (
		tensors []TensorInfo
		meta    map[string]string
		seen    = map[string]bool{}
	)
	for dec.More() {
		key, err := stringToken(dec, "a tensor name")
		if err != nil {
			return nil, nil, err
		}
		if seen[key] {
			return nil, nil, errorf(ErrHeader, "malformed header: duplicate key %q", key)
		}
		seen[key] = true
		if key == metadataKey {
			if meta, err = parseMetadata(dec); err != nil {
				return nil, nil, err
			}
			continue
		}
		t, err := parseTensor(dec, key)
		if err != nil {
			return nil, nil, err
		}
		tensors = append(tensors, t)
	}
	if err := expectDelim(dec, '}', "the header"); err != nil {
		return nil, nil, err
	}
	// Only whitespace (the reference pads with spaces) may follow.
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, nil, errorf(ErrHeader, "malformed header: unexpected %s after the JSON object", describe(tok))
		}
		return nil, nil, jsonErr(err)
	}
	return tensors, meta, nil
}

func parseMetadata(dec *json.Decoder) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if tok == nil {
		// The reference implementation accepts null for "no metadata".
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, errorf(ErrHeader, "%s must be an object of strings, not %s", metadataKey, describe(tok))
	}
	meta := map[string]string{}
	for dec.More() {
		k, err := stringToken(dec, "a "+metadataKey+" key")
		if err != nil {
			return nil, err
		}
		if _, dup := meta[k]; dup {
			return nil, errorf(ErrHeader, "malformed header: duplicate %s key %q", metadataKey, k)
		}
		v, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		s, ok := v.(string)
		if !ok {
			return nil, errorf(ErrHeader, "%s value for %q must be a string, not %s", metadataKey, k, describe(v))
		}
		meta[k] = s
	}
	if err := expectDelim(dec, '}', metadataKey); err != nil {
		return nil, err
	}
	return meta, nil
}

func parseTensor(dec *json.Decoder, name string) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	if err := expectDelim(dec, '{', fmt.Sprintf("tensor %q", name)); err != nil {
		return t, err
	}
	var haveDType, haveShape, haveOffsets bool
	var begin, end uint64
	for dec.More() {
		key, err := stringToken(dec, fmt.Sprintf("a field of tensor %q", name))
		if err != nil {
			return t, err
		}
		switch key {
		case "dtype":
			if haveDType {
				return t, errorf(ErrHeader, "malformed header: tensor %q has a duplicate dtype", name)
			}
			haveDType = true
			v, err := dec.Token()
			if err != nil {
				return t, jsonErr(err)
			}
			s, ok := v.(string)
			if !ok {
				return t, errorf(ErrHeader, "tensor %q: dtype must be a string, not %s", name, describe(v))
			}
			t.DType = DType(s)
			if !t.DType.Valid() {
				return t, errorf(ErrDType, "tensor %q has unknown dtype %q", name, s)
			}
		case "shape":
			if haveShape {
				return t, errorf(ErrHeader, "malformed header: tensor %q has a duplicate shape", name)
			}
			haveShape = true
			dims, err := uintArray(dec, name, "shape")
			if err != nil {
				return t, err
			}
			t.Shape = make([]int, len(dims))
			for i, d := range dims {
				if d > math.MaxInt {
					return t, errorf(ErrShape, "tensor %q: dimension %d is too large", name, d)
				}
				t.Shape[i] = int(d)
			}
		case "data_offsets":
			if haveOffsets {
				return t, errorf(ErrHeader, "malformed header: tensor %q has duplicate data_offsets", name)
			}
			haveOffsets = true
			offs, err := uintArray(dec, name, "data_offsets")
			if err != nil {
				return t, err
			}
			if len(offs) != 2 {
				return t, errorf(ErrOffsets, "tensor %q: data_offsets must be [begin, end], got %d numbers", name, len(offs))
			}
			begin, end = offs[0], offs[1]
		default:
			return t, errorf(ErrHeader, "malformed header: tensor %q has unknown field %q (want dtype, shape, data_offsets)", name, key)
		}
	}
	if err := expectDelim(dec, '}', fmt.Sprintf("tensor %q", name)); err != nil {
		return t, err
	}
	switch {
	case !haveDType:
		return t, errorf(ErrHeader, "malformed header: tensor %q has no dtype", name)
	case !haveShape:
		return t, errorf(ErrHeader, "malformed header: tensor %q has no shape", name)
	case !haveOffsets:
		return t, errorf(ErrHeader, "malformed header: tensor %q has no data_offsets", name)
	}
	if begin > end {
		return t, errorf(ErrOffsets, "tensor %q: data_offsets [%d, %d] end before they begin", name, begin, end)
	}
	if end > math.MaxInt {
		return t, errorf(ErrOffsets, "tensor %q: data_offsets [%d, %d] are too large", name, begin, end)
	}
	t.Begin, t.End = int(begin), int(end)
	nbytes, err := byteSize(t.DType, t.Shape)
	if err != nil {
		return t, errorf(ErrShape, "tensor %q: %v", name, err)
	}
	if nbytes != t.End-t.Begin {
		return t, errorf(ErrShape, "tensor %q: shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d",
			name, t.Shape, t.DType, nbytes, t.Begin, t.End, t.End-t.Begin)
	}
	return t, nil
}

// byteSize is the byte length of a tensor. It fails if the size overflows
// or, for sub-byte dtypes, is not a whole number of bytes. As in npy, a
// zero dimension does not excuse an overflow among the others.
func byteSize(dt DType, shape []int) (int, error) {
	bits := dt.Bits()
	limit := math.MaxInt / bits
	n, nz := 1, 1
	for _, d := range shape {
		if d == 0 {
			n = 0
			continue
		}
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if nz > limit/d {
			return 0, fmt.Errorf("shape %v of %s is too large: the data size overflows", shape, dt)
		}
		nz *= d
		n *= d
	}
	if n*bits%8 != 0 {
		return 0, fmt.Errorf("shape %v of %d-bit %s does not fill a whole number of bytes", shape, bits, dt)
	}
	return n * bits / 8, nil
}

// checkLayout enforces that the byte ranges lie in the buffer and tile it
// exactly, then leaves tensors sorted in buffer order (header order among
// empty tensors at the same offset).
func checkLayout(tensors []TensorInfo, bufLen int) error {
	for _, t := range tensors {
		if t.End > bufLen {
			return errorf(ErrOffsets, "tensor %q: data_offsets [%d, %d] extend past the %d-byte data buffer (file truncated?)",
				t.Name, t.Begin, t.End, bufLen)
		}
	}
	sort.SliceStable(tensors, func(i, j int) bool {
		if tensors[i].Begin != tensors[j].Begin {
			return tensors[i].Begin < tensors[j].Begin
		}
		return tensors[i].End < tensors[j].End
	})
	pos, prev := 0, ""
	for _, t := range tensors {
		switch {
		case t.Begin < pos:
			return errorf(ErrOffsets, "tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d",
				t.Name, t.Begin, t.End, prev, pos)
		case t.Begin > pos:
			return errorf(ErrOffsets, "%d bytes of the data buffer before tensor %q (at %d) belong to no tensor",
				t.Begin-pos, t.Name, t.Begin)
		}
		pos = t.End
		prev = t.Name
	}
	if pos != bufLen {
		return errorf(ErrOffsets, "the last %d bytes of the data buffer belong to no tensor", bufLen-pos)
	}
	return nil
}

// jsonErr reports a JSON syntax error; the decoder's bare "EOF" for a
// header cut short would not say what is wrong.
func jsonErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errorf(ErrHeader, "malformed header: the JSON ends before the object is complete")
	}
	return errorf(ErrHeader, "malformed header: %v", err)
}

func expectDelim(dec *json.Decoder, d json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonErr(err)
	}
	if tok != d {
		return errorf(ErrHeader, "malformed header: expected %q to open or close %s, got %s", string(d), what, describe(tok))
	}
	return nil
}

func stringToken(dec *json.Decoder, what string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", jsonErr(err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", errorf(ErrHeader, "malformed header: expected %s, got %s", what, describe(tok))
	}
	return s, nil
}

// uintArray reads a JSON array of non-negative integers written as plain
// decimal (no fraction or exponent: the reference would reject them too).
func uintArray(dec *json.Decoder, name, field string) ([]uint64, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	if tok != json.Delim('[') {
		return nil, errorf(ErrHeader, "tensor %q: %s must be an array, not %s", name, field, describe(tok))
	}
	out := []uint64{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, errorf(ErrHeader, "tensor %q: %s must hold integers, not %s", name, field, describe(tok))
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			kind := ErrOffsets
			if field == "shape" {
				kind = ErrShape
			}
			return nil, errorf(kind, "tensor %q: %s entry %s is not a non-negative integer", name, field, num)
		}
		if len(out) >= 1024 {
			return nil, errorf(ErrShape, "tensor %q: %s has more than 1024 entries", name, field)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, jsonErr(err)
	}
	return out, nil
}

// describe names a JSON token for error messages.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(tok)
}

// Name is the path the File was opened with ("<memory>" for Read).
func (f *File) Name() string { return f.name }

// HeaderLen is the length N of the JSON header in bytes; the data buffer
// starts at byte 8+N of the file.
func (f *File) HeaderLen() int { return f.headerLen }

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

// Metadata returns a copy of the __metadata__ map (nil if the file has none).
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

// Close releases the memory mapping. It waits for reads in progress;
// reads after Close fail with ErrClosed. Closing twice is a no-op.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.buf = nil
	if f.mm != nil {
		err := f.mm.Unmap()
		f.mm = nil
		if err != nil {
			return fmt.Errorf("safetensors: %s: unmap: %w", f.name, err)
		}
	}
	return nil
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

// with looks the tensor up and runs fn on its bytes under the read lock.
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
	var err error
	if ferr := mmapfault.Guard(func() { err = fn(t, f.buf[t.Begin:t.End]) }); ferr != nil {
		err = ferr
	}
	if err != nil {
		return t, fmt.Errorf("safetensors: %s: %w", f.name, err)
	}
	return t, nil
}
