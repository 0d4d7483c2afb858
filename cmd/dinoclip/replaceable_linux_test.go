//go:build linux

package main

import (
	"os"
	"path/filepath"
	"syscall"
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

// A demo rerun whose DIR/data is a mount point is refused before anything
// is removed: it emptied the mount, then failed to replace it, on every
// rerun. (A bind mount, where this test may make one: root, in a mount
// namespace that allows it.)
func TestDemoRefusesMountPointBeforeRemoving(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	args := []string{"demo", "--out", out, "--rows", "300", "--epochs", "1", "--hidden-dim", "16", "--blocks", "1", "--batch", "64"}
	mustRun(t, args...)
	data, src := filepath.Join(out, "data"), t.TempDir()
	os.WriteFile(filepath.Join(src, "keep.txt"), []byte("mine"), 0o644)
	if err := syscall.Mount(src, data, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("no bind mount here: %v", err)
	}
	defer syscall.Unmount(data, 0)
	wantError(t, args, data+" is a mount point")
	if b, err := os.ReadFile(filepath.Join(data, "keep.txt")); err != nil || string(b) != "mine" {
		t.Errorf("a refused demo removed what the mount holds: %q, %v", b, err)
	}
}
