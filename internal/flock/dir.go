package flock

import (
	"errors"
	"os"
)

// tryLock is TryLockBriefly, waiting out another process's DirHeld probe
// (a variable: tests try LockDir on a system that cannot lock a
// directory).
var tryLock = TryLockBriefly

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

// DirHeld reports whether another holder has the lock LockDir takes on
// dir: a probe (a shared lock taken and let go at once, which LockDir
// waits out). False where directories cannot be locked, or dir not opened.
func DirHeld(dir string) bool {
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer d.Close()
	err = TryLock(d, false)
	if err == nil {
		Unlock(d)
	}
	return errors.Is(err, ErrLocked)
}
