//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// An output replacing an earlier one keeps its mode: a private search
// output stays private, and so does a file project replaces.
func TestReplacedOutputsKeepTheirMode(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.npy")
	writeF32(t, keys, []int{2, 2}, []float32{1, 0, 0, 1})
	hits := filepath.Join(dir, "hits")
	mustRun(t, "search", "--index", keys, "--queries", keys, "--k", "1", "--out", hits)
	os.Chmod(hits, 0o700)
	mustRun(t, "search", "--index", keys, "--queries", keys, "--k", "1", "--out", hits)
	if st, err := os.Stat(hits); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("a search output of mode 0700 replaced: %v (%v), want its mode kept", st.Mode().Perm(), err)
	}
}
