//go:build cuda && cudaemu

package driver

import "syscall"

// osThread identifies the calling OS thread.
func osThread() int { return syscall.Gettid() }
