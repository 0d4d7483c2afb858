package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
)

// projectDirect runs the CPU engine on rows with the model at path.
func projectDirect(t *testing.T, model string, x []float32, n int) []float32 {
	t.Helper()
	m, err := checkpoint.ReadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	e, err := nn.NewCPUEngine[float32](m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetParameters(m.Params); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, n*m.Config.OutputDim)
	if err := e.Project(y, x, n); err != nil {
		t.Fatal(err)
	}
	return y
}

func TestProject(t *testing.T) {
	run, data, _ := trainRun(t)
	model := filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)
	dir := t.TempDir()
	for _, in := range []string{"shard-00000.dino.npy", "shard-00001.dino.npy"} { // float32, float16
		inPath := filepath.Join(data, in)
		x, shape, err := npy.ReadFloat32(inPath)
		if err != nil {
			t.Fatal(err)
		}
		n := shape[0]
		want := projectDirect(t, model, x, n)

		out := filepath.Join(dir, "out32.npy")
		mustRun(t, "project", "--model", run, "--in", inPath, "--out", out, "--batch", "7")
		a, err := npy.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if a.DType() != npy.Float32 || !slices.Equal(a.Shape(), []int{n, tOut}) {
			t.Errorf("%s: %s %v, want float32 [%d, %d]", in, a.DType(), a.Shape(), n, tOut)
		}
		got, err := a.Float32s()
		a.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: project output differs from the engine's Project", in)
		}

		out16 := filepath.Join(dir, "out16.npy")
		mustRun(t, "project", "--model", model, "--in", inPath, "--out", out16, "--float16")
		got16, shape16, err := npy.ReadFloat32(out16)
		if err != nil {
			t.Fatal(err)
		}
		a16, _ := npy.Open(out16)
		if a16.DType() != npy.Float16 || !slices.Equal(shape16, []int{n, tOut}) {
			t.Errorf("%s --float16: %s %v", in, a16.DType(), shape16)
		}
		a16.Close()
		for i := range want {
			if got16[i] != npy.Float16Value(npy.Float16Bits(want[i])) {
				t.Fatalf("%s --float16: value %d is %v, want %v rounded to float16", in, i, got16[i], want[i])
			}
		}
	}
}

func TestProjectEmptyInput(t *testing.T) {
	run, _, _ := trainRun(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "empty.npy"), filepath.Join(dir, "out.npy")
	writeF32(t, in, []int{0, tIn}, nil)
	mustRun(t, "project", "--model", run, "--in", in, "--out", out)
	_, shape, err := npy.ReadFloat32(out)
	if err != nil || !slices.Equal(shape, []int{0, tOut}) {
		t.Errorf("projection of no rows: shape %v, %v", shape, err)
	}
}

