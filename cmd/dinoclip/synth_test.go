package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/npy"
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
	if !strings.Contains(out, "1 shards") {
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
	if !strings.Contains(out, "7 rows in 1 shards, 4 -> 2") {
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
		{[]string{"synth", "--out", dir, "--rows", "200001", "--shard-rows", "1"}, []string{"more than 100000"}},
		{[]string{"synth", "--out", dir, "--latent-shift", "NaN"}, []string{"latent shift is NaN"}},
		{[]string{"synth", "--out", dir, "--latent-shift", "1e3"}, []string{"latent shift is 1000"}},
		// The evaluation set's sizes are checked before the training data is written.
		{[]string{"synth", "--out", dir, "--rows", "100", "--eval-images", "3037000500", "--captions-per-image", "3037000500"}, []string{"too many captions"}},
	}
	for _, c := range cases {
		wantError(t, c.args, c.wants...)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("rejected runs left %d entries in the output directory", len(entries))
	}
}

// A shifted data set is another domain of the same world: other rows than
// the unshifted set's, and the eval set records the shift.
func TestSynthLatentShift(t *testing.T) {
	base, shifted := t.TempDir(), t.TempDir()
	args := []string{"--rows", "20", "--eval-images", "4", "--input-dim", "8", "--output-dim", "4"}
	mustRun(t, append([]string{"synth", "--out", base}, args...)...)
	out := mustRun(t, append([]string{"synth", "--out", shifted, "--latent-shift", "2.5"}, args...)...)
	if !strings.Contains(out, "latent shift 2.5") {
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
	held, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := flock.TryLock(held, true); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"synth", "--out", out, "--rows", "100", "--eval-images", "10", "--force"}, "another dinoclip synth")
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused synth wrote %d entries", len(entries))
	}
}
