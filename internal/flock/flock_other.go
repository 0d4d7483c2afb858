//go:build !unix && !windows

package flock

import (
	"fmt"
	"os"
	"runtime"
)

// TryLock fails: this system has no lock implementation here.
func TryLock(f *os.File, exclusive bool) error {
	return fmt.Errorf("lock %s: file locks are not implemented on %s", f.Name(), runtime.GOOS)
}

// Unlock fails as TryLock does.
func Unlock(f *os.File) error {
	return fmt.Errorf("unlock %s: file locks are not implemented on %s", f.Name(), runtime.GOOS)
}
