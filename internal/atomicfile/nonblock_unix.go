//go:build unix

package atomicfile

import "syscall"

// openNonblock makes opening a named pipe return at once (a reader) or
// fail (a writer with no reader) instead of waiting for the other end:
// OpenRegular looks at a name before it opens it, and a pipe put there in
// between must not hang it. On a regular file, the only kind OpenRegular
// keeps open, the flag changes nothing.
const openNonblock = syscall.O_NONBLOCK
