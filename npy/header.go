package npy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// magic is the 6-byte string every .npy file starts with.
const magic = "\x93NUMPY"

// maxDims bounds the number of dimensions, as numpy 2 does (NPY_MAXDIMS).
// It also bounds the header a valid file can need, which keeps the writer
// on the 2-byte header length of format 1.0.
const maxDims = 64

// headerAlign is the alignment numpy gives the data: the header is padded
// so that magic + version + length + header is a multiple of 64 bytes.
const headerAlign = 64

// growthAxisDigits is the width numpy reserves for the first dimension:
// numpy pads the header with 21 - len(str(shape[0])) extra spaces so the
// file can later be appended to in place. We reproduce it only so that our
// headers are byte-identical to numpy's.
const growthAxisDigits = 21

// Header is the parsed header of a .npy file.
type Header struct {
	Major, Minor int   // format version as read; the writers always write 1.0
	DType        DType // element type
	Shape        []int // dimensions, C order; empty for a 0-d array
	// DataOffset is the number of bytes before the array data, i.e. the
	// length of magic, version, header length and header together.
	DataOffset int
}

// Len is the number of elements (1 for a 0-d array).
func (h Header) Len() int {
	n := 1
	for _, d := range h.Shape {
		n *= d
	}
	return n
}

// DataSize is the number of data bytes the header promises.
func (h Header) DataSize() int { return h.Len() * h.DType.Size() }

// ParseHeader parses and validates the header at the start of b, which must
// hold at least the whole header (the data may follow but is not looked at,
// so the file size is not checked here; Open and FromBytes check it).
func ParseHeader(b []byte) (Header, error) {
	h, err := parseHeader(b)
	if err != nil {
		return Header{}, fmt.Errorf("npy: %w", err)
	}
	return h, nil
}

// maxHeaderLen bounds the header length a format 2.0 or 3.0 file may
// declare (format 1.0 cannot exceed 65535): 1 MiB, a hundred times
// numpy's own default limit for reading (max_header_size, 10000 bytes).
// A hostile length of gigabytes would otherwise be scanned whole.
const maxHeaderLen = 1 << 20

// otherFormat says what the file beginning with b, no .npy array, is,
// where its first bytes show a file a user may give in an array's place:
// a model, or numpy's archive of several arrays.
func otherFormat(b []byte) string {
	switch {
	case len(b) > 8 && b[8] == '{' && binary.LittleEndian.Uint64(b) < 1<<40:
		// (A safetensors file: the length of its JSON header, then the header.)
		return "it is a safetensors file (a model, or a checkpoint's state)"
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "it is a zip archive (numpy's .npz of several arrays, or a PyTorch file): numpy.save writes one array as .npy"
	}
	return "missing the \\x93NUMPY magic string"
}

func parseHeader(b []byte) (Header, error) {
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return Header{}, errorf(ErrNotNPY, "not a .npy file: %s", otherFormat(b))
	}
	if len(b) < len(magic)+2 {
		return Header{}, errorf(ErrSize, "file is truncated: %d bytes, too short for the version", len(b))
	}
	major, minor := int(b[6]), int(b[7])
	var hlen, prefix int
	switch {
	case major == 1 && minor == 0:
		prefix = 10
		if len(b) < prefix {
			return Header{}, errorf(ErrSize, "file is truncated: %d bytes, too short for the header length", len(b))
		}
		hlen = int(binary.LittleEndian.Uint16(b[8:10]))
	case (major == 2 || major == 3) && minor == 0:
		prefix = 12
		if len(b) < prefix {
			return Header{}, errorf(ErrSize, "file is truncated: %d bytes, too short for the header length", len(b))
		}
		n := binary.LittleEndian.Uint32(b[8:12])
		if n > maxHeaderLen {
			return Header{}, errorf(ErrHeader, "header length %d is too large (at most %d: a header of the dtypes read here holds a few dozen bytes and a shape)", n, maxHeaderLen)
		}
		hlen = int(n)
	default:
		return Header{}, errorf(ErrVersion, "unsupported .npy format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if len(b)-prefix < hlen {
		return Header{}, errorf(ErrSize, "file is truncated: header length is %d bytes but only %d follow", hlen, len(b)-prefix)
	}
	h, err := parseDict(b[prefix : prefix+hlen])
	if err != nil {
		return Header{}, err
	}
	h.Major, h.Minor = major, minor
	h.DataOffset = prefix + hlen
	// The data size must be representable, and so must offset + size, so
	// that callers can do arithmetic on them without overflow checks.
	n, ok := elementCount(h.Shape, h.DType.Size())
	if !ok || n > (math.MaxInt-h.DataOffset)/h.DType.Size() {
		return Header{}, errorf(ErrShape, "shape %s of %s is too large: the data size overflows", shapeRepr(h.Shape), h.DType)
	}
	return h, nil
}

