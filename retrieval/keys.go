package retrieval

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"unsafe"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/npy"
)

// maxSearchDim bounds the embedding width so that the float32 error bound
// of the exactness rule (dim·2⁻²⁴ < 1, see [ErrorBound]) stays far from
// its pole; real embeddings are 512 to 1024 wide.
const maxSearchDim = 1 << 20

// Keys is the matrix a search ranks: rows of Dim values, held in one or
// more segments (the shards of an index, or one in-memory matrix) whose
// rows are numbered consecutively: row p of Keys is row p - Offset(s) of
// segment s. A search reads the values as they are stored, float16 or
// float32, and never converts a whole segment.
type Keys struct {
	Dim      int
	Segments []KeySegment
	offsets  []int64 // offsets[s] is the first row of segment s; one extra entry: the total

	// MaxNorm, when positive, is the longest a row may be: a longer one is
	// an error when a search reads it, as NaN is. An index's rows are unit
	// length (OpenIndex sets UnitNormLimit): a longer one is damage, and
	// would outscore every true cosine.
	MaxNorm float64
}

// UnitNormLimit is the longest a row of unit length stays once stored:
// float16 rounding moves each value by at most 2⁻¹¹ of itself (the norm
// by as much), a subnormal one by at most 2⁻²⁵, at most 2⁻¹⁵ in the norm
// for any width up to maxSearchDim; 2⁻¹⁰ bounds both with room to spare.
// (A row may be shorter: zero, or normalised from under F.normalize's
// 1e-12.)
const UnitNormLimit = 1 + 0x1p-10

// KeySegment is one run of key rows: Rows×Dim little-endian values of
// DType (npy.Float16 or npy.Float32) in Data, exactly.
type KeySegment struct {
	Name  string // the file, for error messages
	DType npy.DType
	Rows  int
	Data  []byte

	// Mapped says that Data is a read-only shared mapping of a file, whose
	// pages a search may hand back to the kernel once it has read them
	// (madvise MADV_DONTNEED), which bounds the memory a search of a large
	// index keeps resident. Never set it on memory the program owns: the
	// kernel would discard its contents.
	Mapped bool
}

// NewKeys checks the segments (dtype, sizes, width) and returns the keys
// they make up. Values are not scanned here: a search rejects a key row
// holding NaN or Inf when it reads it.
func NewKeys(dim int, segments ...KeySegment) (*Keys, error) {
	if dim < 1 || dim > maxSearchDim {
		return nil, fmt.Errorf("retrieval: key dimension %d, want 1 to %d", dim, maxSearchDim)
	}
	k := &Keys{Dim: dim, Segments: segments, offsets: make([]int64, len(segments)+1)}
	for s, seg := range segments {
		if seg.DType != npy.Float16 && seg.DType != npy.Float32 {
			return nil, fmt.Errorf("retrieval: %s: keys of dtype %s, want float16 or float32", seg.Name, seg.DType)
		}
		if seg.Rows < 0 {
			return nil, fmt.Errorf("retrieval: %s: %d rows", seg.Name, seg.Rows)
		}
		// Divide rather than multiply, so huge counts cannot overflow into a match.
		rowBytes := dim * seg.DType.Size()
		if len(seg.Data)%rowBytes != 0 || len(seg.Data)/rowBytes != seg.Rows {
			return nil, fmt.Errorf("retrieval: %s: %d bytes, want %d rows × %d %s values", seg.Name, len(seg.Data), seg.Rows, dim, seg.DType.Name())
		}
		k.offsets[s+1] = k.offsets[s] + int64(seg.Rows)
	}
	return k, nil
}

// Float32Keys wraps an in-memory n×dim float32 matrix as Keys without
// copying it on a little-endian host (a big-endian one gets an encoded
// copy). x must not be modified while the keys are in use.
func Float32Keys(name string, x []float32, n, dim int) (*Keys, error) {
	if dim < 1 || n < 0 || len(x)%dim != 0 || len(x)/dim != n {
		return nil, fmt.Errorf("retrieval: %s has %d values, want %d rows × %d", name, len(x), n, dim)
	}
	var data []byte
	if len(x) > 0 {
		if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
			data = unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
		} else {
			data = make([]byte, 4*len(x))
			leconv.PutF32(data, x)
		}
	}
	return NewKeys(dim, KeySegment{Name: name, DType: npy.Float32, Rows: n, Data: data})
}

// Rows is the number of key rows over all segments.
func (k *Keys) Rows() int64 { return k.offsets[len(k.Segments)] }

// Offset is the first row of segment s.
func (k *Keys) Offset(s int) int64 { return k.offsets[s] }

// locate returns the segment holding key row p and the row within it.
func (k *Keys) locate(p int64) (int, int) {
	s := sort.Search(len(k.Segments), func(i int) bool { return k.offsets[i+1] > p })
	return s, int(p - k.offsets[s])
}

// guard runs f, which reads the keys, under mmapfault.Guard: a segment's
// file truncated or rewritten while mapped is an error that names the
// file, not a crash.
func (k *Keys) guard(f func()) error {
	err := mmapfault.Guard(f)
	var fault *mmapfault.Fault
	if errors.As(err, &fault) {
		for _, seg := range k.Segments {
			if fault.In(seg.Data) {
				return fmt.Errorf("retrieval: %s: %w", seg.Name, err)
			}
		}
	}
	return err
}

// decode converts rows [lo, hi) of segment s to float32 into dst
// ((hi-lo)×Dim values) and stores each row's squared norm, summed in
// float64, in norms2.
func (k *Keys) decode(dst []float32, norms2 []float64, s, lo, hi int) error {
	seg := &k.Segments[s]
	size := seg.DType.Size()
	src := seg.Data[lo*k.Dim*size : hi*k.Dim*size]
	if seg.DType == npy.Float16 {
		leconv.F16ToF32(dst, src)
	} else {
		leconv.F32ToF32(dst, src)
	}
	for r := range hi - lo {
		var sum float64
		for i, v := range dst[r*k.Dim : (r+1)*k.Dim] {
			f := float64(v)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("retrieval: %s: row %d, column %d is %v, need finite values", seg.Name, lo+r, i, v)
			}
			sum += f * f
		}
		if err := k.checkNorm(s, lo+r, sum); err != nil {
			return err
		}
		norms2[r] = sum
	}
	return nil
}

// checkNorm refuses row p of segment s, of squared norm norm2, when it is
// longer than MaxNorm.
func (k *Keys) checkNorm(s, p int, norm2 float64) error {
	if k.MaxNorm > 0 && norm2 > k.MaxNorm*k.MaxNorm {
		return fmt.Errorf("retrieval: %s: row %d is %.7g long, longer than the %.7g of a unit-length row (it would outscore every true cosine): the file is damaged; build the index again", k.Segments[s].Name, p, math.Sqrt(norm2), k.MaxNorm)
	}
	return nil
}

// exactScore is the reference score of key row p for query q: the products
// q[i]·key[i] (exact in float64: a float32 times a float16 or float32 has
// at most 48 significant bits) summed in float64 in index order i = 0, 1,
// ..., Dim-1. row is scratch of Dim values.
func (k *Keys) exactScore(q []float32, p int64, row []float32) float64 {
	s, r := k.locate(p)
	seg := &k.Segments[s]
	size := seg.DType.Size()
	src := seg.Data[r*k.Dim*size : (r+1)*k.Dim*size]
	if seg.DType == npy.Float16 {
		leconv.F16ToF32(row, src)
	} else {
		leconv.F32ToF32(row, src)
	}
	var sum float64
	for i, v := range row {
		sum += float64(q[i]) * float64(v)
	}
	return sum
}
