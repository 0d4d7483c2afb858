package retrieval

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/dinoclip/dinoclip/npy"
)

// ReadRows decodes key rows [lo, hi), numbered over all segments, to
// float32 into dst ((hi-lo)×Dim values) and returns the largest Euclidean
// norm among them (summed in float64), for a device that ranks the keys in
// its own memory and needs the norms for its error bound. A row holding
// NaN or Inf is an error. The pages read of a memory-mapped segment are
// handed back to the kernel afterwards (see KeySegment.Mapped), so a
// device streaming an index through ReadRows keeps only what it holds
// resident.
func (k *Keys) ReadRows(dst []float32, lo, hi int64) (maxNorm float64, err error) {
	return k.readRows(lo, hi, func(s, a, b int, off int64, vals []float32) {
		copy(dst[off*int64(k.Dim):], vals)
	})
}

// HalfRows writes key rows [lo, hi) as float16 bits into dst, row r at
// dst[r*pitch:], columns Dim..pitch-1 zero, and returns the largest row
// norm of the values as stored (see ReadRows). float16 rows are copied;
// float32 rows are rounded to the nearest float16, and a value beyond
// float16's range (npy.Float16Finite) is an error rather than an infinity.
func (k *Keys) HalfRows(dst []uint16, pitch int, lo, hi int64) (maxNorm float64, err error) {
	if pitch < k.Dim {
		return 0, fmt.Errorf("retrieval: float16 rows of pitch %d for %d-wide keys", pitch, k.Dim)
	}
	var rangeErr error
	maxNorm, err = k.readRows(lo, hi, func(s, a, b int, off int64, vals []float32) {
		seg := &k.Segments[s]
		raw := seg.Data[a*k.Dim*seg.DType.Size() : b*k.Dim*seg.DType.Size()]
		for r := range b - a {
			row := dst[(off+int64(r))*int64(pitch) : (off+int64(r)+1)*int64(pitch)]
			if seg.DType == npy.Float16 {
				for i := range k.Dim {
					row[i] = uint16(raw[2*(r*k.Dim+i)]) | uint16(raw[2*(r*k.Dim+i)+1])<<8
				}
			} else {
				for i, v := range vals[r*k.Dim : (r+1)*k.Dim] {
					h, ok := npy.Float16Finite(v)
					if !ok && rangeErr == nil {
						rangeErr = fmt.Errorf("retrieval: %s: row %d, column %d is %v, beyond %s", seg.Name, a+r, i, v, npy.Float16Range)
					}
					row[i] = h
				}
			}
			clear(row[k.Dim:])
		}
	})
	return maxNorm, cmp.Or(err, rangeErr)
}

// readTile is the rows readRows decodes at a time.
const readTile = 128

// readRows decodes rows [lo, hi) tile by tile and calls use(segment, first
// and end row in it, offset of the first from lo, decoded values) for each.
func (k *Keys) readRows(lo, hi int64, use func(s, a, b int, off int64, vals []float32)) (float64, error) {
	if lo < 0 || hi > k.Rows() || lo > hi {
		return 0, fmt.Errorf("retrieval: key rows [%d, %d) of %d", lo, hi, k.Rows())
	}
	vals := make([]float32, readTile*k.Dim)
	norms2 := make([]float64, readTile)
	var max2 float64
	var err error
	ferr := k.guard(func() {
		for p := lo; p < hi; {
			s, a := k.locate(p)
			b := int(min(int64(k.Segments[s].Rows), int64(a)+hi-p, int64(a)+readTile))
			if err = k.decode(vals[:(b-a)*k.Dim], norms2[:b-a], s, a, b); err != nil {
				return
			}
			use(s, a, b, p-lo, vals[:(b-a)*k.Dim])
			k.evict(s, a, b)
			max2 = max(max2, slices.Max(norms2[:b-a]))
			p += int64(b - a)
		}
	})
	if err = cmp.Or(err, ferr); err != nil {
		return 0, err
	}
	return math.Sqrt(max2), nil
}
