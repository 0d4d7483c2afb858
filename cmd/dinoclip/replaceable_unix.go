//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkReplaceable refuses a search output directory out (st its
// information) that writeSearch could not replace by renaming: a
// read-only one (the old output's files could not be removed after), or a
// mount point (it cannot be renamed; its device is not its parent's — a
// btrfs subvolume too, which could be: named the same way, to be safe).
func checkReplaceable(out string, st os.FileInfo) error {
	if st.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("--out %s is read-only; refusing to replace it", out)
	}
	if isMountPoint(out, st) {
		return fmt.Errorf("--out %s is a mount point, which cannot be replaced by another directory; name a directory inside it (e.g. --out %s)", out, filepath.Join(out, "hits"))
	}
	return nil
}

// isMountPoint reports whether the directory dir (st its information) is
// on another device than its parent, or (Linux) is a mount point the
// system lists (a bind mount of a directory of the same filesystem).
func isMountPoint(dir string, st os.FileInfo) bool {
	parent, err := os.Stat(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return false
	}
	a, ok1 := st.Sys().(*syscall.Stat_t)
	b, ok2 := parent.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && a.Dev != b.Dev {
		return true
	}
	real, err := realPath(dir)
	return err == nil && listedMountPoint(real)
}
