package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock/flocktest"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/synth"
	"github.com/dinoclip/dinoclip/train"
)

// synthSmall are flags for a quick synthetic data set: 50 rows of 16 -> 8
// in shards of 20, and 10 evaluation images with 3 captions each.
var synthSmall = []string{"--rows", "50", "--shard-rows", "20", "--eval-images", "10",
	"--captions-per-image", "3", "--input-dim", "16", "--output-dim", "8", "--seed", "3"}

func TestSynthWritesTrainAndEval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synth")
	out := mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	for _, want := range []string{
		"training data: 50 rows in 3 shards, 16 -> 8, seed 3",
		filepath.Join(dir, "train", "shard-00002.dino.npy") + "  [10, 16] float32",
		`evaluation set "synth": 10 images, 30 captions (3 per image)`,
		filepath.Join(dir, "eval", "captions.image.npy") + "  [30] int64",
		filepath.Join(dir, "eval", "eval.json"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{
		"train/shard-00000.dino.npy", "train/shard-00000.clip.npy", "train/shard-00002.clip.npy",
		"eval/images.dino.npy", "eval/images.clip.npy", "eval/captions.clip.npy", "eval/captions.image.npy", "eval/eval.json",
	} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}

	// What synth writes is what the rest of dinoclip reads.
	info := mustRun(t, "info", filepath.Join(dir, "train"))
	if !strings.Contains(info, "rows: 50") || !strings.Contains(info, "16 -> 8") {
		t.Errorf("info on the synthetic training data:\n%s", info)
	}
	mustRun(t, "train", "--data", filepath.Join(dir, "train"), "--eval", filepath.Join(dir, "eval"),
		"--out", filepath.Join(t.TempDir(), "run"), "--epochs", "2", "--batch", "10", "--hidden-dim", "8", "--blocks", "1")

	// A second run refuses to overwrite; --force replaces the data.
	wantError(t, append([]string{"synth", "--out", dir}, synthSmall...), filepath.Join(dir, "train"), "already holds training shards")
	out = mustRun(t, "synth", "--out", dir, "--force", "--float16", "--rows", "50", "--shard-rows", "50",
		"--eval-images", "10", "--input-dim", "16", "--output-dim", "8")
	if !strings.Contains(out, "50 rows in 1 shard,") {
		t.Errorf("forced rewrite summary:\n%s", out)
	}
	a, err := npy.Open(filepath.Join(dir, "train", "shard-00000.dino.npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.DType() != npy.Float16 || a.Rows() != 50 {
		t.Errorf("after --force --float16: %v rows %d", a.DType(), a.Rows())
	}
	if _, err := os.Stat(filepath.Join(dir, "train", "shard-00001.dino.npy")); !os.IsNotExist(err) {
		t.Errorf("an old shard survived --force (err %v)", err)
	}
}

func TestSynthEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DINOCLIP_SYNTH_OUT", dir)
	t.Setenv("DINOCLIP_SYNTH_ROWS", "7")
	t.Setenv("DINOCLIP_SYNTH_INPUT_DIM", "4")
	t.Setenv("DINOCLIP_SYNTH_FLOAT16", "true")
	out := mustRun(t, "synth", "--output-dim", "2", "--eval-images", "3")
	if !strings.Contains(out, "7 rows in 1 shard, 4 -> 2") {
		t.Errorf("environment not applied:\n%s", out)
	}
	a, err := npy.Open(filepath.Join(dir, "train", "shard-00000.dino.npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.DType() != npy.Float16 {
		t.Errorf("DINOCLIP_SYNTH_FLOAT16 ignored: %v", a.DType())
	}
}

func TestSynthErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args  []string
		wants []string
	}{
		{[]string{"synth"}, []string{"missing --out", "DINOCLIP_SYNTH_OUT"}},
		{[]string{"synth", "--out", dir, "--rows", "0"}, []string{"--rows 0", "at least 1"}},
		{[]string{"synth", "--out", dir, "--input-dim", "-2"}, []string{"--input-dim -2"}},
		{[]string{"synth", "--out", dir, "--captions-per-image", "0"}, []string{"--captions-per-image 0"}},
		{[]string{"synth", "--out", dir, "--rows", "many"}, []string{"synth", "--help"}},
		{[]string{"synth", "--out", dir, "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"synth", "--out", dir, "--rows", "200001", "--shard-rows", "1"}, []string{"more than 30000"}},
		{[]string{"synth", "--out", dir, "--latent-shift", "NaN"}, []string{"latent shift is NaN"}},
		{[]string{"synth", "--out", dir, "--latent-shift", "1e3"}, []string{"latent shift is 1000"}},
		// The evaluation set's sizes are checked before the training data is written.
		{[]string{"synth", "--out", dir, "--rows", "100", "--eval-images", "3037000500", "--captions-per-image", "3037000500"}, []string{"3037000500 images × 3037000500 captions each is more than the 1073741824 captions a set may have: fewer images or captions of each"}},
		{[]string{"synth", "--out", dir, "--rows", "100", "--captions-per-image", "100000"}, []string{"evaluation captions", "ask for fewer images or captions of each"}},
	}
	for _, c := range cases {
		wantError(t, c.args, c.wants...)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("rejected runs left %d entries in the output directory", len(entries))
	}
	// Sizes refused make no directory; the evaluation images' features
	// are named for what is too large.
	newOut := filepath.Join(t.TempDir(), "new", "out")
	wantError(t, []string{"synth", "--out", newOut, "--rows", "10000000000", "--shard-rows", "100000000"}, "rows per shard")
	wantError(t, []string{"synth", "--out", newOut, "--eval-images", "1000000000", "--captions-per-image", "1", "--input-dim", "1000", "--output-dim", "4"},
		"1000000000 evaluation images of width 1000")
	if _, err := os.Stat(filepath.Dir(newOut)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused synth made %s: %v", filepath.Dir(newOut), err)
	}
	// Not into a run, its checkpoints or an index.
	run, data, _ := trainRun(t)
	index := filepath.Join(t.TempDir(), "index")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	wantError(t, []string{"synth", "--out", run}, "in the run directory")
	wantError(t, []string{"synth", "--out", filepath.Join(run, train.CheckpointsDir)}, "checkpoints directory")
	wantError(t, []string{"synth", "--out", index}, "in the search index")
	// Nor through its train or eval directory being one.
	parent := t.TempDir()
	if err := os.Rename(index, filepath.Join(parent, "train")); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"synth", "--out", parent}, "in the search index "+filepath.Join(parent, "train"))
	parent = t.TempDir()
	if err := os.Rename(run, filepath.Join(parent, "eval")); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"synth", "--out", parent}, "in the run directory "+filepath.Join(parent, "eval"))
}

