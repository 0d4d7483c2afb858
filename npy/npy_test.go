package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/codectest"
)

func td(name string) string { return filepath.Join("testdata", name) }

// TestNumpyFixtures reads files written by numpy (see testdata/gen_testdata.py).
func TestNumpyFixtures(t *testing.T) {
	f4 := []float32{-0.5, -0.25, 0, 0.25, 0.5, 0.75}
	cases := []struct {
		file    string
		major   int
		dt      DType
		shape   []int
		float32 []float32
		int64   []int64
	}{
		{"f4_2x3.npy", 1, Float32, []int{2, 3}, f4, nil},
		{"f4_v2.npy", 2, Float32, []int{2, 3}, f4, nil},
		{"f4_v3.npy", 3, Float32, []int{2, 3}, f4, nil},
		{"f4_3x2x2.npy", 1, Float32, []int{3, 2, 2}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, nil},
		{"f4_0x768.npy", 1, Float32, []int{0, 768}, []float32{}, nil},
		{"f2_vec.npy", 1, Float16, []int{8}, []float32{1, -2.5, 65504, 5.9604645e-08, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), 0.33325195}, nil},
		{"f8_scalar.npy", 1, Float64, []int{}, []float32{3.25}, nil},
		{"i8_vec.npy", 1, Int64, []int{6}, nil, []int64{0, -1, 1 << 40, 7, math.MinInt64, math.MaxInt64}},
		{"i4_2x2.npy", 1, Int32, []int{2, 2}, nil, []int64{1, -2, math.MaxInt32, math.MinInt32}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			a, err := Open(td(c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if h := a.Header(); h.Major != c.major || h.Minor != 0 {
				t.Errorf("version %d.%d, want %d.0", h.Major, h.Minor, c.major)
			}
			if a.DType() != c.dt || !reflect.DeepEqual(a.Shape(), c.shape) {
				t.Fatalf("got %v %v, want %v %v", a.DType(), a.Shape(), c.dt, c.shape)
			}
			if c.float32 != nil {
				got, err := a.Float32s()
				if err != nil {
					t.Fatal(err)
				}
				if !sameFloat32s(got, c.float32) {
					t.Errorf("values %v, want %v", got, c.float32)
				}
				if _, err := a.Int64s(); !errors.Is(err, ErrDType) {
					t.Errorf("Int64s on a float array: %v, want ErrDType", err)
				}
			}
			if c.int64 != nil {
				got, err := a.Int64s()
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, c.int64) {
					t.Errorf("values %v, want %v", got, c.int64)
				}
				if _, err := a.Float32s(); !errors.Is(err, ErrDType) {
					t.Errorf("Float32s on an int array: %v, want ErrDType", err)
				}
			}
		})
	}
}

