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

// Past the budget of maps a file is refused, naming the limit, and a
// release gives its place back; a file that would pass it has the
// process's maps counted again, and those released since count. (Here the
// system's limit and the process's maps are files the test writes: a
// limit of runtimeMaps + 1000 and 990 other maps leave 10 files.)
func TestMapBudget(t *testing.T) {
	dir := t.TempDir()
	b := mapBudget{limitPath: filepath.Join(dir, "max_map_count"), mapsPath: filepath.Join(dir, "maps")}
	// maps writes the process's maps: others, and one for each file.
	maps := func(others int) {
		n := others + int(b.live.Load())
		if err := os.WriteFile(b.mapsPath, []byte(strings.Repeat("a map\n", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(b.limitPath, []byte(fmt.Sprintln(runtimeMaps+1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	maps(990)
	for i := range 10 {
		if err := b.take(); err != nil {
			t.Fatalf("file %d of a budget of 10: %v", i+1, err)
		}
	}
	maps(990)
	want := fmt.Sprintf("too many files mapped at once: the system lets a process hold %d memory maps (vm.max_map_count), of which 10 are left", runtimeMaps+1000)
	if err := b.take(); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("an 11th file: %v, want %q", err, want)
	}
	b.release()
	if err := b.take(); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	// The process released 5 of its other maps: 5 more files.
	maps(985)
	for i := range 5 {
		if err := b.take(); err != nil {
			t.Fatalf("file %d of a budget of 15: %v", 11+i, err)
		}
	}
	maps(985)
	if err := b.take(); err == nil || b.live.Load() != 15 {
		t.Fatalf("a 16th file: %v, %d counted", err, b.live.Load())
	}
	// Where the limit cannot be read, nothing is refused.
	var unknown mapBudget
	unknown.limitPath, unknown.mapsPath = filepath.Join(dir, "none"), b.mapsPath
	for range 20 {
		if err := unknown.take(); err != nil {
			t.Fatal(err)
		}
	}
}

// Map takes its place in the process's budget and refuses a file past it,
// naming the file; a failed map and Unmap give the place back. (The
// budget here: the test's limit, 2 files above what is mapped now.)
func TestMapTakesBudget(t *testing.T) {
	dir := t.TempDir()
	paths := make([]string, 3)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(paths[i], []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	budget.once.Do(func() {}) // (the test sets the budget)
	saved := struct{ limit, files int64 }{budget.limit.Load(), budget.files.Load()}
	savedPaths := [2]string{budget.limitPath, budget.mapsPath}
	t.Cleanup(func() {
		budget.limit.Store(saved.limit)
		budget.files.Store(saved.files)
		budget.limitPath, budget.mapsPath = savedPaths[0], savedPaths[1]
	})
	// A recount at the edge reads the test's files, which give the same
	// budget: a limit of runtimeMaps + 100 and 100 maps, the 2 files'
	// among them.
	live := budget.live.Load()
	budget.limitPath, budget.mapsPath = filepath.Join(dir, "max_map_count"), filepath.Join(dir, "maps")
	os.WriteFile(budget.limitPath, []byte(fmt.Sprintln(runtimeMaps+100)), 0o644)
	os.WriteFile(budget.mapsPath, []byte(strings.Repeat("a map\n", 100)), 0o644)
	budget.limit.Store(runtimeMaps + 100)
	budget.files.Store(live + 2)
	var maps []mmap.MMap
	for _, p := range paths[:2] {
		m, err := Map(p, accept)
		if err != nil {
			t.Fatal(err)
		}
		maps = append(maps, m)
	}
	if _, err := Map(paths[2], accept); err == nil || !strings.HasPrefix(err.Error(), paths[2]+": too many files mapped at once") {
		t.Fatalf("a third file past a budget of two: %v", err)
	}
	if _, err := Map(filepath.Join(dir, "none"), accept); !errors.Is(err, os.ErrNotExist) || budget.live.Load() != live+2 {
		t.Fatalf("a file that is not there: %v, %d counted, want %d", err, budget.live.Load(), live+2)
	}
	for _, m := range maps {
		if err := Unmap(m); err != nil {
			t.Fatal(err)
		}
	}
	if budget.live.Load() != live {
		t.Fatalf("%d counted after the Unmaps, want %d", budget.live.Load(), live)
	}
}
