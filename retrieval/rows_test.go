package retrieval_test

import (
	"math"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/retrieval/searchtest"
)

// ReadRows and HalfRows read row ranges across segments of both dtypes:
// the values as stored (HalfRows: float16 bits copied, float32 rounded,
// padding zero) and the largest row norm of the range.
func TestReadRowsHalfRows(t *testing.T) {
	const dim = 3
	keys, vals := searchtest.Keys(t, dim,
		searchtest.Segment{Half: true, Rows: 2, Data: []float32{1, 2, 2, 0.5, 0, 0}},
		searchtest.Segment{Rows: 0},
		searchtest.Segment{Rows: 3, Data: []float32{0.1, 0, 0, 6, 8, 0, -1e-7, 3, 4}},
	)
	got := make([]float32, 4*dim)
	norm, err := keys.ReadRows(got, 1, 5)
	if err != nil || norm != 10 {
		t.Fatalf("ReadRows [1, 5): norm %v, error %v; want 10", norm, err)
	}
	for i, v := range got {
		if v != vals[dim+i] {
			t.Fatalf("ReadRows value %d: %v, want %v", i, v, vals[dim+i])
		}
	}
	const pitch = 8
	half := make([]uint16, 5*pitch)
	for i := range half {
		half[i] = 0xffff // the padding must be written
	}
	norm, err = keys.HalfRows(half, pitch, 0, 5)
	if err != nil || norm != 10 {
		t.Fatalf("HalfRows: norm %v, error %v; want 10", norm, err)
	}
	for r := range 5 {
		for i := range pitch {
			want := uint16(0)
			if i < dim {
				want = leconv.Float16Bits(vals[r*dim+i])
			}
			if half[r*pitch+i] != want {
				t.Fatalf("HalfRows row %d column %d: %#x, want %#x", r, i, half[r*pitch+i], want)
			}
		}
	}
	if _, err := keys.HalfRows(half, 2, 0, 1); err == nil || !strings.Contains(err.Error(), "pitch") {
		t.Errorf("pitch below the width: error %v", err)
	}
	for _, r := range [][2]int64{{-1, 2}, {3, 6}, {4, 2}} {
		if _, err := keys.ReadRows(got, r[0], r[1]); err == nil || !strings.Contains(err.Error(), "key rows") {
			t.Errorf("rows [%d, %d): error %v", r[0], r[1], err)
		}
	}
}

// HalfRows refuses a float32 value float16 cannot hold (rather than write
// an infinity), and both refuse NaN, naming the row and column.
func TestHalfRowsRefuses(t *testing.T) {
	big, _ := searchtest.Keys(t, 2, searchtest.Segment{Rows: 2, Data: []float32{1, 2, 3, -65520}})
	if _, err := big.HalfRows(make([]uint16, 4), 2, 0, 2); err == nil || !strings.Contains(err.Error(), "row 1, column 1") || !strings.Contains(err.Error(), "float16's range") {
		t.Errorf("-65520: error %v", err)
	}
	// 65504 is float16's largest; 65519.996 rounds to it (npy.Float16Finite:
	// the rule every float16 writer applies).
	edge, _ := searchtest.Keys(t, 1, searchtest.Segment{Rows: 2, Data: []float32{65504, -65519.996}})
	half := make([]uint16, 2)
	if _, err := edge.HalfRows(half, 1, 0, 2); err != nil || half[0] != 0x7bff || half[1] != 0xfbff {
		t.Errorf("65504 and -65519.996 as float16: %#x, error %v", half, err)
	}
	nan, _ := searchtest.Keys(t, 2, searchtest.Segment{Half: true, Rows: 2, Data: []float32{1, 2, float32(math.NaN()), 4}})
	if _, err := nan.HalfRows(make([]uint16, 4), 2, 0, 2); err == nil || !strings.Contains(err.Error(), "row 1, column 0 is NaN") {
		t.Errorf("NaN: error %v", err)
	}
	if _, err := nan.ReadRows(make([]float32, 4), 0, 2); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("NaN: error %v", err)
	}
}
