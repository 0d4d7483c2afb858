package mmapfault

import (
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/edsrzf/mmap-go"
)

// addrError looks like the runtime error a memory fault panics with.
type addrError struct{}

func (addrError) Error() string { return "unexpected fault address" }
func (addrError) RuntimeError() {}
func (addrError) Addr() uintptr { return 0xdead }

func TestGuardNoPanic(t *testing.T) {
	ran := false
	if err := Guard(func() { ran = true }); err != nil || !ran {
		t.Fatalf("Guard = %v, ran %v", err, ran)
	}
}

func TestGuardFault(t *testing.T) {
	err := Guard(func() { panic(addrError{}) })
	var f *Fault
	if !errors.Is(err, ErrFault) || !errors.As(err, &f) || f.Addr != 0xdead {
		t.Fatalf("Guard = %#v, want a *Fault at 0xdead matching ErrFault", err)
	}
}

func TestGuardRepanics(t *testing.T) {
	want := errors.New("not a fault")
	defer func() {
		if r := recover(); r != want {
			t.Fatalf("recovered %v, want the original panic value", r)
		}
	}()
	Guard(func() { panic(want) })
	t.Fatal("Guard swallowed a panic that is not a fault")
}

func TestGuardRestoresSetting(t *testing.T) {
	for _, prev := range []bool{false, true} {
		old := debug.SetPanicOnFault(prev)
		Guard(func() {})
		func() {
			defer func() { recover() }()
			Guard(func() { panic("x") })
		}()
		if got := debug.SetPanicOnFault(old); got != prev {
			t.Errorf("SetPanicOnFault left at %v, want %v", got, prev)
		}
	}
}

// TestGuardTruncatedMapping faults for real: it reads a mapped page past
// the end of a file truncated after mapping.
func TestGuardTruncatedMapping(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 4*os.Getpagesize()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mmap.Map(f, mmap.RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmap()
	if err := os.Truncate(p, 1); err != nil {
		t.Fatal(err)
	}
	var b byte
	err = Guard(func() { b = m[len(m)-1] })
	var fault *Fault
	if !errors.As(err, &fault) || !errors.Is(err, ErrFault) {
		t.Fatalf("Guard = %v (read %d), want a *Fault", err, b)
	}
	// The address names the mapping: the last page, not the first or
	// another mapping.
	if !fault.In(m) || fault.In(m[:len(m)-os.Getpagesize()]) || fault.In(make([]byte, 8)) || fault.In(nil) {
		t.Errorf("fault at %#x: In(mapping) %v, In(all but its last page) %v",
			fault.Addr, fault.In(m), fault.In(m[:len(m)-os.Getpagesize()]))
	}
}
