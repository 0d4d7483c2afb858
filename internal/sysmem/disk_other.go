//go:build !(linux || darwin || freebsd)

package sysmem

// DiskFree is not read on this system: ok is false, and the caller checks
// nothing.
func DiskFree(path string) (free uint64, ok bool) { return 0, false }
