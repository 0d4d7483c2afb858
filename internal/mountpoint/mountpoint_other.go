//go:build !unix

package mountpoint

import "os"

// Is cannot tell on this system: false (a rename onto a mount point then
// fails with the system's error).
func Is(dir string, st os.FileInfo) bool { return false }