// A job beyond the machine is refused before anything is written: more
// memory than is left, more disk than is free under --out (it filled the
// disk an hour in), more rows than a run takes.
func TestSynthRefusesBeyondTheMachine(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a", "b")
	defer func(m func() (uint64, bool), d func(string) (uint64, bool)) { memAvailable, diskFree = m, d }(memAvailable, diskFree)
	memAvailable = func() (uint64, bool) { return 1 << 20, true }
	wantError(t, []string{"synth", "--out", out, "--rows", "2000"}, "of memory at once, more than the 1.0 MiB available", "smaller shards")
	memAvailable = func() (uint64, bool) { return 1 << 40, true }
	var asked string
	diskFree = func(dir string) (uint64, bool) { asked = dir; return 1 << 20, true }
	wantError(t, []string{"synth", "--out", out, "--rows", "2000"}, "on disk, more than the 1.0 MiB free under "+filepath.Dir(filepath.Dir(out)))
	if asked != filepath.Dir(filepath.Dir(out)) {
		t.Errorf("free disk read under %q, want the nearest directory there is, %s", asked, filepath.Dir(filepath.Dir(out)))
	}
	// What a killed run left in --out is removed before the writing, a
	// run killed a moment ago's too: its space counts as free (here 64
	// MiB, sparse, beside the training shards' directory). A live run's
	// (its lock held) stays, and does not count; so does any where
	// directories cannot be locked.
	leftover := filepath.Join(out, ".train.synth.tmp-123")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "shard-00000.dino.npy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(leftover, "shard-00000.dino.npy"), 64<<20); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "windows" {
		wantError(t, []string{"synth", "--out", out, "--rows", "2000", "--eval-images", "20"}, "on disk, more than the 1.0 MiB free")
	} else {
		t.Run("held", func(t *testing.T) {
			flocktest.Hold(t, leftover, true, 0)
			wantError(t, []string{"synth", "--out", out, "--rows", "2000", "--eval-images", "20"}, "on disk, more than the 1.0 MiB free")
		})
		mustRun(t, "synth", "--out", out, "--rows", "2000", "--eval-images", "20")
		if _, err := os.Lstat(leftover); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the killed run's %s, whose space was counted free, is still there: %v", leftover, err)
		}
	}
	os.RemoveAll(filepath.Dir(out))
	diskFree = func(string) (uint64, bool) { return 1 << 62, true }
	wantError(t, []string{"synth", "--out", out, "--rows", "2147483648", "--shard-rows", "1000000"}, "more than the 2147483647 rows a training run takes")
	if _, err := os.Stat(filepath.Dir(out)); !os.IsNotExist(err) {
		t.Errorf("a refused synth made directories: %v", err)
	}
	// --out's train and eval on two disks (mount points): each set is
	// judged by its own disk's free space, not --out's.
	defer func(saved func(a, b string) bool) { sameFilesystem = saved }(sameFilesystem)
	sameFilesystem = func(a, b string) bool { return false }
	for _, set := range []string{"train", "eval"} {
		if err := os.MkdirAll(filepath.Join(out, set), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for small, want := range map[string]string{"train": "2000 training rows take about", "eval": "an evaluation set of 20 images x 5 captions take about"} {
		diskFree = func(dir string) (uint64, bool) {
			if filepath.Base(dir) == small {
				return 1 << 10, true
			}
			return 1 << 40, true
		}
		wantError(t, []string{"synth", "--out", out, "--rows", "2000", "--eval-images", "20"}, want, "free under "+filepath.Join(out, small))
	}
}

// A shifted data set is another domain of the same world: other rows than
// the unshifted set's, and the eval set records the shift, in its name
// too, so that a model is evaluated on both domains at once.
func TestSynthLatentShift(t *testing.T) {
	base, shifted := t.TempDir(), t.TempDir()
	args := []string{"--rows", "20", "--eval-images", "4", "--input-dim", "8", "--output-dim", "4"}
	mustRun(t, append([]string{"synth", "--out", base}, args...)...)
	out := mustRun(t, append([]string{"synth", "--out", shifted, "--latent-shift", "2.5"}, args...)...)
	if !strings.Contains(out, "latent shift 2.5") || !strings.Contains(out, `evaluation set "synth-shift-2.5"`) {
		t.Errorf("synth --latent-shift 2.5:\n%s", out)
	}
	a, err := os.ReadFile(filepath.Join(base, "train", "shard-00000.dino.npy"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(shifted, "train", "shard-00000.dino.npy"))
	if err != nil || bytes.Equal(a, b) {
		t.Errorf("the shifted features are the unshifted ones (%v)", err)
	}
	info, err := os.ReadFile(filepath.Join(shifted, "eval", "eval.json"))
	if err != nil || !strings.Contains(string(info), "latent_shift=2.5") {
		t.Errorf("eval.json %s (%v)", info, err)
	}
	// Both domains' sets in one evaluation.
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, "train", "--data", filepath.Join(base, "train"), "--out", run, "--batch", "10", "--epochs", "1", "--hidden-dim", "8", "--blocks", "1")
	if out := mustRun(t, "eval", "--model", run, "--eval", filepath.Join(base, "eval"), "--eval", filepath.Join(shifted, "eval")); !strings.Contains(out, "synth-shift-2.5") {
		t.Errorf("eval on both domains:\n%s", out)
	}
}

// A synth into an output another synth holds is refused before it writes
// anything: the lock covers the whole output, training data and
// evaluation set (two --force runs had mixed one's shards with the
// other's evaluation set).
func TestSynthLocksItsOutput(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows")
	}
	out := t.TempDir()
	flocktest.Hold(t, out, true, 0) // (as a dinoclip writer at work in it)
	wantError(t, []string{"synth", "--out", out, "--rows", "100", "--eval-images", "10", "--force"}, "in use by another dinoclip")
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused synth wrote %d entries", len(entries))
	}
}

