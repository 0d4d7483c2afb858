//go:build cuda && cudaemu && !linux

package driver

// osThread is 0 where the emulator has no thread identity to read: the
// thread check is Linux's alone.
func osThread() int { return 0 }