// sameFloat32s compares bit patterns, so -0 and NaN are checked exactly.
func sameFloat32s(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// Float16Finite takes exactly what rounds to a finite float16: up to
// 65504 plus less than half an ulp (16), and refuses NaN and infinities.
func TestFloat16Finite(t *testing.T) {
	for _, c := range []struct {
		v  float32
		h  uint16
		ok bool
	}{
		{1, 0x3c00, true}, {65504, 0x7bff, true}, {65519.996, 0x7bff, true}, {-65519.996, 0xfbff, true},
		{65520, 0x7c00, false}, {-70000, 0xfc00, false}, {float32(math.Inf(1)), 0x7c00, false},
		{float32(math.NaN()), 0, false},
	} {
		h, ok := Float16Finite(c.v)
		if ok != c.ok || (c.ok || !math.IsNaN(float64(c.v))) && h != c.h {
			t.Errorf("Float16Finite(%v) = %#x, %v; want %#x, %v", c.v, h, ok, c.h, c.ok)
		}
	}
}

// TestEncodeHeaderMatchesNumpy compares our headers with numpy's for 200
// shapes (numpy 1.26.4 and 2.4.6 write identical bytes for all of them).
func TestEncodeHeaderMatchesNumpy(t *testing.T) {
	f, err := os.Open(td("numpy_headers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n, aligned := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		dt, err := dtypeFromDescr(fields[0])
		if err != nil {
			t.Fatal(err)
		}
		shape := []int{}
		if fields[1] != "-" {
			for _, s := range strings.Split(fields[1], ",") {
				d, err := strconv.Atoi(s)
				if err != nil {
					t.Fatal(err)
				}
				shape = append(shape, d)
			}
		}
		want, err := hex.DecodeString(fields[2])
		if err != nil {
			t.Fatal(err)
		}
		n++
		if len(want)-len(bytes.TrimRight(want, " \n")) > headerAlign {
			aligned++
		}
		got, err := EncodeHeader(dt, shape)
		if _, fits := elementCount(shape, dt.Size()); !fits {
			// numpy writes any header; we refuse shapes whose data size
			// overflows, and so must the parser.
			if !errors.Is(err, ErrShape) {
				t.Errorf("%v %v: EncodeHeader error %v, want ErrShape", dt, shape, err)
			}
			if _, err := ParseHeader(want); !errors.Is(err, ErrShape) {
				t.Errorf("%v %v: ParseHeader error %v, want ErrShape", dt, shape, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v %v: %v", dt, shape, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v %v:\n got %q\nwant %q", dt, shape, got, want)
		}
		h, err := ParseHeader(want)
		if err != nil {
			t.Errorf("%v %v: ParseHeader: %v", dt, shape, err)
		} else if h.DType != dt || !reflect.DeepEqual(h.Shape, shape) || h.DataOffset != len(want) {
			t.Errorf("ParseHeader = %+v, want %v %v offset %d", h, dt, shape, len(want))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 100 || aligned == 0 {
		t.Fatalf("only %d headers (%d already aligned) checked", n, aligned)
	}
}

// TestWriteMatchesNumpy: our writers produce files byte-identical to numpy's.
func TestWriteMatchesNumpy(t *testing.T) {
	dir := t.TempDir()
	check := func(name string, write func(path string) error) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := write(path); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		want, err := os.ReadFile(td(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from numpy's:\n got %q\nwant %q", name, got, want)
		}
	}
	check("f4_2x3.npy", func(p string) error {
		return WriteFloat32(p, []int{2, 3}, []float32{-0.5, -0.25, 0, 0.25, 0.5, 0.75})
	})
	check("f4_0x768.npy", func(p string) error { return WriteFloat32(p, []int{0, 768}, nil) })
	check("f2_vec.npy", func(p string) error {
		return WriteFloat16(p, []int{8}, []float32{1, -2.5, 65504, 6e-8, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), 1.0 / 3})
	})
	check("f8_scalar.npy", func(p string) error { return WriteFloat64(p, []int{}, []float64{3.25}) })
	check("i8_vec.npy", func(p string) error {
		return WriteInt64(p, []int{6}, []int64{0, -1, 1 << 40, 7, math.MinInt64, math.MaxInt64})
	})
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	shapes := [][]int{{}, {0}, {1}, {7}, {3, 5}, {0, 4}, {4, 0}, {2, 3, 4}}
	for _, shape := range shapes {
		n, _ := elementCount(shape, 8)
		f32 := make([]float32, n)
		f64 := make([]float64, n)
		i64 := make([]int64, n)
		for i := range n {
			f32[i] = float32(i)*1.37 - 5
			f64[i] = float64(i)*1e-300 - 1e300
			i64[i] = int64(i)*0x123456789 - 1<<62
		}
		name := strings.Trim(strings.ReplaceAll(shapeRepr(shape), " ", ""), "()")

		p := filepath.Join(dir, "f32_"+name+".npy")
		if err := WriteFloat32(p, shape, f32); err != nil {
			t.Fatal(err)
		}
		got, gs, err := ReadFloat32(p)
		if err != nil || !sameFloat32s(got, f32) || !reflect.DeepEqual(gs, shape) {
			t.Errorf("float32 %v: got %v %v %v", shape, got, gs, err)
		}

		p = filepath.Join(dir, "f16_"+name+".npy")
		if err := WriteFloat16(p, shape, f32); err != nil {
			t.Fatal(err)
		}
		got, gs, err = ReadFloat32(p)
		want := make([]float32, n)
		for i, v := range f32 {
			want[i] = Float16Value(Float16Bits(v))
		}
		if err != nil || !sameFloat32s(got, want) || !reflect.DeepEqual(gs, shape) {
			t.Errorf("float16 %v: got %v %v %v, want %v", shape, got, gs, err, want)
		}

		p = filepath.Join(dir, "f64_"+name+".npy")
		if err := WriteFloat64(p, shape, f64); err != nil {
			t.Fatal(err)
		}
		g64, gs, err := ReadFloat64(p)
		if err != nil || !reflect.DeepEqual(g64, f64) || !reflect.DeepEqual(gs, shape) {
			t.Errorf("float64 %v: got %v %v %v", shape, g64, gs, err)
		}
		got, _, err = ReadFloat32(p)
		for i := range want {
			want[i] = float32(f64[i])
		}
		if err != nil || !sameFloat32s(got, want) {
			t.Errorf("float64 as float32 %v: got %v %v, want %v", shape, got, err, want)
		}

		p = filepath.Join(dir, "i64_"+name+".npy")
		if err := WriteInt64(p, shape, i64); err != nil {
			t.Fatal(err)
		}
		gi, gs, err := ReadInt64(p)
		if err != nil || !reflect.DeepEqual(gi, i64) || !reflect.DeepEqual(gs, shape) {
			t.Errorf("int64 %v: got %v %v %v", shape, gi, gs, err)
		}
	}
}

// TestWriteLarge crosses the writer's conversion-chunk boundary.
func TestWriteLarge(t *testing.T) {
	n := 3*chunkElems + 17
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i)
	}
	p := filepath.Join(t.TempDir(), "big.npy")
	if err := WriteFloat32(p, []int{n / 7, 7}, data[:n/7*7]); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadFloat32(p)
	if err != nil || !sameFloat32s(got, data[:n/7*7]) {
		t.Fatalf("mismatch (err %v)", err)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.npy")
	if err := WriteFloat32(p, []int{2, 3}, make([]float32, 5)); !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "6 elements but 5") || !strings.Contains(err.Error(), p) {
		t.Errorf("length mismatch: %v", err)
	}
	if err := WriteFloat32(p, []int{-1}, nil); !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative dim: %v", err)
	}
	if err := WriteInt64(p, []int{1 << 40, 1 << 40}, nil); !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "overflows") {
		t.Errorf("overflow: %v", err)
	}
	if err := WriteFloat32(filepath.Join(dir, "missing", "x.npy"), []int{1}, []float32{1}); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	// Renaming over a directory fails after the data was written: the
	// temporary file must be cleaned up.
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFloat32(filepath.Join(dir, "adir"), []int{1}, []float32{1}); err == nil {
		t.Error("write over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "adir" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only adir (no partial or temporary files)", names)
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.npy")
	if err := WriteFloat32(p, []int{2}, []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	// Hold the old file open: after the replacement it must still read as
	// the old, complete content (a rename, not an in-place rewrite).
	old, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := WriteFloat32(p, []int{3}, []float32{4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	v, err := old.Float32s()
	if err != nil || !sameFloat32s(v, []float32{1, 2}) {
		t.Errorf("old mapping reads %v, %v", v, err)
	}
	v, _, err = ReadFloat32(p)
	if err != nil || !sameFloat32s(v, []float32{4, 5, 6}) {
		t.Errorf("new file reads %v, %v", v, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the directory, want 1", len(entries))
	}
}

// build assembles a version 1.0 file from header text (padding it like
// numpy unless it already ends in '\n') and data.
func build(dict string, data []byte) []byte {
	if !strings.HasSuffix(dict, "\n") {
		dict += strings.Repeat(" ", (headerAlign-(10+len(dict)+1)%headerAlign)%headerAlign) + "\n"
	}
	b := append([]byte(magic), 1, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dict)))
	b = append(b, dict...)
	return append(b, data...)
}

func TestHeaderVariantsAccepted(t *testing.T) {
	cases := []struct {
		dict  string
		dt    DType
		shape []int
	}{
		{`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, Float32, []int{2, 3}},
		{`{"descr": "<f4", "fortran_order": False, "shape": (2, 3)}`, Float32, []int{2, 3}},
		{`{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}`, Float32, []int{2, 3}},
		{`{'descr':'<f4','fortran_order':False,'shape':(2,3,),}`, Float32, []int{2, 3}},
		{"{ 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 ) , }", Float32, []int{2, 3}},
		{`{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }`, Float32, []int{2, 3}}, // Python 2 numpy
		{`{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }`, Float16, []int{6}},
		{`{'descr': '<i8', 'fortran_order': False, 'shape': (), }`, Int64, []int{}},
		{`{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }`, Float32, []int{0, 3}},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + strings.Repeat(" ", 300) + "\n", Float32, []int{2, 3}},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", Float32, []int{2, 3}}, // unpadded
	}
	for _, c := range cases {
		n, _ := elementCount(c.shape, 1)
		b := build(c.dict, make([]byte, n*c.dt.Size()))
		a, err := FromBytes("variant.npy", b)
		if err != nil {
			t.Errorf("%q: %v", c.dict, err)
			continue
		}
		if a.DType() != c.dt || !reflect.DeepEqual(a.Shape(), c.shape) {
			t.Errorf("%q: got %v %v", c.dict, a.DType(), a.Shape())
		}
	}
}

func TestRejections(t *testing.T) {
	good := build(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, make([]byte, 24))
	v2 := append([]byte(magic), 2, 0)
	v2 = binary.LittleEndian.AppendUint32(v2, 0xFFFFFF00)
	hdr := func(dict string) []byte { return build(dict, make([]byte, 24)) }
	// A header of maxHeaderLen bytes, padded with spaces but not ended by
	// a newline: its message quotes its start only.
	longV2 := binary.LittleEndian.AppendUint32(append([]byte(magic), 2, 0), maxHeaderLen)
	longV2 = append(longV2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"...)
	longV2 = append(longV2, bytes.Repeat([]byte(" "), maxHeaderLen-(len(longV2)-12))...)
	cases := []struct {
		name string
		b    []byte
		kind error
		msg  string
	}{
		{"empty", nil, ErrNotNPY, "magic"},
		{"bad magic", append([]byte("\x93NUMPX"), good[6:]...), ErrNotNPY, "magic"},
		{"pickle", []byte("\x80\x04\x95"), ErrNotNPY, "magic"},
		// Files given in an array's place are named as what they are.
		{"safetensors", []byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"), ErrNotNPY, "it is a safetensors file"},
		{"npz", []byte("PK\x03\x04\x14\x00\x00\x00"), ErrNotNPY, "it is a zip archive (numpy's .npz"},
		{"only magic", []byte(magic), ErrSize, "truncated"},
		{"version 4.0", append([]byte(magic+"\x04\x00"), good[8:]...), ErrVersion, "version 4.0"},
		{"version 1.1", append([]byte(magic+"\x01\x01"), good[8:]...), ErrVersion, "version 1.1"},
		{"no header length", []byte(magic + "\x01\x00\x10"), ErrSize, "truncated"},
		{"truncated header", good[:40], ErrSize, "truncated"},
		{"huge v2 header", v2, ErrHeader, "header length 4294967040 is too large (at most 1048576"},
		{"v2 header one byte over the limit", binary.LittleEndian.AppendUint32(append([]byte(magic), 2, 0), maxHeaderLen+1), ErrHeader, "too large"},
		{"long malformed v2 header", longV2, ErrHeader, `malformed header: header does not end with a newline in "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }..."`},
		{"truncated data", good[:len(good)-1], ErrSize, "truncated"},
		{"trailing bytes", append(append([]byte{}, good...), 0, 0, 0, 0), ErrSize, "4 trailing bytes"},
		{"fortran", hdr(`{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }`), ErrFortranOrder, "np.ascontiguousarray"},
		{"big-endian", hdr(`{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }`), ErrDType, "big-endian"},
		{"object", hdr(`{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }`), ErrDType, "object"},
		{"uint8", hdr(`{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }`), ErrDType, `"|u1" is not supported`},
		{"native order", hdr(`{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3), }`), ErrDType, `"f4" is not supported`},
		{"structured", hdr(`{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }`), ErrDType, "structured"},
		{"negative dim", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }`), ErrShape, "negative dimension -3"},
		{"overflow", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }`), ErrShape, "overflows"},
		{"overflow with zero", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }`), ErrShape, "overflows"},
		{"dim too large", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }`), ErrShape, "dimension 99999999999999999999 in shape is too large"},
		{"dim of 3000 digits", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (` + strings.Repeat("9", 3000) + `,), }`), ErrShape, "dimension 99999999999999999999... (3000 digits) in shape is too large"},
		{"too many dims", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (` + strings.Repeat("1, ", 65) + `), }`), ErrShape, "more than 64"},
		{"float dim", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3), }`), ErrHeader, "integers"},
		{"leading zero", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3), }`), ErrHeader, "leading zero"},
		{"int shape", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (6), }`), ErrHeader, "not a tuple"},
		{"list shape", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }`), ErrHeader, "tuple"},
		{"missing shape", hdr(`{'descr': '<f4', 'fortran_order': False}`), ErrHeader, "missing key 'shape'"},
		{"missing descr", hdr(`{'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, "missing key 'descr'"},
		{"missing fortran", hdr(`{'descr': '<f4', 'shape': (2, 3)}`), ErrHeader, "missing key 'fortran_order'"},
		{"extra key", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}`), ErrHeader, "unexpected key"},
		{"duplicate key", hdr(`{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, "duplicate key"},
		{"fortran not bool", hdr(`{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}`), ErrHeader, "True or False"},
		{"fortran prefix", hdr(`{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}`), ErrHeader, "True or False"},
		{"no newline", append(append([]byte{}, good[:len(good)-25]...), ' '), ErrHeader, "newline"},
		{"text after dict", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x`), ErrHeader, "after the closing"},
		{"not a dict", hdr(`['descr', '<f4']`), ErrHeader, "expected '{'"},
		{"unterminated", hdr(`{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, ""},
		{"escape", hdr(`{'des\x63r': '<f4', 'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, "escape"},
		{"missing colon", hdr(`{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, "expected ':'"},
		{"missing comma", hdr(`{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, "expected ',' or '}'"},
		{"double comma", hdr(`{'descr': '<f4',, 'fortran_order': False, 'shape': (2, 3)}`), ErrHeader, "quoted string"},
		{"unclosed shape", hdr(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}`), ErrHeader, "expected ',' or ')'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromBytes("case.npy", c.b)
			codectest.CheckRejected(t, err, c.kind, "npy: case.npy: ", c.msg)
		})
	}
}

// TestRejectNumpyFiles: files numpy wrote that we must refuse, via Open.
func TestRejectNumpyFiles(t *testing.T) {
	cases := []struct {
		file string
		kind error
		msg  string
	}{
		{"bad_fortran.npy", ErrFortranOrder, "Fortran-order arrays are not supported; save with np.ascontiguousarray"},
		{"bad_bigendian.npy", ErrDType, "big-endian"},
		{"bad_object.npy", ErrDType, "object arrays"},
		{"bad_structured.npy", ErrDType, "structured"},
		{"bad_u1.npy", ErrDType, "|u1"},
	}
	for _, c := range cases {
		_, err := Open(td(c.file))
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), c.file) {
			t.Errorf("%s: error %v, want %v mentioning %q and the file", c.file, err, c.kind, c.msg)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "nope.npy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	empty := filepath.Join(dir, "empty.npy")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrNotNPY) || !strings.Contains(err.Error(), "empty file") || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty file: %v", err)
	}
	good, _ := os.ReadFile(td("f4_2x3.npy"))
	trunc := filepath.Join(dir, "trunc.npy")
	os.WriteFile(trunc, good[:len(good)-3], 0o644)
	if _, err := Open(trunc); !errors.Is(err, ErrSize) || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), trunc) {
		t.Errorf("truncated: %v", err)
	}
}