// synthSmallSettings is synthSmall's record in dataset.UnfinishedFile.
func synthSmallSettings() string {
	opts := synth.DefaultOptions()
	opts.Seed, opts.InputDim, opts.OutputDim = 3, 16, 8
	return synthJob{opts: opts, rows: 50, shardRows: 20, images: 10, perImage: 3}.settings()
}

// A synth killed between its training data and its evaluation set is gone
// on with by the same command, not refused; one of other settings still
// needs --force over the complete training set it left.
func TestSynthRerunAfterKillBetweenSets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synth")
	mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	if _, err := os.Stat(filepath.Join(dir, dataset.UnfinishedFile)); !os.IsNotExist(err) {
		t.Fatalf("a finished synth left %s: %v", dataset.UnfinishedFile, err)
	}
	// What a kill after the training data leaves.
	os.RemoveAll(filepath.Join(dir, "eval"))
	marker := filepath.Join(dir, dataset.UnfinishedFile)
	os.WriteFile(marker, []byte(synthSmallSettings()), 0o644)

	info := mustRun(t, "info", dir)
	if !strings.Contains(info, "unfinished") || !strings.Contains(info, "rows: 50") {
		t.Errorf("info on an unfinished synth's output:\n%s", info)
	}
	other := []string{"synth", "--out", dir, "--rows", "60", "--shard-rows", "20", "--eval-images", "10",
		"--captions-per-image", "3", "--input-dim", "16", "--output-dim", "8", "--seed", "3"}
	wantError(t, other, "already holds training shards", "--force")
	out := mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	if !strings.Contains(out, "going on from an interrupted dinoclip synth") {
		t.Errorf("the same synth again:\n%s", out)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("%s left after the run again: %v", marker, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "eval", "eval.json")); err != nil {
		t.Error(err)
	}
	// Finished: the next run needs --force again.
	wantError(t, append([]string{"synth", "--out", dir}, synthSmall...), "already holds training shards")
}

