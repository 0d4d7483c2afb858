package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
)

// unitRows normalises rows in float64, as index and search do.
func unitRows(x []float32, dim int) []float32 {
	y := slices.Clone(x)
	for r := 0; r < len(y)/dim; r++ {
		row := y[r*dim : (r+1)*dim]
		var s float64
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		n := max(math.Sqrt(s), 1e-12)
		for i, v := range row {
			row[i] = float32(float64(v) / n)
		}
	}
	return y
}

// bruteForce is the float64 reference of search: ids and float32 scores.
func bruteForce(q, keys []float32, dim, k int) ([]int64, []float32) {
	nq, nk := len(q)/dim, len(keys)/dim
	var ids []int64
	var scores []float32
	for i := range nq {
		s := make([]float64, nk)
		order := make([]int, nk)
		for j := range nk {
			for d := range dim {
				s[j] += float64(q[i*dim+d]) * float64(keys[j*dim+d])
			}
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return s[order[a]] > s[order[b]] })
		for _, j := range order[:k] {
			ids = append(ids, int64(j))
			scores = append(scores, float32(s[j]))
		}
	}
	return ids, scores
}

func readSearch(t *testing.T, out string) ([]int64, []float32, []int) {
	t.Helper()
	ids, shape, err := npy.ReadInt64(filepath.Join(out, "ids.npy"))
	if err != nil {
		t.Fatal(err)
	}
	scores, sshape, err := npy.ReadFloat32(filepath.Join(out, "scores.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, sshape) {
		t.Fatalf("ids %v, scores %v", shape, sshape)
	}
	return ids, scores, shape
}

// index then search: the ids and scores equal a float64 brute force over
// the projected, normalised rows as the index stores them (float16), with
// the ids numbering the rows of the features files in order; indexing the
// same files again adds nothing.
func TestIndexAndSearch(t *testing.T) {
	run, data, _ := trainRun(t)
	model := filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)
	dir := t.TempDir()
	index := filepath.Join(dir, "photos.index")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index, "--batch", "7")

	var stored []float32
	for _, f := range []string{"shard-00000.dino.npy", "shard-00001.dino.npy"} {
		x, shape, err := npy.ReadFloat32(filepath.Join(data, f))
		if err != nil {
			t.Fatal(err)
		}
		y := unitRows(projectDirect(t, model, x, shape[0]), tOut)
		for _, v := range y {
			stored = append(stored, npy.Float16Value(npy.Float16Bits(v)))
		}
	}
	wd := newWorld(5)
	_, q := wd.sample(9)
	qPath := filepath.Join(dir, "q.npy")
	writeF32(t, qPath, []int{9, tOut}, q)
	out := filepath.Join(dir, "hits")
	mustRun(t, "search", "--index", index, "--queries", qPath, "--k", "6", "--out", out)
	ids, scores, shape := readSearch(t, out)
	wantIDs, wantScores := bruteForce(unitRows(q, tOut), stored, tOut, 6)
	if !slices.Equal(shape, []int{9, 6}) || !slices.Equal(ids, wantIDs) || !slices.Equal(scores, wantScores) {
		t.Fatalf("search: shape %v\nids %v\nwant %v\nscores %v\nwant %v", shape, ids, wantIDs, scores, wantScores)
	}
	var info searchInfo
	b, _ := os.ReadFile(filepath.Join(out, "search.json"))
	if err := json.Unmarshal(b, &info); err != nil || info.Rows != tRows || info.K != 6 || len(info.Model) != 64 {
		t.Fatalf("search.json %s: %v", b, err)
	}
	// Nothing else is written into a search's output, over its files or
	// beside them (the next search into it would refuse the directory).
	for _, args := range [][]string{
		{"project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", filepath.Join(out, searchIDsFile)},
		{"project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", filepath.Join(out, "p.npy")},
		{"average", "--out", filepath.Join(out, searchScoresFile), run},
		{"search", "--index", index, "--queries", qPath, "--k", "6", "--out", filepath.Join(out, "sub")},
	} {
		wantError(t, args, "is in the search output "+out)
	}
	// Nor deeper in it (in a directory made there).
	sub := filepath.Join(out, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", filepath.Join(sub, "p.npy")},
		"is inside the search output "+out)
	if entries, err := os.ReadDir(sub); err != nil || len(entries) != 0 {
		t.Errorf("a refused projection wrote into %s: %v (%v)", sub, entries, err)
	}
	os.Remove(sub)
	if again, _, _ := readSearch(t, out); !slices.Equal(again, ids) {
		t.Fatal("the refused outputs changed the search's")
	}
	// The files themselves, absolute: the run's best link moves on, and a
	// relative path means nothing from another directory.
	realModel, err := filepath.EvalSymlinks(model)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := retrieval.OpenIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	realIndex, _ := filepath.EvalSymlinks(index)
	realQueries, _ := filepath.EvalSymlinks(qPath)
	if ix.Manifest.Model.Path != realModel || info.Index != realIndex || info.Queries != realQueries {
		t.Errorf("recorded model %s, index %s, queries %s; want %s, %s, %s", ix.Manifest.Model.Path, info.Index, info.Queries, realModel, realIndex, realQueries)
	}

	// Again: nothing is added, and the same search gives the same answer
	// (the earlier output is replaced).
	_, errOut, err := runCLI(t, "index", "--model", run, "--features", data, "--out", index)
	if err != nil || !strings.Contains(errOut, "added 0 rows") || !strings.Contains(errOut, "skipped 2 files") {
		t.Fatalf("second index: %v\n%s", err, errOut)
	}
	if _, errOut, err := runCLI(t, "search", "--index", index, "--queries", qPath, "--k", "6", "--out", out); err != nil || strings.Contains(errOut, "warning") {
		t.Fatalf("a second search into the same --out: %v\n%s", err, errOut)
	}
	if ids2, _, _ := readSearch(t, out); !slices.Equal(ids2, ids) {
		t.Fatal("a second search differs")
	}
	if entries, _ := os.ReadDir(dir); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.Contains(e.Name(), ".tmp") }) {
		t.Errorf("the searches left temporaries beside their output: %v", entries)
	}
	// An index's own files are no features to index (into it or another).
	for _, to := range []string{index, filepath.Join(dir, "other-index")} {
		wantError(t, []string{"index", "--model", run, "--features", filepath.Join(index, "keys-00000.npy"), "--out", to}, "is in the search index "+index)
	}

	// A plain KEYS.npy: normalised in memory; float32, so its own reference.
	keysPath := filepath.Join(dir, "keys.npy")
	raw := make([]float32, 0, len(stored))
	for i := range 30 {
		for j := range tOut {
			raw = append(raw, float32(i%7)+float32(j)*0.5-1)
		}
	}
	writeF32(t, keysPath, []int{30, tOut}, raw)
	mustRun(t, "search", "--index", keysPath, "--queries", qPath, "--k", "30", "--out", out)
	ids, scores, _ = readSearch(t, out)
	wantIDs, wantScores = bruteForce(unitRows(q, tOut), unitRows(raw, tOut), tOut, 30)
	if !slices.Equal(ids, wantIDs) || !slices.Equal(scores, wantScores) {
		t.Fatalf("KEYS.npy search: ids %v\nwant %v", ids, wantIDs)
	}
}