func TestProjectErrors(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	good := filepath.Join(data, "shard-00000.dino.npy")
	wide := filepath.Join(dir, "wide.npy")
	writeF32(t, wide, []int{3, 5}, make([]float32, 15))
	vec := filepath.Join(dir, "vec.npy")
	writeF32(t, vec, []int{tIn}, make([]float32, tIn))
	ints := filepath.Join(dir, "ints.npy")
	if err := npy.WriteInt64(ints, []int{2, tIn}, make([]int64, 2*tIn)); err != nil {
		t.Fatal(err)
	}
	nan := filepath.Join(dir, "nan.npy")
	x := make([]float32, 3*tIn)
	x[2*tIn+1] = float32(math.NaN())
	writeF32(t, nan, []int{3, tIn}, x)
	far := filepath.Join(dir, "far.npy")
	x64 := make([]float64, 2*tIn)
	x64[tIn+3] = 1e300
	if err := npy.WriteFloat64(far, []int{2, tIn}, x64); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.npy")
	os.WriteFile(garbage, []byte("hello"), 0o644)
	model := filepath.Join(t.TempDir(), "model.safetensors") // a model outside the run
	if b, err := os.ReadFile(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)); err != nil || os.WriteFile(model, b, 0o644) != nil {
		t.Fatal("copying the run's best model:", err)
	}
	out := filepath.Join(dir, "out", "y.npy") // its directory is created by no one

	someModel := filepath.Join(t.TempDir(), "another.safetensors") // (--model and --out swapped)
	copyFile(t, model, someModel)
	cutModel := filepath.Join(t.TempDir(), "cut.safetensors") // (a model cut short in its data, --model and --out swapped)
	if b, err := os.ReadFile(model); err != nil || os.WriteFile(cutModel, b[:len(b)-4], 0o644) != nil {
		t.Fatal("cutting a model short:", err)
	}
	notes := filepath.Join(dir, "notes.txt")
	os.WriteFile(notes, []byte("mine"), 0o644)
	ok := filepath.Join(dir, "y.npy")

	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"missing model", []string{"project", "--in", good, "--out", ok}, []string{"missing --model"}},
		{"missing in", []string{"project", "--model", run, "--out", ok}, []string{"missing --in"}},
		{"missing out", []string{"project", "--model", run, "--in", good}, []string{"missing --out"}},
		{"nonexistent input", []string{"project", "--model", run, "--in", filepath.Join(dir, "nope.npy"), "--out", ok}, []string{"nope.npy"}},
		{"not a .npy", []string{"project", "--model", run, "--in", garbage, "--out", ok}, []string{garbage}},
		{"wrong width", []string{"project", "--model", run, "--in", wide, "--out", ok}, []string{wide, "5 wide", "8-wide"}},
		{"a vector", []string{"project", "--model", run, "--in", vec, "--out", ok}, []string{vec, "[1, 8]"}},
		{"integers", []string{"project", "--model", run, "--in", ints, "--out", ok}, []string{ints, "float"}},
		{"NaN", []string{"project", "--model", run, "--in", nan, "--out", ok}, []string{nan, "row 2, column 1"}},
		{"float64 beyond float32", []string{"project", "--model", run, "--in", far, "--out", ok}, []string{far, "row 1, column 3", "beyond float32's range"}},
		{"output directory missing", []string{"project", "--model", run, "--in", good, "--out", out}, []string{out}},
		{"output is a directory", []string{"project", "--model", run, "--in", good, "--out", dir}, []string{dir, "is a directory"}},
		{"output is the input", []string{"project", "--model", run, "--in", good, "--out", good}, []string{good, "is the --in file"}},
		{"output is the model", []string{"project", "--model", model, "--in", good, "--out", model}, []string{"is the model file"}}, // (one in a run is refused as in its checkpoint)
		{"output is another model", []string{"project", "--model", run, "--in", good, "--out", someModel}, []string{someModel, "exists and is a safetensors model, which the projections would replace"}},
		{"output is another kind of file", []string{"project", "--model", run, "--in", good, "--out", notes}, []string{notes, "exists and is a file that is neither a .npy array nor a safetensors model"}},
		{"output is a model cut short", []string{"project", "--model", run, "--in", good, "--out", cutModel}, []string{cutModel, "exists and is a safetensors file cut short"}},
		{"output is the input with a slash", []string{"project", "--model", run, "--in", good, "--out", good + "/"}, []string{good, "is a directory's"}},
		{"batch 0", []string{"project", "--model", run, "--in", good, "--out", ok, "--batch", "0"}, []string{"--batch 0"}},
		{"nonexistent model", []string{"project", "--model", filepath.Join(dir, "m"), "--in", good, "--out", ok}, []string{filepath.Join(dir, "m")}},
		{"cuda in the default build", []string{"project", "--model", run, "--in", good, "--out", ok, "--device", "cuda"}, []string{"built without CUDA"}},
		{"bf16 on the CPU", []string{"project", "--model", run, "--in", good, "--out", ok, "--precision", "bf16"}, []string{"--precision bf16", "GPU", "computes in fp32"}},
		{"fp64 projection", []string{"project", "--model", run, "--in", good, "--out", ok, "--precision", "fp64"}, []string{"--precision fp64", "fp32 or bf16"}},
		{"unknown precision", []string{"project", "--model", run, "--in", good, "--out", ok, "--precision", "fp8"}, []string{`--precision "fp8"`, "fp32 or bf16"}},
	}
	for _, c := range cases {
		if cudaBuild && c.name == "cuda in the default build" {
			continue // the GPU engine is there: nothing to refuse
		}
		t.Run(c.name, func(t *testing.T) { wantError(t, c.args, c.wants...) })
	}
	// No output and no temporary file was left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "y.npy" || strings.Contains(e.Name(), ".tmp") {
			t.Errorf("a failed projection left %s", e.Name())
		}
	}
	// A directory holding files named like a run's (search outputs named
	// best, a checkpoints folder of the user's) is no run: a run is known
	// by its run.json or its links.
	results := filepath.Join(dir, "results")
	os.MkdirAll(filepath.Join(results, checkpoint.BestLink), 0o755)
	os.MkdirAll(filepath.Join(results, "checkpoints"), 0o755)
	mustRun(t, "project", "--model", run, "--in", good, "--out", filepath.Join(results, "p.npy"))
	// An empty file (as mktemp makes) is replaced, and so is an earlier
	// projection.
	empty := filepath.Join(dir, "empty.npy")
	os.WriteFile(empty, nil, 0o644)
	for range 2 {
		mustRun(t, "project", "--model", run, "--in", good, "--out", empty)
		if !hasNPYMagic(empty) {
			t.Fatalf("project --out %s (empty, then an earlier projection) wrote no .npy there", empty)
		}
	}
}

