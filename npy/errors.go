package npy

import (
	"errors"

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
