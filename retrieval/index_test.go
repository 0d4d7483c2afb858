package retrieval_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/flock/flocktest"
	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/retrieval/searchtest"
)

// testModel is the model of the test indexes of dim-wide keys.
func testModel(dim int) retrieval.IndexModel {
	return retrieval.IndexModel{SHA256: strings.Repeat("ab", 32), Path: "model-a", Config: json.RawMessage(fmt.Sprintf(`{"input_dim":8,"hidden_dim":4,"output_dim":%d,"num_residual_blocks":1}`, dim))}
}

// appendRows appends x (rows×dim, not normalised) as one shard from source.
func appendRows(t *testing.T, w *retrieval.IndexWriter, source string, x []float32, dim int) {
	t.Helper()
	rows := len(x) / dim
	src := retrieval.IndexSource{Path: source, Size: int64(4 * len(x)), Rows: int64(rows)}
	err := w.Append(src, "", 3, func(dst []float32, lo, hi int) error {
		copy(dst, x[lo*dim:hi*dim])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func unit(x []float32, dim int) []float32 {
	y := append([]float32(nil), x...)
	if err := retrieval.NormalizeQueries(y, dim, "x"); err != nil {
		panic(err)
	}
	return y
}

// An index built in two appends (one of them by a second writer) searches
// like the float64 reference over its float16 rows, with ids numbering the
// rows in the order added; a source already in it is recognised.
func TestIndexAppendAndSearch(t *testing.T) {
	const dim = 8
	dir := filepath.Join(t.TempDir(), "index")
	rnd := rand.New(rand.NewPCG(1, 1))
	gauss := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rnd.NormFloat64() * 3)
		}
		return x
	}
	a, b := gauss(10*dim), gauss(7*dim)
	w, err := retrieval.AppendIndex(dir, testModel(dim), dim, "float16")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "/data/a.dino.npy", a, dim)
	if _, err := retrieval.AppendIndex(dir, testModel(dim), dim, "float16"); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second writer while the first holds the lock: %v", err)
	}
	w.Close()
	// A process looking whether the index is being appended to (IsIndex)
	// holds a shared lock on it for an instant: an append waits it out.
	flocktest.Hold(t, filepath.Join(dir, retrieval.IndexLockFile), false, 10*time.Millisecond)
	w, err = retrieval.AppendIndex(dir, testModel(dim), dim, "float32") // dtype of an existing index is kept
	if err != nil {
		t.Fatal(err)
	}
	if src, ok := w.Source("/data/a.dino.npy"); !ok || src != (retrieval.IndexSource{Path: "/data/a.dino.npy", Size: int64(4 * len(a)), Rows: 10}) || w.DType() != "float16" {
		t.Fatalf("reopened writer: source of a %+v (%v), dtype %s", src, ok, w.DType())
	}
	appendRows(t, w, "/data/b.dino.npy", b, dim)
	w.Close()

	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if ix.Manifest.Rows != 17 || len(ix.Manifest.Shards) != 2 || ix.Manifest.Shards[1].FirstID != 10 {
		t.Fatalf("manifest %+v", ix.Manifest)
	}
	_, vals := searchtest.Keys(t, dim, searchtest.Segment{Half: true, Rows: 17, Data: unit(append(append([]float32(nil), a...), b...), dim)})
	q := unit(gauss(4*dim), dim)
	got, err := (&retrieval.CPUSearcher{}).Search(context.Background(), q, 4, ix.Keys, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantRows, wantScores := searchtest.Reference(q, 4, vals, dim, 5)
	if diff := searchtest.Compare(got, 4, wantRows, wantScores); diff != "" {
		t.Error(diff)
	}
}

func TestIndexRefusesOtherModel(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{1, 2}, 2)
	w.Close()
	other := testModel(2)
	other.SHA256, other.Path = strings.Repeat("cd", 32), "model-b"
	_, err = retrieval.AppendIndex(dir, other, 2, "float16")
	if err == nil || !strings.Contains(err.Error(), "another model") || !strings.Contains(err.Error(), "model-a") {
		t.Fatalf("other model: %v", err)
	}
	if _, err := retrieval.AppendIndex(dir, testModel(3), 3, "float16"); err == nil || !strings.Contains(err.Error(), "2-wide") {
		t.Fatalf("other width: %v", err)
	}
	// A directory used for something else is not taken over.
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("hi"), 0o644)
	if _, err := retrieval.AppendIndex(busy, testModel(2), 2, "float16"); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("foreign directory: %v", err)
	}
	if entries, _ := os.ReadDir(busy); len(entries) != 1 {
		t.Errorf("a refused directory holds %d entries afterwards, want only notes.txt", len(entries))
	}
	// ... nor one with another program's manifest.json (a web app's):
	// refused as such, no lock file left in it.
	app := t.TempDir()
	os.WriteFile(filepath.Join(app, retrieval.IndexManifestFile), []byte(`{"name": "my app", "icons": []}`), 0o644)
	os.WriteFile(filepath.Join(app, "index.html"), []byte("<html>"), 0o644)
	if _, err := retrieval.AppendIndex(app, testModel(2), 2, "float16"); err == nil || !strings.Contains(err.Error(), "not a dinoclip index's") {
		t.Fatalf("a directory with another program's manifest.json: %v", err)
	}
	if entries, _ := os.ReadDir(app); len(entries) != 2 {
		t.Errorf("a refused directory holds %d entries afterwards, want its 2", len(entries))
	}
}

