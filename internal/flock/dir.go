package flock

import (
	"errors"
	"os"
)

// tryLock is TryLock (a variable: tests try LockDir on a system that
// cannot lock a directory).
var tryLock = TryLock

// LockDir takes an exclusive lock on the directory dir itself, held until
// release is called: ErrLocked when another holder has it. A system that
// cannot lock a directory (Windows) takes none and returns no error: the
// caller goes on unguarded, as without this call. It then holds no handle
// to dir either (Windows renames or removes no directory that has one
// open), and release does nothing.
func LockDir(dir string) (release func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := tryLock(d, true); err != nil {
		d.Close()
		if errors.Is(err, ErrLocked) {
			return nil, err
		}
		return func() {}, nil
	}
	return func() { d.Close() }, nil
}
