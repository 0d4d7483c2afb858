package mmapfault

import (
	"errors"
	"runtime/debug"
	"unsafe"
)

// ErrFault is what every fault Guard catches matches (errors.Is): the
// mapped file shrank underneath us (another process truncated or rewrote
// it in place), and the access faulted with SIGBUS, which
// debug.SetPanicOnFault turns into a recoverable panic.
var ErrFault = errors.New("memory fault reading the mapped file (was it truncated or rewritten while open?)")

// Fault is the error Guard returns for a fault: Addr is the address whose
// access faulted, so a caller holding several mappings can name the file.
type Fault struct{ Addr uintptr }

func (f *Fault) Error() string        { return ErrFault.Error() }
func (f *Fault) Is(target error) bool { return target == ErrFault }

// In reports whether the fault's address lies in the mapping b.
func (f *Fault) In(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return f.Addr >= lo && f.Addr-lo < uintptr(len(b))
}

// Guard runs f, returning a *Fault if it faults on memory and nil
// otherwise. Any other panic in f propagates unchanged.
func Guard(f func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			// Faults surface as runtime errors carrying the faulting address.
			if a, ok := r.(interface{ Addr() uintptr }); ok {
				err = &Fault{Addr: a.Addr()}
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