// What a killed append leaves (a shard's files or temporaries without a
// manifest entry) is not part of the index, and the next append replaces it.
func TestIndexCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{3, 4}, 2)
	w.Close()
	// A killed second append: shard 1 written, the manifest not.
	npy.WriteFloat32(filepath.Join(dir, "keys-00001.npy"), []int{3, 2}, make([]float32, 6))
	os.WriteFile(filepath.Join(dir, ".ids-00001.npy.tmp-123"), []byte("half"), 0o644)
	// Beside them, a temporary of a name no index writes, new (its writer,
	// a projection, may be at work), and a temporary directory with files.
	foreign := filepath.Join(dir, ".proj.npy.tmp-7")
	os.WriteFile(foreign, []byte("half"), 0o644)
	stale := filepath.Join(dir, ".proj.npy.tmp-8") // (its writer killed an hour ago)
	os.WriteFile(stale, []byte("half"), 0o644)
	hourAgo := time.Now().Add(-time.Hour)
	os.Chtimes(stale, hourAgo, hourAgo)
	os.MkdirAll(filepath.Join(dir, ".junk.tmp-1", "x"), 0o755)
	ix, err := retrieval.OpenIndex(dir)
	if err != nil || ix.Keys.Rows() != 1 {
		t.Fatalf("index after a killed append: %v", err)
	}
	ix.Close()
	w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	if sw := w.Swept(); len(sw.Removed) != 3 || sw.Removed[1] != stale || sw.Removed[2] != filepath.Join(dir, "keys-00001.npy") || len(sw.Live) != 1 || sw.Live[0] != foreign || len(sw.Failed) != 0 {
		t.Errorf("the append's sweep: %+v, want the index's own temporary, the stale one and the unlisted shard file removed, the new one kept", sw)
	}
	appendRows(t, w, "b", []float32{0, 1, 1, 0}, 2)
	w.Close()
	if _, err := os.Stat(filepath.Join(dir, ".ids-00001.npy.tmp-123")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("another writer's new temporary was removed: %v", err)
	}
	ix, err = retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if ix.Keys.Rows() != 3 || ix.Manifest.Shards[1].Rows != 2 {
		t.Fatalf("after re-running the append: %d rows, shards %+v", ix.Keys.Rows(), ix.Manifest.Shards)
	}
}

// The manifest is written at intervals (minCommitInterval), not after
// every shard: what is on disk is the index as last committed, and what a
// killed append projected since is removed by the next append. An
// interval of 0 writes it after every shard; a write that fails drops the
// shards it would have added, files and all.
func TestIndexManifestCommits(t *testing.T) {
	onDisk := func(dir string) int {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, retrieval.IndexManifestFile))
		if errors.Is(err, os.ErrNotExist) {
			return -1
		}
		var m retrieval.IndexManifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return len(m.Shards)
	}
	dir := t.TempDir()
	defer retrieval.SetMinCommitInterval(time.Hour)()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{1, 0}, 2)
	appendRows(t, w, "b", []float32{0, 1}, 2)
	if n := onDisk(dir); n != -1 || !retrieval.IsUnfinishedIndex(dir) {
		t.Fatalf("manifest written before its interval passed (%d shards)", n)
	}
	if err := w.Commit(); err != nil || onDisk(dir) != 2 {
		t.Fatalf("commit: %v, %d shards on disk, want 2", err, onDisk(dir))
	}
	appendRows(t, w, "c", []float32{1, 1}, 2)
	if n := onDisk(dir); n != 2 || len(w.Manifest().Shards) != 3 {
		t.Fatalf("after a third shard: %d on disk, %d in the writer; want 2 and 3", n, len(w.Manifest().Shards))
	}
	retrieval.Abandon(w) // killed: shard 2's files are on disk, unlisted
	if _, err := os.Stat(filepath.Join(dir, "keys-00002.npy")); err != nil {
		t.Fatal(err)
	}
	w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "ids-00002.npy"), filepath.Join(dir, "keys-00002.npy")}
	if sw := w.Swept(); !slices.Equal(sw.Removed, want) || len(sw.Failed)+len(sw.Live) != 0 {
		t.Errorf("sweep after a killed append: %+v, want %v removed", sw, want)
	}
	if _, ok := w.Source("c"); ok || len(w.Manifest().Shards) != 2 {
		t.Errorf("the reopened index holds %d shards (c: %v), want a and b", len(w.Manifest().Shards), ok)
	}
	retrieval.SetMinCommitInterval(0)
	appendRows(t, w, "c", []float32{1, 1}, 2)
	if n := onDisk(dir); n != 3 {
		t.Errorf("interval 0: %d shards on disk after an append, want 3", n)
	}
	retrieval.SetMinCommitInterval(time.Hour)
	// A manifest that cannot be written (a directory in its place).
	m := filepath.Join(dir, retrieval.IndexManifestFile)
	os.Remove(m)
	os.MkdirAll(filepath.Join(m, "x"), 0o755)
	appendRows(t, w, "d", []float32{1, 2}, 2)
	appendRows(t, w, "e", []float32{2, 1}, 2)
	err = w.Commit()
	if err == nil || !strings.Contains(err.Error(), "2 files from d on") {
		t.Errorf("commit over a directory: %v, want an error naming the 2 shards lost", err)
	}
	if n := len(w.Manifest().Shards); n != 3 || w.Manifest().Rows != 3 {
		t.Errorf("after a failed commit the writer holds %d shards, %d rows; want 3 and 3", n, w.Manifest().Rows)
	}
	for _, name := range []string{"keys-00003.npy", "ids-00003.npy", "keys-00004.npy", "ids-00004.npy"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, of a shard a failed commit dropped, is left (%v)", name, err)
		}
	}
	if _, ok := w.Source("d"); ok {
		t.Error("a dropped shard's source is still recorded")
	}
	if err := w.Close(); err != nil {
		t.Errorf("close with nothing left to commit: %v", err)
	}
}

