//go:build !unix

package main

import "testing"

// makeFifo skips the test: this system has no named pipes in its file
// system.
func makeFifo(t *testing.T, path string) {
	t.Helper()
	t.Skip("no named pipes on this system")
}
