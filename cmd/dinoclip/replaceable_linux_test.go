//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// /proc is a mount point (procfs under /); a temporary directory is not.
func TestIsMountPoint(t *testing.T) {
	dir := t.TempDir()
	proc, err := os.Stat("/proc")
	if err != nil {
		t.Fatal(err)
	}
	here, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !isMountPoint("/proc", proc) || isMountPoint(dir, here) {
		t.Errorf("isMountPoint: /proc %v, %s %v; want true, false", isMountPoint("/proc", proc), dir, isMountPoint(dir, here))
	}
}

// The mount table's escapes are undone, and /proc is listed in it.
func TestListedMountPoint(t *testing.T) {
	for in, want := range map[string]string{`/mnt/a\040b`: "/mnt/a b", `/x\134y`: `/x\y`, `/plain`: "/plain", `/odd\04`: `/odd\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
	if !listedMountPoint("/proc") || listedMountPoint(t.TempDir()) {
		t.Errorf("listedMountPoint: /proc %v, a temporary directory %v; want true, false", listedMountPoint("/proc"), listedMountPoint(t.TempDir()))
	}
}

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
