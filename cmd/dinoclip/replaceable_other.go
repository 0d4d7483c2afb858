//go:build !unix

package main

import "os"

// checkReplaceable would refuse a search output directory that cannot be
// replaced by renaming; this system is not asked (Windows marks folders
// read-only for other reasons than their files': a rename that fails
// does so after the search, with the system's error).
func checkReplaceable(out string, st os.FileInfo) error { return nil }