// A features file reached through symbolic or hard links is the file they
// lead to: indexed once, whichever path names it.
func TestIndexSymlinkedSources(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	feat := filepath.Join(dir, "feat")
	os.Mkdir(feat, 0o755)
	x, _, _ := npy.ReadFloat32(filepath.Join(data, "shard-00000.dino.npy"))
	real := filepath.Join(feat, "a.dino.npy")
	writeF32(t, real, []int{40, tIn}, x)
	real, _ = filepath.EvalSymlinks(real) // (the temporary directory may be reached through one)
	os.Symlink("a.dino.npy", filepath.Join(feat, "b.dino.npy"))
	linkDir := filepath.Join(dir, "linked")
	os.Symlink(feat, linkDir)
	index := filepath.Join(dir, "ix")
	shards := func() []retrieval.IndexShard {
		t.Helper()
		ix, err := retrieval.OpenIndex(index)
		if err != nil {
			t.Fatal(err)
		}
		defer ix.Close()
		return ix.Manifest.Shards
	}
	mustRun(t, "index", "--model", run, "--features", feat, "--out", index)
	if sh := shards(); len(sh) != 1 || sh[0].Source.Path != real {
		t.Fatalf("a directory holding a file and a link to it: shards %+v, want one, of %s", sh, real)
	}
	for _, path := range []string{filepath.Join(linkDir, "b.dino.npy"), real} {
		_, stderr, err := runCLI(t, "index", "--model", run, "--features", path, "--out", index)
		if err != nil || !strings.Contains(stderr, "skipped 1 file already indexed") || len(shards()) != 1 {
			t.Fatalf("index --features %s again: %v, %d shards\n%s", path, err, len(shards()), stderr)
		}
	}
	// A hard link is the file too: in a run of its own, and beside the file.
	hard := filepath.Join(dir, "hard.dino.npy")
	if err := os.Link(real, hard); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "index", "--model", run, "--features", hard, "--out", index)
	if err != nil || !strings.Contains(stderr, "skipped 1 file already indexed") || len(shards()) != 1 {
		t.Fatalf("index --features HARDLINK after the file: %v, %d shards\n%s", err, len(shards()), stderr)
	}
	// The same contents under another name: a copy (in a run of its own,
	// and twice in one run), and the file moved away from its recorded
	// name, are skipped as indexed, with a word; new contents are added.
	copied := filepath.Join(dir, "copied.dino.npy")
	writeF32(t, copied, []int{40, tIn}, x)
	y := slices.Clone(x)
	y[0]++
	other := filepath.Join(dir, "other.dino.npy")
	writeF32(t, other, []int{40, tIn}, y)
	other2 := filepath.Join(dir, "other2.dino.npy")
	writeF32(t, other2, []int{40, tIn}, y)
	_, stderr, err = runCLI(t, "index", "--model", run, "--features", copied, "--features", other, "--features", other2, "--out", index)
	if err != nil || !strings.Contains(stderr, copied+" has the size, rows and sampled contents of "+real+", indexed already") ||
		!strings.Contains(stderr, other2+" has the size, rows and sampled contents of "+other+", indexed in this run") || len(shards()) != 2 ||
		!strings.Contains(stderr, "added 40 rows, skipped 1 file already indexed, skipped 1 copy of a file indexed in this run") {
		t.Fatalf("index --features COPY NEW NEW-COPY: %v, %d shards, want 2\n%s", err, len(shards()), stderr)
	}
	moved := filepath.Join(dir, "moved.dino.npy")
	if err := os.Rename(other, moved); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = runCLI(t, "index", "--model", run, "--features", moved, "--out", index)
	if err != nil || !strings.Contains(stderr, "skipped 1 file already indexed") || len(shards()) != 2 {
		t.Fatalf("index --features MOVED: %v, %d shards, want 2\n%s", err, len(shards()), stderr)
	}
	for _, f := range []string{copied, other2, moved} {
		os.Remove(f)
	}
	// Given by both names, the file's list of images is found beside the
	// second.
	list := strings.Repeat("img.jpg\n", 40)
	if err := os.WriteFile(filepath.Join(feat, "a.images.txt"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	index3 := filepath.Join(dir, "ix3")
	mustRun(t, "index", "--model", run, "--features", hard, "--features", real, "--out", index3)
	ix3, err := retrieval.OpenIndex(index3)
	if err != nil {
		t.Fatal(err)
	}
	defer ix3.Close()
	if sh := ix3.Manifest.Shards; len(sh) != 1 || sh[0].Source.Path != hard || sh[0].Images == "" {
		t.Fatalf("a file and a hard link to it in one run: shards %+v, want one, of %s, with the list beside %s", sh, hard, real)
	}
	// A relative path from a working directory reached through a link, and
	// the same file by its real path, in one run: one file, one shard.
	index2 := filepath.Join(dir, "ix2")
	t.Chdir(linkDir)
	mustRun(t, "index", "--model", run, "--features", "a.dino.npy", "--features", real, "--out", index2)
	ix, err := retrieval.OpenIndex(index2)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if sh := ix.Manifest.Shards; len(sh) != 1 || sh[0].Source.Path != real {
		t.Fatalf("a relative path in a linked working directory and the real path: shards %+v, want one, of %s", sh, real)
	}
}

// A second features file is appended after the first; another model's
// projections are refused; a file that changed since it was indexed too.
func TestIndexAppendRules(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", filepath.Join(data, "shard-00001.dino.npy"), "--out", index, "--float32")
	mustRun(t, "index", "--model", run, "--features", filepath.Join(data, "shard-00000.dino.npy"), "--out", index)
	ix, err := retrieval.OpenIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	m := ix.Manifest
	ix.Close()
	if m.DType != "float32" || len(m.Shards) != 2 || m.Shards[1].FirstID != tRows-40 || !strings.HasSuffix(m.Shards[1].Source.Path, "shard-00000.dino.npy") {
		t.Fatalf("manifest after two appends: %+v", m)
	}
	// --float32 on a float16 index is refused, not ignored.
	half := filepath.Join(dir, "half")
	mustRun(t, "index", "--model", run, "--features", filepath.Join(data, "shard-00001.dino.npy"), "--out", half)
	wantError(t, []string{"index", "--model", run, "--features", filepath.Join(data, "shard-00000.dino.npy"), "--out", half, "--float32"},
		"stores its rows as float16")

	model := filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)
	mm, err := checkpoint.ReadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	mm.Params[0] += 1
	other := filepath.Join(dir, "other.safetensors")
	if err := checkpoint.WriteModel(other, mm.Config, mm.Params, nil); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"index", "--model", other, "--features", data, "--out", index}, "another model")

	changed := filepath.Join(dir, "c.dino.npy")
	x, _, _ := npy.ReadFloat32(filepath.Join(data, "shard-00000.dino.npy"))
	x[3] += 2 // (a copy of shard-00000 would be skipped as indexed)
	writeF32(t, changed, []int{40, tIn}, x)
	mustRun(t, "index", "--model", run, "--features", changed, "--out", index)
	y := slices.Clone(x)
	y[7] += 1 // same size, one value changed
	writeF32(t, changed, []int{40, tIn}, y)
	wantError(t, []string{"index", "--model", run, "--features", changed, "--out", index}, changed, "rewritten since it was indexed")
	writeF32(t, changed, []int{20, tIn}, x[:20*tIn])
	wantError(t, []string{"index", "--model", run, "--features", changed, "--out", index}, "now has 20 rows", "new index")

	// While another process holds the lock, index refuses at once.
	w, err := retrieval.AppendIndex(index, retrieval.IndexModel{SHA256: m.Model.SHA256}, tOut, "float16")
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"index", "--model", run, "--features", data, "--out", index}, "another process")
	w.Close()
}

// An index row made longer than unit length (edited, its keys_sample
// dropped so the manifest cannot tell) is refused when a search reads it:
// it would outscore every true cosine.
func TestSearchRefusesLongIndexRow(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	mp := filepath.Join(index, retrieval.IndexManifestFile)
	_, m := readJSONDoc(t, mp)
	shard := m["shards"].([]any)[0].(map[string]any)
	delete(shard, "keys_sample")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "q.npy")
	writeF32(t, q, []int{1, tOut}, []float32{1, 0, 0, 0})
	mustRun(t, "search", "--index", index, "--queries", q, "--k", "3", "--out", filepath.Join(dir, "ok"))

	keys := filepath.Join(index, shard["keys"].(string))
	raw, err := os.ReadFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	header := len(raw) - int(shard["rows"].(float64))*tOut*2 // (float16 rows after the .npy header)
	// Row 5 doubled: each float16 value's exponent up by one.
	for c := range tOut {
		at := header + 2*(5*tOut+c)
		v := uint16(raw[at]) | uint16(raw[at+1])<<8
		if v&0x7fff != 0 {
			v += 1 << 10
		}
		raw[at], raw[at+1] = byte(v), byte(v>>8)
	}
	if err := os.WriteFile(keys, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"search", "--index", index, "--queries", q, "--k", "3", "--out", filepath.Join(dir, "bad")}, "row 5 is 2", "damaged")
}

// A model whose projections are too short to normalise (its last
// LayerNorm scaled to nothing) indexes with a warning naming the file.
func TestIndexWarnsOfTinyProjections(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	m, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"layer_norm.weight", "layer_norm.bias"} {
		v, ok := m.Config.Layout().Lookup(name)
		if !ok {
			t.Fatalf("no %s in the layout", name)
		}
		for i := range nn.View(m.Params, v) {
			nn.View(m.Params, v)[i] *= 1e-30
		}
	}
	faint := filepath.Join(dir, "faint.safetensors")
	if err := checkpoint.WriteModel(faint, m.Config, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(data, "shard-00000.dino.npy")
	_, stderr, err := runCLI(t, "index", "--model", faint, "--features", src, "--out", filepath.Join(dir, "ix"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "projections of "+src+" (") || !strings.Contains(stderr, "the first row 0)") || !strings.Contains(stderr, "shorter than 1e-12") {
		t.Errorf("index with a model of tiny outputs: no warning naming %s:\n%s", src, stderr)
	}
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", src, "--out", filepath.Join(dir, "ix2")); err != nil || strings.Contains(stderr, "1e-12") {
		t.Errorf("index with the trained model: %v\n%s", err, stderr)
	}
}

