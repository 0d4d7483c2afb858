//go:build unix

package atomicfile

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A named pipe among the temporaries is nobody's: RemoveStale neither
// removes it nor opens it (which would wait for a writer forever).
func TestRemoveStaleNamedPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), ".out.tmp-fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * StaleAge)
	if err := unix.Utimes(fifo, []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}); err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() {
		removed, _ := RemoveStale(fifo)
		done <- removed
	}()
	select {
	case removed := <-done:
		if removed {
			t.Error("RemoveStale removed a named pipe")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RemoveStale opened a named pipe: still waiting after 30 s")
	}
}