// elementCount is the product of shape, or false if a dimension is
// negative or the product of the non-zero dimensions times itemSize
// overflows int. Like numpy, a zero dimension does not excuse an overflow
// elsewhere, so every partial product (and RowLen) is representable too.
func elementCount(shape []int, itemSize int) (int, bool) {
	limit := math.MaxInt / itemSize
	n, nz := 1, 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			n = 0
			continue
		}
		if nz > limit/d {
			return 0, false
		}
		nz *= d
		n *= d
	}
	return n, true
}

// parseDict parses the header text: a Python dict literal with exactly the
// keys descr, fortran_order and shape, terminated by '\n'. numpy evaluates
// it with ast.literal_eval; we accept the subset of Python literal syntax
// that numpy and other writers actually produce (either quote style, any
// key order, arbitrary spacing, optional trailing commas, space padding,
// Python 2 'L' suffixes) and reject everything else.
func parseDict(text []byte) (Header, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return Header{}, headerErr(text, "header does not end with a newline")
	}
	p := &dictParser{s: text}
	p.ws()
	if !p.eat('{') {
		return Header{}, p.fail("expected '{'")
	}
	var (
		h                   Header
		seenDescr, seenF    bool
		seenShape, fortranV bool
	)
	for {
		p.ws()
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return Header{}, err
		}
		p.ws()
		if !p.eat(':') {
			return Header{}, p.fail(fmt.Sprintf("expected ':' after key %q", key))
		}
		p.ws()
		switch key {
		case "descr":
			if seenDescr {
				return Header{}, p.fail("duplicate key 'descr'")
			}
			seenDescr = true
			if p.peek() == '[' {
				return Header{}, errorf(ErrDType, "structured dtypes (a list descr) are not supported")
			}
			d, err := p.str()
			if err != nil {
				return Header{}, err
			}
			if h.DType, err = dtypeFromDescr(d); err != nil {
				return Header{}, err
			}
		case "fortran_order":
			if seenF {
				return Header{}, p.fail("duplicate key 'fortran_order'")
			}
			seenF = true
			switch {
			case p.word("True"):
				fortranV = true
			case p.word("False"):
				fortranV = false
			default:
				return Header{}, p.fail("fortran_order must be True or False")
			}
		case "shape":
			if seenShape {
				return Header{}, p.fail("duplicate key 'shape'")
			}
			seenShape = true
			if h.Shape, err = p.tuple(); err != nil {
				return Header{}, err
			}
		default:
			return Header{}, p.fail(fmt.Sprintf("unexpected key %q (want exactly descr, fortran_order, shape)", key))
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		p.ws()
		if p.eat('}') {
			break
		}
		return Header{}, p.fail("expected ',' or '}'")
	}
	p.ws()
	if p.i != len(p.s) {
		return Header{}, p.fail("unexpected text after the closing '}'")
	}
	switch {
	case !seenDescr:
		return Header{}, headerErr(text, "missing key 'descr'")
	case !seenF:
		return Header{}, headerErr(text, "missing key 'fortran_order'")
	case !seenShape:
		return Header{}, headerErr(text, "missing key 'shape'")
	}
	if fortranV {
		return Header{}, errorf(ErrFortranOrder, "%v (shape %s)", ErrFortranOrder, shapeRepr(h.Shape))
	}
	return h, nil
}

type dictParser struct {
	s []byte
	i int
}

func (p *dictParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// ws skips the whitespace Python allows between tokens inside brackets.
func (p *dictParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r', '\f':
			p.i++
		default:
			return
		}
	}
}

func (p *dictParser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// word consumes w if it is next and is not the prefix of a longer name.
func (p *dictParser) word(w string) bool {
	if !strings.HasPrefix(string(p.s[p.i:]), w) {
		return false
	}
	if j := p.i + len(w); j < len(p.s) && isNameByte(p.s[j]) {
		return false
	}
	p.i += len(w)
	return true
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// str parses a quoted string without escapes: none of the keys or the
// supported descr values need one, so a backslash means something exotic.
func (p *dictParser) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", p.fail("expected a quoted string")
	}
	start := p.i + 1
	for j := start; j < len(p.s); j++ {
		switch p.s[j] {
		case q:
			p.i = j + 1
			return string(p.s[start:j]), nil
		case '\\':
			return "", p.fail("escape sequences in strings are not supported")
		case '\n':
			return "", p.fail("unterminated string")
		}
	}
	return "", p.fail("unterminated string")
}