// Finite inputs and weights can still make outputs that are not finite
// numbers (values near float32's limit overflow the first layer), or that
// float16 cannot hold (a model whose last LayerNorm scales by 10^6): both
// are errors naming the row, never a file of NaN or Inf written with
// status 0.
func TestProjectRefusesNonFiniteOutputs(t *testing.T) {
	run, _, _ := trainRun(t)
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.npy")
	x := make([]float32, 3*tIn)
	for i := 2 * tIn; i < 3*tIn; i++ {
		x[i] = 3e38
	}
	writeF32(t, huge, []int{3, tIn}, x)
	out := filepath.Join(dir, "y.npy")
	wantError(t, []string{"project", "--model", run, "--in", huge, "--out", out}, huge, "row 2", "not a finite number")

	// A model whose outputs are finite in float32 but beyond float16's range.
	m, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, ok := m.Config.Layout().Lookup("layer_norm.weight")
	if !ok {
		t.Fatal("no layer_norm.weight in the layout")
	}
	for i := range nn.View(m.Params, ln) {
		nn.View(m.Params, ln)[i] *= 1e6
	}
	loud := filepath.Join(dir, "loud.safetensors")
	if err := checkpoint.WriteModel(loud, m.Config, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.npy")
	small := make([]float32, 3*tIn)
	for i := range small {
		small[i] = float32(i%5) - 2
	}
	writeF32(t, in, []int{3, tIn}, small)
	mustRun(t, "project", "--model", loud, "--in", in, "--out", out)
	wantError(t, []string{"project", "--model", loud, "--in", in, "--out", filepath.Join(dir, "y16.npy"), "--float16"}, "row 0", "float16")
	// A model whose outputs are all below float16's smallest value: in
	// float16 each row would be zero.
	for _, name := range []string{"layer_norm.weight", "layer_norm.bias"} {
		v, _ := m.Config.Layout().Lookup(name)
		for i := range nn.View(m.Params, v) {
			nn.View(m.Params, v)[i] *= 1e-16 // (from the 1e6 above to 1e-10)
		}
	}
	faint := filepath.Join(dir, "faint.safetensors")
	if err := checkpoint.WriteModel(faint, m.Config, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "project", "--model", faint, "--in", in, "--out", out)
	wantError(t, []string{"project", "--model", faint, "--in", in, "--out", filepath.Join(dir, "y16.npy"), "--float16"}, "row 0", "below float16's smallest value", "would be zero")
	// Outputs below float16's normal range but not its smallest value:
	// written, with a warning naming the rows.
	for _, name := range []string{"layer_norm.weight", "layer_norm.bias"} {
		v, _ := m.Config.Layout().Lookup(name)
		for i := range nn.View(m.Params, v) {
			nn.View(m.Params, v)[i] *= 1e4 // (to 1e-6)
		}
	}
	if err := checkpoint.WriteModel(faint, m.Config, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "project", "--model", faint, "--in", in, "--out", filepath.Join(dir, "faint16.npy"), "--float16")
	if err != nil || !strings.Contains(stderr, "3 of 3 rows (the first row 0) lie wholly below float16's normal range") {
		t.Errorf("project --float16 of outputs near 1e-6: %v\n%s", err, stderr)
	}
	if _, stderr, _ := runCLI(t, "project", "--model", loud, "--in", in, "--out", out); strings.Contains(stderr, "normal range") {
		t.Errorf("project to float32 warns of float16's range:\n%s", stderr)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "y16.npy" || strings.Contains(e.Name(), ".tmp") {
			t.Errorf("a refused projection left %s", e.Name())
		}
	}
}

// What a kill -9 leaves beside an output (atomicfile's hidden temporary
// file, writeSearch's hidden directory) is removed by the next project or
// search into it once it is older than atomicfile.StaleAge (nobody holds
// its lock: see TestRemoveStale), and named; a younger one is warned of
// and left alone (it may be another process's at work); other hidden
// files are not touched.
func TestLeftoversWarned(t *testing.T) {
	run, data, _ := trainRun(t)
	base := t.TempDir()
	dir := filepath.Join(base, "d[1]") // (a glob of its name would match d1)
	os.Mkdir(dir, 0o755)
	decoyDir := filepath.Join(base, "d1")
	os.Mkdir(decoyDir, 0o755)
	decoy := filepath.Join(decoyDir, ".out[1].npy.tmp-777")
	if err := os.WriteFile(decoy, []byte("not ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out[1].npy")
	stale := filepath.Join(dir, ".out[1].npy.tmp-123456")
	other := filepath.Join(dir, ".out[1].npy.bak")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, err := runCLI(t, "project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "warning: "+stale+": left by a dinoclip killed while writing "+out) || strings.Contains(stderr, other) {
		t.Errorf("project's warning of leftovers:\n%s", stderr)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Errorf("the leftover was removed: %v", err)
	}
	_, stderr, err = runCLI(t, "project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", filepath.Join(dir, "clean.npy"))
	if err != nil || strings.Contains(stderr, "warning") {
		t.Errorf("project without leftovers: %v\n%s", err, stderr)
	}

	keys := filepath.Join(dir, "keys.npy")
	writeF32(t, keys, []int{2, 2}, []float32{1, 0, 0, 1})
	hits := filepath.Join(dir, "hits")
	staleDir := filepath.Join(dir, ".hits.tmp-99")
	if err := os.Mkdir(staleDir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = runCLI(t, "search", "--index", keys, "--queries", keys, "--k", "1", "--out", hits)
	if err != nil || !strings.Contains(stderr, "warning: "+staleDir+": left by") {
		t.Errorf("search's warning of leftovers: %v\n%s", err, stderr)
	}

	// Older than StaleAge: removed.
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	for _, p := range []string{stale, staleDir} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, err = runCLI(t, "project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", out)
	if err != nil || !strings.Contains(stderr, "removed "+stale+", left by a dinoclip killed while writing "+out) {
		t.Errorf("project over an old leftover: %v\n%s", err, stderr)
	}
	_, stderr, err = runCLI(t, "search", "--index", keys, "--queries", keys, "--k", "1", "--out", hits)
	if err != nil || !strings.Contains(stderr, "removed "+staleDir) {
		t.Errorf("search over an old leftover: %v\n%s", err, stderr)
	}
	for _, p := range []string{stale, staleDir} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the old leftover %s is still there: %v", p, err)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another hidden file was removed: %v", err)
	}
	if err := os.Chtimes(decoy, old, old); err != nil {
		t.Fatal(err)
	}
	// Not another directory's, and not a directory beside a file output.
	notOurs := filepath.Join(dir, ".out[1].npy.tmp-dir")
	os.Mkdir(notOurs, 0o755)
	os.Chtimes(notOurs, old, old)
	if _, stderr, err = runCLI(t, "project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", out); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{decoy, notOurs} {
		if _, err := os.Stat(p); err != nil || strings.Contains(stderr, p) {
			t.Errorf("%s, no leftover of --out %s, was touched (%v) or named:\n%s", p, out, err, stderr)
		}
	}
	// Not a user's directory by a name like a temporary's, nor an old
	// search's temporary that holds a user's file (or a mount): each is
	// left whole, the second with a warning naming what it holds.
	backup := filepath.Join(dir, ".hits.tmp-mybackup")
	kept := filepath.Join(dir, ".hits.tmp-98")
	for _, d := range []string{backup, kept} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "notes.txt"), []byte("mine"), 0o644)
		os.WriteFile(filepath.Join(d, searchIDsFile), []byte("x"), 0o644)
		os.Chtimes(d, old, old)
	}
	_, stderr, err = runCLI(t, "search", "--index", keys, "--queries", keys, "--k", "1", "--out", hits)
	if err != nil || strings.Contains(stderr, backup) || !strings.Contains(stderr, kept+" holds notes.txt") {
		t.Errorf("search beside a user's directories named like leftovers: %v\n%s", err, stderr)
	}
	for _, d := range []string{backup, kept} {
		if _, err := os.Stat(filepath.Join(d, "notes.txt")); err != nil {
			t.Errorf("%s lost a user's file: %v", d, err)
		}
	}
	// Beside where a link at --out leads.
	target := filepath.Join(t.TempDir(), "t.npy")
	targetStale := filepath.Join(filepath.Dir(target), ".t.npy.tmp-5")
	os.WriteFile(targetStale, []byte("half"), 0o644)
	os.Chtimes(targetStale, old, old)
	link := filepath.Join(dir, "link.npy")
	os.Symlink(target, link)
	if _, stderr, err = runCLI(t, "project", "--model", run, "--in", filepath.Join(data, "shard-00000.dino.npy"), "--out", link); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(targetStale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover beside a linked --out's target is still there (%v):\n%s", err, stderr)
	}
}

