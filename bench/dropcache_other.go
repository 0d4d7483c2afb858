//go:build !linux

package bench

import "errors"

// dropPageCache is only implemented on Linux.
func dropPageCache(string) error {
	return errors.New("dropping a file's page cache is implemented on Linux only")
}

func inMemoryFS(string) bool { return false }