func TestIndexSearchErrors(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	q := filepath.Join(dir, "q.npy")
	writeF32(t, q, []int{2, tOut}, []float32{1, 0, 0, 0, 0, 1, 0, 0})
	out := filepath.Join(dir, "out")
	search := func(extra ...string) []string {
		return append([]string{"search", "--index", index, "--queries", q, "--out", out}, extra...)
	}
	wantError(t, search("--k", "0"), "--k 0")
	wantError(t, search("--memory", "1"), "--memory")
	// MiB << 20 must not wrap (to a negative budget, which meant the default).
	wantError(t, search("--memory", "9223372036854775807"), "--memory 9223372036854775807", "at most")
	wantError(t, search("--memory", "1000000000000000000"), "--memory 1000000000000000000", "at most")
	wantError(t, search("--device", "tpu"), "unknown device")
	wantError(t, []string{"search", "--index", index, "--queries", q, "--out", index}, "--out "+index+" is a search index")
	// A features directory holding a link to a file that is gone: the
	// link is named as one (it was lstat's error on the missing file).
	linked := t.TempDir()
	danglingFeatures := filepath.Join(linked, "c.dino.npy")
	if err := os.Symlink(filepath.Join(linked, "b.dino.npy"), danglingFeatures); err == nil {
		os.Symlink(filepath.Join(linked, "gone.dino.npy"), filepath.Join(linked, "b.dino.npy")) // (a chain of links)
		wantError(t, []string{"index", "--model", run, "--features", linked, "--out", filepath.Join(dir, "ix2")}, "is a symbolic link (to ", ") that leads to no file")
		wantError(t, []string{"index", "--model", run, "--features", danglingFeatures, "--out", filepath.Join(dir, "ix2")},
			"--features "+danglingFeatures+" is a symbolic link (to "+filepath.Join(linked, "b.dino.npy")+") that leads to no file")
		// A directory named through a linked one and "..": its files are
		// those of the directory the system lists (Join took LINK/.. away,
		// and opened another directory's files of the same names).
		other := filepath.Join(linked, "other")
		os.MkdirAll(filepath.Join(other, "sub"), 0o755)
		os.Symlink(filepath.Join(other, "sub"), filepath.Join(linked, "alias"))
		os.Remove(danglingFeatures)
		os.Remove(filepath.Join(linked, "b.dino.npy"))
		copyFile(t, filepath.Join(data, "shard-00000.dino.npy"), filepath.Join(other, "x.dino.npy"))
		os.WriteFile(filepath.Join(linked, "x.dino.npy"), []byte("not the file listed"), 0o644)
		mustRun(t, "index", "--model", run, "--features", filepath.Join(linked, "alias")+string(filepath.Separator)+"..", "--out", filepath.Join(dir, "ix3"))
	}

	wide := filepath.Join(dir, "wide.npy")
	writeF32(t, wide, []int{1, 5}, []float32{1, 2, 3, 4, 5})
	wantError(t, []string{"search", "--index", index, "--queries", wide, "--out", out}, "5 wide", "4")
	// A failed search leaves no parent directory it made for --out.
	deep := filepath.Join(dir, "new1", "new2", "hits")
	wantError(t, []string{"search", "--index", index, "--queries", wide, "--out", deep}, "5 wide")
	if _, err := os.Stat(filepath.Join(dir, "new1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed search left the directories it made for --out: %v", err)
	}
	// An --out that cannot be replaced is refused before the search: a
	// read-only one (its files could not be removed), a mount point.
	if runtime.GOOS == "linux" {
		readOnly := filepath.Join(dir, "ro")
		os.Mkdir(readOnly, 0o555)
		wantError(t, search("--out", readOnly), "--out "+readOnly+" is read-only")
		wantError(t, search("--out", "/proc"), "--out /proc is", "refusing") // (read-only, and a mount point: TestIsMountPoint)
	}
	nan := filepath.Join(dir, "nan.npy")
	writeF32(t, nan, []int{1, 4}, []float32{1, float32(math.NaN()), 0, 0})
	wantError(t, []string{"search", "--index", index, "--queries", nan, "--out", out}, "NaN")
	ints := filepath.Join(dir, "ints.npy")
	npy.WriteInt64(ints, []int{1, 4}, []int64{1, 2, 3, 4})
	wantError(t, []string{"search", "--index", index, "--queries", ints, "--out", out}, "a [1 4] array of int64, want a 2-D float16, float32 or float64 matrix [n, dim] of embeddings")
	flat := filepath.Join(dir, "flat.npy")
	writeF32(t, flat, []int{4}, []float32{1, 2, 3, 4})
	wantError(t, []string{"search", "--index", index, "--queries", flat, "--out", out}, "[1, 4]")
	// Queries with no rows: an answer with none.
	noRows := filepath.Join(dir, "norows.npy")
	writeF32(t, noRows, []int{0, 4}, nil)
	mustRun(t, "search", "--index", index, "--queries", noRows, "--k", "3", "--out", out)
	if _, shape, err := npy.ReadInt64(filepath.Join(out, searchIDsFile)); err != nil || !slices.Equal(shape, []int{0, 3}) {
		t.Errorf("ids of a search with no queries: shape %v (%v), want [0 3]", shape, err)
	}
	if _, shape, err := npy.ReadFloat32(filepath.Join(out, searchScoresFile)); err != nil || !slices.Equal(shape, []int{0, 3}) {
		t.Errorf("scores of a search with no queries: shape %v (%v), want [0 3]", shape, err)
	}
	os.RemoveAll(out)
	noCols := filepath.Join(dir, "nocols.npy")
	writeF32(t, noCols, []int{2, 0}, nil)
	wantError(t, []string{"search", "--index", index, "--queries", noCols, "--out", out}, "its rows hold no values, want rows at least 1 wide")

	// --out: a symbolic link is followed (the output is written where it
	// leads, the link kept); one that leads nowhere is refused; an --out
	// that cannot be made is found before anything is read.
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	link := filepath.Join(dir, "link")
	os.Symlink(real, link)
	for range 2 { // the second replaces the first's output
		mustRun(t, "search", "--index", index, "--queries", q, "--k", "2", "--out", link)
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("--out %s: the link was replaced (%v)", link, err)
		}
		if _, shape, err := npy.ReadInt64(filepath.Join(real, searchIDsFile)); err != nil || !slices.Equal(shape, []int{2, 2}) {
			t.Errorf("search through a linked --out: %s shape %v (%v), want [2 2]", filepath.Join(real, searchIDsFile), shape, err)
		}
	}
	// "link/", as shell completion writes it, is the link too.
	mustRun(t, "search", "--index", index, "--queries", q, "--k", "3", "--out", link+"/")
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("--out %s/: the link was replaced (%v)", link, err)
	}
	if _, shape, err := npy.ReadInt64(filepath.Join(real, searchIDsFile)); err != nil || !slices.Equal(shape, []int{2, 3}) {
		t.Errorf("search through --out %s/: shape %v (%v), want [2 3]", link, shape, err)
	}
	// The working directory, however named, is refused before the search.
	wd := filepath.Join(dir, "emptywd")
	os.Mkdir(wd, 0o755)
	os.Symlink(wd, filepath.Join(dir, "wdlink"))
	t.Chdir(wd) // (every other path of this test is absolute)
	for _, o := range []string{".", wd, filepath.Join(dir, "wdlink"), filepath.Join(dir, "wdlink") + "/"} {
		wantError(t, []string{"search", "--index", index, "--queries", filepath.Join(dir, "missing.npy"), "--out", o}, "is the working directory")
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "gone"), dangling)
	wantError(t, []string{"search", "--index", index, "--queries", q, "--out", dangling}, "leads nowhere")
	// A link to a file or a device says so (a link to a pipe, as
	// /dev/stdout is, was called one that leads nowhere).
	toFile, toDevice := filepath.Join(dir, "tofile"), filepath.Join(dir, "todevice")
	os.WriteFile(filepath.Join(dir, "a-file"), nil, 0o644)
	os.Symlink(filepath.Join(dir, "a-file"), toFile)
	os.Symlink(os.DevNull, toDevice)
	wantError(t, []string{"search", "--index", index, "--queries", q, "--out", toFile}, "is a symbolic link to a regular file, not a directory")
	wantError(t, []string{"search", "--index", index, "--queries", q, "--out", toDevice}, "is a symbolic link to a device, not a directory")
	// (/sys takes no new directory, even from root.)
	if runtime.GOOS == "linux" {
		wantError(t, []string{"search", "--index", index, "--queries", filepath.Join(dir, "missing.npy"), "--out", "/sys/hits"},
			"--out /sys/hits: cannot write beside it")
	}
	// A name of 250 bytes, which the system allows, though the temporary
	// directory beside it takes a shorter one (atomicfile.TempBase).
	long := filepath.Join(dir, strings.Repeat("h", 250))
	mustRun(t, "search", "--index", index, "--queries", q, "--out", long)
	if _, err := os.Stat(filepath.Join(long, searchIDsFile)); err != nil {
		t.Errorf("search --out of a 250-byte name: %v", err)
	}

	// Outputs that must not be overwritten.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	wantError(t, search("--out", file), "--out "+file+" is a regular file; want a directory")
	t.Run("named pipe", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		makeFifo(t, fifo)
		wantError(t, search("--out", fifo), "--out "+fifo+" is a named pipe; want a directory")
	})
	busy := filepath.Join(dir, "busy")
	os.Mkdir(busy, 0o755)
	os.WriteFile(filepath.Join(busy, "thesis.tex"), []byte("x"), 0o644)
	wantError(t, search("--out", busy), "thesis.tex")
	// --out LINK/../hits is beside where the link leads, as the system
	// reads it.
	far := filepath.Join(dir, "far", "deep")
	os.MkdirAll(far, 0o755)
	os.Symlink(far, filepath.Join(dir, "near"))
	for _, rel := range []string{"hitsfar", "new/hitsfar"} {
		mustRun(t, search("--out", filepath.Join(dir, "near")+"/../"+rel)...)
		if _, err := os.Stat(filepath.Join(dir, "far", rel, searchIDsFile)); err != nil {
			t.Errorf("--out near/../%s (near a link to far/deep) did not write far/%s: %v", rel, rel, err)
		}
	}
	// A directory by an output file's name is no earlier output: the
	// output replacing --out would take what it holds.
	named := filepath.Join(dir, "named")
	os.MkdirAll(filepath.Join(named, searchIDsFile), 0o755)
	os.WriteFile(filepath.Join(named, searchIDsFile, "mine.txt"), []byte("mine"), 0o644)
	wantError(t, search("--out", named), "holds "+searchIDsFile)
	// Not among a run's or an index's files.
	for _, c := range []struct{ out, want string }{
		{filepath.Join(run, "hits"), "in the run directory " + run},
		{filepath.Join(run, train.CheckpointsDir, "step-99999999"), "in the checkpoints directory " + filepath.Join(run, train.CheckpointsDir)},
		{filepath.Join(run, checkpoint.LastLink, "hits"), "in a training checkpoint"},
		{filepath.Join(index, "hits"), "in the search index " + index},
	} {
		wantError(t, search("--out", c.out), c.want)
		if _, err := os.Lstat(c.out); err == nil {
			t.Errorf("a refused search made %s", c.out)
		}
	}
	// A features file whose path is not UTF-8 is refused before anything
	// is written: the manifest would record it as another path.
	if runtime.GOOS == "linux" {
		odd := filepath.Join(t.TempDir(), "bad\xffname.dino.npy")
		writeF32(t, odd, []int{2, tIn}, make([]float32, 2*tIn))
		fresh := filepath.Join(dir, "odd.index")
		wantError(t, []string{"index", "--model", run, "--features", filepath.Dir(odd), "--out", fresh}, "not UTF-8", "rename it")
		if _, err := os.Lstat(fresh); err == nil {
			t.Errorf("a refused index made %s", fresh)
		}
	}
	// Nor an index: a training run reaching step N refuses to save into
	// checkpoints/step-N, so an index there (by its name or through a
	// link) stops the run, and one elsewhere in a run is a file the run
	// does not know.
	linkToCheckpoints := filepath.Join(dir, "ckpts")
	os.Symlink(filepath.Join(run, train.CheckpointsDir), linkToCheckpoints)
	for _, c := range []struct{ out, want string }{
		{filepath.Join(run, "photos.index"), "in the run directory " + run},
		{filepath.Join(run, train.CheckpointsDir, "step-99999999"), "in the checkpoints directory " + filepath.Join(run, train.CheckpointsDir)},
		{filepath.Join(linkToCheckpoints, "step-99999999"), "in the checkpoints directory"},
		{filepath.Join(index, "ix"), "in the search index " + index},
	} {
		wantError(t, []string{"index", "--model", run, "--features", data, "--out", c.out}, c.want, "write the index outside")
		if _, err := os.Lstat(c.out); err == nil {
			t.Errorf("a refused index made %s", c.out)
		}
	}
	// ... named relative to the working directory (the run's checkpoints
	// directory itself), or in the directory a run's checkpoints/ link
	// leads to (its owner record marks it).
	t.Run("relative", func(t *testing.T) {
		t.Chdir(filepath.Join(run, train.CheckpointsDir))
		wantError(t, []string{"index", "--model", run, "--features", data, "--out", "step-99999999"}, "in the checkpoints directory")
		// An existing index outside, named from within the run: judged
		// where it is, not where the working directory is.
		beside := filepath.Join(filepath.Dir(index), "beside")
		mustRun(t, "index", "--model", run, "--features", data, "--out", beside)
		t.Chdir(index)
		mustRun(t, "index", "--model", run, "--features", data, "--out", filepath.Join("..", "beside"))
	})
	external := t.TempDir()
	os.WriteFile(filepath.Join(external, train.CheckpointsOwnerFile), []byte(run+"\n"), 0o644)
	wantError(t, []string{"index", "--model", run, "--features", data, "--out", filepath.Join(external, "step-99999999")}, "in the checkpoints directory "+external)
	// ... nor deeper in a run's checkpoints or an index (index makes the
	// directories above it). A run's other subdirectories are not its
	// files: an output there harms nothing.
	exports := filepath.Join(run, "exports", "ix")
	mustRun(t, "index", "--model", run, "--features", data, "--out", exports)
	os.RemoveAll(filepath.Dir(exports))
	for _, c := range []struct{ out, want string }{
		{filepath.Join(run, train.CheckpointsDir, "step-99999999", "sub", "ix"), "in the checkpoints directory " + filepath.Join(run, train.CheckpointsDir)},
		{filepath.Join(external, "step-99999999", "sub", "ix"), "in the checkpoints directory " + external},
		{filepath.Join(index, "a", "b"), "in the search index " + index},
	} {
		wantError(t, []string{"index", "--model", run, "--features", data, "--out", c.out}, c.want)
		if _, err := os.Lstat(filepath.Dir(c.out)); err == nil {
			t.Errorf("a refused index made %s", filepath.Dir(c.out))
		}
	}
	// Checkpoints moved to a larger disk (or reached through a bind mount)
	// before any run recorded itself there: known by the checkpoints in
	// them, and a checkpoint by its optimizer file.
	moved := filepath.Join(t.TempDir(), "big")
	if err := os.CopyFS(moved, os.DirFS(filepath.Join(run, train.CheckpointsDir))); err != nil {
		t.Fatal(err)
	}
	// (The record a run leaves in its own checkpoints too is gone: those
	// of a run from before it.)
	if err := os.Remove(filepath.Join(moved, train.CheckpointsOwnerFile)); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(moved)
	someStep := filepath.Join(moved, entries[0].Name())
	for _, c := range []struct{ out, want string }{
		{filepath.Join(moved, "step-99999999"), "in the checkpoints directory " + moved},
		{filepath.Join(someStep, "sub", "ix"), "in a training checkpoint (" + someStep + ")"},
	} {
		wantError(t, []string{"index", "--model", run, "--features", data, "--out", c.out}, c.want)
	}
	// A new run is no output of another run's either.
	wantError(t, []string{"train", "--data", data, "--out", filepath.Join(run, train.CheckpointsDir, "step-99999999", "sub")},
		"in a training checkpoint", "write the new run outside")
	// ... but in a directory of outputs one of which is named like a
	// run's link, or beside a file named like a run's checkpoints.
	results := filepath.Join(dir, "results")
	os.MkdirAll(results, 0o755)
	os.WriteFile(filepath.Join(results, train.CheckpointsDir), nil, 0o644)
	for _, name := range []string{checkpoint.BestLink, checkpoint.BestLink, checkpoint.LastLink} {
		mustRun(t, search("--out", filepath.Join(results, name))...)
	}
	if _, err := os.Stat(filepath.Join(named, searchIDsFile, "mine.txt")); err != nil {
		t.Errorf("a refused search lost what --out held: %v", err)
	}
	// An input inside --out, named like an output file (or linked from
	// one), would go with the directory the output replaces.
	within := filepath.Join(dir, "within")
	os.Mkdir(within, 0o755)
	inside, outside := filepath.Join(within, searchIDsFile), filepath.Join(dir, "outside.npy")
	writeF32(t, inside, []int{2, tOut}, []float32{1, 0, 0, 0, 0, 1, 0, 0})
	os.Symlink(inside, outside)
	for _, in := range []string{inside, outside} {
		wantError(t, []string{"search", "--index", index, "--queries", in, "--out", within}, "is the input "+in)
	}
	// ... also named relatively (an output's name, left relative, was
	// compared with the input's absolute one).
	t.Chdir(dir)
	rel := filepath.Join("within", searchIDsFile)
	wantError(t, []string{"search", "--index", rel, "--queries", rel, "--out", "within"}, "is the input "+rel)
	if _, err := os.Stat(inside); err != nil {
		t.Errorf("a refused search lost its queries: %v", err)
	}
	// A hard link elsewhere keeps the file: no reason to refuse.
	hard := filepath.Join(dir, "hard.npy")
	os.Link(inside, hard)
	mustRun(t, "search", "--index", index, "--queries", hard, "--out", within)
	if _, err := os.Stat(hard); err != nil {
		t.Errorf("the hard-linked queries are gone: %v", err)
	}

	// An index with no rows (its one features file is empty).
	empty := filepath.Join(dir, "e.dino.npy")
	writeF32(t, empty, []int{0, tIn}, nil)
	emptyIndex := filepath.Join(dir, "empty")
	mustRun(t, "index", "--model", run, "--features", empty, "--out", emptyIndex)
	wantError(t, []string{"search", "--index", emptyIndex, "--queries", q, "--out", out}, "empty")

	// Damaged indexes.
	wantError(t, []string{"search", "--index", filepath.Join(dir, "nowhere"), "--queries", q, "--out", out}, "nowhere")
	keys := filepath.Join(index, "keys-00001.npy")
	st, _ := os.Stat(keys)
	os.Truncate(keys, st.Size()-10)
	wantError(t, search(), "truncated")

	// Bad features for index.
	wantError(t, []string{"index", "--model", run, "--features", q, "--out", filepath.Join(dir, "i2")}, "4 wide", "takes 8-wide")
	nanFeatures := filepath.Join(dir, "nan.dino.npy")
	x := make([]float32, 3*tIn)
	x[2*tIn+5] = float32(math.Inf(-1))
	writeF32(t, nanFeatures, []int{3, tIn}, x)
	wantError(t, []string{"index", "--model", run, "--features", nanFeatures, "--out", filepath.Join(dir, "i4")}, nanFeatures, "row 2, column 5 is -Inf")
	// Finite features the model overflows on: the NaN is the model's.
	hugeFeatures := filepath.Join(dir, "huge.dino.npy")
	for i := range x {
		x[i] = 3e38
	}
	writeF32(t, hugeFeatures, []int{3, tIn}, x)
	wantError(t, []string{"index", "--model", run, "--features", hugeFeatures, "--out", filepath.Join(dir, "i5")}, "the model's output for "+hugeFeatures)
	// Neither failed first append leaves a directory behind.
	for _, d := range []string{"i4", "i5"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("index --out %s that failed: the directory is left (%v)", d, err)
		}
	}
	wantError(t, []string{"index", "--model", run, "--features", t.TempDir(), "--out", filepath.Join(dir, "i3")}, "no *.dino.npy")
	// A run stopped by its second file keeps the first, though the
	// manifest was not yet due to be written (once a second): the same
	// command again, the file mended, adds the second.
	two := t.TempDir()
	good := filepath.Join(two, "a.dino.npy")
	copyFile(t, filepath.Join(data, "shard-00000.dino.npy"), good)
	copyFile(t, nanFeatures, filepath.Join(two, "b.dino.npy"))
	i6 := filepath.Join(dir, "i6")
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", two, "--out", i6); err == nil || !strings.Contains(err.Error(), "row 2, column 5 is -Inf") ||
		!strings.Contains(stderr, "the index "+i6+" keeps the 1 file this run indexed before the stop (1 file, 40 rows, in all): once what stopped it is mended, the same command again indexes the rest") {
		t.Errorf("index stopped by its second file: %v, want its error and a word of what it keeps:\n%s", err, stderr)
	}
	ix, err := retrieval.OpenIndex(i6)
	if err != nil {
		t.Fatalf("index stopped by its second file: %v", err)
	}
	if got := ix.Manifest.Shards; len(got) != 1 || filepath.Base(got[0].Source.Path) != "a.dino.npy" {
		t.Errorf("index stopped by its second file holds %+v, want the first file's shard", got)
	}
	ix.Close()
	copyFile(t, filepath.Join(data, "shard-00001.dino.npy"), filepath.Join(two, "b.dino.npy"))
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", two, "--out", i6); err != nil || !strings.Contains(stderr, "in 2 shards; added") || !strings.Contains(stderr, "skipped 1 file already indexed") {
		t.Errorf("the same command again, the second file mended: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed search left %s: %v", out, err)
	}
}

