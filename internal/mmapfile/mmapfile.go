package mmapfile

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
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
		return nil, fmt.Errorf("%s: mmap: %w: %s", path, err, outOfMaps())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return m, nil
}

// outOfMaps says which of the two a refused map ran out of, where Linux
// tells: the maps a process may hold (vm.max_map_count), which files
// mapped by the tens of thousands reach, or the address space (ulimit -v).
func outOfMaps() string {
	limit, err1 := os.ReadFile("/proc/sys/vm/max_map_count")
	maps, err2 := os.ReadFile("/proc/self/maps")
	n, err3 := strconv.Atoi(strings.TrimSpace(string(limit)))
	switch {
	case err1 != nil || err2 != nil || err3 != nil:
		return "the process holds as many memory maps as the system allows, or has no address space left for this file (ulimit -v); each .npy file of a training set or index is one map"
	case bytes.Count(maps, []byte("\n")) >= n-16:
		return fmt.Sprintf("the process holds as many memory maps as the system allows (vm.max_map_count, %d here): each .npy file of a training set or index is one, so use fewer, larger files, or raise the limit (sysctl)", n)
	}
	return "the process has no address space left for this file (ulimit -v, or a 32-bit system): raise the limit, or use smaller files"
}
