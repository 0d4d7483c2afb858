package synth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/dataset"
	"gonum.org/v1/gonum/mat"

	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// smallOptions is a world small enough for quick tests.
func smallOptions(seed uint64) Options {
	o := DefaultOptions()
	o.Seed = seed
	o.InputDim, o.OutputDim = 48, 24
	return o
}

// dirFiles returns the contents of the regular files in dir by name.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// writeBoth writes a training set and an evaluation set of opts under root.
func writeBoth(t *testing.T, root string, opts Options, float16 bool) {
	t.Helper()
	if _, err := WriteTrainingData(filepath.Join(root, "train"), opts, 300, 128, float16); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteEvalSet(filepath.Join(root, "eval"), opts, 40, 3, "tiny"); err != nil {
		t.Fatal(err)
	}
}

func TestSameOptionsSameBytes(t *testing.T) {
	root := t.TempDir()
	a, b, c := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "c")
	// Different numbers of goroutines must not change the output.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	writeBoth(t, a, smallOptions(7), false)
	runtime.GOMAXPROCS(4)
	writeBoth(t, b, smallOptions(7), false)
	writeBoth(t, c, smallOptions(8), false)
	for _, sub := range []string{"train", "eval"} {
		fa, fb, fc := dirFiles(t, filepath.Join(a, sub)), dirFiles(t, filepath.Join(b, sub)), dirFiles(t, filepath.Join(c, sub))
		if len(fa) == 0 || len(fa) != len(fb) {
			t.Fatalf("%s: %d files vs %d", sub, len(fa), len(fb))
		}
		for name, data := range fa {
			if !bytes.Equal(data, fb[name]) {
				t.Errorf("%s/%s differs between two runs with the same options", sub, name)
			}
			if strings.HasSuffix(name, ".npy") && !strings.HasSuffix(name, ".image.npy") && bytes.Equal(data, fc[name]) {
				t.Errorf("%s/%s is the same for seeds 7 and 8", sub, name)
			}
		}
	}
}