// A synth killed while it wrote its training data leaves DIR/train empty
// (its shards wait in a staging directory beside it): info says so, and
// the same command again is not refused, and says what became of the
// staging directory (it had removed it without a word).
func TestSynthRerunAfterKillWhileStaging(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "train"), 0o755)
	staging := filepath.Join(dir, ".train.synth.tmp-4242")
	os.Mkdir(staging, 0o755)
	os.WriteFile(filepath.Join(staging, "shard-00000.dino.npy"), []byte("part"), 0o644)
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	os.Chtimes(staging, old, old)
	os.WriteFile(filepath.Join(dir, dataset.UnfinishedFile), []byte(synthSmallSettings()), 0o644)
	wantError(t, []string{"info", filepath.Join(dir, "train")}, "no data set yet", "has not finished")
	_, stderr, err := runCLI(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	if err != nil {
		t.Fatalf("the run again: %v\n%s", err, stderr)
	}
	want := "dinoclip: removed " + staging + ", left by a dinoclip killed while writing " + filepath.Join(dir, "train") + "\n"
	if runtime.GOOS == "windows" { // no locks: it may be a live run's
		want = "dinoclip: warning: " + staging + ": left by a dinoclip killed while writing " + filepath.Join(dir, "train") + ", or being written"
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("the run again says\n%s\nwant %q", stderr, want)
	}
	if info := mustRun(t, "info", filepath.Join(dir, "train")); !strings.Contains(info, "rows: 50") {
		t.Errorf("info after the run again:\n%s", info)
	}
}

