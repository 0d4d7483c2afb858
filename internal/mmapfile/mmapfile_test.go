package mmapfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
