//go:build !unix

package synth

import "os"

// sameDevice cannot tell here: a rename that crosses filesystems fails,
// and the data set is not written (see publish).
func sameDevice(a, b string) bool { return true }

// sameOwner does nothing: the directory keeps the owner it was made with.
func sameOwner(path string, st os.FileInfo) {}