// What an older synth killed while moving its shards in left (some shards
// in DIR/train, the rest in DIR/train/.partial) is no data set to train on:
// info and train say it is incomplete, and synth, which cannot tell that
// .partial from another program's, refuses it and leaves it alone.
func TestSynthLegacyPartialSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synth")
	mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	trainDir := filepath.Join(dir, "train")
	partial := filepath.Join(trainDir, ".partial")
	os.Mkdir(partial, 0o755)
	for _, name := range []string{"shard-00002.dino.npy", "shard-00002.clip.npy", "shard-00001.clip.npy"} {
		if err := os.Rename(filepath.Join(trainDir, name), filepath.Join(partial, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(trainDir, "shard-00001.dino.npy"))
	wantError(t, []string{"info", trainDir}, "incomplete", partial)
	wantError(t, []string{"info", dir}, "incomplete", partial)
	wantError(t, []string{"train", "--data", trainDir, "--eval", filepath.Join(dir, "eval"), "--out", filepath.Join(t.TempDir(), "run"),
		"--epochs", "1", "--batch", "10", "--hidden-dim", "8", "--blocks", "1"}, "incomplete", partial)
	for _, force := range [][]string{nil, {"--force"}} {
		wantError(t, append(append([]string{"synth", "--out", dir}, synthSmall...), force...), partial, "removes no directory")
		if entries, _ := os.ReadDir(partial); len(entries) != 3 {
			t.Fatalf("synth %v: %s holds %d entries, want its 3 left alone", force, partial, len(entries))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, dataset.UnfinishedFile)); !os.IsNotExist(err) {
		t.Errorf("a refused synth wrote %s: %v", dataset.UnfinishedFile, err)
	}
}

// What a kill during synth --force over an earlier output can leave: the
// new training data beside the old evaluation set, with the unfinished-run
// marker in --out. Every reader of either set refuses them, not only info
// on --out; the same synth again finishes the run.
func TestSynthUnfinishedSetsRefused(t *testing.T) {
	run, _, _ := trainRun(t)
	dir := filepath.Join(t.TempDir(), "synth")
	mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	if err := os.WriteFile(filepath.Join(dir, dataset.UnfinishedFile), []byte(synthSmallSettings()), 0o644); err != nil {
		t.Fatal(err)
	}
	trainDir, evalDir := filepath.Join(dir, dataset.TrainDir), filepath.Join(dir, dataset.EvalDir)
	if info := mustRun(t, "info", dir); !strings.Contains(info, "unfinished") || !strings.Contains(info, "rows: 50") {
		t.Errorf("info on an unfinished synth's output:\n%s", info)
	}
	for _, args := range [][]string{
		{"info", trainDir},
		{"info", evalDir},
		{"train", "--data", trainDir, "--eval", evalDir, "--out", filepath.Join(t.TempDir(), "run")},
		{"train", "--data", makeData(t), "--eval", evalDir, "--out", filepath.Join(t.TempDir(), "run")},
		{"eval", "--model", run, "--eval", evalDir},
	} {
		wantError(t, args, "interrupted", "run that dinoclip synth or demo again")
	}
	mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	mustRun(t, "info", trainDir)
	mustRun(t, "info", evalDir)
}

// A synth whose training data could not be written (here: another process
// holds the directory) changed nothing, the marker included: the sets
// already there stay readable. Another data set beside synth's is never
// taken for one of its sets.
func TestFailedSynthLeavesSetsReadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synth")
	mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	trainDir, evalDir := filepath.Join(dir, dataset.TrainDir), filepath.Join(dir, dataset.EvalDir)
	flocktest.Hold(t, trainDir, true, 0) // (as a dinoclip writer at work in it)
	wantError(t, append([]string{"synth", "--out", dir, "--force", "--seed", "9"}, synthSmall...), "in use by another dinoclip")
	if _, err := os.Lstat(filepath.Join(dir, dataset.UnfinishedFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a synth that wrote nothing left its unfinished-run marker: %v", err)
	}
	mustRun(t, "info", trainDir)
	mustRun(t, "info", evalDir)
	other := filepath.Join(dir, "cc12m")
	if err := os.Rename(makeData(t), other); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, dataset.UnfinishedFile), []byte(synthSmallSettings()), 0o644)
	mustRun(t, "info", other)
}

// The unfinished-run marker is read and written only as a regular file: a
// link there (which would have synth overwrite the file it leads to), a
// named pipe (which would have it wait forever) or a directory is refused
// before anything is read or written.
func TestSynthMarkerNotRegularRefused(t *testing.T) {
	for _, kind := range []string{"link", "fifo", "dir", "large"} {
		t.Run(kind, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "synth")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(dir, dataset.UnfinishedFile)
			victim := filepath.Join(base, "victim.txt")
			os.WriteFile(victim, []byte("keep me\n"), 0o644)
			var err error
			switch kind {
			case "link":
				err = os.Symlink("../victim.txt", marker)
			case "fifo":
				makeFifo(t, marker)
			case "dir":
				err = os.Mkdir(marker, 0o755)
			case "large":
				err = os.WriteFile(marker, bytes.Repeat([]byte("x"), maxSynthSettings+1), 0o644)
			}
			if err != nil && kind == "link" && runtime.GOOS == "windows" {
				t.Skipf("making a link: %v", err) // (links need a privilege there)
			}
			if err != nil {
				t.Fatalf("making a %s: %v", kind, err)
			}
			wantError(t, append([]string{"synth", "--out", dir, "--force"}, synthSmall...), marker, "not the file in which dinoclip synth records")
			if b, _ := os.ReadFile(victim); string(b) != "keep me\n" {
				t.Errorf("the file the link leads to now holds %q", b)
			}
			if _, err := os.Stat(filepath.Join(dir, dataset.TrainDir)); !os.IsNotExist(err) {
				t.Errorf("a refused synth wrote %s: %v", dataset.TrainDir, err)
			}
		})
	}
}

