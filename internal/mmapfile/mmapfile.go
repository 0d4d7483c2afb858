// Package mmapfile memory-maps whole files read-only, for the readers that
// leave large arrays in the file and convert them only on request.
package mmapfile

import (
	"fmt"
	"math"
	"os"

	"github.com/edsrzf/mmap-go"
)

// Map memory-maps the regular file at path read-only. check is called with
// the file's size before anything is mapped, so the caller can refuse a
// file too short to be valid (mmap cannot map an empty file at all).
//
// Errors name path, except those of os.Open and Stat, which already do;
// check's error is wrapped, so errors.Is sees through it. The mapping
// outlives the file descriptor, which Map closes: release it with Unmap.
func Map(path string, check func(size int64) error) (mmap.MMap, error) {
	// Checked before the open too: opening a named pipe for reading waits
	// for a writer, forever.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if err := check(st.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Size() > math.MaxInt {
		return nil, fmt.Errorf("%s: file of %d bytes is too large to map", path, st.Size())
	}
	m, err := mmap.Map(f, mmap.RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return m, nil
}
