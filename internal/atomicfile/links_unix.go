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
