//go:build unix

package retrieval_test

import (
	"os"
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

// The lock file removed while an append holds it (taken for a stale one)
// lets no second appender in: the directory itself is locked too. Two
// appends at once wrote the same shard names, and one's rows went under
// the other's source.
func TestIndexLockFileRemovedWhileHeld(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Remove(filepath.Join(dir, retrieval.IndexLockFile)); err != nil {
		t.Fatal(err)
	}
	if w2, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16"); err == nil || !strings.Contains(err.Error(), "another process") {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("a second append while the first holds the index, its lock file removed: %v", err)
	}
}

// An append through a link to the index writes every file into the
// directory it locked, though the link is pointed at another index
// meanwhile: its manifest went into the other index, which then named a
// shard it did not have.
func TestIndexAppendThroughRepointedLink(t *testing.T) {
	base := t.TempDir()
	first, other, link := filepath.Join(base, "idx-v2"), filepath.Join(base, "idx-v3"), filepath.Join(base, "current")
	for _, dir := range []string{first, other} {
		w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		appendRows(t, w, "a", []float32{1, 0}, 2)
		w.Close()
	}
	if err := os.Symlink(first, link); err != nil {
		t.Fatal(err)
	}
	w, err := retrieval.AppendIndex(link, testModel(2), 2, "float16")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "b", []float32{0, 1}, 2)
	w.Close()
	for dir, rows := range map[string]int64{first: 2, other: 1} {
		ix, err := retrieval.OpenIndex(dir)
		if err != nil {
			t.Fatalf("%s after the append through the repointed link: %v", filepath.Base(dir), err)
		}
		if ix.Manifest.Rows != rows {
			t.Errorf("%s holds %d rows, want %d", filepath.Base(dir), ix.Manifest.Rows, rows)
		}
		ix.Close()
	}
}

// Links planted at the index's names while an append runs (its ids file,
// images list and manifest are written after the keys are projected) are
// replaced by the index's files, never written through to a file outside.
func TestIndexWritesNoFileThroughAPlantedLink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	list := filepath.Join(outside, "a.images.txt")
	if err := os.WriteFile(list, []byte("x.jpg\ny.jpg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	victims := map[string]string{}
	for _, name := range []string{"ids-00000.npy", "images-00000.txt", retrieval.IndexManifestFile} {
		victims[name] = filepath.Join(outside, "victim-"+name)
		if err := os.WriteFile(victims[name], []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err = w.Append(retrieval.IndexSource{Path: "/a", Rows: 2}, list, 2, func(dst []float32, lo, hi int) error {
		for name, victim := range victims { // (planted while the keys are projected)
			if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
				return err
			}
		}
		copy(dst, []float32{1, 0, 0, 1})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for name, victim := range victims {
		if b, _ := os.ReadFile(victim); string(b) != "mine" {
			t.Errorf("%s, outside the index, was written through the link at %s: %q", victim, name, b)
		}
		if st, err := os.Lstat(filepath.Join(dir, name)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s in the index: %v, %v; want a plain file", name, st.Mode(), err)
		}
	}
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
}
