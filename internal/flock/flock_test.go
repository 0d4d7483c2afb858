package flock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTryLock: an exclusive lock excludes every other descriptor's lock,
// shared or exclusive; shared locks admit each other but not an exclusive
// one; Unlock and Close release; the locked file's content stays readable.
func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	want := func(what string, err, target error) {
		t.Helper()
		if target == nil && err != nil || target != nil && !errors.Is(err, target) {
			t.Fatalf("%s: error %v, want %v", what, err, target)
		}
	}
	a, b, c := open(), open(), open()
	want("exclusive", TryLock(a, true), nil)
	if _, err := a.WriteAt([]byte("1234\n"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "1234\n" {
		t.Fatalf("reading the locked file: %q, %v", got, err)
	}
	want("exclusive over exclusive", TryLock(b, true), ErrLocked)
	want("shared over exclusive", TryLock(b, false), ErrLocked)
	want("unlock", Unlock(a), nil)
	want("shared", TryLock(b, false), nil)
	want("second shared", TryLock(c, false), nil)
	want("exclusive over shared", TryLock(a, true), ErrLocked)
	b.Close()
	c.Close()
	want("exclusive after the shared holders closed", TryLock(a, true), nil)
}

// TryLockBriefly waits out a holder that lets go within its tries (a
// probe's shared lock), and says ErrLocked of one that keeps the lock.
func TestTryLockBriefly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	probe, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	taker, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	if err := TryLock(probe, false); err != nil {
		t.Fatal(err)
	}
	if err := TryLockBriefly(taker, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("over a lock held throughout: %v, want ErrLocked", err)
	}
	time.AfterFunc(probeGap/2, func() { Unlock(probe) })
	if err := TryLockBriefly(taker, true); err != nil {
		t.Fatalf("over a probe that lets go in %v: %v", probeGap/2, err)
	}
}
