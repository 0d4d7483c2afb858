package mmapfile

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// outlives the file descriptor, which Map closes: release it with Unmap
// (this package's, which gives its place in the budget back).
//
// A file past the budget of maps (below) is refused, naming the limit.
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
	if err := budget.take(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, err := mmap.Map(f, mmap.RDONLY, 0)
	if err != nil {
		budget.release()
	}
	if errors.Is(err, syscall.ENOMEM) {
		// No memory is allocated: within the budget, the process is out
		// of address space, which "cannot allocate memory" does not say.
		return nil, fmt.Errorf("%s: mmap: %w: the process has no address space left for this file (ulimit -v, or a 32-bit system), or no memory maps (vm.max_map_count): raise the limit, or use fewer, smaller files", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return m, nil
}

// Unmap releases a map that Map made.
func Unmap(m mmap.MMap) error {
	err := m.Unmap()
	if err == nil {
		budget.release()
	}
	return err
}

// The budget of maps. Linux lets a process hold vm.max_map_count maps
// (65530 by default), and each file mapped here is one: a training set or
// an index of tens of thousands of files reaches the limit. The Go runtime
// grows its heap by maps too, and one it cannot make ends the process
// ("fatal error: runtime: out of memory", no error to return), so Map
// leaves runtimeMaps of the limit, beside the process's other maps, to the
// runtime and the libraries (a CUDA driver's, which may come after the
// data), and refuses a file past the rest. The other maps are counted at
// the first Map and again where a file would pass the budget (so that
// maps made or released since count). Where the limit is unknown (another
// system), it refuses none.
const runtimeMaps = 2048

var budget = mapBudget{limitPath: "/proc/sys/vm/max_map_count", mapsPath: "/proc/self/maps"}

// mapBudget counts the files mapped (live) against the maps they may take
// (files), once known from the files at limitPath and mapsPath.
type mapBudget struct {
	limitPath, mapsPath string
	once                sync.Once
	limit               atomic.Int64 // vm.max_map_count; 0: unknown
	files               atomic.Int64
	live                atomic.Int64
	mu                  sync.Mutex // (of a count of the process's maps)
}

// take counts one more file mapped, or refuses it past the budget.
func (b *mapBudget) take() error {
	b.once.Do(func() { b.count(0) })
	n := b.live.Add(1)
	if b.limit.Load() == 0 || n <= b.files.Load() {
		return nil
	}
	b.mu.Lock()
	// (n - 1 may count a file another goroutine has taken its place for
	// and not mapped yet, or unmapped and not yet released: a budget a
	// few maps generous, well within runtimeMaps.)
	b.count(n - 1)
	b.mu.Unlock()
	if n <= b.files.Load() {
		return nil
	}
	b.release()
	return fmt.Errorf("too many files mapped at once: the system lets a process hold %d memory maps (vm.max_map_count), of which %d are left to the files of a training set, an index or a model after the program's own; each .npy file is one, so use fewer, larger files, or raise the limit (sysctl -w vm.max_map_count=N)", b.limit.Load(), max(b.files.Load(), 0))
}

// release counts one file fewer mapped.
func (b *mapBudget) release() { b.live.Add(-1) }

// count sets the budget from Linux's limit and the maps the process holds
// now, of which files are this package's; it leaves it as it was where
// either cannot be read.
func (b *mapBudget) count(files int64) {
	text, err := os.ReadFile(b.limitPath)
	if err != nil {
		return
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(text)), 10, 64)
	if err != nil || limit <= 0 {
		return
	}
	f, err := os.Open(b.mapsPath)
	if err != nil {
		return
	}
	defer f.Close()
	var held int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		held++
	}
	if sc.Err() != nil {
		return
	}
	b.files.Store(limit - (held - files) - runtimeMaps)
	b.limit.Store(limit)
}
