//go:build unix

package mmapfile

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A named pipe is refused at once, not opened (which would wait for a
// writer forever).
func TestMapNamedPipe(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := Map(p, accept); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Map of a named pipe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Map of a named pipe still waiting after 10 s")
	}
}
