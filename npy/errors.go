package npy

import (
	"errors"
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/internal/kinderr"
)

// Sentinel errors, for errors.Is. Every error returned by this package wraps
// one of these and adds the file name and the details.
var (
	// ErrNotNPY: the file does not start with the .npy magic string.
	ErrNotNPY = errors.New("not a .npy file")
	// ErrVersion: a format version other than 1.0, 2.0 or 3.0.
	ErrVersion = errors.New("unsupported .npy format version")
	// ErrHeader: the header dictionary is malformed or incomplete.
	ErrHeader = errors.New("malformed .npy header")
	// ErrFortranOrder: the array is stored in Fortran (column-major) order.
	ErrFortranOrder = errors.New("Fortran-order arrays are not supported; save with np.ascontiguousarray")
	// ErrDType: the dtype is not supported, or not convertible to what was asked.
	ErrDType = errors.New("unsupported dtype")
	// ErrShape: a negative, overflowing or otherwise unusable shape.
	ErrShape = errors.New("invalid shape")
	// ErrSize: the file is shorter or longer than its header says.
	ErrSize = errors.New("file size does not match header")
	// ErrRange: a row range outside the array or a destination of the wrong length.
	ErrRange = errors.New("bad row range")
	// ErrClosed: the Array has been closed.
	ErrClosed = errors.New("array is closed")
)

// errorf returns an error with the formatted message that errors.Is
// matches to kind, one of the sentinels above.
func errorf(kind error, format string, args ...any) error {
	return kinderr.Errorf(kind, format, args...)
}

// NonFiniteError is a NaN or an infinity in an array read as float32, at
// Row and Column of File: what no training, projection or evaluation can
// use. Value is as read into float32; Float64 is set for a float64 file,
// whose finite values beyond float32's range read as ±Inf (which the
// message says, lest the file seem to hold an infinity).
type NonFiniteError struct {
	File        string
	Row, Column int
	Value       float64
	Float64     bool
}

func (e *NonFiniteError) Error() string {
	if e.Float64 && math.IsInf(e.Value, 0) {
		return fmt.Sprintf("%s: row %d, column %d is %v in float32 (infinite, or a float64 beyond float32's range)", e.File, e.Row, e.Column, e.Value)
	}
	return fmt.Sprintf("%s: row %d, column %d is %v", e.File, e.Row, e.Column, e.Value)
}

// CheckFinite returns a *NonFiniteError for the first NaN or infinity in
// x, whole rows of a read from row first on (as ReadRows reads them), or
// nil.
func (a *Array) CheckFinite(x []float32, first int) error {
	w := 1
	if shape := a.Shape(); len(shape) == 2 {
		w = max(shape[1], 1)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return &NonFiniteError{File: a.Name(), Row: first + i/w, Column: i % w, Value: float64(v), Float64: a.DType() == Float64}
		}
	}
	return nil
}
