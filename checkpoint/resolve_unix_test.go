//go:build unix

package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/fifotest"
)

// A run whose run.json is a named pipe is refused at once: reading it
// would wait for a writer forever.
func TestResolveRunFilePipe(t *testing.T) {
	run := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(run, "run.json"), 0o644); err != nil {
		t.Skip("no named pipes here:", err)
	}
	err := fifotest.Within(t, 10*time.Second, filepath.Join(run, "run.json"), func() error { _, err := Resolve(run); return err })
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Resolve of a run whose run.json is a pipe: %v, want a refusal", err)
	}
}

// A run whose files are links into a store (git-annex, DVC) resolves as
// the run it links: its run.json is read through its link.
func TestResolveLinkedRunFile(t *testing.T) {
	run, store := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(store, "run.json"), []byte(`{"options": {"best_from": "ema"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(store, "run.json"), filepath.Join(run, "run.json"))
	os.MkdirAll(filepath.Join(run, "checkpoints", "step-1"), 0o755)
	os.Symlink(filepath.Join("checkpoints", "step-1"), filepath.Join(run, LastLink))
	ema := filepath.Join(run, LastLink, EMAFile)
	os.WriteFile(ema, []byte("ema"), 0o644)
	if got, err := Resolve(run); err != nil || got != ema {
		t.Errorf("Resolve of a run whose run.json is a link = %s, %v; want its moving average %s", got, err, ema)
	}
}
