package flock

import (
	"errors"
	"os"
	"testing"
	"time"
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
// removed); where it can, the handle holds the lock until release, DirHeld
// sees it held, and a DirHeld probe does not keep LockDir out.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	before := openFiles(t)
	saved := tryLock
	tryLock = func(*os.File, bool) error { return errors.New("no locks here") }
	release, err := LockDir(dir)
	tryLock = saved
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
	if !DirHeld(dir) {
		t.Error("DirHeld of a held directory: false")
	}
	release()
	if DirHeld(dir) {
		t.Error("DirHeld of a released directory: true")
	}
	// A probe's instant of a shared lock is waited out, not taken for a
	// holder.
	probe, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := TryLock(probe, false); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(50 * time.Millisecond); Unlock(probe) }()
	release, err = LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir during a probe: %v", err)
	}
	probe.Close()
	release()
	if n := openFiles(t); n != before {
		t.Errorf("%d files open after release, %d before", n, before)
	}
}
