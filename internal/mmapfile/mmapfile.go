package mmapfile

import (
	"fmt"
	"math"

	"github.com/edsrzf/mmap-go"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

// Map memory-maps the regular file at path read-only. check is called with
// the file's size before anything is mapped, so the caller can refuse a
// file too short to be valid (mmap cannot map an empty file at all).
//
// Errors name path, except those of the open and Stat, which already do
// (anything but a regular file is an atomicfile.NotRegularError);
// check's error is wrapped, so errors.Is sees through it. The mapping
// outlives the file descriptor, which Map closes: release it with Unmap.
func Map(path string, check func(size int64) error) (mmap.MMap, error) {
	// (Opening a named pipe for reading would wait for a writer, forever.)
	f, err := atomicfile.OpenToRead(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
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
