package safetensors

import (
	"errors"
	"fmt"

	"github.com/dinoclip/dinoclip/internal/kinderr"
)

// Sentinel errors, for errors.Is. Every error returned by this package wraps
// one of these and adds the file name and the details.
var (
	// ErrSize: the file is too short for its header length, or the header
	// length is out of bounds.
	ErrSize = errors.New("bad header length")
	// ErrCutShort, one kind of ErrSize: a header length within the limit
	// but past the file's end, then the header's opening brace: a
	// safetensors file whose writing was cut short (or a file truncated
	// since).
	ErrCutShort = fmt.Errorf("%w: the file ends inside its header", ErrSize)
	// ErrHeader: the JSON header is malformed, has duplicate or unknown
	// keys, or bad metadata.
	ErrHeader = errors.New("malformed header")
	// ErrDType: an unknown dtype, or one that cannot be converted to the
	// type asked for.
	ErrDType = errors.New("unsupported dtype")
	// ErrShape: a shape that is invalid or does not match its byte range
	// or data.
	ErrShape = errors.New("invalid shape")
	// ErrOffsets: byte ranges out of the buffer, overlapping, or not
	// covering it contiguously.
	ErrOffsets = errors.New("bad data offsets")
	// ErrDataCutShort, one kind of ErrOffsets: a tensor's data_offsets
	// past the end of the data buffer, whose header parsed: a safetensors
	// file whose writing was cut short in its data (or a file truncated
	// since), where ErrCutShort's was cut in its header.
	ErrDataCutShort = fmt.Errorf("%w: the file ends inside its data", ErrOffsets)
	// ErrNotFound: no tensor of that name.
	ErrNotFound = errors.New("no such tensor")
	// ErrClosed: the File has been closed.
	ErrClosed = errors.New("file is closed")
	// ErrChecksum: the tensors (table and data) do not match the SHA-256
	// recorded in the metadata (SHA256Key).
	ErrChecksum = errors.New("tensors do not match their SHA-256")
)

// errorf returns an error with the formatted message that errors.Is
// matches to kind, one of the sentinels above.
func errorf(kind error, format string, args ...any) error {
	return kinderr.Errorf(kind, format, args...)
}

// DataCutShortError is the error of a file cut short in its data
// (ErrDataCutShort), with the metadata its header, whole, still gives:
// what the file was (a checkpoint's optimizer state, say), for a caller
// deciding whether it may replace it.
type DataCutShortError struct {
	Metadata map[string]string
	err      error
}

func (e *DataCutShortError) Error() string { return e.err.Error() }
func (e *DataCutShortError) Unwrap() error { return e.err }
