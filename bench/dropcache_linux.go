//go:build linux

package bench

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropPageCache asks the kernel to drop path's clean pages from the page
// cache (posix_fadvise POSIX_FADV_DONTNEED), so that the next read comes
// from the disk. It affects this file only. On a filesystem that lives in
// memory (tmpfs) it has no effect.
func dropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// inMemoryFS reports whether dir is on a filesystem held in memory (tmpfs
// or ramfs), where a cold read cannot be had.
func inMemoryFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}
