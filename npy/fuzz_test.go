package npy

import (
	"bytes"
	"math"
	"reflect"
	"testing"

	"github.com/dinoclip/dinoclip/internal/codectest"
)

// FuzzParse feeds arbitrary bytes to the reader. Nothing may panic, and
// every accepted input must survive re-encoding: our header for the parsed
// dtype and shape plus the same data bytes parses to the same array.
func FuzzParse(f *testing.F) {
	codectest.AddFiles(f, "*.npy")
	f.Add(build(`{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }`, make([]byte, 24)))
	f.Add(build(`{"shape":(1,),"descr":"<i8","fortran_order":False}`, make([]byte, 8)))
	f.Add(build(`{'descr': '<f2', 'fortran_order': False, 'shape': (0, 4294967296), }`, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		h1, herr := ParseHeader(data)
		a, err := FromBytes("fuzz.npy", data)
		if err != nil {
			return
		}
		if herr != nil {
			t.Fatalf("FromBytes accepted what ParseHeader rejected: %v", herr)
		}
		h := a.Header()
		if !reflect.DeepEqual(h, h1) {
			t.Fatalf("headers differ: %+v vs %+v", h, h1)
		}
		raw, err := a.RawRows(0, a.Rows())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, data[h.DataOffset:]) {
			t.Fatal("RawRows is not the data")
		}
		enc, err := EncodeHeader(h.DType, h.Shape)
		if err != nil {
			t.Fatalf("cannot re-encode accepted header %+v: %v", h, err)
		}
		b := append(enc, raw...)
		a2, err := FromBytes("re.npy", b)
		if err != nil {
			t.Fatalf("re-encoded file rejected: %v", err)
		}
		h2 := a2.Header()
		if h2.DType != h.DType || !reflect.DeepEqual(h2.Shape, h.Shape) || h2.Major != 1 {
			t.Fatalf("round trip changed the header: %+v -> %+v", h, h2)
		}
		if enc2, _ := EncodeHeader(h2.DType, h2.Shape); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not stable")
		}
		if h.DType.IsFloat() {
			v, err := a.Float64s()
			if err != nil {
				t.Fatal(err)
			}
			v2, _ := a2.Float64s()
			for i := range v {
				if math.Float64bits(v[i]) != math.Float64bits(v2[i]) {
					t.Fatal("values changed")
				}
			}
			dst := make([]float32, a.Len())
			if err := a.ReadRows(dst, 0, a.Rows()); err != nil {
				t.Fatal(err)
			}
			all, _ := a.Float32s()
			if !sameFloat32s(dst, all) {
				t.Fatal("ReadRows and Float32s disagree")
			}
		} else {
			v, err := a.Int64s()
			if err != nil {
				t.Fatal(err)
			}
			v2, _ := a2.Int64s()
			if !reflect.DeepEqual(v, v2) {
				t.Fatal("values changed")
			}
		}
	})
}
