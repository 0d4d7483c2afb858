//go:build linux || darwin || freebsd

package sysmem

import "golang.org/x/sys/unix"

// DiskFree is the number of bytes an unprivileged process can still write
// on the file system holding path (statfs: the blocks available to it,
// not those reserved for root). ok is false where it cannot be read, and
// on a file system that gives no size (Blocks 0: /proc, /sys, some FUSE
// file systems), whose 0 blocks free say nothing of what it takes.
func DiskFree(path string) (free uint64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil || st.Blocks == 0 {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
