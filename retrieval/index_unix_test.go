//go:build unix

package retrieval_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/retrieval"
	"golang.org/x/sys/unix"
)

// A named pipe as a list of images, or as an index's manifest, is refused
// without being opened: opening it would wait for a writer forever.
func TestNamedPipesRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "a.images.txt")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, retrieval.IndexManifestFile), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan [2]error, 1)
	go func() {
		_, listErr := retrieval.ReadImagesList(fifo, 1)
		_, indexErr := retrieval.OpenIndex(dir)
		done <- [2]error{listErr, indexErr}
	}()
	select {
	case errs := <-done:
		for i, what := range []string{"a list of images", "an index manifest"} {
			if errs[i] == nil || !strings.Contains(errs[i].Error(), "not a regular file") {
				t.Errorf("a named pipe as %s: %v, want it refused", what, errs[i])
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a named pipe was opened: still waiting after 30 s")
	}
}