// TestFingerprint pins the generated bits, so that a platform or Go release
// on which the arithmetic comes out differently (an FMA, a different
// rounding) fails here rather than silently producing other data. If the
// generator is changed on purpose, update the digests.
func TestFingerprint(t *testing.T) {
	w, err := NewWorld(smallOptions(1))
	if err != nil {
		t.Fatal(err)
	}
	features, targets, err := w.TrainingRows(1000, 16)
	if err != nil {
		t.Fatal(err)
	}
	set, err := w.EvalSet("fingerprint", 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(parts ...[]float32) string {
		h := sha256.New()
		for _, p := range parts {
			for _, v := range p {
				binary.Write(h, binary.LittleEndian, math.Float32bits(v))
			}
		}
		return hex.EncodeToString(h.Sum(nil))[:16]
	}
	got := []string{digest(features, targets), digest(set.ImageFeatures, set.ImageEmbeddings, set.CaptionEmbeddings)}
	want := []string{"8e01d19cd6a99674", "aa2a89cfccac9312"}
	if !slices.Equal(got, want) {
		t.Errorf("digests of the generated data are %q, want %q", got, want)
	}
}

func TestTrainingShardsMatchFormat(t *testing.T) {
	opts := smallOptions(3)
	for _, float16 := range []bool{false, true} {
		dir := t.TempDir()
		files, err := WriteTrainingData(dir, opts, 300, 128, float16)
		if err != nil {
			t.Fatal(err)
		}
		wantDType := npy.Float32
		if float16 {
			wantDType = npy.Float16
		}
		wantRows := []int{128, 128, 44}
		if len(files) != 2*len(wantRows) {
			t.Fatalf("wrote %d files, want %d", len(files), 2*len(wantRows))
		}
		for k, rows := range wantRows {
			for j, want := range []struct {
				suffix string
				dim    int
			}{{dataset.FeatureSuffix, opts.InputDim}, {dataset.TargetSuffix, opts.OutputDim}} {
				path := filepath.Join(dir, ShardName(k)+want.suffix)
				f := files[2*k+j]
				if f.Path != path || !slices.Equal(f.Shape, []int{rows, want.dim}) || f.DType != wantDType {
					t.Errorf("reported %+v, want %s [%d %d] %v", f, path, rows, want.dim, wantDType)
				}
				a, err := npy.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(a.Shape(), []int{rows, want.dim}) || a.DType() != wantDType {
					t.Errorf("%s: shape %v dtype %v, want [%d %d] %v", path, a.Shape(), a.DType(), rows, want.dim, wantDType)
				}
				a.Close()
			}
		}
		if _, err := os.Stat(filepath.Join(dir, ShardName(3)+dataset.FeatureSuffix)); !os.IsNotExist(err) {
			t.Errorf("a fourth shard exists (err %v)", err)
		}
	}
}

// readShards concatenates the rows of the training shards in dir.
func readShards(t *testing.T, dir, suffix string) []float32 {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	var all []float32
	for _, p := range paths {
		v, _, err := npy.ReadFloat32(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, v...)
	}
	return all
}

func TestRowsDoNotDependOnSharding(t *testing.T) {
	opts := smallOptions(5)
	one, three := t.TempDir(), t.TempDir()
	if _, err := WriteTrainingData(one, opts, 300, 300, false); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingData(three, opts, 300, 100, false); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorld(opts)
	if err != nil {
		t.Fatal(err)
	}
	features, targets, err := w.TrainingRows(0, 300)
	if err != nil {
		t.Fatal(err)
	}
	tail, _, err := w.TrainingRows(250, 50)
	if err != nil {
		t.Fatal(err)
	}
	// Shards larger than the data are one shard of all the rows, however
	// large (--shard-rows 10^18 used to be refused as too many values).
	huge := t.TempDir()
	if _, err := WriteTrainingData(huge, opts, 300, 1<<60, false); err != nil {
		t.Fatalf("300 rows in shards of 2^60: %v", err)
	}
	for _, dir := range []string{one, three, huge} {
		if !slices.Equal(readShards(t, dir, dataset.FeatureSuffix), features) || !slices.Equal(readShards(t, dir, dataset.TargetSuffix), targets) {
			t.Errorf("%s: shards differ from TrainingRows(0, 300)", dir)
		}
	}
	if !slices.Equal(tail, features[250*opts.InputDim:]) {
		t.Error("TrainingRows(250, 50) differs from rows 250.. of TrainingRows(0, 300)")
	}
}

func TestFloat16IsRoundedFloat32(t *testing.T) {
	opts := smallOptions(9)
	d32, d16 := t.TempDir(), t.TempDir()
	if _, err := WriteTrainingData(d32, opts, 200, 64, false); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingData(d16, opts, 200, 64, true); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{dataset.FeatureSuffix, dataset.TargetSuffix} {
		full, half := readShards(t, d32, suffix), readShards(t, d16, suffix)
		if len(full) != len(half) || len(full) == 0 {
			t.Fatalf("%s: %d float32 values, %d float16", suffix, len(full), len(half))
		}
		for i, v := range full {
			if want := npy.Float16Value(npy.Float16Bits(v)); half[i] != want {
				t.Fatalf("%s value %d: float16 file has %v, want %v rounded = %v", suffix, i, half[i], v, want)
			}
			// Values are O(1-10): float16 keeps 11 significant bits.
			if !(math.Abs(float64(half[i]-v)) <= math.Abs(float64(v))/2048+1e-7) {
				t.Fatalf("%s value %d: %v vs %v, beyond float16 rounding", suffix, i, half[i], v)
			}
		}
	}
}

func TestEvalSetMatchesFormat(t *testing.T) {
	opts := smallOptions(4)
	dir := filepath.Join(t.TempDir(), "new", "eval") // made by WriteEvalSet
	files, err := WriteEvalSet(dir, opts, 30, 4, "tiny-eval")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 {
		t.Fatalf("reported %d files, want 5", len(files))
	}
	for _, want := range []struct {
		name  string
		shape []int
		dtype npy.DType
	}{
		{dataset.ImageFeaturesFile, []int{30, opts.InputDim}, npy.Float32},
		{dataset.ImageCLIPFile, []int{30, opts.OutputDim}, npy.Float32},
		{dataset.CaptionCLIPFile, []int{120, opts.OutputDim}, npy.Float32},
		{dataset.CaptionImageFile, []int{120}, npy.Int64},
	} {
		a, err := npy.Open(filepath.Join(dir, want.name))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Shape(), want.shape) || a.DType() != want.dtype {
			t.Errorf("%s: shape %v dtype %v, want %v %v", want.name, a.Shape(), a.DType(), want.shape, want.dtype)
		}
		a.Close()
	}
	index, _, err := npy.ReadInt64(filepath.Join(dir, dataset.CaptionImageFile))
	if err != nil {
		t.Fatal(err)
	}
	for c, img := range index {
		if img != int64(c/4) {
			t.Fatalf("caption %d describes image %d, want %d", c, img, c/4)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, dataset.EvalInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("eval.json: %v", err)
	}
	if info["name"] != "tiny-eval" || !strings.HasPrefix(info["source"], "dinoclip synth seed=4 ") {
		t.Errorf("eval.json = %s", b)
	}
	set, err := retrieval.LoadSet(dir)
	if err != nil {
		t.Fatalf("retrieval cannot load the set: %v", err)
	}
	if set.Name != "tiny-eval" || set.Images != 30 || set.Captions != 120 {
		t.Errorf("retrieval loaded %q with %d images and %d captions", set.Name, set.Images, set.Captions)
	}
}

// TestCLIPRecall checks the default world's retrieval difficulty: CLIP's own
// embeddings retrieve well above chance but not perfectly, and captions are
// scaled like text embeddings.
func TestCLIPRecall(t *testing.T) {
	if testing.Short() {
		t.Skip("a 1000-image evaluation")
	}
	opts := DefaultOptions()
	w, err := NewWorld(opts)
	if err != nil {
		t.Fatal(err)
	}
	set, err := w.EvalSet("synth", 1000, 5)
	if err != nil {
		t.Fatal(err)
	}
	r, err := retrieval.Evaluate(set.ImageEmbeddings, set.CaptionEmbeddings, set.Images, set.Captions, opts.OutputDim, set.CaptionImage, []int{1, 5, 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CLIP recall on the default set: %+v", r.Recall)
	r1, _ := r.At(1)
	r5, _ := r.At(5)
	if r1.TextToImagePercent < 40 || r1.TextToImagePercent > 90 {
		t.Errorf("text-to-image R@1 = %.2f%%, want 40-90%% (chance is 0.1%%)", r1.TextToImagePercent)
	}
	if r5.TextToImagePercent <= r1.TextToImagePercent || r5.ImageToTextPercent < r1.ImageToTextPercent {
		t.Errorf("recall does not grow with k: %+v", r.Recall)
	}
	meanNorm := func(m []float32, dim int) float64 {
		var sum float64
		for r := 0; r < len(m)/dim; r++ {
			var sq float64
			for _, v := range m[r*dim : (r+1)*dim] {
				sq += float64(v) * float64(v)
			}
			sum += math.Sqrt(sq)
		}
		return sum / float64(len(m)/dim)
	}
	if n := meanNorm(set.ImageEmbeddings, opts.OutputDim); !(math.Abs(n-imageNorm) <= 0.5) {
		t.Errorf("mean image embedding norm %.2f, want about %v", n, imageNorm)
	}
	if n := meanNorm(set.CaptionEmbeddings, opts.OutputDim); !(math.Abs(n-textNorm) <= 0.5) {
		t.Errorf("mean caption embedding norm %.2f, want about %v", n, textNorm)
	}
}

// linearFitR2 fits targets ≈ features·W + b by least squares (with a tiny
// ridge for conditioning) on the training rows and returns the fraction of
// the variance of the test targets that the fit explains.
func linearFitR2(t *testing.T, trainX, trainY []float32, testX, testY []float32, din, dout int) float64 {
	t.Helper()
	n, m, p := len(trainX)/din, len(testX)/din, din+1
	design := func(x []float32, rows int) *mat.Dense {
		d := mat.NewDense(rows, p, nil)
		for i := range rows {
			for j := range din {
				d.Set(i, j, float64(x[i*din+j]))
			}
			d.Set(i, din, 1)
		}
		return d
	}
	asDense := func(y []float32, rows int) *mat.Dense {
		d := mat.NewDense(rows, dout, nil)
		for i := range rows {
			for j := range dout {
				d.Set(i, j, float64(y[i*dout+j]))
			}
		}
		return d
	}
	x, y := design(trainX, n), asDense(trainY, n)
	var xtx, xty, weights mat.Dense
	xtx.Mul(x.T(), x)
	for j := range din {
		xtx.Set(j, j, xtx.At(j, j)+1e-6*float64(n))
	}
	xty.Mul(x.T(), y)
	if err := weights.Solve(&xtx, &xty); err != nil {
		t.Fatal(err)
	}
	var pred mat.Dense
	pred.Mul(design(testX, m), &weights)
	truth := asDense(testY, m)
	var sse, sst float64
	for j := range dout {
		col := mat.Col(nil, j, truth)
		var mean float64
		for _, v := range col {
			mean += v / float64(m)
		}
		for i, v := range col {
			sse += (v - pred.At(i, j)) * (v - pred.At(i, j))
			sst += (v - mean) * (v - mean)
		}
	}
	return 1 - sse/sst
}

// TestEvalSetSharesTheTeacher checks that training data and evaluation sets
// of one seed come from one world, and that the world is nonlinear: a linear
// map fitted on training rows explains much, but clearly not all, of the
// variance of the evaluation set's CLIP embeddings (noise alone would leave
// about 99% explainable), and explains nothing in another seed's world.
func TestEvalSetSharesTheTeacher(t *testing.T) {
	opts := DefaultOptions()
	opts.InputDim, opts.OutputDim = 128, 64
	w, err := NewWorld(opts)
	if err != nil {
		t.Fatal(err)
	}
	features, targets, err := w.TrainingRows(0, 4000)
	if err != nil {
		t.Fatal(err)
	}
	same, err := w.EvalSet("synth", 1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	otherOpts := opts
	otherOpts.Seed = 1
	otherWorld, err := NewWorld(otherOpts)
	if err != nil {
		t.Fatal(err)
	}
	other, err := otherWorld.EvalSet("synth", 1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	r2 := linearFitR2(t, features, targets, same.ImageFeatures, same.ImageEmbeddings, opts.InputDim, opts.OutputDim)
	r2Other := linearFitR2(t, features, targets, other.ImageFeatures, other.ImageEmbeddings, opts.InputDim, opts.OutputDim)
	t.Logf("linear fit explains %.3f of the variance of the same world's evaluation set, %.3f of another world's", r2, r2Other)
	if r2 < 0.5 || r2 > 0.9 {
		t.Errorf("linear fit explains %.3f of the evaluation set's variance, want 0.5-0.9", r2)
	}
	if r2Other > 0.1 {
		t.Errorf("linear fit explains %.3f of another seed's evaluation set, want about none", r2Other)
	}
}

func TestEvalSetsByName(t *testing.T) {
	w, err := NewWorld(smallOptions(2))
	if err != nil {
		t.Fatal(err)
	}
	a, err := w.EvalSet("val", 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.EvalSet("test", 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	big, err := w.EvalSet("val", 30, 2)
	if err != nil {
		t.Fatal(err)
	}
	train, _, err := w.TrainingRows(0, 20)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.ImageFeatures, b.ImageFeatures) || slices.Equal(a.ImageFeatures, train) {
		t.Error("evaluation sets of different names, or an evaluation set and the training rows, share images")
	}
	if !slices.Equal(a.ImageFeatures, big.ImageFeatures[:len(a.ImageFeatures)]) ||
		!slices.Equal(a.CaptionEmbeddings, big.CaptionEmbeddings[:len(a.CaptionEmbeddings)]) {
		t.Error("a set is not a prefix of a larger set of the same name")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.InputDim = 0 }, "input dim is 0"},
		{func(o *Options) { o.OutputDim = -3 }, "output dim is -3"},
		{func(o *Options) { o.LatentDim = 0 }, "latent dim"},
		{func(o *Options) { o.TeacherHidden = MaxDim + 1 }, "teacher hidden width"},
		{func(o *Options) { o.FeatureNoise = -0.1 }, "feature noise"},
		{func(o *Options) { o.TargetNoise = math.NaN() }, "target noise"},
		{func(o *Options) { o.CaptionNoise = math.Inf(1) }, "caption noise"},
		{func(o *Options) { o.CaptionLatentNoise = 1.5 }, "caption latent noise is 1.5"},
		{func(o *Options) { o.InputDim, o.LatentDim = MaxDim, MaxDim }, "make the dimensions smaller"},
	} {
		o := DefaultOptions()
		tc.change(&o)
		_, err := NewWorld(o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one containing %q", err, tc.want)
		}
		if _, err := WriteTrainingData(t.TempDir(), o, 10, 10, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WriteTrainingData: error %v, want one containing %q", err, tc.want)
		}
	}
	o := DefaultOptions()
	o.InputDim, o.OutputDim = 0, 0
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "input dim") || !strings.Contains(err.Error(), "output dim") {
		t.Errorf("error %v, want both bad dims reported", err)
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Errorf("default options: %v", err)
	}
}

func TestSizeValidation(t *testing.T) {
	opts := smallOptions(0)
	dir := t.TempDir()
	for _, tc := range []struct {
		rows, perShard int
		want           string
	}{
		{0, 10, "0 rows"},
		{10, 0, "shards of 0"},
		{-5, 10, "-5 rows"},
		{MaxShards + 1, 1, "more than 30000"},
	} {
		if _, err := WriteTrainingData(dir, opts, tc.rows, tc.perShard, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rows %d per shard %d: error %v, want one containing %q", tc.rows, tc.perShard, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("rejected calls wrote %d files", len(entries))
	}
	for _, tc := range []struct {
		images, perImage int
		name, want       string
	}{
		{0, 5, "x", "0 images"},
		{5, 0, "x", "0 captions"},
		{5, 5, "", "needs a name"},
	} {
		if _, err := WriteEvalSet(dir, opts, tc.images, tc.perImage, tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("images %d captions %d name %q: error %v, want one containing %q", tc.images, tc.perImage, tc.name, err, tc.want)
		}
	}
	w, _ := NewWorld(opts)
	if _, _, err := w.TrainingRows(-1, 5); err == nil {
		t.Error("TrainingRows(-1, 5) succeeded")
	}
	if _, _, err := w.TrainingRows(0, maxElements); err == nil || !strings.Contains(err.Error(), "exceed") || !strings.Contains(err.Error(), "fewer rows a shard") {
		t.Errorf("TrainingRows of 2^30 rows: error %v", err)
	}
}

func TestRefusesToOverwrite(t *testing.T) {
	opts := smallOptions(6)
	dir := t.TempDir()
	if _, err := WriteTrainingData(dir, opts, 50, 10, false); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "README")
	if err := os.WriteFile(keep, []byte("notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := WriteTrainingData(dir, opts, 20, 10, false)
	if err == nil || !strings.Contains(err.Error(), "already holds training shards") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second write: error %v, want a refusal naming %s", err, dir)
	}
	opts.Overwrite = true
	if _, err := WriteTrainingData(dir, opts, 20, 10, false); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range dirFiles(t, dir) {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"README", "shard-00000.clip.npy", "shard-00000.dino.npy", "shard-00001.clip.npy", "shard-00001.dino.npy"}
	if !slices.Equal(names, want) {
		t.Errorf("after overwriting, the directory holds %v, want %v (old shards gone, other files kept)", names, want)
	}

	opts.Overwrite = false
	evalDir := t.TempDir()
	if _, err := WriteEvalSet(evalDir, opts, 5, 1, "e"); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteEvalSet(evalDir, opts, 5, 1, "e"); err == nil || !strings.Contains(err.Error(), "already holds an evaluation set") {
		t.Errorf("second evaluation set: error %v, want a refusal", err)
	}
	opts.Overwrite = true
	if _, err := WriteEvalSet(evalDir, opts, 6, 1, "e"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{dataset.ImageCLIPFile, dataset.CaptionCLIPFile} {
		if _, shape, err := npy.ReadFloat32(filepath.Join(evalDir, f)); err != nil || shape[0] != 6 {
			t.Errorf("overwritten set: %s shape %v, err %v", f, shape, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(evalDir), "."+filepath.Base(evalDir)+".partial")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the evaluation set's staging directory is left: %v", err)
	}

	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingData(notDir, opts, 5, 5, false); err == nil || !strings.Contains(err.Error(), notDir) {
		t.Errorf("output path is a file: error %v, want one naming it", err)
	}
}

func TestRandomPrimitives(t *testing.T) {
	for _, x := range []float64{1e-300, 1e-10, 0.001, 0.1, 0.3, 0.5, 0.7071, 0.9, 0.999999} {
		if got, want := logUnit(x), math.Log(x); !(math.Abs(got-want) <= 4e-16*math.Abs(want)) {
			t.Errorf("logUnit(%v) = %v, math.Log = %v", x, got, want)
		}
	}
	var s sampler
	s.reset(streamKey(0, "test"), 0)
	const n = 200000
	for name, draw := range map[string]func() float64{"normal": s.normal, "noise": s.noise} {
		var sum, sumSq float64
		for range n {
			v := draw()
			sum += v
			sumSq += v * v
		}
		mean, variance := sum/n, sumSq/n-(sum/n)*(sum/n)
		if !(math.Abs(mean) <= 0.01) || !(math.Abs(variance-1) <= 0.02) {
			t.Errorf("%s: mean %.4f variance %.4f, want 0 and 1", name, mean, variance)
		}
	}
}

func TestWriteStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	files, err := WriteTrainingDataContext(ctx, dir, smallOptions(0), 100, 10, false)
	if !errors.Is(err, context.Canceled) || len(files) != 0 {
		t.Errorf("cancelled write: %d files, error %v", len(files), err)
	}
}

// cancelAfter is a context whose Err turns to Canceled after n calls.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n <= 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

// An interrupted run leaves no shard where a reader would take it for the
// data set (they wait in .DIR.partial beside it until all are written);
// the same run again starts over and writes the whole set, with no
// .partial left.
func TestWriteTrainingDataInterrupted(t *testing.T) {
	opts := DefaultOptions()
	opts.InputDim, opts.OutputDim = 8, 4
	dir := filepath.Join(t.TempDir(), "train")
	_, err := WriteTrainingDataContext(&cancelAfter{context.Background(), 2}, dir, opts, 500, 100, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("an interrupted run left %s in %s", e.Name(), dir)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), ".train.partial")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted run left its staging directory: %v", err)
	}
	files, err := WriteTrainingData(dir, opts, 500, 100, false)
	if err != nil || len(files) != 10 {
		t.Fatalf("the run again: %d files, %v", len(files), err)
	}
	entries, _ = os.ReadDir(dir)
	if len(entries) != 10 {
		t.Errorf("%s holds %d entries, want the 10 shard files", dir, len(entries))
	}
	if entries, _ = os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("beside %s: %d entries, want it alone (no staging directory left)", dir, len(entries))
	}
	for _, f := range files {
		if _, err := os.Stat(f.Path); err != nil {
			t.Errorf("returned %s: %v", f.Path, err)
		}
	}
}

// A directory that holds other files keeps them: the shards move in beside
// them, and no staging directory is left.
func TestWriteTrainingDataBesideOtherFiles(t *testing.T) {
	opts := DefaultOptions()
	opts.InputDim, opts.OutputDim = 8, 4
	dir := filepath.Join(t.TempDir(), "train")
	os.Mkdir(dir, 0o755)
	notes := filepath.Join(dir, "NOTES.txt")
	if err := os.WriteFile(notes, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := WriteTrainingData(dir, opts, 300, 100, false)
	if err != nil || len(files) != 6 {
		t.Fatalf("%d files, %v", len(files), err)
	}
	if b, err := os.ReadFile(notes); err != nil || string(b) != "mine" {
		t.Errorf("the other file: %q, %v", b, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 7 {
		t.Errorf("%s holds %d entries, want 6 shard files and NOTES.txt", dir, len(entries))
	}
	if entries, _ = os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("beside %s: %d entries, want it alone", dir, len(entries))
	}
}

// A data directory that is a link to one elsewhere stays a link, and the
// shards are written where it leads.
func TestWriteTrainingDataThroughLink(t *testing.T) {
	opts := DefaultOptions()
	opts.InputDim, opts.OutputDim = 8, 4
	target := filepath.Join(t.TempDir(), "elsewhere")
	os.Mkdir(target, 0o755)
	dir := filepath.Join(t.TempDir(), "train")
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingData(dir, opts, 200, 100, false); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(dir); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a link: %v", dir, err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 4 {
		t.Errorf("%s holds %d entries, want the 4 shard files", target, len(entries))
	}
}

// A second writer of one directory is refused while the first is at work
// (it would remove the first's staged shards).
func TestWriteTrainingDataLocked(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows")
	}
	opts := DefaultOptions()
	opts.InputDim, opts.OutputDim = 8, 4
	dir := t.TempDir()
	held, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := flock.TryLock(held, true); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTrainingData(dir, opts, 200, 100, false); err == nil || !strings.Contains(err.Error(), "in use by another dinoclip") {
		t.Errorf("a write while another holds %s: %v", dir, err)
	}
	held.Close()
	if _, err := WriteTrainingData(dir, opts, 200, 100, false); err != nil {
		t.Errorf("after the other is done: %v", err)
	}
}
