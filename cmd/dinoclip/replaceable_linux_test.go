//go:build linux

package main

import (
	"os"
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
