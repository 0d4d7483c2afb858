//go:build unix

package atomicfile

import (
	"os"
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