// tuple parses the shape: "()", "(n,)" or "(n, m, ...)" with an optional
// trailing comma. "(n)" is an int in Python, not a tuple, so numpy rejects
// it and so do we.
func (p *dictParser) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, p.fail("shape must be a tuple such as (2, 3)")
	}
	shape := []int{}
	for {
		p.ws()
		if p.eat(')') { // "()" or after a trailing comma
			break
		}
		d, err := p.dim()
		if err != nil {
			return nil, err
		}
		shape = append(shape, d)
		if len(shape) > maxDims {
			return nil, errorf(ErrShape, "shape has more than %d dimensions", maxDims)
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat(')') {
			if len(shape) == 1 {
				return nil, p.fail("shape (n) is not a tuple; a 1-d shape is written (n,)")
			}
			break
		}
		return nil, p.fail("expected ',' or ')' in shape")
	}
	return shape, nil
}

// dim parses one dimension: a decimal integer without leading zeros,
// optionally with Python 2's 'L' suffix. A minus sign is parsed only to
// report the negative dimension precisely.
func (p *dictParser) dim() (int, error) {
	start := p.i
	neg := p.eat('-')
	ds := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	digits := string(p.s[ds:p.i])
	if digits == "" {
		p.i = start
		return 0, p.fail("shape entries must be integers")
	}
	if len(digits) > 1 && digits[0] == '0' {
		p.i = start
		return 0, p.fail("shape entry with a leading zero")
	}
	if c := p.peek(); c == 'L' || c == 'l' {
		p.i++
	}
	if isNameByte(p.peek()) || p.peek() == '.' {
		p.i = start
		return 0, p.fail("shape entries must be integers")
	}
	if neg {
		return 0, errorf(ErrShape, "negative dimension -%s in shape", shownDigits(digits))
	}
	n, err := strconv.ParseInt(digits, 10, 0)
	if err != nil {
		return 0, errorf(ErrShape, "dimension %s in shape is too large", shownDigits(digits))
	}
	return int(n), nil
}

// shownDigits is a shape entry as an error shows it: whole up to 24
// digits (int64's 19 and some), else its first 20 and how many there are
// (a header may hold one of thousands).
func shownDigits(digits string) string {
	if len(digits) <= 24 {
		return digits
	}
	return fmt.Sprintf("%s... (%d digits)", digits[:20], len(digits))
}

func (p *dictParser) fail(msg string) error {
	return headerErr(p.s, fmt.Sprintf("%s at byte %d", msg, p.i))
}

// headerErr quotes the (trimmed, possibly shortened) header so the message
// shows what was actually in the file.
func headerErr(text []byte, msg string) error {
	cut := len(text) > 160 // (a copy of the first bytes only, of a header perhaps megabytes long)
	t := strings.TrimRight(string(text[:min(len(text), 160)]), " \n")
	if len(t) > 120 || cut {
		t = t[:min(len(t), 120)] + "..."
	}
	return errorf(ErrHeader, "malformed header: %s in %q", msg, t)
}

// shapeRepr formats a shape as Python's repr of a tuple, which is both what
// numpy writes in headers and what users recognise in messages.
func shapeRepr(shape []int) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}

// EncodeHeader returns the version 1.0 header numpy would write for a
// C-order array of the given dtype and shape, byte for byte.
func EncodeHeader(dt DType, shape []int) ([]byte, error) {
	if !dt.valid() {
		return nil, errorf(ErrDType, "cannot write dtype %d", dt)
	}
	if len(shape) > maxDims {
		return nil, errorf(ErrShape, "shape has %d dimensions, more than %d", len(shape), maxDims)
	}
	if _, ok := elementCount(shape, dt.Size()); !ok {
		for _, d := range shape {
			if d < 0 {
				return nil, errorf(ErrShape, "negative dimension %d in shape %v", d, shape)
			}
		}
		return nil, errorf(ErrShape, "shape %s of %s is too large: the data size overflows", shapeRepr(shape), dt)
	}
	dict := "{'descr': '" + dt.String() + "', 'fortran_order': False, 'shape': " + shapeRepr(shape) + ", }"
	if len(shape) > 0 {
		dict += strings.Repeat(" ", growthAxisDigits-len(strconv.Itoa(shape[0])))
	}
	// numpy pads so that the total is a multiple of 64, counting the final
	// newline; when it is already aligned numpy still adds a full 64 bytes
	// (its pad is 64 - (len % 64)), which we reproduce.
	hlen := len(dict) + 1
	pad := headerAlign - (10+hlen)%headerAlign
	hlen += pad
	if hlen > math.MaxUint16 {
		return nil, errorf(ErrShape, "header of %d bytes does not fit format 1.0", hlen)
	}
	out := make([]byte, 0, 10+hlen)
	out = append(out, magic...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(hlen))
	out = append(out, dict...)
	for i := 0; i < pad; i++ {
		out = append(out, ' ')
	}
	out = append(out, '\n')
	return out, nil
}