// A manifest that does not fit on a full disk is written without the
// newest shards, dropped one at a time until it fits: a full disk lost
// every shard appended since the last write.
func TestIndexCommitOnAFullDisk(t *testing.T) {
	for _, full := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(full.Error(), func(t *testing.T) { testIndexCommitOnAFullDisk(t, full) })
	}
}

// testIndexCommitOnAFullDisk is TestIndexCommitOnAFullDisk with writes
// that fail with full.
func testIndexCommitOnAFullDisk(t *testing.T, full syscall.Errno) {
	dir := t.TempDir()
	defer retrieval.SetMinCommitInterval(time.Hour)()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"a", "b", "c", "d", "e"} {
		appendRows(t, w, src, []float32{1, 2}, 2)
	}
	// Room for a manifest of three shards, not four.
	m := w.Manifest()
	m.Shards, m.Rows = m.Shards[:3], 3
	three, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	restore := retrieval.FillDisk(len(three)+1+len(`"shards": {}`), full)
	err = w.Close()
	restore()
	if err == nil || !strings.Contains(err.Error(), full.Error()) || !strings.Contains(err.Error(), "2 files from d on") {
		t.Errorf("close on a full disk: %v, want an error naming the 2 files left out", err)
	}
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if n := len(ix.Manifest.Shards); n != 3 {
		t.Errorf("the index holds %d shards after a full disk, want the 3 that fit", n)
	}
	for _, name := range []string{"keys-00003.npy", "ids-00003.npy", "keys-00004.npy", "ids-00004.npy"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, of a shard left out, is still there (%v)", name, err)
		}
	}
}

// A first append none of whose shards fit in a manifest on a full disk
// leaves no index (an empty one, tied to its model, was left): no
// manifest, no shard files, no lock file, no directory it made.
func TestIndexFirstAppendOnAFullDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made", "ix")
	defer retrieval.SetMinCommitInterval(time.Hour)()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"a", "b"} {
		appendRows(t, w, src, []float32{1, 2}, 2)
	}
	// Room for a manifest of no shard, not one.
	m := w.Manifest()
	m.Shards, m.Rows = m.Shards[:0], 0
	none, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	restore := retrieval.FillDisk(len(none)+1, syscall.ENOSPC)
	err = w.Close()
	restore()
	if err == nil || !strings.Contains(err.Error(), "so no index is made (the projections of 2 files from a on are removed)") {
		t.Errorf("close of a first append on a full disk: %v, want an error saying no index is made", err)
	}
	if _, err := os.Lstat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directories the failed first append made are left (%v)", err)
	}
}

// An append that would take an index past IndexMaxShards (more keys files
// than a search can map at once) is refused.
func TestIndexMaxShards(t *testing.T) {
	w, err := retrieval.AppendIndex(t.TempDir(), testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.CheckShardCount(retrieval.IndexMaxShards); err != nil {
		t.Errorf("%d files into an empty index: %v", retrieval.IndexMaxShards, err)
	}
	appendRows(t, w, "a", []float32{1, 0}, 2)
	err = w.CheckShardCount(retrieval.IndexMaxShards)
	if want := fmt.Sprintf("would hold %d shards", retrieval.IndexMaxShards+1); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%d files into an index of 1 shard: %v, want %q", retrieval.IndexMaxShards, err, want)
	}
}

