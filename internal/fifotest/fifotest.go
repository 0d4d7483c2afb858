//go:build unix

package fifotest

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// Within returns what fn returns, failing t if fn has not returned within
// limit. It then opens fifo's writing end, so that a read waiting on it
// returns and the test process can end.
func Within(t testing.TB, limit time.Duration, fifo string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatalf("waited on the named pipe %s for %v", fifo, limit)
		return nil
	}
}