// An --out in a run (its run.json, lock, a checkpoint's files, through a
// link too) or in a search index (its manifest, shards, lock) is refused
// before anything is written: replaced, the run or index would be lost (a
// replaced lock would even let a second trainer into the run).
func TestProjectRefusesOutInRunOrIndex(t *testing.T) {
	run, data, eval := trainRun(t)
	in := filepath.Join(data, "shard-00000.dino.npy")
	index := filepath.Join(t.TempDir(), "index")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	if _, err := os.Lstat(filepath.Join(index, retrieval.IndexLockFile)); err != nil {
		t.Fatalf("dinoclip index left no %s (retrieval.IndexLockFile no longer names its lock): %v", retrieval.IndexLockFile, err)
	}
	link := filepath.Join(t.TempDir(), "l.npy")
	if err := os.Symlink(filepath.Join(run, "run.json"), link); err != nil {
		t.Fatal(err)
	}
	indexWithoutManifest := t.TempDir() // a first append under way: its lock held, no manifest yet
	os.WriteFile(filepath.Join(indexWithoutManifest, retrieval.IndexLockFile), nil, 0o644)
	held, err := os.Open(filepath.Join(indexWithoutManifest, retrieval.IndexLockFile))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := flock.TryLock(held, true); err != nil {
		t.Fatal(err)
	}
	// A run starting (its lock held, no run.json yet) is a run.
	starting := t.TempDir()
	lock, err := train.LockRunDir(starting)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	// A .lock nobody holds is some other tool's: no index.
	notIndex := t.TempDir()
	os.WriteFile(filepath.Join(notIndex, retrieval.IndexLockFile), nil, 0o644)
	mustRun(t, "project", "--model", run, "--in", in, "--out", filepath.Join(notIndex, "p.npy"))
	// Nor is a manifest.json of another kind (a web site's).
	site := t.TempDir()
	os.WriteFile(filepath.Join(site, retrieval.IndexManifestFile), []byte(`{"name": "my photos", "icons": []}`), 0o644)
	mustRun(t, "project", "--model", run, "--in", in, "--out", filepath.Join(site, "p.npy"))
	// Other names in a data set's directory are no set's files.
	mustRun(t, "project", "--model", run, "--in", in, "--out", filepath.Join(data, "p.npy"))
	mustRun(t, "project", "--model", run, "--in", in, "--out", filepath.Join(eval, "p.npy"))
	// Nor is a new NAME.clip.npy beside features NAME.dino.npy: their
	// projections, as a user keeps them.
	queries := t.TempDir()
	copyFile(t, in, filepath.Join(queries, "q"+train.FeatureSuffix))
	mustRun(t, "project", "--model", run, "--in", filepath.Join(queries, "q"+train.FeatureSuffix), "--out", filepath.Join(queries, "q"+train.TargetSuffix))
	// Nor are features named as a set's images, without its captions.
	copyFile(t, in, filepath.Join(queries, retrieval.ImageFeaturesFile))
	mustRun(t, "project", "--model", run, "--in", filepath.Join(queries, retrieval.ImageFeaturesFile), "--out", filepath.Join(queries, retrieval.ImageCLIPFile))
	// A first append killed before its manifest: its lock file, free, and
	// its shards (a file written there had the rerun that finishes it
	// refuse the directory).
	killedEarly := t.TempDir()
	os.WriteFile(filepath.Join(killedEarly, retrieval.IndexLockFile), nil, 0o644)
	copyFile(t, filepath.Join(index, "keys-00000.npy"), filepath.Join(killedEarly, "keys-00000.npy"))
	// A damaged index's manifest still marks it.
	damaged := t.TempDir()
	os.WriteFile(filepath.Join(damaged, retrieval.IndexManifestFile), []byte(`{"format": "dinoclip-index/1", "dim": 5`), 0o644)
	// A run whose checkpoints/ is a link to a directory elsewhere (moved to
	// a larger disk): its name and parent say nothing of the run.
	movedRun := filepath.Join(t.TempDir(), "run")
	if err := os.CopyFS(movedRun, os.DirFS(run)); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(t.TempDir(), "big")
	if err := os.Rename(filepath.Join(movedRun, train.CheckpointsDir), moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, filepath.Join(movedRun, train.CheckpointsDir)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ out, want string }{
		{filepath.Join(run, "run.json"), "in the run directory"},
		{filepath.Join(run, "lock"), "in the run directory"},
		{filepath.Join(run, "metrics.jsonl"), "in the run directory"},
		{filepath.Join(run, "new.npy"), "in the run directory"},
		{link, "in the run directory"},
		{filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile), "in a training checkpoint"},
		{filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile), "in a training checkpoint"},
		{filepath.Join(run, checkpoint.LastLink, checkpoint.OptimizerFile), "in a training checkpoint"},
		{filepath.Join(run, checkpoint.LastLink) + string(filepath.Separator) + filepath.Join("..", "new.npy"), "in the checkpoints directory"}, // ".." out of where last leads
		{filepath.Join(index, "manifest.json"), "in the search index"},
		{filepath.Join(index, "keys-00000.npy"), "in the search index"},
		{filepath.Join(indexWithoutManifest, "keys-00000.npy"), "in the search index"},
		{filepath.Join(damaged, "keys-00000.npy"), "in the search index"},
		{filepath.Join(killedEarly, "p.npy"), "whose first append was stopped before its manifest"},
		{filepath.Join(movedRun, train.CheckpointsDir, "p.npy"), "in the checkpoints directory"},
		{filepath.Join(starting, "p.npy"), "in the run directory"},
		// Named as a data set's own file, in the set: read as the set's.
		{filepath.Join(data, "shard-00000.clip.npy"), "would replace half of a training shard"},
		{filepath.Join(data, "shard-00001"+train.FeatureSuffix), "would replace half of a training shard"},
		// A new half alone in training data: the data would be refused.
		{filepath.Join(data, "zzz"+train.FeatureSuffix), "would be half of a training shard without its other half (zzz.clip.npy) in the training data " + data},
		{filepath.Join(data, "zzz"+train.TargetSuffix), "would be half of a training shard without its other half (zzz.dino.npy)"},
		{filepath.Join(eval, retrieval.ImageCLIPFile), "a file of the evaluation set"},
		{filepath.Join(eval, retrieval.SetInfoFile), "a file of the evaluation set"},
		{filepath.Join(eval, "Images.Clip.npy"), "a file of the evaluation set"}, // (one, where case is ignored)
	} {
		t.Run(strings.TrimPrefix(tc.out, filepath.Dir(filepath.Dir(tc.out))), func(t *testing.T) {
			before, _ := os.ReadFile(tc.out)
			wantError(t, []string{"project", "--model", run, "--in", in, "--out", tc.out}, tc.out, tc.want)
			if after, _ := os.ReadFile(tc.out); string(after) != string(before) {
				t.Errorf("a refused projection changed %s", tc.out)
			}
		})
	}
	// The run and the index are whole: both still open.
	mustRun(t, "info", run)
	mustRun(t, "info", index)
	// A folder of a user's features (no training data: no shard is
	// whole) takes projections of any name.
	photos := t.TempDir()
	for _, name := range []string{"a", "b"} {
		copyFile(t, in, filepath.Join(photos, name+train.FeatureSuffix))
	}
	for _, out := range []string{"all" + train.TargetSuffix, "b.v2" + train.TargetSuffix, "a" + train.TargetSuffix} {
		mustRun(t, "project", "--model", run, "--in", in, "--out", filepath.Join(photos, out))
	}
}