// An append that fails leaves nothing of itself: the first leaves no
// directory AppendIndex made (nor a lock file in one it did not make), and
// a later one leaves the index as it was, without the failed shard's files.
func TestIndexFailedAppendLeavesNothing(t *testing.T) {
	failing := func(t *testing.T, w *retrieval.IndexWriter) {
		t.Helper()
		boom := errors.New("boom")
		err := w.Append(retrieval.IndexSource{Path: "/x", Rows: 4}, "", 2, func(dst []float32, lo, hi int) error {
			if lo > 0 {
				return boom // after one chunk is written
			}
			for i := range dst {
				dst[i] = 1
			}
			return nil
		})
		if !errors.Is(err, boom) {
			t.Fatalf("append: %v, want the fill's error", err)
		}
		w.Close()
	}
	entries := func(dir string) []string {
		es, _ := os.ReadDir(dir)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	t.Run("new directories", func(t *testing.T) {
		base := t.TempDir()
		dir := filepath.Join(base, "a", "b", "index")
		w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		failing(t, w)
		if left := entries(base); len(left) != 0 {
			t.Errorf("the directories made for the index are left: %s holds %v", base, left)
		}
		// One that gained another file meanwhile stays, and so do those
		// above it.
		w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(base, "a", "notes.txt"), []byte("x"), 0o644)
		failing(t, w)
		if _, err := os.Stat(filepath.Join(base, "a", "b")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a/b, made for the index and empty, is left (%v)", err)
		}
		if got := entries(filepath.Join(base, "a")); !slices.Equal(got, []string{"notes.txt"}) {
			t.Errorf("a holds %v, want [notes.txt] (a directory holding another file is kept)", got)
		}
	})
	t.Run("empty directory", func(t *testing.T) {
		dir := t.TempDir()
		w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		failing(t, w)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() || len(entries(dir)) != 0 {
			t.Errorf("a directory given empty: %v, holds %v; want it kept, empty", err, entries(dir))
		}
		// The next append makes the index there.
		w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		appendRows(t, w, "a", []float32{1, 0}, 2)
		w.Close()
	})
	t.Run("existing index", func(t *testing.T) {
		dir := t.TempDir()
		w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		appendRows(t, w, "a", []float32{1, 0}, 2)
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		before := entries(dir)
		failing(t, w)
		if after := entries(dir); !slices.Equal(after, before) {
			t.Errorf("index directory after a failed append: %v, want %v", after, before)
		}
		// Failing after the keys file is in place (its list of images,
		// copied next, has a line too many): the keys file goes too.
		w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		list := filepath.Join(t.TempDir(), "y.images.txt")
		os.WriteFile(list, []byte("y0.jpg\ny1.jpg\n"), 0o644)
		err = w.Append(retrieval.IndexSource{Path: "/y", Rows: 1}, list, 1, func(dst []float32, lo, hi int) error {
			dst[0], dst[1] = 0, 1
			return nil
		})
		if err == nil {
			t.Fatal("append with a list of images of the wrong length: no error")
		}
		if _, err := os.Stat(filepath.Join(dir, "keys-00001.npy")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the failed shard's keys file is left (%v)", err)
		}
	})
}

