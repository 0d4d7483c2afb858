// Package npy reads and writes NumPy .npy files (format versions 1.0, 2.0
// and 3.0), the format the feature-extraction scripts use for training
// shards and evaluation sets.
//
// Only what the project needs is supported, and everything else is rejected
// with an error that names the file and the problem rather than being
// misread:
//
//   - dtypes '<f2', '<f4', '<f8' (features) and '<i4', '<i8' (index arrays,
//     e.g. caption -> image) — little-endian only;
//   - C (row-major) order only: numpy writes fortran_order True only for
//     arrays that are Fortran- but not C-contiguous, and reading those as C
//     order would silently transpose them;
//   - the file size must equal header + shape × itemsize exactly, so a
//     truncated copy or a file with trailing bytes is caught at Open.
//
// Open memory-maps the file, so a multi-gigabyte shard costs no heap and
// rows are converted to float32 only when asked for (ReadRows). Reads are
// safe for concurrent use.
//
// The writers produce version 1.0 files whose header bytes are identical to
// what numpy (1.x and 2.x) writes for the same dtype and shape, and replace
// the destination atomically (temporary file in the same directory, fsync,
// rename), so a crash never leaves a half-written file at the destination.
package npy