func TestReadRows(t *testing.T) {
	dir := t.TempDir()
	const rows, cols = 37, 5
	data := make([]float32, rows*cols)
	for i := range data {
		data[i] = float32(i) + 0.5
	}
	f64 := make([]float64, len(data))
	for i := range f64 {
		f64[i] = 1 + float64(i)*(1.0/3)
	}
	paths := map[DType]string{Float32: "f4.npy", Float16: "f2.npy", Float64: "f8.npy"}
	for dt, name := range paths {
		paths[dt] = filepath.Join(dir, name)
	}
	must(t, WriteFloat32(paths[Float32], []int{rows, cols}, data))
	must(t, WriteFloat16(paths[Float16], []int{rows, cols}, data))
	must(t, WriteFloat64(paths[Float64], []int{rows, cols}, f64))
	for dt, p := range paths {
		a, err := Open(p)
		must(t, err)
		if a.Rows() != rows || a.RowLen() != cols || a.Len() != rows*cols || a.DType() != dt || a.Name() != p {
			t.Fatalf("%v: rows %d rowlen %d len %d dtype %v name %s", dt, a.Rows(), a.RowLen(), a.Len(), a.DType(), a.Name())
		}
		for _, r := range [][2]int{{0, rows}, {0, 1}, {3, 10}, {rows - 1, rows}, {5, 5}} {
			dst := make([]float32, (r[1]-r[0])*cols)
			must(t, a.ReadRows(dst, r[0], r[1]))
			for i, v := range dst {
				k := r[0]*cols + i
				var want float32
				switch dt {
				case Float32:
					want = data[k]
				case Float16:
					want = Float16Value(Float16Bits(data[k]))
				case Float64:
					want = float32(f64[k])
				}
				if math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("%v rows %v: element %d = %v, want %v", dt, r, i, v, want)
				}
			}
			dst64 := make([]float64, (r[1]-r[0])*cols)
			must(t, a.ReadRows64(dst64, r[0], r[1]))
			for i, v := range dst64 {
				k := r[0]*cols + i
				want := float64(data[k]) // exact from float32
				switch dt {
				case Float16:
					want = float64(Float16Value(Float16Bits(data[k])))
				case Float64:
					want = f64[k]
				}
				if v != want {
					t.Fatalf("%v rows %v: ReadRows64 element %d = %v, want %v", dt, r, i, v, want)
				}
			}
			raw, err := a.RawRows(r[0], r[1])
			must(t, err)
			if len(raw) != (r[1]-r[0])*cols*dt.Size() {
				t.Errorf("RawRows length %d", len(raw))
			}
		}
		for _, r := range [][2]int{{-1, 2}, {2, 1}, {0, rows + 1}} {
			if err := a.ReadRows(make([]float32, 0), r[0], r[1]); !errors.Is(err, ErrRange) || !strings.Contains(err.Error(), p) {
				t.Errorf("rows %v: %v, want ErrRange naming the file", r, err)
			}
		}
		if err := a.ReadRows(make([]float32, cols+1), 0, 1); !errors.Is(err, ErrRange) || !strings.Contains(err.Error(), "need 5") {
			t.Errorf("short dst: %v", err)
		}
		must(t, a.Close())
		must(t, a.Close())
		if err := a.ReadRows(make([]float32, cols), 0, 1); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
		if _, err := a.Float32s(); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	}
	ip := filepath.Join(dir, "i.npy")
	must(t, WriteInt64(ip, []int{2, 2}, []int64{1, 2, 3, 4}))
	a, err := Open(ip)
	must(t, err)
	defer a.Close()
	if err := a.ReadRows(make([]float32, 2), 0, 1); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), "<i8") {
		t.Errorf("ReadRows on int64: %v", err)
	}
	if err := a.ReadRows64(make([]float64, 2), 0, 1); !errors.Is(err, ErrDType) || !strings.Contains(err.Error(), "<i8") {
		t.Errorf("ReadRows64 on int64: %v", err)
	}
	if _, err := a.Float64s(); !errors.Is(err, ErrDType) {
		t.Errorf("Float64s on int64: %v", err)
	}
}

