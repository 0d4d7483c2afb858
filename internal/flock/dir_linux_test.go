package flock

import (
	"errors"
	"os"
	"testing"
)

// openFiles counts this process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// Where a directory cannot be locked, LockDir holds no handle to it (on
// Windows an open handle would keep the directory from being renamed or
// removed); where it can, the handle holds the lock until release.
func TestLockDirHoldsNoHandleWithoutLocks(t *testing.T) {
	dir := t.TempDir()
	before := openFiles(t)
	tryLock = func(*os.File, bool) error { return errors.New("no locks here") }
	release, err := LockDir(dir)
	tryLock = TryLock
	if err != nil {
		t.Fatal(err)
	}
	if n := openFiles(t); n != before {
		t.Errorf("%d files open after LockDir without locks, %d before", n, before)
	}
	release()

	release, err = LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("a second LockDir: %v, want ErrLocked", err)
	}
	release()
	if n := openFiles(t); n != before {
		t.Errorf("%d files open after release, %d before", n, before)
	}
}
