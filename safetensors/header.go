package safetensors

// The JSON header, decoded token by token: names, dtypes, shapes, offsets
// and the string metadata, with every deviation from the format an error
// that names the tensor.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation
// does (100 MB), so a corrupt length cannot make us parse or allocate
// gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the string metadata.
const metadataKey = "__metadata__"

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
