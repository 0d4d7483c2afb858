package mmapfile

import (
	"errors"
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
	defer m.Unmap()
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
