//go:build !unix

package synth

import "os"

// renameDir is os.Rename: this system's rename does not replace a
// directory (renameOntoEmpty removes it first).
func renameDir(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// sameOwner does nothing: the directory keeps the owner it was made with.
func sameOwner(path string, st os.FileInfo) {}
