//go:build !unix

package atomicfile

import "os"

// HardLinked reports whether the file st describes has other names. Off
// Unix the link count is not in os.FileInfo: false, as if it had none.
func HardLinked(st os.FileInfo) bool { return false }

// Identity is the identity of the file st describes (its device and
// inode numbers on Unix). Off Unix os.FileInfo holds none: "".
func Identity(st os.FileInfo) string { return "" }

// SameFilesystem reports whether the files at a and b are on one
// filesystem: true, as this system does not tell.
func SameFilesystem(a, b string) bool { return true }