// A temporary of the marker that a run killed while writing it left is
// removed by the next synth into that --out once stale; a fresh one (a
// live run's, maybe) is kept.
func TestSynthSweepsMarkerTemps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "synth")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "."+dataset.UnfinishedFile+".tmp-123")
	fresh := filepath.Join(dir, "."+dataset.UnfinishedFile+".tmp-456")
	for _, p := range []string{stale, fresh} {
		os.WriteFile(p, []byte("dinoclip synth unfinished: rows="), 0o644)
	}
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	os.Chtimes(stale, old, old)
	mustRun(t, append([]string{"synth", "--out", dir}, synthSmall...)...)
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("a killed run's %s is still there: %v", stale, err)
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Errorf("a fresh temporary was removed: %v", err)
	}
}

// A directory where synth puts one of its sets' files is refused before
// anything is written: it failed the set's last rename, after all the
// work, and every rerun the same way.
func TestSynthRefusesDirectoryInPlaceOfFile(t *testing.T) {
	for _, in := range []string{filepath.Join("train", "shard-00001.clip.npy"), filepath.Join("eval", "captions.image.npy")} {
		out := filepath.Join(t.TempDir(), "d")
		if err := os.MkdirAll(filepath.Join(out, in), 0o755); err != nil {
			t.Fatal(err)
		}
		wantError(t, []string{"synth", "--out", out, "--rows", "30", "--shard-rows", "10", "--eval-images", "11", "--input-dim", "4", "--output-dim", "4"},
			filepath.Join(out, in)+" is a directory")
		for _, dir := range []string{"train", "eval"} {
			entries, _ := os.ReadDir(filepath.Join(out, dir))
			for _, e := range entries {
				if !strings.HasPrefix(in, filepath.Join(dir, e.Name())) {
					t.Errorf("a refused synth left %s in %s", e.Name(), dir)
				}
			}
		}
	}
}

// Sets already in --out are refused (without --force) before the disk the
// new ones take is judged: a run told to free disk for them was refused
// for them next.
func TestSynthRefusesExistingSetsBeforeDisk(t *testing.T) {
	out := t.TempDir()
	mustRun(t, append([]string{"synth", "--out", out}, synthSmall...)...)
	defer func(saved func(string) (uint64, bool)) { diskFree = saved }(diskFree)
	diskFree = func(string) (uint64, bool) { return 1 << 10, true }
	if err := wantError(t, append([]string{"synth", "--out", out}, synthSmall...), "already holds training shards", "--force"); strings.Contains(err.Error(), "on disk") {
		t.Errorf("the refusal speaks of the disk: %v", err)
	}
}

// A --out, or its train or eval, that is there but no directory is named
// as such, by the path given, before anything is made (the system's
// "mkdir PATH: not a directory" or "open PATH/eval: not a directory" came
// from the writing); demo's --out too.
func TestSynthOutNotADirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "afile")
	se := filepath.Join(dir, "se")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(se, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(se, "eval"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"synth", "--out", file}, "synth: --out "+file+" is a regular file, not a directory")
	wantError(t, []string{"demo", "--out", file}, "demo: --out "+file+" is a regular file, not a directory")
	wantError(t, []string{"synth", "--out", se}, "synth: "+filepath.Join(se, "eval")+" is a regular file, not a directory")
	if entries, _ := os.ReadDir(se); len(entries) != 1 {
		t.Errorf("a refused synth left %d entries in %s, want its eval only", len(entries), se)
	}
	fifo := filepath.Join(dir, "pf")
	makeFifo(t, fifo)
	wantError(t, []string{"synth", "--out", fifo}, "synth: --out "+fifo+" is a named pipe, not a directory")
}
