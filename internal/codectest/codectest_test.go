package codectest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestCheckRejectedPasses(t *testing.T) {
	kind := errors.New("bad header")
	err := fmt.Errorf("pkg: f.bin: %w", fmt.Errorf("header is 3 bytes short: %w", kind))
	CheckRejected(t, err, kind, "pkg: f.bin: ", "3 bytes short")
}

func TestCloseWhileReading(t *testing.T) {
	closedErr := errors.New("closed")
	var mu sync.RWMutex
	closed := false
	CloseWhileReading(t, 4, closedErr, func(g int) func() error {
		return func() error {
			mu.RLock()
			defer mu.RUnlock()
			if closed {
				return fmt.Errorf("reader %d: %w", g, closedErr)
			}
			return nil
		}
	}, func() error {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		return nil
	})
	// CloseWhileReading returns only once every reader has stopped.
	mu.RLock()
	defer mu.RUnlock()
	if !closed {
		t.Fatal("close was not called")
	}
}
