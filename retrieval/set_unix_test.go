//go:build unix

package retrieval

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An evaluation set whose eval.json is a named pipe is refused, not waited
// on (LoadSet read it whole).
func TestLoadSetInfoPipe(t *testing.T) {
	dir := writeSet(t, nil)
	info := filepath.Join(dir, SetInfoFile)
	os.Remove(info)
	if err := syscall.Mkfifo(info, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := LoadSet(dir); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadSet with eval.json a named pipe: %v, want a refusal", err)
		}
	case <-time.After(30 * time.Second):
		if w, err := os.OpenFile(info, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatal("LoadSet waited on eval.json, a named pipe")
	}
}
