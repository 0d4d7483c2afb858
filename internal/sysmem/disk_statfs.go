//go:build linux || darwin || freebsd

package sysmem

import "golang.org/x/sys/unix"

// DiskFree is the number of bytes an unprivileged process can still write
// on the file system holding path (statfs: the blocks available to it,
// not those reserved for root). ok is false where it cannot be read.
func DiskFree(path string) (free uint64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
