//go:build !unix

package atomicfile

// openNonblock: Windows has no named pipes in the file namespace.
const openNonblock = 0