// A shard's ids are checked in tiles (checkIDs): one out of order past
// the first tile is found, and named by its row. (That the tiles bound the
// memory is not tested here; measured on 2026-12-05, dinoclip info of a
// 3M-row index peaked at 30 MB resident, 62 MB when it read the ids whole.)
func TestIndexIDsCheckedPastFirstTile(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
	if err != nil {
		t.Fatal(err)
	}
	const rows = 20000
	x := make([]float32, 2*rows)
	for i := range rows {
		x[2*i] = 1
	}
	appendRows(t, w, "a", x, 2)
	w.Close()
	if ix, err := retrieval.OpenIndex(dir); err != nil {
		t.Fatal(err)
	} else {
		ix.Close()
	}
	ids := make([]int64, rows)
	for i := range ids {
		ids[i] = int64(i)
	}
	ids[17000] = 5
	if err := npy.WriteInt64(filepath.Join(dir, "ids-00000.npy"), []int{rows}, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := retrieval.OpenIndex(dir); err == nil || !strings.Contains(err.Error(), "row 17000 has id 5, want 17000") {
		t.Fatalf("ids out of order at row 17000: %v", err)
	}
}

// Tampered, truncated and swapped files are errors at OpenIndex.
func TestIndexTampered(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		appendRows(t, w, "a", []float32{1, 2, 3, 4, 5, 6}, 2)
		appendRows(t, w, "b", []float32{1, 0}, 2)
		w.Close()
		return dir
	}
	editManifest := func(f func(m map[string]any)) func(string) {
		return func(dir string) {
			p := filepath.Join(dir, "manifest.json")
			b, _ := os.ReadFile(p)
			var m map[string]any
			json.Unmarshal(b, &m)
			f(m)
			b, _ = json.Marshal(m)
			os.WriteFile(p, b, 0o644)
		}
	}
	shard := func(m map[string]any, i int) map[string]any { return m["shards"].([]any)[i].(map[string]any) }
	for _, tc := range []struct {
		name, want string
		edit       func(dir string)
	}{
		{"no manifest", "no manifest.json", func(dir string) { os.Remove(filepath.Join(dir, "manifest.json")) }},
		{"manifest not JSON", "manifest.json", func(dir string) { os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{"), 0o644) }},
		{"format", "format", editManifest(func(m map[string]any) { m["format"] = "dinoclip-index/9" })},
		{"unknown key", "unknown field", editManifest(func(m map[string]any) { m["extra"] = 1 })},
		{"dtype", "dtype", editManifest(func(m map[string]any) { m["dtype"] = "int8" })},
		{"dim", "the manifest says a [3 3] array", editManifest(func(m map[string]any) {
			m["dim"] = 3
			m["model"].(map[string]any)["config"].(map[string]any)["output_dim"] = 3
		})},
		{"model config of another width", "config", editManifest(func(m map[string]any) { m["model"].(map[string]any)["config"].(map[string]any)["output_dim"] = 3 })},
		{"model config of no model", "the model's config: hidden dim 0: must be at least 2", editManifest(func(m map[string]any) {
			m["model"].(map[string]any)["config"].(map[string]any)["hidden_dim"] = 0
		})},
		{"model config beyond any model", "weights, more than the 2147483647 dinoclip handles", editManifest(func(m map[string]any) {
			m["model"].(map[string]any)["config"].(map[string]any)["input_dim"] = 1 << 40
		})},
		{"model config missing", "no model config", editManifest(func(m map[string]any) { delete(m["model"].(map[string]any), "config") })},
		{"model config of the wrong kind", "field hidden_dim: a JSON array where an integer belongs", editManifest(func(m map[string]any) {
			m["model"].(map[string]any)["config"].(map[string]any)["hidden_dim"] = []int{16}
		})},
		{"rows", "rows", editManifest(func(m map[string]any) { m["rows"] = 5 })},
		{"path escape", "want keys-NNNNN.npy", editManifest(func(m map[string]any) { shard(m, 0)["keys"] = "../../etc/keys-00000.npy" })},
		{"swapped names", "want keys-NNNNN.npy", editManifest(func(m map[string]any) { shard(m, 0)["keys"] = "ids-00000.npy" })},
		{"two shards name one keys file", "both name keys-00000.npy", editManifest(func(m map[string]any) { shard(m, 1)["keys"] = "keys-00000.npy" })},
		{"keys file a symbolic link", "not a regular file", func(dir string) {
			os.Rename(filepath.Join(dir, "keys-00001.npy"), filepath.Join(dir, "elsewhere.npy"))
			os.Symlink("elsewhere.npy", filepath.Join(dir, "keys-00001.npy"))
		}},
		// A manifest that swaps two shards' keys (or images) with their
		// hashes passes every hash: the files' numbers tell it.
		{"images of another shard", "shard 0 names keys-00000.npy, ids-00000.npy, images-00001.txt: an append names a shard's files by one number", editManifest(func(m map[string]any) { shard(m, 0)["images"] = "images-00001.txt" })},
		{"keys swapped between shards with their samples", "shard 0 names keys-00001.npy, ids-00000.npy", editManifest(func(m map[string]any) {
			for _, k := range []string{"keys", "keys_sample"} {
				shard(m, 0)[k], shard(m, 1)[k] = shard(m, 1)[k], shard(m, 0)[k]
			}
		})},
		{"images path escape", "want images-NNNNN.txt", editManifest(func(m map[string]any) { shard(m, 1)["images"] = "../images-00001.txt" })},
		{"first id", "continue", editManifest(func(m map[string]any) { shard(m, 1)["first_id"] = 7 })},
		{"source rows", "3 rows, but its source 2", editManifest(func(m map[string]any) { shard(m, 0)["source"].(map[string]any)["rows"] = 2 })},
		{"no source", "shard 0: no source", editManifest(func(m map[string]any) { delete(shard(m, 0), "source") })},
		{"shard rows", "manifest says", editManifest(func(m map[string]any) {
			shard(m, 0)["rows"] = 2
			shard(m, 0)["source"].(map[string]any)["rows"] = 2
			shard(m, 1)["first_id"] = 2
			m["rows"] = 3
		})},
		{"rows past the largest id", "rows from id 3 pass the largest id", editManifest(func(m map[string]any) {
			shard(m, 1)["rows"] = int64(math.MaxInt64)
			shard(m, 1)["source"].(map[string]any)["rows"] = int64(math.MaxInt64)
		})},
		{"model hash", "SHA-256", editManifest(func(m map[string]any) { m["model"].(map[string]any)["sha256"] = "x" })},
		{"truncated keys", "truncated", func(dir string) {
			p := filepath.Join(dir, "keys-00000.npy")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-3)
		}},
		{"missing ids", "ids-00001.npy", func(dir string) { os.Remove(filepath.Join(dir, "ids-00001.npy")) }},
		{"manifest with trailing data", "data after the JSON value", func(dir string) {
			p := filepath.Join(dir, "manifest.json")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, `{"rows": 0}`...), 0o644)
		}},
		{"manifest with a key twice", `"rows" appears twice`, func(dir string) {
			p := filepath.Join(dir, "manifest.json")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"rows": 4,`, `"rows": 4, "rows": 4,`, 1)), 0o644)
		}},
		{"ids of int32", "of int32", func(dir string) {
			writeInt32(t, filepath.Join(dir, "ids-00001.npy"), []int32{3})
		}},
		{"ids rewritten", "want 3", func(dir string) {
			npy.WriteInt64(filepath.Join(dir, "ids-00001.npy"), []int{1}, []int64{9})
		}},
		{"keys swapped between shards", "manifest says", func(dir string) {
			os.Rename(filepath.Join(dir, "keys-00001.npy"), filepath.Join(dir, "keys-00000.npy"))
		}},
		{"keys of the same shape rewritten", "keys_sample differs", func(dir string) {
			npy.WriteFloat16(filepath.Join(dir, "keys-00001.npy"), []int{1, 2}, []float32{0, 1})
		}},
		{"keys sample not hex", "not a hex SHA-256", editManifest(func(m map[string]any) {
			shard(m, 0)["keys_sample"] = "zz"
		})},
		{"keys sample altered", "keys_sample differs", editManifest(func(m map[string]any) {
			shard(m, 0)["keys_sample"] = strings.Repeat("0", 64)
		})},
		{"images hash without images", "images_sha256", editManifest(func(m map[string]any) {
			shard(m, 0)["images_sha256"] = strings.Repeat("0", 64)
		})},
		{"keys of another dtype", "float32", func(dir string) {
			npy.WriteFloat32(filepath.Join(dir, "keys-00001.npy"), []int{1, 2}, []float32{1, 0})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := build(t)
			tc.edit(dir)
			ix, err := retrieval.OpenIndex(dir)
			if err == nil {
				ix.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			// Nor does an append add to it (it used to succeed, leaving an
			// index that no search opens); without a manifest the files are
			// the leftovers of a first append that never finished.
			w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
			if tc.name == "no manifest" {
				if err != nil {
					t.Fatalf("append to a directory of leftovers: %v", err)
				}
				w.Close()
				return
			}
			if err == nil {
				w.Close()
				t.Fatal("append: no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("append: error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// An index written before shards recorded keys_sample still opens, and a
// later append records it for the new shard only.
func TestIndexWithoutKeysSample(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{1, 2, 3, 4}, 2)
	w.Close()
	p := filepath.Join(dir, "manifest.json")
	b, _ := os.ReadFile(p)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["shards"].([]any)[0].(map[string]any), "keys_sample")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float16"); err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "b", []float32{0, 1}, 2)
	w.Close()
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if sh := ix.Manifest.Shards; sh[0].KeysSample != "" || len(sh[1].KeysSample) != 64 {
		t.Fatalf("keys samples %q and %q, want none and a SHA-256", sh[0].KeysSample, sh[1].KeysSample)
	}
}

// Float64 queries are normalised in float64 and rounded once: a row of
// finite values beyond float32's range (even one whose sum of squares, or
// norm, overflows float64: scale MaxFloat64/13) keeps its direction, equal to
// the float32 normalisation of the same direction within one rounding; a
// NaN or Inf is refused.
func TestNormalizeQueries64(t *testing.T) {
	const dim = 5
	base := []float64{3, -4, 0.5, 12, -1}
	want := make([]float32, dim)
	for i, v := range base {
		want[i] = float32(v)
	}
	if err := retrieval.NormalizeQueries(want, dim, "x"); err != nil {
		t.Fatal(err)
	}
	for _, scale := range []float64{1, 1e-10, 1e300, math.MaxFloat64 / 20, math.MaxFloat64 / 13} {
		x := make([]float64, dim)
		for i, v := range base {
			x[i] = v * scale
		}
		got := make([]float32, dim)
		if err := retrieval.NormalizeQueries64(got, x, dim, "x", 0); err != nil {
			t.Fatalf("scale %g: %v", scale, err)
		}
		for i := range got {
			if d := math.Abs(float64(got[i] - want[i])); !(d <= 1e-7*math.Abs(float64(want[i]))) {
				t.Errorf("scale %g: value %d is %v, want %v", scale, i, got[i], want[i])
			}
		}
	}
	if err := retrieval.NormalizeQueries64(make([]float32, 2), []float64{1, math.Inf(1)}, 2, "q.npy", 7); err == nil || !strings.Contains(err.Error(), "q.npy: row 7, column 1 is +Inf") {
		t.Errorf("an Inf: error %v", err)
	}
}

// A shard truncated by another process while the index is open and mapped
// makes the search fail with an error that names the file, where the
// mapping's fault (SIGBUS) would otherwise crash the program: the CPU
// search and ReadRows (which a GPU search streams the keys through).
func TestIndexTruncatedWhileOpen(t *testing.T) {
	const dim = 64
	dir := filepath.Join(t.TempDir(), "index")
	w, err := retrieval.AppendIndex(dir, testModel(dim), dim, "float16")
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(3, 3))
	for i, rows := range []int{100, 2000} {
		x := make([]float32, rows*dim)
		for j := range x {
			x[j] = float32(rnd.NormFloat64())
		}
		appendRows(t, w, fmt.Sprintf("/data/%d.dino.npy", i), x, dim)
	}
	w.Close()
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	// 2000 rows of 128 bytes: all but the first page is gone.
	if err := os.Truncate(filepath.Join(dir, "keys-00001.npy"), 4096); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, mmapfault.ErrFault) || !strings.Contains(err.Error(), "keys-00001.npy") {
			t.Errorf("%s of a truncated shard: %v, want a memory fault naming keys-00001.npy", what, err)
		}
	}
	q := make([]float32, 3*dim)
	for j := range q {
		q[j] = float32(rnd.NormFloat64())
	}
	_, err = new(retrieval.CPUSearcher).Search(context.Background(), unit(q, dim), 3, ix.Keys, 5)
	check("CPUSearcher.Search", err)
	_, err = ix.Keys.ReadRows(make([]float32, ix.Keys.Rows()*dim), 0, ix.Keys.Rows())
	check("ReadRows", err)
}

// writeInt32 writes x as a 1-D int32 .npy file.
func writeInt32(t *testing.T, path string, x []int32) {
	t.Helper()
	b, err := npy.EncodeHeader(npy.Int32, []int{len(x)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A manifest whose shard files were renamed by hand (valid: a shard names
// its files) keeps them: an append numbers its shard past every name in
// use instead of writing over one (it wrote over keys-00002.npy, and the
// index no longer opened).
func TestIndexAppendAfterRenamedShard(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{1, 0, 0, 1}, 2)
	appendRows(t, w, "b", []float32{1, 1}, 2)
	w.Close()
	for _, f := range []string{"keys", "ids"} {
		os.Rename(filepath.Join(dir, f+"-00000.npy"), filepath.Join(dir, f+"-00002.npy"))
	}
	p := filepath.Join(dir, "manifest.json")
	b, _ := os.ReadFile(p)
	b = []byte(strings.NewReplacer("keys-00000.npy", "keys-00002.npy", "ids-00000.npy", "ids-00002.npy").Replace(string(b)))
	os.WriteFile(p, b, 0o644)
	w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "c", []float32{3, 4}, 2)
	w.Close()
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	got := make([]float32, 4*2)
	if _, err := ix.Keys.ReadRows(got, 0, 4); err != nil {
		t.Fatal(err)
	}
	want := []float32{1, 0, 0, 1, float32(1 / math.Sqrt2), float32(1 / math.Sqrt2), 0.6, 0.8}
	if sh := ix.Manifest.Shards; len(sh) != 3 || sh[2].Keys != "keys-00003.npy" || !slices.Equal(got, want) {
		t.Errorf("after the append: shards %+v, rows %v, want the third as keys-00003.npy and rows %v", sh, got, want)
	}
}

// A link at the name the next shard would take is passed over, not
// written through (it would write outside the index); a manifest that is
// a link is refused.
func TestIndexAppendPassesLinkedNames(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{1, 0}, 2)
	w.Close()
	victim := filepath.Join(t.TempDir(), "victim.txt")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "keys-00001.npy")); err != nil {
		t.Fatal(err)
	}
	w, err = retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "b", []float32{0, 1}, 2)
	w.Close()
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the file a link at keys-00001.npy leads to was written: %q", b)
	}
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sh := ix.Manifest.Shards; len(sh) != 2 || sh[1].Keys != "keys-00002.npy" {
		t.Errorf("shards %+v, want the second as keys-00002.npy", sh)
	}
	ix.Close()

	manifest := filepath.Join(dir, retrieval.IndexManifestFile)
	elsewhere := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.Rename(manifest, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, manifest); err != nil {
		t.Fatal(err)
	}
	if _, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("append to an index whose manifest is a link: %v", err)
	}
	if _, err := retrieval.OpenIndex(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("open an index whose manifest is a link: %v", err)
	}
}

// A list of images is a regular file whose lines (CRLF or LF) number the
// rows; a device is refused before it is read.
func TestReadImagesList(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "a.images.txt")
	if err := os.WriteFile(list, []byte("x.jpg\r\ny.jpg\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := retrieval.ReadImagesList(list, 2); err != nil || string(b) != "x.jpg\ny.jpg\n" {
		t.Errorf("a CRLF list: %q, %v; want LF line ends", b, err)
	}
	if err := os.WriteFile(list, []byte("x.jpg\r\ny.jpg\r"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := retrieval.ReadImagesList(list, 2); err != nil || string(b) != "x.jpg\ny.jpg" {
		t.Errorf("a CRLF list whose last line lacks its LF: %q, %v", b, err)
	}
	if _, err := retrieval.ReadImagesList(list, 3); err == nil || !strings.Contains(err.Error(), "lists 2 images") {
		t.Errorf("a list of 2 for 3 rows: %v", err)
	}
	for _, p := range []string{dir, os.DevNull} {
		if _, err := retrieval.ReadImagesList(p, 2); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadImagesList(%s): %v, want it refused", p, err)
		}
	}
	// Empty lines at the end, and only there, are said to be the excess
	// (a features file of no rows has an empty list); a line that names
	// no file, empty or holding a NUL, is refused.
	for _, c := range []struct {
		content string
		rows    int64
		want    string // in the error; "" where the list is taken
	}{
		{"x.jpg\ny.jpg\n\n\n", 2, "lists 4 images, but its features file has 2 rows: its last 2 lines are empty; remove them"},
		{"x.jpg\ny.jpg\n\n", 2, "lists 3 images, but its features file has 2 rows: its last line is empty; remove it"},
		{"x.jpg\ny.jpg\nz\n\n", 2, "lists 4 images, but its features file has 2 rows (the list of another extraction?)"},
		{"", 0, ""},
		{"\n", 0, "lists 1 image, but its features file has 0 rows: its last line is empty; remove it"},
		{"x.jpg\n\n", 1, "lists 2 images, but its features file has 1 row: its last line is empty; remove it"},
		{"x.jpg\n", 2, "lists 1 image, but its features file has 2 rows (the list of another extraction?)"},
		{"\n\n", 0, "lists 2 images, but its features file has 0 rows: its last 2 lines are empty; remove them"},
		{"x.jpg\n\n", 2, "line 2 is empty"},
		{"\ny.jpg", 2, "line 1 is empty"},
		{"x.jpg\ny\x00.jpg", 2, "line 2 holds a NUL"},
	} {
		if err := os.WriteFile(list, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := retrieval.ReadImagesList(list, c.rows); (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("a list %q for %d rows: %v, want %q", c.content, c.rows, err, c.want)
		}
	}
}

// An index's lock that is a symbolic link is refused, not followed (it
// would create or lock a file outside the index), and left as it is.
func TestIndexLockLinkRefused(t *testing.T) {
	base := t.TempDir()
	dir, outside := filepath.Join(base, "ix"), filepath.Join(base, "outside")
	os.Mkdir(dir, 0o755)
	lock := filepath.Join(dir, retrieval.IndexLockFile)
	if err := os.Symlink(outside, lock); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if w, err := retrieval.AppendIndex(dir, testModel(8), 8, "float16"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		if err == nil {
			w.Close()
		}
		t.Fatalf("append through a linked lock: %v, want a refusal", err)
	}
	if _, err := os.Lstat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was made: %v", err)
	}
	if st, err := os.Lstat(lock); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link is gone: %v", err)
	}
}

// A directory without a manifest that holds shard-named files but no lock
// file is someone else's (a killed first append leaves its lock; a failed
// one removes its shards first): refused, the file kept. With the lock
// file, the killed append's leftovers are taken over.
func TestIndexRefusesForeignShardNames(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "keys-00000.npy")
	npy.WriteFloat32(mine, []int{1, 2}, []float32{7, 7})
	before, _ := os.ReadFile(mine)
	if w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32"); err == nil || !strings.Contains(err.Error(), "refusing to write over it") {
		if err == nil {
			w.Close()
		}
		t.Fatalf("append into a directory with a lone keys-00000.npy: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(mine); !bytes.Equal(before, after) {
		t.Error("the user's keys-00000.npy changed")
	}
	os.WriteFile(filepath.Join(dir, retrieval.IndexLockFile), nil, 0o644)
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatalf("append over a killed first append's leftovers: %v", err)
	}
	appendRows(t, w, "a", []float32{3, 4}, 2)
	w.Close()
}

// An append refuses an index whose images lists a search would refuse:
// one gone, one edited (its SHA-256 no longer the recorded one).
func TestIndexAppendChecksImages(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16")
		if err != nil {
			t.Fatal(err)
		}
		list := filepath.Join(t.TempDir(), "a.images.txt")
		os.WriteFile(list, []byte("a0.jpg\na1.jpg\n"), 0o644)
		if err := w.Append(retrieval.IndexSource{Path: "/a", Rows: 2}, list, 2, func(dst []float32, lo, hi int) error {
			copy(dst, []float32{1, 0, 0, 1}[2*lo:2*hi])
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		return dir
	}
	for name, damage := range map[string]func(list string){
		"gone":   func(list string) { os.Remove(list) },
		"edited": func(list string) { os.WriteFile(list, []byte("a1.jpg\na0.jpg\n"), 0o644) },
	} {
		dir := build(t)
		damage(filepath.Join(dir, "images-00000.txt"))
		if w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float16"); err == nil || !strings.Contains(err.Error(), "it is damaged") {
			if err == nil {
				w.Close()
			}
			t.Errorf("append to an index whose images list is %s: %v, want a refusal", name, err)
		}
	}
	w, err := retrieval.AppendIndex(build(t), testModel(2), 2, "float16")
	if err != nil {
		t.Fatalf("append to a whole index with an images list: %v", err)
	}
	w.Close()
	// What naming the rows found holds, for a search's memory check: 16
	// bytes a name, the 14-byte list twice and 16 bytes for each of its 2
	// lines.
	ix, err := retrieval.OpenIndex(build(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if got, want := ix.ImagesBytes(10), int64(16*10+2*14+16*2); got != want {
		t.Errorf("ImagesBytes(10) = %d, want %d", got, want)
	}
}

// A manifest that is a link leading nowhere is refused as not a regular
// file, not taken for a missing one (a new index would have been written
// where the link leads).
func TestIndexDanglingManifestLink(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "ix")
	os.Mkdir(dir, 0o755)
	if err := os.Symlink(filepath.Join(base, "elsewhere.json"), filepath.Join(dir, retrieval.IndexManifestFile)); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err == nil {
		appendRows(t, w, "a", []float32{3, 4}, 2)
		w.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("append with a dangling manifest link: %v, want a refusal", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "elsewhere.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a manifest was written where the link leads (%v)", err)
	}
}

// A manifest larger than any index writes is refused by its size, unread
// (sparse here).
func TestOpenIndexRefusesHugeManifest(t *testing.T) {
	dir := t.TempDir()
	w, err := retrieval.AppendIndex(dir, testModel(2), 2, "float32")
	if err != nil {
		t.Fatal(err)
	}
	appendRows(t, w, "a", []float32{1, 2}, 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, retrieval.IndexManifestFile), retrieval.MaxManifestBytes+1); err != nil {
		t.Fatal(err)
	}
	if ix, err := retrieval.OpenIndex(dir); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("over %d bytes", retrieval.MaxManifestBytes)) {
		if ix != nil {
			ix.Close()
		}
		t.Errorf("an index whose manifest is over %d bytes: %v, want a refusal saying so", retrieval.MaxManifestBytes, err)
	}
}
