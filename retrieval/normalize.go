package retrieval

import (
	"fmt"
	"math"
)

// NormalizeRows returns a copy of the n×dim row-major matrix x in which every
// row is divided by max(‖row‖₂, 1e-12), the rule of PyTorch's F.normalize.
// A zero row stays zero. The norm and the division are done in float64 and
// rounded to float32 once, so a long row loses no accuracy to a float32 sum of
// squares. x is not modified.
//
// NormalizeRows returns an error if the shape does not match len(x) or if x
// holds a NaN or an infinity.
func NormalizeRows(x []float32, n, dim int) ([]float32, error) {
	if err := checkShape("x", x, n, dim); err != nil {
		return nil, err
	}
	return normalized("x", x, dim)
}

// normalized is NormalizeRows of a matrix whose shape is checked: a copy
// with every row normalised, or an error naming the first NaN or infinity.
func normalized(name string, x []float32, dim int) ([]float32, error) {
	out := append([]float32(nil), x...)
	return out, normalizeInPlace(out, dim, "retrieval: "+name, 0)
}

// checkMatrix reports whether x can be read as an n×dim row-major matrix of
// finite values.
func checkMatrix(name string, x []float32, n, dim int) error {
	if err := checkShape(name, x, n, dim); err != nil {
		return err
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("retrieval: %s[%d][%d] is %v, need finite values", name, i/dim, i%dim, v)
		}
	}
	return nil
}

// checkShape reports whether x can be read as an n×dim row-major matrix
// of at least one row. It divides rather than multiplies so that huge n
// and dim cannot overflow into a false match.
func checkShape(name string, x []float32, n, dim int) error {
	if n < 1 {
		return fmt.Errorf("retrieval: %s has %d rows, need at least 1", name, n)
	}
	if dim < 1 {
		return fmt.Errorf("retrieval: %s has rows %d wide, need at least 1", name, dim)
	}
	if len(x)%dim != 0 || len(x)/dim != n {
		return fmt.Errorf("retrieval: %s has %d values, want %d rows × %d", name, len(x), n, dim)
	}
	return nil
}

// ZeroRows returns the indices of the rows of the n×dim row-major matrix x
// whose values are all zero (+0 or -0): rows whose cosine with anything is
// undefined. Normalisation leaves them zero, so they score 0 against every
// key (and every query against a zero key scores 0).
func ZeroRows(x []float32, dim int) []int {
	// (A float32's square is never below float64's smallest: only zeros sum to 0.)
	return rowsWhere(x, dim, func(norm2 float64) bool { return norm2 == 0 })
}

// ShortRows returns the indices of the rows of the normalised row-major
// matrix x (dim wide) that are neither zero nor unit length: rows whose
// length was under F.normalize's 1e-12, which it divides by 1e-12 and so
// leaves shorter than 1 (their direction kept, their scores below their
// cosines; a float64 row short enough to underflow is zero instead). A
// normalised row is otherwise within float32 rounding of unit length, far
// inside the 2⁻¹⁰ taken here.
func ShortRows(x []float32, dim int) []int {
	return rowsWhere(x, dim, func(norm2 float64) bool { return norm2 > 0 && norm2 < 1-0x1p-10 })
}

// TinyRows returns the indices of the rows of the row-major matrix x (dim
// wide, not normalised) shorter than F.normalize's 1e-12, zero rows
// included: rows normalisation cannot make unit length (see ShortRows).
func TinyRows(x []float32, dim int) []int {
	return rowsWhere(x, dim, func(norm2 float64) bool { return norm2 < normEpsilon*normEpsilon })
}

// rowsWhere returns the indices of the rows of the row-major matrix x (dim
// wide) whose squared length, summed in float64, meets keep.
func rowsWhere(x []float32, dim int, keep func(norm2 float64) bool) []int {
	if dim < 1 {
		return nil // (no rows to speak of: the callers' shape checks refuse it)
	}
	var rows []int
	for r := 0; r < len(x)/dim; r++ {
		var sum float64
		for _, v := range x[r*dim : (r+1)*dim] {
			sum += float64(v) * float64(v)
		}
		if keep(sum) {
			rows = append(rows, r)
		}
	}
	return rows
}

// MaxAbs is the largest magnitude in x (0 for none), for messages of rows
// whose values overflow the model's arithmetic.
func MaxAbs(x []float32) float64 {
	var m float64
	for _, v := range x {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}
