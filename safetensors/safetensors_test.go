package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/codectest"
	"github.com/dinoclip/dinoclip/internal/leconv"
)

func td(name string) string { return filepath.Join("testdata", name) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPythonModel loads a file written by the Python safetensors package
// and checks that writing the same tensors in the same order with the same
// metadata reproduces it byte for byte.
func TestPythonModel(t *testing.T) {
	f, err := Open(td("model_f32.safetensors"))
	must(t, err)
	defer f.Close()
	wantNames := []string{"input_proj.bias", "input_proj.weight", "layer_norm.weight",
		"residual_blocks.0.layers.1.bias", "residual_blocks.0.layers.1.weight"}
	if !reflect.DeepEqual(f.Names(), wantNames) {
		t.Errorf("names %v, want %v", f.Names(), wantNames)
	}
	if !reflect.DeepEqual(f.Metadata(), map[string]string{"format": "pt"}) {
		t.Errorf("metadata %v", f.Metadata())
	}
	w, shape, err := f.Float32("input_proj.weight")
	must(t, err)
	if !reflect.DeepEqual(shape, []int{4, 3}) || w[0] != float32(1.1176220178604126) || w[11] != float32(-1.3582810163497925) {
		t.Errorf("input_proj.weight %v %v", shape, w)
	}
	ln, _, err := f.Float32("layer_norm.weight")
	must(t, err)
	if !reflect.DeepEqual(ln, []float32{1.5, -2}) {
		t.Errorf("layer_norm.weight %v", ln)
	}
	ones, _, _ := f.Float32("residual_blocks.0.layers.1.weight")
	if !reflect.DeepEqual(ones, []float32{1, 1, 1, 1}) {
		t.Errorf("ones %v", ones)
	}

	var tensors []Tensor
	for _, info := range f.Tensors() {
		v, shape, err := f.Float32(info.Name)
		must(t, err)
		tensors = append(tensors, NewFloat32(info.Name, shape, v))
	}
	got, err := Marshal(tensors, f.Metadata())
	must(t, err)
	want, _ := os.ReadFile(td("model_f32.safetensors"))
	if !bytes.Equal(got, want) {
		t.Errorf("our file differs from Python's:\n got %q\nwant %q", got[:min(len(got), 440)], want[:min(len(want), 440)])
	}
}

// TestPythonDTypes: every dtype the package converts, as Python wrote them.
func TestPythonDTypes(t *testing.T) {
	f, err := Open(td("dtypes.safetensors"))
	must(t, err)
	defer f.Close()
	if f.Metadata()["note"] != "x<y & é" {
		t.Errorf("metadata %q", f.Metadata())
	}
	if got := f.Names(); !reflect.DeepEqual(got, []string{"i64", "f64", "empty", "scalar", "i32", "bf16", "f16", "u8"}) {
		t.Errorf("names in offset order: %v", got)
	}
	negZero := float32(math.Copysign(0, -1))
	f32cases := map[string][]float32{
		"f16":    {1, -2.5, 65504, 5.9604645e-08, float32(math.Inf(1))},
		"bf16":   {1, -2.5, math.Float32frombits(0x7f7f0000), math.Float32frombits(0x00010000), negZero},
		"f64":    {0.1, float32(math.Inf(-1)), 3, 0}, // rounded to float32
		"scalar": {2.5},
		"empty":  {},
	}
	for name, want := range f32cases {
		got, _, err := f.Float32(name)
		must(t, err)
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	f64, shape, err := f.Float64("f64")
	must(t, err)
	if !reflect.DeepEqual(f64, []float64{0.1, -1e300, 3, math.Ldexp(1, -1074)}) || !reflect.DeepEqual(shape, []int{2, 2}) {
		t.Errorf("f64 %v %v", f64, shape)
	}
	h64, _, err := f.Float64("f16")
	must(t, err)
	if h64[3] != math.Ldexp(1, -24) {
		t.Errorf("f16 as float64: %v", h64)
	}
	if _, shape, _ := f.Float32("scalar"); len(shape) != 0 {
		t.Errorf("scalar shape %v", shape)
	}
	if _, shape, _ := f.Float32("empty"); !reflect.DeepEqual(shape, []int{0, 3}) {
		t.Errorf("empty shape %v", shape)
	}
	ints := map[string][]int64{
		"i64": {0, -1, 1 << 62, math.MinInt64},
		"i32": {7, math.MinInt32},
		"u8":  {0, 255},
	}
	for name, want := range ints {
		got, _, err := f.Int64(name)
		must(t, err)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if _, _, err := f.Float32("i64"); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), `"i64" is I64`) {
		t.Errorf("Float32 of I64: %v", err)
	}
	if _, _, err := f.Int64("f16"); !errors.Is(err, ErrDType) {
		t.Errorf("Int64 of F16: %v", err)
	}
	if _, _, err := f.Float32("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "dtypes.safetensors") {
		t.Errorf("missing tensor: %v", err)
	}
	raw, info, err := f.Raw("bf16")
	must(t, err)
	if len(raw) != 10 || info.DType != BF16 || info.Begin != 76 || info.End != 86 {
		t.Errorf("Raw: %d bytes, %+v", len(raw), info)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ckpt.safetensors")
	w := []float32{1, -2, 3.5, 1e-8, 70000, float32(math.Inf(-1))}
	tensors := []Tensor{
		NewFloat32("z.weight", []int{2, 3}, w), // caller order, not sorted
		NewFloat64("a.f64", []int{3}, []float64{math.Pi, math.Copysign(0, -1), 1e300}),
		NewFloat16("m.f16", []int{6}, w),
		NewBFloat16("b.bf16", []int{3, 2}, w),
		NewInt64("idx", []int{2}, []int64{math.MaxInt64, -5}),
		NewFloat32("scalar", []int{}, []float32{7}),
		NewFloat32("empty", []int{0}, nil),
		{Name: "raw.u16", DType: U16, Shape: []int{2}, Data: []byte{1, 0, 0xff, 0xff}},
	}
	meta := map[string]string{"format": "pt", "epoch": "16", "quote\"<&>": "é\n"}
	must(t, Write(p, tensors, meta))
	st, err := os.Stat(p)
	must(t, err)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	f, err := Open(p)
	must(t, err)
	defer f.Close()
	var names []string
	for _, tn := range tensors {
		names = append(names, tn.Name)
	}
	if !reflect.DeepEqual(f.Names(), names) {
		t.Errorf("names %v, want caller order %v", f.Names(), names)
	}
	if !reflect.DeepEqual(f.Metadata(), meta) {
		t.Errorf("metadata %v", f.Metadata())
	}
	if f.HeaderLen()%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", f.HeaderLen())
	}
	for _, tn := range tensors {
		raw, info, err := f.Raw(tn.Name)
		must(t, err)
		if !bytes.Equal(raw, tn.Data) || info.DType != tn.DType || !reflect.DeepEqual(info.Shape, tn.Shape) {
			t.Errorf("%s: %+v %x", tn.Name, info, raw)
		}
	}
	got, _, err := f.Float32("m.f16")
	must(t, err)
	for i, v := range w {
		if want := leconv.Float16Value(leconv.Float16Bits(v)); math.Float32bits(got[i]) != math.Float32bits(want) {
			t.Errorf("f16[%d] = %v, want %v", i, got[i], want)
		}
	}
	dst := make([]float32, 6)
	must(t, f.Float32Into("z.weight", dst))
	if !reflect.DeepEqual(dst, w) {
		t.Errorf("Float32Into %v", dst)
	}
	if err := f.Float32Into("z.weight", make([]float32, 5)); !errors.Is(err, ErrShape) {
		t.Errorf("Float32Into short: %v", err)
	}
	if v, _, _ := f.Int64("raw.u16"); !reflect.DeepEqual(v, []int64{1, 65535}) {
		t.Errorf("u16 %v", v)
	}
	// Bytes equal to Marshal, and Read agrees with Open.
	b, err := Marshal(tensors, meta)
	must(t, err)
	disk, _ := os.ReadFile(p)
	if !bytes.Equal(b, disk) {
		t.Error("Marshal and Write differ")
	}
	m, err := Read(b)
	must(t, err)
	if !reflect.DeepEqual(m.Tensors(), f.Tensors()) {
		t.Error("Read and Open disagree")
	}
	must(t, f.Close())
	must(t, f.Close())
	if _, _, err := f.Float32("z.weight"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// raw builds a file from header text and a buffer, without any checks.
func raw(hdr string, buf []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	return append(append(b, hdr...), buf...)
}

func TestRejections(t *testing.T) {
	t1 := `"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	hugeLen := binary.LittleEndian.AppendUint64(nil, 1<<40)
	shortLen := binary.LittleEndian.AppendUint64(nil, 100)
	cases := []struct {
		name string
		b    []byte
		kind error
		msg  string
	}{
		{"empty", nil, ErrSize, "too short"},
		{"7 bytes", []byte{1, 2, 3, 4, 5, 6, 7}, ErrSize, "too short"},
		{"huge header length", append(hugeLen, "{}"...), ErrSize, "exceeds the 100000000-byte limit"},
		{"header past end", append(shortLen, "{}"...), ErrCutShort, "truncated"},
		{"header past end, not JSON", append(shortLen, "xy"...), ErrSize, "truncated"},
		{"a .npy array", []byte("\x93NUMPY\x01\x00v\x00{'descr': '<f4', "), ErrSize, "a .npy array (numpy's format), not safetensors"},
		{"torch.save zip", []byte("PK\x03\x04\x14\x00\x00\x00archive/data.pkl"), ErrSize, "a PyTorch file"},
		{"torch.save pickle", []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."), ErrSize, "a PyTorch file"},
		{"not json", raw("hello", nil), ErrHeader, "malformed header"},
		{"not utf8", raw("{\"\xff\":{}}", nil), ErrHeader, "UTF-8"},
		{"array", raw("[]", nil), ErrHeader, "expected \"{\""},
		{"truncated json", raw(`{"a":{"dtype":"F32"`, nil), ErrHeader, "ends before the object is complete"},
		{"trailing garbage", raw("{"+t1+"} x", make([]byte, 8)), ErrHeader, "malformed header"},
		{"second object", raw("{"+t1+"}{}", make([]byte, 8)), ErrHeader, "after the JSON object"},
		{"duplicate name", raw("{"+t1+","+t1+"}", make([]byte, 8)), ErrHeader, `duplicate key "a"`},
		{"duplicate field", raw(`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrHeader, "duplicate dtype"},
		{"unknown field", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, make([]byte, 8)), ErrHeader, `unknown field "x"`},
		{"missing dtype", raw(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrHeader, "no dtype"},
		{"missing shape", raw(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, make([]byte, 8)), ErrHeader, "no shape"},
		{"missing offsets", raw(`{"a":{"dtype":"F32","shape":[2]}}`, make([]byte, 8)), ErrHeader, "no data_offsets"},
		{"tensor not object", raw(`{"a":[1]}`, nil), ErrHeader, `tensor "a"`},
		{"unknown dtype", raw(`{"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrDType, `unknown dtype "F128"`},
		{"dtype not string", raw(`{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrHeader, "dtype must be a string"},
		{"negative dim", raw(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrShape, "-2 is not a non-negative integer"},
		{"float dim", raw(`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrShape, "2.0 is not"},
		{"string dim", raw(`{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrHeader, "must hold integers"},
		{"shape not array", raw(`{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, make([]byte, 8)), ErrHeader, "must be an array"},
		{"shape overflow", raw(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrShape, "overflows"},
		{"shape overflow with zero", raw(`{"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}`, nil), ErrShape, "overflows"},
		{"dim beyond int", raw(`{"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrShape, "too large"},
		{"partial byte", raw(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, make([]byte, 2)), ErrShape, "does not fill a whole number of bytes"},
		{"size mismatch", raw(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrShape, "needs 12 bytes but data_offsets [0, 8] hold 8"},
		{"three offsets", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, make([]byte, 8)), ErrOffsets, "[begin, end]"},
		{"reversed offsets", raw(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8)), ErrOffsets, "end before they begin"},
		{"negative offset", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, make([]byte, 8)), ErrOffsets, "not a non-negative integer"},
		{"past buffer", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)), ErrOffsets, "past the 4-byte data buffer"},
		{"overlap", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), ErrOffsets, "overlap"},
		{"same range", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), ErrOffsets, "overlap"},
		{"gap at start", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), ErrOffsets, "4 bytes of the data buffer before tensor \"a\""},
		{"gap between", raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12)), ErrOffsets, "belong to no tensor"},
		{"trailing bytes", raw("{"+t1+"}", make([]byte, 9)), ErrOffsets, "the file holds 1 byte more than its header describes (trailing data)"},
		{"metadata not strings", raw(`{"__metadata__":{"k":1},`+t1+"}", make([]byte, 8)), ErrHeader, `value for "k" must be a string`},
		{"metadata array", raw(`{"__metadata__":["k"],`+t1+"}", make([]byte, 8)), ErrHeader, "must be an object of strings"},
		{"metadata duplicate", raw(`{"__metadata__":{"k":"1","k":"2"},`+t1+"}", make([]byte, 8)), ErrHeader, `duplicate __metadata__ key "k"`},
		{"metadata twice", raw(`{"__metadata__":{},"__metadata__":{},`+t1+"}", make([]byte, 8)), ErrHeader, "duplicate key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse("case.safetensors", c.b)
			codectest.CheckRejected(t, err, c.kind, "safetensors: case.safetensors: ", c.msg)
		})
	}
}

// TestCutShort: only a header length past the file's end followed by the
// header's opening brace is a file cut short in its header (ErrCutShort,
// ErrSize too), and a whole header whose tensors run past the file's end
// one cut short in its data (ErrDataCutShort, ErrOffsets too), which the
// commands replace as an earlier output of theirs.
func TestCutShort(t *testing.T) {
	model := raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	for n := 9; n < len(model); n++ {
		_, err := Read(model[:n])
		if n < len(model)-8 && (!errors.Is(err, ErrCutShort) || !errors.Is(err, ErrSize) || errors.Is(err, ErrDataCutShort)) {
			t.Errorf("cut to %d bytes: %v, want ErrCutShort (and ErrSize)", n, err)
		}
		if n >= len(model)-8 && (!errors.Is(err, ErrDataCutShort) || !errors.Is(err, ErrOffsets) || errors.Is(err, ErrCutShort)) {
			t.Errorf("cut to %d bytes, its header whole: %v, want ErrDataCutShort (and ErrOffsets)", n, err)
		}
	}
	for _, b := range [][]byte{
		raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 12)),  // trailing data
		raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), // a gap
	} {
		if _, err := Read(b); !errors.Is(err, ErrOffsets) || errors.Is(err, ErrDataCutShort) {
			t.Errorf("%q: %v, want ErrOffsets, not ErrDataCutShort", b, err)
		}
	}
	// Cut in its data, a file still gives its header's metadata.
	withMeta := raw(`{"__metadata__":{"format":"x/1"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	var cut *DataCutShortError
	if _, err := Read(withMeta[:len(withMeta)-1]); !errors.As(err, &cut) || cut.Metadata["format"] != "x/1" {
		t.Errorf("cut in its data: %v, want a DataCutShortError with the header's metadata", err)
	}
	// A header length of 640 (896, 1152, 1408) mod 65536 begins with the
	// bytes of a pickle's protocol 2 (3, 4, 5): cut short, it is no
	// PyTorch file, as its opening brace tells.
	for _, n := range []uint64{640, 896, 1152, 1408, 65536 + 640} {
		b := append(binary.LittleEndian.AppendUint64(nil, n), `{"a"`...)
		if _, err := Read(b); !errors.Is(err, ErrCutShort) || strings.Contains(err.Error(), "PyTorch") {
			t.Errorf("header length %d, cut short: %v, want ErrCutShort", n, err)
		}
	}
	for _, b := range [][]byte{binary.LittleEndian.AppendUint64(nil, 100), append(binary.LittleEndian.AppendUint64(nil, 100), 'x')} {
		if _, err := Read(b); !errors.Is(err, ErrSize) || errors.Is(err, ErrCutShort) {
			t.Errorf("%q: %v, want ErrSize, not ErrCutShort", b, err)
		}
	}
}

func TestAccepted(t *testing.T) {
	cases := []struct {
		name  string
		b     []byte
		names []string
	}{
		{"no tensors", raw("{}", nil), []string{}},
		{"only metadata", raw(`{"__metadata__":{"a":"b"}}`, nil), []string{}},
		{"null metadata", raw(`{"__metadata__":null}`, nil), []string{}},
		{"whitespace", raw(" {\n \"a\" : { \"shape\" : [ 1 ] , \"data_offsets\" : [0, 4], \"dtype\" : \"F32\" } }\n   ", make([]byte, 4)), []string{"a"}},
		{"empty tensors anywhere", raw(`{"e2":{"dtype":"F16","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e1":{"dtype":"F32","shape":[5,0],"data_offsets":[0,0]}}`, make([]byte, 4)), []string{"e1", "a", "e2"}},
		{"sub-byte dtype", raw(`{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}`, make([]byte, 2)), []string{"a"}},
		{"all-zero file header", raw(`{}`, nil), []string{}},
	}
	for _, c := range cases {
		f, err := Read(c.b)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := f.Names(); !reflect.DeepEqual(got, c.names) {
			t.Errorf("%s: names %v, want %v", c.name, got, c.names)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	cases := []struct {
		tensors []Tensor
		meta    map[string]string
		kind    error
		msg     string
	}{
		{[]Tensor{NewFloat32("a", []int{3}, []float32{1, 2})}, nil, ErrShape, "needs 12 bytes but 8"},
		{[]Tensor{NewFloat32("a", []int{-1}, nil)}, nil, ErrShape, "negative"},
		{[]Tensor{NewFloat32("a", nil, []float32{1}), NewFloat32("a", nil, []float32{1})}, nil, ErrHeader, `duplicate tensor name "a"`},
		{[]Tensor{NewFloat32("__metadata__", nil, []float32{1})}, nil, ErrHeader, "reserved"},
		{[]Tensor{NewFloat32("\xff", nil, []float32{1})}, nil, ErrHeader, "UTF-8"},
		{[]Tensor{{Name: "a", DType: "F128", Data: nil}}, nil, ErrDType, "unknown dtype"},
		{[]Tensor{NewFloat32("a", nil, []float32{1})}, map[string]string{"k": "\xff"}, ErrHeader, "UTF-8"},
	}
	for _, c := range cases {
		err := Write(p, c.tensors, c.meta)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v, want %v mentioning %q and the path", err, c.kind, c.msg)
		}
	}
	if err := Write(filepath.Join(dir, "missing", "x.safetensors"), nil, nil); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	must(t, os.Mkdir(filepath.Join(dir, "adir"), 0o755))
	if err := Write(filepath.Join(dir, "adir"), nil, nil); err == nil {
		t.Error("write over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "adir" {
		t.Errorf("directory holds %d entries, want only adir (no partial or temporary files)", len(entries))
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.safetensors")
	must(t, Write(p, []Tensor{NewFloat32("w", []int{2}, []float32{1, 2})}, nil))
	old, err := Open(p)
	must(t, err)
	defer old.Close()
	must(t, Write(p, []Tensor{NewFloat32("w", []int{3}, []float32{4, 5, 6})}, nil))
	if v, _, err := old.Float32("w"); err != nil || !reflect.DeepEqual(v, []float32{1, 2}) {
		t.Errorf("old mapping reads %v, %v", v, err)
	}
	f, err := Open(p)
	must(t, err)
	defer f.Close()
	if v, _, err := f.Float32("w"); err != nil || !reflect.DeepEqual(v, []float32{4, 5, 6}) {
		t.Errorf("new file reads %v, %v", v, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	empty := filepath.Join(dir, "empty.safetensors")
	must(t, os.WriteFile(empty, nil, 0o644))
	if _, err := Open(empty); !errors.Is(err, ErrSize) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty: %v", err)
	}
	good, _ := os.ReadFile(td("model_f32.safetensors"))
	trunc := filepath.Join(dir, "trunc.safetensors")
	must(t, os.WriteFile(trunc, good[:len(good)-4], 0o644))
	if _, err := Open(trunc); !errors.Is(err, ErrOffsets) || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), trunc) {
		t.Errorf("truncated: %v", err)
	}
}

// TestConcurrentReads is meant for -race.
func TestConcurrentReads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.safetensors")
	w := make([]float32, 1000)
	for i := range w {
		w[i] = float32(i)
	}
	// With the data's SHA-256 recorded: the first reads race to verify it.
	tensors := []Tensor{NewFloat32("w", []int{10, 100}, w), NewBFloat16("b", []int{1000}, w)}
	must(t, Write(p, tensors, withSHA256(t, tensors, nil)))
	f, err := Open(p)
	must(t, err)
	codectest.CloseWhileReading(t, 8, ErrClosed, func(g int) func() error {
		name := []string{"w", "b"}[g%2]
		return func() error {
			v, _, err := f.Float32(name)
			if err != nil {
				return err
			}
			if v[999] != 999 && v[999] != leconv.BFloat16Value(leconv.BFloat16Bits(999)) {
				return errors.New("wrong value")
			}
			return nil
		}
	}, f.Close)
}

func TestTruncatedWhileOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.safetensors")
	must(t, Write(p, []Tensor{NewFloat32("w", []int{1 << 16}, make([]float32, 1<<16))}, nil))
	f, err := Open(p)
	must(t, err)
	defer f.Close()
	must(t, os.Truncate(p, 4096))
	if _, _, err := f.Float32("w"); err == nil || !strings.Contains(err.Error(), "truncated or rewritten") {
		t.Fatalf("read past the new end of file: %v", err)
	}
}