// --batch larger than any features file (up to the largest int) indexes as
// one chunk per file; it used to allocate batch×input_dim floats up front
// and panic (makeslice: len out of range).
func TestIndexHugeBatch(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	want := filepath.Join(dir, "want")
	mustRun(t, "index", "--model", run, "--features", data, "--out", want)
	for _, batch := range []string{"1000000000000000000", "9223372036854775807"} {
		got := filepath.Join(dir, "b"+batch)
		mustRun(t, "index", "--model", run, "--features", data, "--out", got, "--batch", batch)
		for _, f := range []string{"keys-00000.npy", "keys-00001.npy"} {
			a, errA := os.ReadFile(filepath.Join(want, f))
			b, errB := os.ReadFile(filepath.Join(got, f))
			if errA != nil || errB != nil || !slices.Equal(a, b) {
				t.Errorf("--batch %s: %s differs from the default batch's (%v, %v)", batch, f, errA, errB)
			}
		}
	}
}

// An index stopped by Ctrl-C while it projects its second file keeps the
// first, and says so, with the same command to index the rest. (The stop
// is this test's cancel, once the first file's shard is whole on disk;
// the second file, of 200k rows at --batch 1, takes most of a second
// more, each row's chunk looking at the context.)
func TestIndexStoppedKeepsWhatItIndexed(t *testing.T) {
	run, data, _ := trainRun(t)
	features := t.TempDir()
	copyFile(t, filepath.Join(data, "shard-00000.dino.npy"), filepath.Join(features, "a.dino.npy"))
	const rows = 200_000
	x := make([]float32, rows*tIn)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	writeF32(t, filepath.Join(features, "b.dino.npy"), []int{rows, tIn}, x)
	index := filepath.Join(t.TempDir(), "ix")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(index, "ids-00000.npy")); err == nil {
				cancel()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var stdout, stderr bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &stdout, &stderr
	err := app.RunContext(ctx, []string{"dinoclip", "index", "--model", run, "--features", features, "--out", index, "--batch", "1"})
	cancel()
	<-done
	want := "the index " + index + " keeps the 1 file this run indexed before the stop (1 file, 40 rows, in all): the same command again indexes the rest"
	if !errors.Is(err, context.Canceled) || !strings.Contains(stderr.String(), want) {
		t.Fatalf("index stopped in its second file: %v, want it interrupted, saying %q:\n%s", err, want, stderr.String())
	}
	ix, err := retrieval.OpenIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if got := ix.Manifest.Shards; len(got) != 1 || filepath.Base(got[0].Source.Path) != "a.dino.npy" {
		t.Errorf("the stopped index holds %+v, want the first file's shard", got)
	}
}