// TestConcurrentReads is meant for -race: many goroutines read rows while
// another closes the array.
func TestConcurrentReads(t *testing.T) {
	const rows, cols = 256, 33
	data := make([]float32, rows*cols)
	for i := range data {
		data[i] = float32(i)
	}
	p := filepath.Join(t.TempDir(), "c.npy")
	must(t, WriteFloat16(p, []int{rows, cols}, data))
	a, err := Open(p)
	must(t, err)
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			dst := make([]float32, 8*cols)
			for it := 0; it < 200; it++ {
				start := (g*37 + it*11) % (rows - 8)
				if err := a.ReadRows(dst, start, start+8); err != nil {
					errs <- err
					return
				}
				for i, v := range dst {
					if want := Float16Value(Float16Bits(data[start*cols+i])); v != want {
						errs <- errors.New("wrong value")
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Close racing with readers: readers either finish or see ErrClosed.
	codectest.CloseWhileReading(t, 8, ErrClosed, func(int) func() error {
		dst := make([]float32, cols)
		return func() error { return a.ReadRows(dst, 0, 1) }
	}, a.Close)
}

// TestTruncatedWhileOpen: a mapped file that shrinks underneath us gives an
// error, not a crash (SIGBUS).
func TestTruncatedWhileOpen(t *testing.T) {
	const rows, cols = 4096, 16 // several pages
	p := filepath.Join(t.TempDir(), "t.npy")
	must(t, WriteFloat32(p, []int{rows, cols}, make([]float32, rows*cols)))
	a, err := Open(p)
	must(t, err)
	defer a.Close()
	must(t, os.Truncate(p, 4096))
	err = a.ReadRows(make([]float32, cols), rows-1, rows)
	if err == nil || !strings.Contains(err.Error(), "truncated or rewritten") {
		t.Fatalf("read past the new end of file: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Name is numpy's name of a dtype (messages say "float16", not "<f2").
func TestDTypeName(t *testing.T) {
	for d, want := range map[DType]string{Float16: "float16", Float32: "float32", Float64: "float64", Int32: "int32", Int64: "int64", 0: "invalid", 99: "invalid"} {
		if got := d.Name(); got != want {
			t.Errorf("DType(%d).Name() = %q, want %q", d, got, want)
		}
	}
}

// WriteFloatsFunc writes what WriteFloat32 and WriteFloat16 write of the
// values fill gives, across chunks; other dtypes are refused.
func TestWriteFloatsFunc(t *testing.T) {
	dir := t.TempDir()
	shape := []int{3*chunkElems/7 + 5, 7} // (more than two chunks, the last short)
	want := make([]float32, shape[0]*shape[1])
	for i := range want {
		want[i] = float32(i%1000) * 0.37
	}
	for _, c := range []struct {
		dt    DType
		whole func(string, []int, []float32) error
	}{{Float32, WriteFloat32}, {Float16, WriteFloat16}} {
		next := 0
		streamed, whole := filepath.Join(dir, "s.npy"), filepath.Join(dir, "w.npy")
		if err := WriteFloatsFunc(streamed, c.dt, shape, func(v []float32) { next += copy(v, want[next:]) }); err != nil {
			t.Fatal(err)
		}
		if err := c.whole(whole, shape, want); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(streamed)
		b, _ := os.ReadFile(whole)
		if next != len(want) || len(b) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: %d values filled of %d, %d bytes written against %d", c.dt.Name(), next, len(want), len(a), len(b))
		}
	}
	if err := WriteFloatsFunc(filepath.Join(dir, "x.npy"), Float64, []int{1}, func([]float32) {}); err == nil {
		t.Error("WriteFloatsFunc of float64: no error")
	}
}

// OpenMatrix takes a 2-D float array of rows at least one value wide, and
// refuses anything else, saying what it is and what is wanted.
func TestOpenMatrix(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, w func(string) error) string {
		p := filepath.Join(dir, name)
		if err := w(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok.npy", func(p string) error { return WriteFloat16(p, []int{3, 2}, make([]float32, 6)) })
	a, err := OpenMatrix(ok, "[n, d]")
	if err != nil || a.Rows() != 3 || a.RowLen() != 2 {
		t.Fatalf("a [3 2] float16 matrix: %v", err)
	}
	a.Close()
	for _, c := range []struct{ name, path, want string }{
		{"int64", write("i.npy", func(p string) error { return WriteInt64(p, []int{2, 2}, make([]int64, 4)) }),
			"i.npy: a [2 2] array of int64, want a 2-D float16, float32 or float64 matrix [n, d]"},
		{"one row saved 1-D", write("v.npy", func(p string) error { return WriteFloat32(p, []int{4}, make([]float32, 4)) }),
			"v.npy: a [4] array of float32, want a 2-D float16, float32 or float64 matrix [n, d] (save a single row as [1, 4])"},
		{"3-D", write("c.npy", func(p string) error { return WriteFloat32(p, []int{1, 2, 2}, make([]float32, 4)) }),
			"c.npy: a [1 2 2] array of float32, want a 2-D"},
		{"rows of nothing", write("z.npy", func(p string) error { return WriteFloat32(p, []int{5, 0}, nil) }),
			"z.npy: a [5 0] array: its rows hold no values, want rows at least 1 wide"},
		{"no file", filepath.Join(dir, "none.npy"), "no such file"},
	} {
		if a, err := OpenMatrix(c.path, "[n, d]"); err == nil || !strings.Contains(err.Error(), c.want) {
			if a != nil {
				a.Close()
			}
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
