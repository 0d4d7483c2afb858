package flock

import (
	"errors"
	"os"
	"time"
)

// Probes: a process that only looks whether a file is locked (is this run
// training, is this index being appended to?) takes a shared lock on it
// for an instant. Taking the exclusive lock during that instant fails
// though no holder is there to wait for, so TryLockBriefly tries
// probeTries times, probeGap apart, before it says ErrLocked.
const (
	probeTries = 10
	probeGap   = 20 * time.Millisecond
)

// TryLockBriefly is TryLock, tried again for up to about 180 ms while the
// lock is held elsewhere: longer than another process's probe of the lock
// lasts (a busy machine included), far shorter than any real holder keeps
// it.
func TryLockBriefly(f *os.File, exclusive bool) error {
	for try := 1; ; try++ {
		err := TryLock(f, exclusive)
		if !errors.Is(err, ErrLocked) || try == probeTries {
			return err
		}
		time.Sleep(probeGap)
	}
}
