package mmapfile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A map the system refuses for want of maps or address space (ENOMEM, here
// from an address-space limit below a sparse 16 GiB file) says which, not
// only "cannot allocate memory": a training set of tens of thousands of
// shards reached the limit on maps with nothing allocated.
func TestMapOutOfMaps(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 << 30); err != nil {
		f.Close()
		t.Skipf("no sparse 16 GiB file here: %v", err)
	}
	f.Close()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &old); err != nil {
		t.Skip(err)
	}
	// What the process has mapped now, and 4 GiB more for the runtime.
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip(err)
	}
	pages, err := strconv.ParseUint(strings.Fields(string(statm))[0], 10, 64)
	if err != nil {
		t.Skip(err)
	}
	limit := pages*uint64(os.Getpagesize()) + 4<<30
	if limit >= old.Cur {
		t.Skipf("an address-space limit of %d bytes is set already", old.Cur)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skip(err)
	}
	live := budget.live.Load()
	m, err := Map(p, accept)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		Unmap(m)
		t.Fatal("a 16 GiB map under an address-space limit 4 GiB above the process's: no error")
	}
	if !strings.Contains(err.Error(), "no address space left for this file (ulimit -v") {
		t.Errorf("error %q does not say what ran out", err)
	}
	if budget.live.Load() != live {
		t.Errorf("the refused map kept its place in the budget: %d counted, want %d", budget.live.Load(), live)
	}
}

// On Linux the budget of maps is the system's limit less the process's
// other maps and runtimeMaps: counted with none of this package's, and
// again with some (which are the files', not the others').
func TestMapBudgetCount(t *testing.T) {
	text, err := os.ReadFile("/proc/sys/vm/max_map_count")
	if err != nil {
		t.Skip(err)
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(text)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	b := mapBudget{limitPath: budget.limitPath, mapsPath: budget.mapsPath}
	b.count(0)
	if b.limit.Load() != limit || b.files.Load() >= limit-runtimeMaps || b.files.Load() < limit-runtimeMaps-100000 {
		t.Fatalf("budget: limit %d, files %d; want limit %d and files somewhat below %d", b.limit.Load(), b.files.Load(), limit, limit-runtimeMaps)
	}
	none := b.files.Load()
	b.count(1000) // (as if 1000 of the maps counted were files)
	if got := b.files.Load(); got < none+1000-50 || got > none+1000+50 {
		t.Fatalf("budget counted with 1000 files mapped: %d, want about %d", got, none+1000)
	}
}