// An all-zero query row is searched as its help says (ids 0 to K-1, score
// 0) with a warning naming the row, counted in search.json; an all-zero
// key row of a KEYS.npy matrix is warned of; a NaN query is refused.
// Rows shorter than 1e-12 (not zero), normalised as F.normalize does,
// stay shorter than unit length: warned of, in the queries and in a
// KEYS.npy matrix, naming the rows; unit rows are not.
func TestSearchShortRows(t *testing.T) {
	dir := t.TempDir()
	keys := []float32{1, 2, 3, 4, 1e-14, 2e-14, 3e-14, 4e-14, 0, 1, 0, 0}
	q := []float32{1e-20, 2e-20, 3e-20, 4e-20, 0, 0, 1, 0}
	kp, qp := filepath.Join(dir, "keys.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, kp, []int{3, 4}, keys)
	writeF32(t, qp, []int{2, 4}, q)
	_, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "3", "--out", filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{qp + ": 1 of 2 rows are shorter than 1e-12 (rows [0])", kp + ": 1 of 3 rows are shorter than 1e-12 (rows [1])", "score below their cosines"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	writeF32(t, qp, []int{1, 4}, q[4:])
	writeF32(t, kp, []int{2, 4}, slices.Concat(keys[:4], keys[8:]))
	if _, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", filepath.Join(dir, "out")); err != nil || strings.Contains(stderr, "shorter") {
		t.Errorf("a search of unit-length rows: %v\n%s", err, stderr)
	}
}

// A search beyond the memory left is refused before anything is read (it
// ended out of memory when the answer was allocated, or while reading
// queries of the wrong width, with a runtime trace): the queries, a .npy's
// keys and the answer are counted.
func TestSearchRefusesBeyondMemory(t *testing.T) {
	dir := t.TempDir()
	kp, qp := filepath.Join(dir, "keys.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, kp, []int{100, 2}, make([]float32, 200))
	writeF32(t, qp, []int{10, 2}, make([]float32, 20))
	defer func(saved func() (uint64, bool)) { memAvailable = saved }(memAvailable)
	memAvailable = func() (uint64, bool) { return 1000, true } // 83 entries
	wantError(t, []string{"search", "--index", kp, "--queries", qp, "--k", "10", "--out", filepath.Join(dir, "out")},
		"--k 10 for 10 queries of "+qp+" over "+kp+": the search holds about 3 KiB (the queries 1 KiB, the keys 1 KiB, the answer 2 KiB), more than the 1 KiB of memory available")
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("the refused search made its --out: %v", err)
	}
	// Queries of the wrong width are refused as such, read or not.
	wide := filepath.Join(dir, "wide.npy")
	writeF32(t, wide, []int{10, 3}, make([]float32, 30))
	wantError(t, []string{"search", "--index", kp, "--queries", wide, "--k", "10", "--out", filepath.Join(dir, "out")}, "queries are 3 wide")
	memAvailable = func() (uint64, bool) { return 80 + 800 + 1200, true } // all of it exactly
	if _, _, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "10", "--out", filepath.Join(dir, "out")); err != nil {
		t.Errorf("an answer that fits: %v", err)
	}
}

