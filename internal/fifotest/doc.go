//go:build unix

// Package fifotest helps tests prove that code refuses a named pipe
// instead of waiting on it: opening a pipe for reading waits for a writer
// that, in a test, never comes.
package fifotest
