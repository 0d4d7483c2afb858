//go:build unix

package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A run whose run.json is a named pipe is refused at once: reading it
// would wait for a writer forever.
func TestResolveRunFilePipe(t *testing.T) {
	run := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(run, "run.json"), 0o644); err != nil {
		t.Skip("no named pipes here:", err)
	}
	done := make(chan error, 1)
	go func() { _, err := Resolve(run); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Resolve of a run whose run.json is a pipe: %v, want a refusal", err)
		}
	case <-time.After(10 * time.Second):
		// Free the read that waits, so the test process ends.
		if w, err := os.OpenFile(filepath.Join(run, "run.json"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatal("Resolve waited on a run.json that is a named pipe")
	}
}
