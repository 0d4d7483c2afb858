//go:build unix

package retrieval

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/fifotest"
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
	err := fifotest.Within(t, 30*time.Second, info, func() error { _, err := LoadSet(dir); return err })
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadSet with eval.json a named pipe: %v, want a refusal", err)
	}
}
