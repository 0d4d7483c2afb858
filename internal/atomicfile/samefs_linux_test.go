package atomicfile

import (
	"path/filepath"
	"testing"
)

// Two directories of one filesystem are on it; /proc, a filesystem of its
// own on Linux, is not on the temporary directory's.
func TestSameFilesystem(t *testing.T) {
	dir := t.TempDir()
	if !SameFilesystem(dir, filepath.Dir(dir)) {
		t.Errorf("%s and its parent: not on one filesystem", dir)
	}
	if SameFilesystem(dir, "/proc") {
		t.Errorf("%s and /proc: on one filesystem", dir)
	}
	if !SameFilesystem(dir, filepath.Join(dir, "missing")) {
		t.Error("a missing path: told apart, though nothing can be told of it")
	}
}
