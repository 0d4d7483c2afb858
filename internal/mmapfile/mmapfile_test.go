package mmapfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edsrzf/mmap-go"
)

func accept(int64) error { return nil }

func TestMap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen int64 = -1
	m, err := Map(p, func(size int64) error { seen = size; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(m)
	if string(m) != "hello" || seen != 5 {
		t.Errorf("mapped %q, check saw size %d", m, seen)
	}
}

func TestMapErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Map(filepath.Join(dir, "nope"), accept); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Map(dir, accept); err == nil || err.Error() != dir+" is a directory, not a regular file" {
		t.Errorf("directory: %v", err)
	}
	p := filepath.Join(dir, "empty")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tooShort := errors.New("too short")
	called := false
	_, err := Map(p, func(size int64) error {
		called = true
		if size < 8 {
			return tooShort
		}
		return nil
	})
	if !called || !errors.Is(err, tooShort) || !strings.HasPrefix(err.Error(), p+": ") {
		t.Errorf("refused by check: %v", err)
	}
}

// Past the budget of maps a file is refused, naming the limit, and Unmap
// gives its place back (here a budget of two files; on Linux the budget
// is the system's limit less the maps the process held and runtimeMaps).
func TestMapBudget(t *testing.T) {
	dir := t.TempDir()
	paths := make([]string, 3)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(paths[i], []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	budget.once.Do(budget.read) // (as the first Map does)
	limit, files := budget.limit, budget.files
	t.Cleanup(func() { budget.limit, budget.files = limit, files })
	budget.limit, budget.files = 100, budget.live.Load()+2
	var maps []mmap.MMap
	for _, p := range paths[:2] {
		m, err := Map(p, accept)
		if err != nil {
			t.Fatal(err)
		}
		maps = append(maps, m)
	}
	want := paths[2] + ": too many files mapped at once: the system lets a process hold 100 memory maps (vm.max_map_count)"
	if _, err := Map(paths[2], accept); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("a third file past a budget of two: %v, want %q", err, want)
	}
	if err := Unmap(maps[0]); err != nil {
		t.Fatal(err)
	}
	m, err := Map(paths[2], accept)
	if err != nil {
		t.Fatalf("after an Unmap: %v", err)
	}
	for _, m := range []mmap.MMap{maps[1], m} {
		if err := Unmap(m); err != nil {
			t.Fatal(err)
		}
	}
}
