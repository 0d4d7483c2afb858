// Package mmapfault turns memory faults on a file mapping into errors.
//
// A read-only mapping of a file that another process truncates (or
// rewrites in place) faults with SIGBUS when a page past the new end is
// touched, which would crash the program. Guard runs the access with
// debug.SetPanicOnFault, so the fault surfaces as an error instead.
package mmapfault
