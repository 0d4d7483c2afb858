//go:build unix

package atomicfile

import (
	"os"
	"strconv"
	"syscall"
)

// HardLinked reports whether the file st describes has other names (hard
// links, as cp -al and rsnapshot make): a file written in place under one
// name changes under all of them, where Write, which renames a new file
// into place, leaves the others as they were.
func HardLinked(st os.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	return ok && s.Nlink > 1
}

// Identity is the identity of the file st describes that stays with it
// under any name it is reached by, and through a rename within its
// filesystem, but that no copy has: its device and inode numbers
// ("dev:ino"). "" where the system gives none.
func Identity(st os.FileInfo) string {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return strconv.FormatUint(uint64(s.Dev), 10) + ":" + strconv.FormatUint(uint64(s.Ino), 10)
}

// SameFilesystem reports whether the files at a and b (links followed) are
// on one filesystem (device), and true where that cannot be told.
func SameFilesystem(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return true
	}
	da, ok1 := sa.Sys().(*syscall.Stat_t)
	db, ok2 := sb.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || da.Dev == db.Dev
}
