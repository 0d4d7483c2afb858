//go:build unix

package synth

import (
	"os"
	"syscall"
)

// sameDevice reports whether a and b are on one filesystem, so that a
// rename between them can work (a mount point is not on its parent's).
func sameDevice(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return false
	}
	da, ok1 := sa.Sys().(*syscall.Stat_t)
	db, ok2 := sb.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && da.Dev == db.Dev
}

// sameOwner gives path the owner and group of the file st describes, where
// this process may (root; anyone else keeps its own).
func sameOwner(path string, st os.FileInfo) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		os.Lchown(path, int(s.Uid), int(s.Gid))
	}
}
