package flock

import (
	"errors"
	"os"
)

// LockDir takes an exclusive lock on the directory dir itself, held until
// release is called: ErrLocked when another holder has it. A system that
// cannot lock a directory (Windows) takes none and returns no error: the
// caller goes on unguarded, as without this call.
func LockDir(dir string) (release func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := TryLock(d, true); errors.Is(err, ErrLocked) {
		d.Close()
		return nil, err
	}
	return func() { d.Close() }, nil
}
