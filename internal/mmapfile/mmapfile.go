package mmapfile

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"

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
	if errors.Is(err, syscall.ENOMEM) {
		// No memory is allocated: the process is out of maps or of
		// address space, which "cannot allocate memory" does not say.
		return nil, fmt.Errorf("%s: mmap: %w: the process holds as many memory maps as the system allows%s, or has no address space left for this file (ulimit -v): each .npy file of a training set or index is one map, so use fewer, larger files",
			path, err, mapLimit())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return m, nil
}

// mapLimit names Linux's limit on a process's memory maps as this machine
// sets it, for a message ("" elsewhere).
func mapLimit() string {
	b, err := os.ReadFile("/proc/sys/vm/max_map_count")
	if err != nil {
		return ""
	}
	return " (vm.max_map_count, " + strings.TrimSpace(string(b)) + " here; sysctl raises it)"
}
