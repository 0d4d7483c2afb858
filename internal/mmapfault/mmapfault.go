// Package mmapfault turns memory faults on a file mapping into errors.
//
// A read-only mapping of a file that another process truncates (or
// rewrites in place) faults with SIGBUS when a page past the new end is
// touched, which would crash the program. Guard runs the access with
// debug.SetPanicOnFault, so the fault surfaces as ErrFault instead.
package mmapfault

import (
	"errors"
	"runtime/debug"
)

// ErrFault is returned when the mapped file shrank underneath us (another
// process truncated or rewrote it in place): the access faults with SIGBUS,
// which debug.SetPanicOnFault turns into a recoverable panic.
var ErrFault = errors.New("memory fault reading the mapped file (was it truncated or rewritten while open?)")

// Guard runs f, returning ErrFault if it faults on memory and nil
// otherwise. Any other panic in f propagates unchanged.
func Guard(f func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			// Faults surface as runtime errors carrying the faulting address.
			if _, ok := r.(interface{ Addr() uintptr }); ok {
				err = ErrFault
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
