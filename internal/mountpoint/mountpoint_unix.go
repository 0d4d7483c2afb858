//go:build unix

package mountpoint

import (
	"os"
	"path/filepath"
	"syscall"
)

// Is reports whether the directory dir (st its information) is on another
// device than its parent, or (Linux) is a mount point the system lists (a
// bind mount of a directory of the same filesystem, whose device is its
// parent's).
func Is(dir string, st os.FileInfo) bool {
	parent, err := os.Stat(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return false
	}
	a, ok1 := st.Sys().(*syscall.Stat_t)
	b, ok2 := parent.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && a.Dev != b.Dev {
		return true
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	real, err := filepath.EvalSymlinks(abs)
	return err == nil && Listed(real)
}