func TestSearchZeroRows(t *testing.T) {
	dir := t.TempDir()
	dim := 4
	keys := []float32{0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0, 1, 0}
	negZero := float32(math.Copysign(0, -1)) // all zero too
	q := []float32{1, 0, 0, 0, 0, 0, 0, 0, negZero, 0, 0, 0}
	kp, qp := filepath.Join(dir, "keys.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, kp, []int{5, dim}, keys)
	writeF32(t, qp, []int{3, dim}, q)
	out := filepath.Join(dir, "out")
	_, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "3", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{qp + ": 2 of 3 rows are all zero (rows [1 2])", "ids 0 to K-1 with score 0", kp + ": 1 of 5 rows are all zero (rows [2])"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	ids, scores, _ := readSearch(t, out)
	if want := []int64{1, 3, 0, 0, 1, 2, 0, 1, 2}; !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
	for i, s := range scores[3:] {
		if s != 0 {
			t.Errorf("zero query score %d = %v, want 0", i, s)
		}
	}
	var info searchInfo
	b, err := os.ReadFile(filepath.Join(out, searchInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil || info.ZeroQueries != 2 {
		t.Errorf("search.json zero_queries %d (%v), want 2", info.ZeroQueries, err)
	}
	// No warning without zero rows.
	writeF32(t, qp, []int{1, dim}, q[:dim])
	if _, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "3", "--out", out); err != nil || strings.Contains(stderr, qp+":") {
		t.Errorf("search without zero queries: %v\n%s", err, stderr)
	}
	// A float64 query too short for float32 once normalised is said to be
	// zero or that (it was said to be all zero).
	if err := npy.WriteFloat64(qp, []int{1, dim}, []float64{1e-300, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "3", "--out", out); err != nil || !strings.Contains(stderr, qp+": 1 of 1 rows are all zero, or so short that normalised they round to zero in float32") {
		t.Errorf("search of a float64 query of 1e-300: %v\n%s", err, stderr)
	}
	writeF32(t, qp, []int{1, dim}, []float32{float32(math.NaN()), 0, 0, 0})
	wantError(t, []string{"search", "--index", kp, "--queries", qp, "--k", "3", "--out", out}, "row 0, column 0 is NaN")
	// Zero queries of the wrong width: the error, and no warning about
	// rows that are not searched.
	writeF32(t, qp, []int{2, dim + 1}, make([]float32, 2*(dim+1)))
	_, stderr, err = runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "3", "--out", out)
	if err == nil || !strings.Contains(err.Error(), "5 wide") || strings.Contains(stderr, qp+":") {
		t.Errorf("zero queries 5 wide against 4-wide keys: error %v, stderr:\n%s", err, stderr)
	}
}

// results.txt gives each query's answer under its text, where the record
// beside the queries (python -m dinoclip.extract texts) gives the texts;
// "query N" alone where it does not, or where its texts are not one per
// query (a warning says so).
func TestSearchResultsFile(t *testing.T) {
	dir := t.TempDir()
	kp, qp := filepath.Join(dir, "keys.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, kp, []int{3, 2}, []float32{1, 0, 0, 1, 1, 1})
	writeF32(t, qp, []int{2, 2}, []float32{0, 1, 1, 0})
	b, err := os.ReadFile(qp)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	record := func(texts string) {
		writeFile(t, filepath.Join(dir, "q.json"), `{"format": "`+dataset.QueriesRecordFormat+`", "clip": "c", "sha256": "`+hex.EncodeToString(sum[:])+`", "texts": `+texts+`}`)
	}
	out := filepath.Join(dir, "out")
	results := func() string {
		b, err := os.ReadFile(filepath.Join(out, searchResultsFile))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	record(`["a dog", "zwei Kätzchen"]`)
	mustRun(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", out)
	want := "query 1: a dog\n   1.   1.0000  1\n   2.   0.7071  2\n\nquery 2: zwei Kätzchen\n   1.   1.0000  0\n   2.   0.7071  2\n"
	if got := results(); got != want {
		t.Errorf("results.txt:\n%s\nwant:\n%s", got, want)
	}
	// info describes the record, and names it beside the queries.
	if info := mustRun(t, "info", filepath.Join(dir, "q.json")); !strings.Contains(info, "record of the queries "+qp) || !strings.Contains(info, `embeddings of CLIP "c", 2 texts`) {
		t.Errorf("info of the queries record:\n%s", info)
	}
	if info := mustRun(t, "info", qp); !strings.Contains(info, "queries record "+filepath.Join(dir, "q.json")+`: embeddings of CLIP "c", 2 texts`) {
		t.Errorf("info of the queries:\n%s", info)
	}
	// The search's last line and info point at it.
	if _, stderr, _ := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", out); !strings.Contains(stderr, "each query's answer: "+filepath.Join(out, searchResultsFile)) {
		t.Errorf("search's last line does not name %s:\n%s", searchResultsFile, stderr)
	}
	if info := mustRun(t, "info", out); !strings.Contains(info, "results.txt: each query's answer, for people") || strings.Contains(info, "images.txt") {
		t.Errorf("info of the search output:\n%s", info)
	}
	// A text with what is no text on a line is quoted: no forged row.
	record(`["a dog\nquery 3: fake", "tab\there"]`)
	mustRun(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", out)
	if got := results(); !strings.HasPrefix(got, `query 1: "a dog\nquery 3: fake"`+"\n") || !strings.Contains(got, `query 2: "tab\there"`+"\n") {
		t.Errorf("results.txt of texts with a line break and a tab:\n%s", got)
	}
	// ... and one that would read as quoted, or hides a space at an end.
	record(`["\"a\\tb\"", " trailing "]`)
	mustRun(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", out)
	if got := results(); !strings.HasPrefix(got, `query 1: "\"a\\tb\""`+"\n") || !strings.Contains(got, `query 2: " trailing "`+"\n") {
		t.Errorf("results.txt of a text in quotes and one with spaces at its ends:\n%s", got)
	}
	record(`["only one"]`)
	_, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", out)
	if err != nil || !strings.Contains(stderr, "gives 1 text for the 2 queries") {
		t.Errorf("a record of 1 text for 2 queries: %v\n%s", err, stderr)
	}
	if got := results(); !strings.HasPrefix(got, "query 1\n   1.   1.0000  1\n") {
		t.Errorf("results.txt without texts:\n%s", got)
	}
}

// A --k above the rows searched (a collection of a few photos, the default
// k of 10) is lowered to them with a note (a warning where --k was
// given), where it was refused: each answer ranks every row, and
// search.json records the k used.
func TestSearchClampsK(t *testing.T) {
	dir := t.TempDir()
	kp, qp := filepath.Join(dir, "keys.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, kp, []int{3, 2}, []float32{1, 0, 0, 1, 1, 1})
	writeF32(t, qp, []int{2, 2}, []float32{0, 1, 1, 0})
	out := filepath.Join(dir, "out")
	for _, k := range [][]string{nil, {"--k", "1000000000000"}} {
		_, stderr, err := runCLI(t, append([]string{"search", "--index", kp, "--queries", qp, "--out", out}, k...)...)
		if err != nil {
			t.Fatalf("search %v of 3 rows: %v", k, err)
		}
		if want := "is more than the 3 rows of " + kp + ": searching with k 3"; !strings.Contains(stderr, want) {
			t.Errorf("search %v: stderr lacks %q:\n%s", k, want, stderr)
		}
		// (A warning where --k was given; the default's a note.)
		if warned := strings.Contains(stderr, "warning: --k"); warned != (k != nil) {
			t.Errorf("search %v: warned %v, want %v:\n%s", k, warned, k != nil, stderr)
		}
		ids, _, shape := readSearch(t, out)
		if want := []int64{1, 2, 0, 0, 2, 1}; !slices.Equal(shape, []int{2, 3}) || !slices.Equal(ids, want) {
			t.Errorf("search %v: ids %v of shape %v, want %v of [2 3]", k, ids, shape, want)
		}
		var info searchInfo
		b, _ := os.ReadFile(filepath.Join(out, searchInfoFile))
		if err := json.Unmarshal(b, &info); err != nil || info.K != 3 {
			t.Errorf("search %v: search.json k %d (%v), want 3", k, info.K, err)
		}
	}
	// A k the rows hold: no warning.
	if _, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "3", "--out", out); err != nil || strings.Contains(stderr, "warning") {
		t.Errorf("search --k 3 of 3 rows: %v\n%s", err, stderr)
	}
	// One row, one query: each counted in the singular.
	writeF32(t, kp, []int{1, 2}, []float32{1, 0})
	writeF32(t, qp, []int{1, 2}, []float32{0, 1})
	_, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--out", out)
	for _, want := range []string{"the default k 10 is more than the 1 row of " + kp, "top-1 of 1 row for 1 query"} {
		if err != nil || !strings.Contains(stderr, want) {
			t.Errorf("search of 1 row: %v, stderr lacks %q:\n%s", err, want, stderr)
		}
	}
}

// checkedSearcher is a device searcher whose check says failed (the CPU
// search answers), or, where unchecked, that it failed and runs anyway
// (the "device" is the CPU search here too).
type checkedSearcher struct {
	retrieval.CPUSearcher
	failed, unchecked string
}

func (s *checkedSearcher) Check(context.Context) (string, error) { return s.failed, nil }
func (s *checkedSearcher) Unchecked() string                     { return s.unchecked }

// A device searcher's failed check shows in search.json (cpu_fallback), in
// the last line and in info, as does a failed one that ran anyway
// (unchecked); a passed one leaves no trace.
func TestSearchDeviceCheck(t *testing.T) {
	saved := deviceSearcher
	t.Cleanup(func() { deviceSearcher = saved })
	dir := t.TempDir()
	kp, qp := filepath.Join(dir, "keys.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, kp, []int{3, 2}, []float32{1, 0, 0, 1, 1, 1})
	writeF32(t, qp, []int{2, 2}, []float32{0, 1, 1, 0})
	const why = "query 0, rank 1: row 2"
	for _, c := range []checkedSearcher{{}, {failed: why}, {unchecked: why}} {
		deviceSearcher = func(string) (retrieval.Searcher, func(), error) { return &c, func() {}, nil }
		out := filepath.Join(dir, "out")
		_, stderr, err := runCLI(t, "search", "--index", kp, "--queries", qp, "--k", "2", "--out", out, "--device", "cuda")
		if err != nil {
			t.Fatal(err)
		}
		var info searchInfo
		b, _ := os.ReadFile(filepath.Join(out, searchInfoFile))
		if err := json.Unmarshal(b, &info); err != nil || info.CPUFallback != c.failed || info.Unchecked != c.unchecked || info.Device != "cuda" {
			t.Errorf("check %+v: search.json %s (%v)", c, b, err)
		}
		if said := strings.Contains(stderr, "on the CPU: the GPU's search failed its check"); said != (c.failed != "") {
			t.Errorf("check %+v: the last line says it ran on the CPU %v:\n%s", c, said, stderr)
		}
		if said := strings.Contains(stderr, "; UNCHECKED: the GPU's search failed its check and ran as DINOCLIP_CUDA_CHECK=warn asks"); said != (c.unchecked != "") {
			t.Errorf("check %+v: the last line says it is unchecked %v:\n%s", c, said, stderr)
		}
		if ids, _, _ := readSearch(t, out); !slices.Equal(ids, []int64{1, 2, 0, 2}) {
			t.Errorf("check %+v: ids %v", c, ids)
		}
		stdout, _, err := runCLI(t, "info", out)
		if said := strings.Contains(stdout, "ran on the CPU: the cuda search failed its check (query 0, rank 1: row 2)"); err != nil || said != (c.failed != "") {
			t.Errorf("check %+v: info says it ran on the CPU %v (%v):\n%s", c, said, err, stdout)
		}
		if said := strings.Contains(stdout, "UNCHECKED: the cuda search failed its check (query 0, rank 1: row 2) and ran anyway"); said != (c.unchecked != "") {
			t.Errorf("check %+v: info says it is unchecked %v:\n%s", c, said, stdout)
		}
	}
}

// Searches writing the same --out at the same time all succeed, and what
// is left is one whole output: the last to finish moves an output that
// appeared in its way aside, as it does an earlier one (before, the loser
// of the race failed with a bare rename error).
func TestConcurrentSearchOutputs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hits")
	const writers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				k := 1 + (w+r)%3
				nb := &retrieval.Neighbors{Queries: 2, K: k, Rows: make([]int64, 2*k), Scores: make([]float32, 2*k)}
				if err := writeSearch(out, nb, searchInfo{K: k, Device: "cpu"}, nil, nil, io.Discard); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var info searchInfo
	b, err := os.ReadFile(filepath.Join(out, searchInfoFile))
	if err != nil || json.Unmarshal(b, &info) != nil {
		t.Fatalf("search.json: %v", err)
	}
	_, idShape, err := npy.ReadInt64(filepath.Join(out, searchIDsFile))
	if err != nil || !slices.Equal(idShape, []int{2, info.K}) {
		t.Errorf("%s: shape %v (search.json says k %d): %v", searchIDsFile, idShape, info.K, err)
	}
	_, scoreShape, err := npy.ReadFloat32(filepath.Join(out, searchScoresFile))
	if err != nil || !slices.Equal(scoreShape, []int{2, info.K}) {
		t.Errorf("%s: shape %v (search.json says k %d): %v", searchScoresFile, scoreShape, info.K, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".hits.tmp-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// float64 queries (read a block of rows at a time; here more than one
// block) give the answer of the same values as float32, and a bad value is
// named by its row across the blocks.
func TestSearchFloat64Queries(t *testing.T) {
	dir := t.TempDir()
	const dim = 4
	n := float64BlockValues/dim + 1000 // two blocks
	keys := []float32{0, 1, 0, 0, 1, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0, 1, 0, -1, 2, 3, 0.25}
	kp := filepath.Join(dir, "keys.npy")
	writeF32(t, kp, []int{5, dim}, keys)
	rnd := rand.New(rand.NewPCG(4, 4))
	q32 := make([]float32, n*dim)
	q64 := make([]float64, n*dim)
	for i := range q32 {
		q32[i] = float32(rnd.NormFloat64())
		q64[i] = float64(q32[i])
	}
	p32, p64 := filepath.Join(dir, "q32.npy"), filepath.Join(dir, "q64.npy")
	writeF32(t, p32, []int{n, dim}, q32)
	if err := npy.WriteFloat64(p64, []int{n, dim}, q64); err != nil {
		t.Fatal(err)
	}
	read := func(p string) ([]int64, []float32) {
		out := filepath.Join(dir, "out-"+filepath.Base(p))
		mustRun(t, "search", "--index", kp, "--queries", p, "--k", "2", "--out", out)
		ids, _, err := npy.ReadInt64(filepath.Join(out, searchIDsFile))
		if err != nil {
			t.Fatal(err)
		}
		scores, _, err := npy.ReadFloat32(filepath.Join(out, searchScoresFile))
		if err != nil {
			t.Fatal(err)
		}
		return ids, scores
	}
	ids32, s32 := read(p32)
	ids64, s64 := read(p64)
	if len(ids64) != 2*n || !slices.Equal(ids32, ids64) || !slices.Equal(s32, s64) {
		t.Errorf("float64 queries: %d ids, equal to float32's: ids %v, scores %v", len(ids64), slices.Equal(ids32, ids64), slices.Equal(s32, s64))
	}
	bad := float64BlockValues/dim + 5
	q64[bad*dim+2] = math.Inf(-1)
	if err := npy.WriteFloat64(p64, []int{n, dim}, q64); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"search", "--index", kp, "--queries", p64, "--k", "2", "--out", filepath.Join(dir, "o")}, fmt.Sprintf("row %d, column 2 is -Inf", bad))
}

// The images listed beside the features files (NAME.images.txt, as
// extraction writes them) go into the index, and search names the image of
// every row it finds in OUT/images.txt, in the order of ids.npy; a list
// of the wrong length is refused before anything is written, and one
// tampered with in the index fails the search.
func TestSearchNamesImages(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	feat := filepath.Join(dir, "feat")
	os.Mkdir(feat, 0o755)
	var names []string
	for s, f := range []string{"shard-00000", "shard-00001"} {
		b, err := os.ReadFile(filepath.Join(data, f+".dino.npy"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(feat, f+".dino.npy"), b, 0o644)
		rows := 40
		if s == 1 {
			rows = tRows - 40
		}
		var list strings.Builder
		for r := range rows {
			name := fmt.Sprintf("/photos/%d/img %03d.jpg", s, r)
			names = append(names, name)
			list.WriteString(name + "\n")
		}
		os.WriteFile(filepath.Join(feat, f+".images.txt"), []byte(list.String()), 0o644)
	}
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", feat, "--out", index)
	q := filepath.Join(dir, "q.npy")
	wd := newWorld(7)
	_, qv := wd.sample(5)
	writeF32(t, q, []int{5, tOut}, qv)
	out := filepath.Join(dir, "hits")
	mustRun(t, "search", "--index", index, "--queries", q, "--k", "4", "--out", out)
	ids, _, err := npy.ReadInt64(filepath.Join(out, searchIDsFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, searchImagesFile))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(got) != len(ids) || len(ids) != 20 {
		t.Fatalf("%s: %d lines for %d ids", searchImagesFile, len(got), len(ids))
	}
	for i, id := range ids {
		if got[i] != names[id] {
			t.Errorf("line %d names %q, id %d is %q", i, got[i], id, names[id])
		}
	}

	// The same features again, their list of images changed (photos
	// moved, their features extracted again): not skipped as indexed,
	// which would name the old images, but refused; the same list again
	// is skipped.
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", feat, "--out", index); err != nil || !strings.Contains(stderr, "skipped 2 files already indexed") {
		t.Fatalf("the same features and lists again: %v\n%s", err, stderr)
	}
	moved := strings.ReplaceAll(strings.Join(names[:40], "\n")+"\n", "/photos/", "/moved/")
	os.WriteFile(filepath.Join(feat, "shard-00000.images.txt"), []byte(moved), 0o644)
	wantError(t, []string{"index", "--model", run, "--features", feat, "--out", index},
		"shard-00000.dino.npy was indexed with another list of its images than", "build a new index from the features and lists as they are now")
	// The same names without their final newline (as an editor saves
	// them), or with CRLF line ends, are the same list.
	for _, list := range []string{strings.Join(names[:40], "\n"), strings.Join(names[:40], "\r\n") + "\r\n"} {
		os.WriteFile(filepath.Join(feat, "shard-00000.images.txt"), []byte(list), 0o644)
		if _, stderr, err := runCLI(t, "index", "--model", run, "--features", feat, "--out", index); err != nil || !strings.Contains(stderr, "skipped 2 files already indexed") {
			t.Fatalf("the same names, written otherwise: %v\n%s", err, stderr)
		}
	}
	// A copy of an indexed file, with a list of its own, is skipped as
	// that file (whose list the index holds), not refused.
	copied := filepath.Join(dir, "copied")
	os.Mkdir(copied, 0o755)
	b0, _ := os.ReadFile(filepath.Join(feat, "shard-00000.dino.npy"))
	os.WriteFile(filepath.Join(copied, "shard-00000.dino.npy"), b0, 0o644)
	os.WriteFile(filepath.Join(copied, "shard-00000.images.txt"), []byte(moved), 0o644)
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", copied, "--out", index); err != nil || !strings.Contains(stderr, "indexed already (moved or copied?): skipped") {
		t.Fatalf("a copy with a list of its own: %v\n%s", err, stderr)
	}
	// Features indexed without a list, given one since: refused too.
	bare := filepath.Join(dir, "bare")
	os.Mkdir(bare, 0o755)
	b0, _ = os.ReadFile(filepath.Join(data, "shard-00000.dino.npy"))
	os.WriteFile(filepath.Join(bare, "shard-00000.dino.npy"), b0, 0o644)
	bareIndex := filepath.Join(dir, "bare-ix")
	mustRun(t, "index", "--model", run, "--features", bare, "--out", bareIndex)
	os.WriteFile(filepath.Join(bare, "shard-00000.images.txt"), []byte(moved), 0o644)
	wantError(t, []string{"index", "--model", run, "--features", bare, "--out", bareIndex},
		"shard-00000.dino.npy was indexed without a list of its images, and", "build a new index to name them")

	// A features file of no rows, with no list, appended: its shard needs
	// none, and images.txt is written still.
	empty := filepath.Join(dir, "empty.dino.npy")
	writeF32(t, empty, []int{0, tIn}, nil)
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", empty, "--out", index); err != nil || strings.Contains(stderr, "warning") {
		t.Fatalf("an append of no rows, without a list: %v\n%s", err, stderr)
	}
	// Given an (empty) list since, it names no rows: skipped as indexed.
	os.WriteFile(filepath.Join(dir, "empty.images.txt"), nil, 0o644)
	if _, stderr, err := runCLI(t, "index", "--model", run, "--features", empty, "--out", index); err != nil || !strings.Contains(stderr, "skipped 1 file already indexed") {
		t.Fatalf("an indexed file of no rows, with an empty list since: %v\n%s", err, stderr)
	}
	mustRun(t, "search", "--index", index, "--queries", q, "--k", "4", "--out", out)
	if b2, err := os.ReadFile(filepath.Join(out, searchImagesFile)); err != nil || !bytes.Equal(b2, b) {
		t.Errorf("search after an append of no rows: %s differs (%v)", searchImagesFile, err)
	}

	// An index without lists: no images.txt (and none left from before).
	plain := filepath.Join(dir, "plain")
	mustRun(t, "index", "--model", run, "--features", data, "--out", plain)
	mustRun(t, "search", "--index", plain, "--queries", q, "--k", "4", "--out", out)
	if _, err := os.Stat(filepath.Join(out, searchImagesFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("search of an index without image lists: %s exists (%v)", searchImagesFile, err)
	}

	// Some shards with lists, some without: no images.txt, and a warning.
	// (Other contents: a copy of a listed file would be skipped.)
	mixed := filepath.Join(dir, "mixed")
	mustRun(t, "index", "--model", run, "--features", feat, "--out", mixed)
	x, _, _ := npy.ReadFloat32(filepath.Join(data, "shard-00000.dino.npy"))
	x[0]++
	unlisted := filepath.Join(dir, "unlisted.dino.npy")
	writeF32(t, unlisted, []int{40, tIn}, x)
	_, stderr, err := runCLI(t, "index", "--model", run, "--features", unlisted, "--out", mixed)
	if err != nil || !strings.Contains(stderr, "2 of the 3 shards of "+mixed+" with rows list their rows' images") || !strings.Contains(stderr, "names no images") {
		t.Errorf("an append of a features file without a list to a listed index: %v, and no warning:\n%s", err, stderr)
	}
	if _, stderr, _ := runCLI(t, "index", "--model", run, "--features", unlisted, "--out", mixed); strings.Contains(stderr, "warning") {
		t.Errorf("an append of nothing warns again:\n%s", stderr)
	}
	_, stderr, err = runCLI(t, "search", "--index", mixed, "--queries", q, "--k", "4", "--out", out)
	if err != nil || !strings.Contains(stderr, "2 of the 3 shards") || !strings.Contains(stderr, "no "+searchImagesFile) {
		t.Errorf("search of an index listing the images of some shards only: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, searchImagesFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("search of a partly listed index: %s exists (%v)", searchImagesFile, err)
	}

	// A list with a row too few: refused, the index not made.
	short := filepath.Join(feat, "shard-00001.images.txt")
	b, _ = os.ReadFile(short)
	os.WriteFile(short, b[:strings.LastIndex(strings.TrimSuffix(string(b), "\n"), "\n")+1], 0o644)
	wantError(t, []string{"index", "--model", run, "--features", feat, "--out", filepath.Join(dir, "ix2")},
		short, fmt.Sprintf("lists %d images", tRows-41), fmt.Sprintf("has %d rows", tRows-40))
	if _, err := os.Stat(filepath.Join(dir, "ix2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused index was made (%v)", err)
	}

	// A list that is a link leading nowhere (moved, deleted) is refused,
	// not taken for no list.
	os.Rename(short, short+".moved")
	os.Symlink(short+".moved-away", short)
	wantError(t, []string{"index", "--model", run, "--features", feat, "--out", filepath.Join(dir, "ix2")},
		short, "is a symbolic link to", "which does not exist")
	os.Remove(short)
	os.Rename(short+".moved", short)

	// A manifest edited to swap two shards' lists with their hashes: each
	// list matches its hash, and the search would name other photos.
	manifestPath := filepath.Join(index, retrieval.IndexManifestFile)
	manifest, _ := os.ReadFile(manifestPath)
	var swapped map[string]any
	if err := json.Unmarshal(manifest, &swapped); err != nil {
		t.Fatal(err)
	}
	shards := swapped["shards"].([]any)
	zeroth, oneth := shards[0].(map[string]any), shards[1].(map[string]any)
	for _, k := range []string{"images", "images_sha256"} {
		zeroth[k], oneth[k] = oneth[k], zeroth[k]
	}
	b, _ = json.Marshal(swapped)
	os.WriteFile(manifestPath, b, 0o644)
	wantError(t, []string{"search", "--index", index, "--queries", q, "--k", "4", "--out", out}, "shard 0 names keys-00000.npy, ids-00000.npy, images-00001.txt", "pair files of different shards")
	os.WriteFile(manifestPath, manifest, 0o644)

	// The index's copies tampered with, each keeping its line count (one
	// name edited, and then also the line order): the search fails, naming
	// one.
	for _, f := range []string{"images-00000.txt", "images-00001.txt"} {
		b, _ = os.ReadFile(filepath.Join(index, f))
		os.WriteFile(filepath.Join(index, f), bytes.Replace(b, []byte("img 000"), []byte("img 999"), 1), 0o644)
	}
	wantError(t, []string{"search", "--index", index, "--queries", q, "--k", "4", "--out", out}, "images-0000", "images_sha256 differs")
	// And info, which describes the index as whole, says so too.
	wantError(t, []string{"info", index}, "images-0000", "images_sha256 differs")

	// A features file that is a link (into a content store, say) has its
	// list beside the link.
	store, linked := filepath.Join(dir, "store"), filepath.Join(dir, "linked")
	os.Mkdir(store, 0o755)
	os.Mkdir(linked, 0o755)
	b, _ = os.ReadFile(filepath.Join(data, "shard-00000.dino.npy"))
	os.WriteFile(filepath.Join(store, "blob.dino.npy"), b, 0o644)
	os.Symlink(filepath.Join(store, "blob.dino.npy"), filepath.Join(linked, "shard-00000.dino.npy"))
	os.WriteFile(filepath.Join(linked, "shard-00000.images.txt"), []byte(strings.Repeat("a.jpg\n", 40)), 0o644)
	index3 := filepath.Join(dir, "ix3")
	mustRun(t, "index", "--model", run, "--features", linked, "--out", index3)
	ix, err := retrieval.OpenIndex(index3)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if sh := ix.Manifest.Shards; len(sh) != 1 || sh[0].Images == "" {
		t.Errorf("a linked features file with its list beside the link: shards %+v, want one with images", sh)
	}
	// A --k above its 40 rows: 40 lines per query.
	mustRun(t, "search", "--index", index3, "--queries", q, "--k", "50", "--out", out)
	if b, _ = os.ReadFile(filepath.Join(out, searchImagesFile)); strings.Count(string(b), "\n") != 5*40 {
		t.Errorf("search --k 50 of 40 rows: %d lines in %s, want %d", strings.Count(string(b), "\n"), searchImagesFile, 5*40)
	}
	// results.txt names each row's image after its id (images.txt holds
	// plain names here: shown as they are).
	first, _, _ := strings.Cut(string(b), "\n")
	ids, _, _ = readSearch(t, out)
	if r, _ := os.ReadFile(filepath.Join(out, searchResultsFile)); !strings.HasPrefix(string(r), "query 1\n   1. ") ||
		!strings.Contains(string(r), fmt.Sprintf("  %d  %s\n", ids[0], first)) {
		t.Errorf("%s does not give the first row's id %d and image %s:\n%.300s", searchResultsFile, ids[0], first, r)
	}
}

// A CPU search holds the collector to what it is to hold (--memory, the
// answer, the queries, the keys of a .npy read whole), where garbage let
// the heap grow to twice what was live; a user's GOMEMLIMIT wins, and the
// limit before is put back.
func TestSearchLimitsHeap(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	matrix := (&searchKeys{rows: 1000, dim: 8}).matrixBytes()
	before := debug.SetMemoryLimit(-1)
	restore := limitHeap(16<<20, 240<<20, 4096, matrix)
	want := int64(16<<20 + 240<<20 + 4096 + searchRuntimeBytes + 1000*8*4)
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Errorf("the heap limit of a search of a .npy: %d, want %d", got, want)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("after the search the limit is %d, want %d as before", got, before)
	}
	// An index's pages are mapped, outside the heap.
	restore = limitHeap(16<<20, 0, 0, (&searchKeys{rows: 1000, dim: 8, index: &retrieval.Index{}}).matrixBytes())
	if got := debug.SetMemoryLimit(-1); got != 16<<20+searchRuntimeBytes {
		t.Errorf("the heap limit of a search of an index: %d, want %d", got, 16<<20+searchRuntimeBytes)
	}
	restore()
	t.Setenv("GOMEMLIMIT", "1GiB")
	limitHeap(16<<20, 0, 0, matrix)()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("with GOMEMLIMIT set the limit became %d", got)
	}
}

// The place of a search's output is judged again when the output is put
// there: a run started meanwhile in the directory above it (its empty
// checkpoints/ where the search writes) is not replaced.
func TestSearchOutputPlaceCheckedAtTheEnd(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	out := filepath.Join(run, train.CheckpointsDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{train.RunFile, train.LockFile} {
		if err := os.WriteFile(filepath.Join(run, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nb := &retrieval.Neighbors{Queries: 1, K: 1, Rows: []int64{0}, Scores: []float32{1}}
	if err := writeSearch(out, nb, searchInfo{K: 1}, nil, nil, io.Discard); err == nil || !strings.Contains(err.Error(), "run directory "+run) {
		t.Fatalf("a search's output put in a run's checkpoints: %v", err)
	}
	if entries, err := os.ReadDir(out); err != nil || len(entries) != 0 {
		t.Errorf("the run's checkpoints directory after the refusal: %v, %v", entries, err)
	}
}

// More features files than an index may hold shards are refused before
// any is opened: each was mapped first, and past the system's limit on
// maps the process died with a runtime trace. (Empty files: none is read.)
func TestIndexRefusesTooManyFilesFirst(t *testing.T) {
	run, _, _ := trainRun(t)
	dir := t.TempDir()
	for i := range retrieval.IndexMaxShards + 1 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d.dino.npy", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "ix")
	wantError(t, []string{"index", "--model", run, "--features", dir, "--out", out}, fmt.Sprintf("%d features files, more than the %d shards", retrieval.IndexMaxShards+1, retrieval.IndexMaxShards))
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused index made %s (%v)", out, err)
	}
}

// A search whose queries' path is not UTF-8 text warns that search.json
// records it as another (JSON holds text); one whose paths are text does
// not warn. So does the first append of an index whose model's path is
// not UTF-8 (the manifest's model.path).
func TestSearchWarnsOfPathRecordedAsOther(t *testing.T) {
	dir := t.TempDir()
	kp := filepath.Join(dir, "keys.npy")
	writeF32(t, kp, []int{2, 2}, []float32{1, 0, 0, 1})
	plain := filepath.Join(dir, "q.npy")
	writeF32(t, plain, []int{1, 2}, []float32{1, 0})
	odd := filepath.Join(dir, "q\xff.npy")
	if err := os.Link(plain, odd); err != nil {
		t.Skipf("no file named with bytes that are not UTF-8 here: %v", err)
	}
	const warning = "the path is not UTF-8 text, and search.json records it as text"
	for q, warned := range map[string]bool{plain: false, odd: true} {
		_, stderr, err := runCLI(t, "search", "--index", kp, "--queries", q, "--k", "1", "--out", filepath.Join(t.TempDir(), "hits"))
		if err != nil || strings.Contains(stderr, warning) != warned {
			t.Errorf("search --queries %q: %v, warned %v, want %v:\n%s", q, err, !warned, warned, stderr)
		}
	}
	// The model an index's manifest records, by the first append only.
	run, data, _ := trainRun(t)
	oddModel := filepath.Join(dir, "m\xff", checkpoint.ModelFile)
	if err := os.Mkdir(filepath.Dir(oddModel), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile), oddModel)
	const indexWarning = "the path is not UTF-8 text, and the index's manifest records it as text"
	index := filepath.Join(t.TempDir(), "ix")
	for i, warned := range []bool{true, false} {
		_, stderr, err := runCLI(t, "index", "--model", oddModel, "--features", data, "--out", index)
		if err != nil || strings.Contains(stderr, indexWarning) != warned {
			t.Errorf("index --model %q, append %d: %v, warned %v, want %v:\n%s", oddModel, i+1, err, !warned, warned, stderr)
		}
	}
}

// results.txt shows an image name with what is no text on a line (an
// escape sequence, a carriage return) quoted, as it does a query's text:
// printed to a terminal, it rewrote lines.
func TestWriteResultsQuotesImageNames(t *testing.T) {
	nb := &retrieval.Neighbors{Queries: 1, K: 2, Rows: []int64{7, 12}, Scores: []float32{0.5, 0.25}}
	var b strings.Builder
	if err := writeResults(&b, nb, []string{"photos/\x1b[2Kevil\r.jpg", "photos/cat.jpg"}, nil); err != nil {
		t.Fatal(err)
	}
	want := "query 1\n   1.   0.5000   7  \"photos/\\x1b[2Kevil\\r.jpg\"\n   2.   0.2500  12  photos/cat.jpg\n"
	if b.String() != want {
		t.Errorf("results.txt:\n%q\nwant:\n%q", b.String(), want)
	}
}

// index takes a features file's sample again after projecting its rows,
// through the same map, and refuses a file rewritten in place meanwhile
// (the rows it projected are of two versions), leaving no index.
func TestIndexRefusesFeaturesRewritten(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	feat := filepath.Join(dir, "a.dino.npy")
	x, shape, err := npy.ReadFloat32(filepath.Join(data, "shard-00001.dino.npy"))
	if err != nil {
		t.Fatal(err)
	}
	writeF32(t, feat, shape, x)
	t.Cleanup(func() { indexChunkHook = nil })
	rewrites := 0
	indexChunkHook = func(path string, hi int) {
		if rewrites > 0 {
			return
		}
		rewrites++
		// In place, as numpy's memmap writes: the same file, every value.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		dataBytes := int64(len(x) * 4)
		if _, err := f.WriteAt(bytes.Repeat([]byte{0, 0, 128, 63}, len(x)), st.Size()-dataBytes); err != nil { // (1.0 each)
			t.Error(err)
		}
	}
	out := filepath.Join(dir, "ix")
	wantError(t, []string{"index", "--model", run, "--features", feat, "--out", out, "--batch", "8"},
		feat+" was rewritten while it was indexed (its sampled contents changed)")
	if rewrites != 1 {
		t.Fatalf("the hook ran %d times", rewrites)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused index was left (%v)", err)
	}
	// Unchanged, the same file indexes.
	indexChunkHook = nil
	mustRun(t, "index", "--model", run, "--features", feat, "--out", out, "--batch", "8")
}
