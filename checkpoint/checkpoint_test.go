package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
)

var small = nn.Config{InputDim: 5, HiddenDim: 6, OutputDim: 3, Blocks: 2}

func TestModelRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), ModelFile)
	params := nn.InitParameters[float32](small, 3)
	if err := WriteModel(path, small, params, map[string]string{"step": "7"}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config != small || !slices.Equal(m.Params, params) || m.Meta["step"] != "7" || m.Meta["format"] != ModelFormat {
		t.Fatalf("read back %v, meta %v", m.Config, m.Meta)
	}
	// The file holds the state_dict names, in order, with PyTorch shapes.
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := small.Layout()
	for i, info := range f.Tensors() {
		if info.Name != l.Tensors[i].Name || !slices.Equal(info.Shape, l.Tensors[i].Shape) || info.DType != "F32" {
			t.Errorf("tensor %d: %s %v %s, want %s %v F32", i, info.Name, info.Shape, info.DType, l.Tensors[i].Name, l.Tensors[i].Shape)
		}
	}
}

// A state_dict saved by PyTorch (no dinoclip metadata, possibly float16)
// loads, with the shape inferred from the tensors.
func TestReadModelInfersConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "torch.safetensors")
	params := nn.InitParameters[float32](small, 4)
	var tensors []safetensors.Tensor
	for _, tn := range small.Layout().Tensors {
		v := nn.View(params, tn)
		b := make([]byte, 2*len(v))
		leconv.PutF16(b, v)
		tensors = append(tensors, safetensors.Tensor{Name: tn.Name, DType: safetensors.F16, Shape: tn.Shape, Data: b})
	}
	if err := safetensors.Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	m, err := ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config != small {
		t.Fatalf("inferred %v, want %v", m.Config, small)
	}
	for i, v := range m.Params {
		if d := v - params[i]; !(d <= 1e-3) || d < -1e-3 {
			t.Fatalf("parameter %d: %v, want %v within float16 rounding", i, v, params[i])
		}
	}
}

func TestReadModelStrict(t *testing.T) {
	params := nn.InitParameters[float32](small, 5)
	l := small.Layout()
	write := func(t *testing.T, edit func([]safetensors.Tensor) []safetensors.Tensor) string {
		var tensors []safetensors.Tensor
		for _, tn := range l.Tensors {
			tensors = append(tensors, safetensors.NewFloat32(tn.Name, tn.Shape, nn.View(params, tn)))
		}
		path := filepath.Join(t.TempDir(), "m.safetensors")
		if err := safetensors.Write(path, edit(tensors), map[string]string{"config": `{"input_dim":5,"hidden_dim":6,"output_dim":3,"num_residual_blocks":2}`}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := map[string]func([]safetensors.Tensor) []safetensors.Tensor{
		"missing layer_norm.bias": func(ts []safetensors.Tensor) []safetensors.Tensor { return ts[:len(ts)-1] },
		"unexpected extra.weight": func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.NewFloat32("extra.weight", []int{1}, []float32{0}))
		},
		"input_proj.bias has shape [2 3], want [6]": func(ts []safetensors.Tensor) []safetensors.Tensor {
			ts[1] = safetensors.NewFloat32("input_proj.bias", []int{2, 3}, make([]float32, 6))
			return ts
		},
	}
	for want, edit := range cases {
		_, err := ReadModel(write(t, edit))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v", want, err)
		}
	}
}

// A config of more blocks than the file's tensors can hold is refused
// by every reader, before the blocks are laid out: average counted the
// parameters of two million blocks (gigabytes) from ReadConfig's config.
func TestConfigBeyondTensorsRefused(t *testing.T) {
	l := small.Layout()
	params := nn.InitParameters[float32](small, 5)
	var tensors []safetensors.Tensor
	for _, tn := range l.Tensors {
		tensors = append(tensors, safetensors.NewFloat32(tn.Name, tn.Shape, nn.View(params, tn)))
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := safetensors.Write(path, tensors, map[string]string{"config": `{"input_dim":5,"hidden_dim":6,"output_dim":3,"num_residual_blocks":3000}`}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(path); err == nil || !strings.Contains(err.Error(), "3000 residual blocks, but the file holds only") {
		t.Errorf("ReadConfig: %v", err)
	}
	if _, err := ReadModel(path); err == nil || !strings.Contains(err.Error(), "3000 residual blocks, but the file holds only") {
		t.Errorf("ReadModel: %v", err)
	}
}

// A header whose config claims a model of billions of weights with one
// stray tensor behind it is refused by ReadConfig too, before its reader
// lays out memory for them (average asked for 16 GB in one block and died
// in the runtime), and a file of many stray tensors is described in a
// line of ten of them, not one of megabytes.
func TestConfigWithoutItsTensorsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	var tensors []safetensors.Tensor
	for i := range 1000 {
		tensors = append(tensors, safetensors.NewFloat32(fmt.Sprintf("x%d", i), []int{1}, []float32{1}))
	}
	if err := safetensors.Write(path, tensors, map[string]string{"config": `{"input_dim":1000000,"hidden_dim":2000,"output_dim":1,"num_residual_blocks":0}`}); err != nil {
		t.Fatal(err)
	}
	want := "not a ProjectorWithResiduals of this shape: missing input_proj.weight;"
	for name, read := range map[string]func(string) error{
		"ReadConfig": func(p string) error { _, err := ReadConfig(p); return err },
		"ReadModel":  func(p string) error { _, err := ReadModel(p); return err },
	} {
		err := read(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), "; and 1000 more") {
			t.Errorf("%s: %v, want %q and the 1010 problems cut to ten", name, err, want)
		}
	}
}

func TestCheckpointSaveLoadResolve(t *testing.T) {
	run := t.TempDir()
	n := small.NumParams()
	ck := &Checkpoint{Config: small, Params: nn.InitParameters[float32](small, 6), M: make([]float32, n), V: make([]float32, n), State: []byte(`{"step":3}`)}
	for i := range ck.M {
		ck.M[i], ck.V[i] = float32(i), float32(2*i)
	}
	dir := filepath.Join(run, "checkpoints", "step-3")
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Params, ck.Params) || !slices.Equal(got.M, ck.M) || !slices.Equal(got.V, ck.V) || string(got.State) != `{"step":3}` {
		t.Fatal("checkpoint did not round-trip")
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Fatalf("%d entries beside the checkpoint, want none (temporary directories removed)", len(entries)-1)
	}
	if err := os.Symlink(filepath.Join("checkpoints", "step-3"), filepath.Join(run, LastLink)); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		run:                           filepath.Join(run, LastLink, ModelFile),
		dir:                           filepath.Join(dir, ModelFile),
		filepath.Join(dir, ModelFile): filepath.Join(dir, ModelFile),
	} {
		if got, err := Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := Resolve(t.TempDir()); err == nil {
		t.Error("Resolve of an empty directory: no error")
	}
	// Stopped between putting its first checkpoint in place and linking
	// it: an error naming the model file and the resume that links it.
	if err := os.Rename(filepath.Join(run, LastLink), filepath.Join(run, NewLinkName(LastLink))); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(run); err == nil || !strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), filepath.Join(run, "checkpoints", "step-3", ModelFile)) {
		t.Errorf("Resolve of a run whose first checkpoint is not linked yet = %s, %v; want an error naming its model file", got, err)
	}
	// A new form leading nowhere (a save that never finished) is no
	// checkpoint to advise.
	empty := t.TempDir()
	if err := os.Symlink(filepath.Join("checkpoints", "step-3"), filepath.Join(empty, NewLinkName(LastLink))); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(empty); err == nil || strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "no best or last checkpoint") {
		t.Errorf("Resolve of a run whose only link leads nowhere = %s, %v; want no checkpoint, no advice to resume", got, err)
	}
	if err := os.Rename(filepath.Join(run, NewLinkName(LastLink)), filepath.Join(run, LastLink)); err != nil {
		t.Fatal(err)
	}
	// A best link that leads nowhere: an error, not last's model.
	if err := os.Symlink(filepath.Join("checkpoints", "step-9"), filepath.Join(run, BestLink)); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(run); err == nil || !strings.Contains(err.Error(), "best checkpoint") {
		t.Errorf("Resolve with a dangling best link = %s, %v; want an error", got, err)
	}
	if p := LinkProblem(run, BestLink); !strings.Contains(p, "no checkpoint") {
		t.Errorf("LinkProblem of a dangling best link: %q", p)
	}
	if p := LinkProblem(run, LastLink); p != "" {
		t.Errorf("LinkProblem of a sound last link: %q", p)
	}
	// A best link into another run's checkpoints: an error, not that
	// run's model under this one's name; an absolute link into its own is
	// sound.
	other := t.TempDir()
	if err := Save(filepath.Join(other, CheckpointsDir, "step-5"), ck); err != nil {
		t.Fatal(err)
	}
	relink := func(to string) {
		t.Helper()
		os.Remove(filepath.Join(run, BestLink))
		if err := os.Symlink(to, filepath.Join(run, BestLink)); err != nil {
			t.Fatal(err)
		}
	}
	relink(filepath.Join(other, CheckpointsDir, "step-5"))
	if got, err := Resolve(run); err == nil || !strings.Contains(err.Error(), "not into its checkpoints") {
		t.Errorf("Resolve with best into another run = %s, %v; want an error", got, err)
	}
	if p := LinkProblem(run, BestLink); !strings.Contains(p, "leads out of") {
		t.Errorf("LinkProblem of best into another run: %q", p)
	}
	own := filepath.Join(run, CheckpointsDir, "step-3")
	relink(own)
	if got, err := Resolve(run); err != nil || got != filepath.Join(run, BestLink, ModelFile) || LinkProblem(run, BestLink) != "" {
		t.Errorf("Resolve with an absolute best link into its own checkpoints = %s, %v (%q); want its model", got, err, LinkProblem(run, BestLink))
	}
	// ... the run named by a relative path too.
	t.Chdir(filepath.Dir(run))
	if rel := filepath.Base(run); LinkProblem(rel, BestLink) != "" {
		t.Errorf("LinkProblem of a relative run's absolute best link into its own checkpoints: %q", LinkProblem(rel, BestLink))
	} else if got, err := Resolve(rel); err != nil || got != filepath.Join(rel, BestLink, ModelFile) {
		t.Errorf("Resolve of a relative run with an absolute best link into its own checkpoints = %s, %v", got, err)
	}
	// A directory holding a model of its own is that model, whatever its
	// links (a model zoo's folder beside links into runs).
	relink(filepath.Join(other, CheckpointsDir, "step-5"))
	zoo := filepath.Join(run, ModelFile)
	if err := os.WriteFile(zoo, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(run); err != nil || got != zoo {
		t.Errorf("Resolve of a directory with its own model and a foreign best link = %s, %v; want %s", got, err, zoo)
	}
	os.Remove(zoo)
	os.Remove(filepath.Join(run, BestLink))
	// A run whose best is the moving average, which is missing: an error,
	// not the raw weights.
	if err := os.WriteFile(filepath.Join(run, "run.json"), []byte(`{"options": {"best_from": "ema"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(run); err == nil || !strings.Contains(err.Error(), "moving average") {
		t.Errorf("Resolve of an EMA-picked run without its EMA file = %s, %v; want an error", got, err)
	}
	// A copied run (cp -rL: best a directory, not a link) with its EMA
	// file: the EMA file, not the raw weights beside it.
	if err := Save(filepath.Join(run, BestLink), ck); err != nil {
		t.Fatal(err)
	}
	ema := filepath.Join(run, BestLink, EMAFile)
	if err := os.WriteFile(ema, []byte("ema"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(run); err != nil || got != ema {
		t.Errorf("Resolve of a copied EMA-picked run = %s, %v; want %s", got, err, ema)
	}
	// Without a readable run.json, a run that keeps a moving average does
	// not say which model is its own: an error, not the raw weights.
	for what, damage := range map[string]func() error{
		"truncated": func() error {
			return os.WriteFile(filepath.Join(run, "run.json"), []byte(`{"options": {"best_fr`), 0o644)
		},
		"missing": func() error { return os.Remove(filepath.Join(run, "run.json")) },
		"edited to name neither model": func() error {
			return os.WriteFile(filepath.Join(run, "run.json"), []byte(`{"options": {"best_from": "EMA"}}`), 0o644)
		},
		"edited to name both": func() error {
			return os.WriteFile(filepath.Join(run, "run.json"), []byte(`{"options": {"best_from": "ema", "best_from": "raw"}}`), 0o644)
		},
		// (encoding/json would read it, U+FFFD in place of the byte;
		// Python's reader refuses it: the two sides must agree.)
		"edited with a byte that is not UTF-8": func() error {
			return os.WriteFile(filepath.Join(run, "run.json"), []byte("{\"options\": {\"best_from\": \"ema\"}, \"note\": \"\xff\"}"), 0o644)
		},
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		if got, err := Resolve(run); err == nil || !strings.Contains(err.Error(), "moving average") {
			t.Errorf("Resolve of a run keeping a moving average, its run.json %s = %s, %v; want an error", what, got, err)
		}
	}
	// One larger than any run writes is refused by its size, unread
	// (sparse here, so the test writes next to nothing either).
	if f, err := os.Create(filepath.Join(run, "run.json")); err != nil {
		t.Fatal(err)
	} else if _, err := f.WriteString(`{"options": {"best_from": "ema"}}`); err != nil || f.Truncate(MaxRunFileBytes+1) != nil || f.Close() != nil {
		t.Fatal("writing a huge run.json failed")
	}
	if got, err := Resolve(run); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("over %d bytes", MaxRunFileBytes)) {
		t.Errorf("Resolve of a run keeping a moving average, its run.json over %d bytes = %s, %v; want an error saying so", MaxRunFileBytes, got, err)
	}
	os.Remove(ema)
	os.Remove(filepath.Join(run, "run.json"))
	if got, err := Resolve(run); err != nil || got != filepath.Join(run, BestLink, ModelFile) {
		t.Errorf("Resolve of a run without run.json or a moving average = %s, %v; want its best model", got, err)
	}
	if _, err := Load(filepath.Join(run, "nope")); err == nil {
		t.Error("Load of a missing directory: no error")
	}
}

// Save puts a checkpoint where nothing is, or an empty directory; a
// checkpoint already there stays; anything else there (a user's index
// named like a step) is refused and left whole, never removed.
func TestSaveLeavesOthersFiles(t *testing.T) {
	n := small.NumParams()
	ck := &Checkpoint{Config: small, Params: nn.InitParameters[float32](small, 6), M: make([]float32, n), V: make([]float32, n), State: []byte(`{"step":3}`)}
	checkpoints := t.TempDir()
	empty := filepath.Join(checkpoints, "step-1")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Save(empty, ck); err != nil {
		t.Fatalf("Save onto an empty directory: %v", err)
	}
	if _, err := Load(empty); err != nil {
		t.Fatal(err)
	}
	for name, make := range map[string]func(p string) error{
		"a directory of files": func(p string) error {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(p, "manifest.json"), []byte("mine"), 0o644)
		},
		"a regular file":    func(p string) error { return os.WriteFile(p, []byte("mine"), 0o644) },
		"a symbolic link":   func(p string) error { return os.Symlink("elsewhere", p) },
		"an empty link dir": func(p string) error { return os.Symlink(t.TempDir(), p) },
	} {
		dir := filepath.Join(checkpoints, "step-2")
		os.RemoveAll(dir)
		if err := make(dir); err != nil {
			t.Fatal(err)
		}
		before := fileTree(t, dir)
		if err := Save(dir, ck); err == nil || !strings.Contains(err.Error(), "is not a checkpoint") {
			t.Errorf("Save onto %s: %v, want a refusal", name, err)
		}
		if after := fileTree(t, dir); after != before {
			t.Errorf("Save onto %s changed it: %q, was %q", name, after, before)
		}
	}
	if entries, _ := os.ReadDir(checkpoints); len(entries) != 2 {
		t.Errorf("%d entries in the checkpoints, want 2 (no temporary directory left)", len(entries))
	}
}

// fileTree lists what is at p: the names under it, with each file's
// contents and each link's target.
func fileTree(t *testing.T, p string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(path + ":" + d.Type().String())
		if d.Type()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			b.WriteString("->" + target)
		} else if d.Type().IsRegular() {
			data, _ := os.ReadFile(path)
			b.WriteString("=" + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A model whose weights hold a NaN or an infinity is refused wherever it
// is read (project, eval, info, a resume), naming the tensor; so are
// optimizer moments no run reaches (NaN, an infinite exp_avg, -Inf), while
// an exp_avg_sq of +Inf, which a float32 gradient beyond about 5.8e20
// gives, loads.
func TestNonFiniteWeightsRefused(t *testing.T) {
	l := small.Layout()
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		params := nn.InitParameters[float32](small, 9)
		nn.View(params, l.Tensors[3])[1] = bad
		nn.View(params, l.Tensors[5])[0] = bad
		path := filepath.Join(t.TempDir(), ModelFile)
		if err := WriteModel(path, small, params, nil); err != nil {
			t.Fatal(err)
		}
		m, err := ReadModel(path)
		if want := fmt.Sprintf("%s[1] is %v", l.Tensors[3].Name, bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("model with a %v weight: error %v, want one containing %q", bad, err, want)
		}
		// The model comes with the error, for info to describe: all of it,
		// and the count of every bad value.
		var nf *NonFiniteError
		if !errors.As(err, &nf) || nf.Count != 2 || m == nil || m.Config != small || len(m.Params) != len(params) {
			t.Errorf("model with two %v weights: %#v and a model of %v, want a NonFiniteError counting 2 and the model", bad, nf, m)
		}
	}
	// An F64 model's value beyond float32's range reads as infinite, and
	// the error says it may be that, not a diverged run's.
	params := nn.InitParameters[float64](small, 9)
	var tensors []safetensors.Tensor
	for i, tn := range l.Tensors {
		v := nn.View(params, tn)
		if i == 3 {
			v[1] = 1e39
		}
		tensors = append(tensors, safetensors.NewFloat64(tn.Name, tn.Shape, v))
	}
	path := filepath.Join(t.TempDir(), ModelFile)
	if err := safetensors.Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadModel(path); err == nil || !strings.Contains(err.Error(), l.Tensors[3].Name+"[1] is +Inf in float32 (infinite, or an F64 value beyond float32's range)") {
		t.Errorf("F64 model with a weight of 1e39: %v", err)
	}
	n := small.NumParams()
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, c := range []struct {
		m, v  float32
		wants string // "" loads
	}{{0, inf, ""}, {inf, inf, "exp_avg[5] is +Inf"}, {nan, 1, "exp_avg[5] is NaN"}, {0, -inf, "exp_avg_sq[5] is -Inf"}, {0, nan, "exp_avg_sq[5] is NaN"}} {
		ck := &Checkpoint{Config: small, Params: nn.InitParameters[float32](small, 6), M: make([]float32, n), V: make([]float32, n), State: []byte(`{}`)}
		ck.M[5], ck.V[5] = c.m, c.v
		dir := filepath.Join(t.TempDir(), "step-1")
		if err := Save(dir, ck); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		if c.wants == "" && err != nil || c.wants != "" && (err == nil || !strings.Contains(err.Error(), c.wants)) {
			t.Errorf("checkpoint with exp_avg %v, exp_avg_sq %v: error %v, want %q", c.m, c.v, err, c.wants)
		}
	}
}

// FuzzReadModel feeds arbitrary bytes to the model reader: it must return a
// model or an error, never panic, and a model it returns must be whole and
// finite. It reads from memory (safetensors.Read), so an input costs no file
// writes and the fuzzer runs at the rate of the parsers' own targets.
func FuzzReadModel(f *testing.F) {
	c := nn.Config{InputDim: 2, HiddenDim: 2, OutputDim: 1, Blocks: 1}
	path := filepath.Join(f.TempDir(), ModelFile)
	if err := WriteModel(path, c, nn.InitParameters[float32](c, 1), nil); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	// Without the tensors' SHA-256 too, as PyTorch writes it: mutations of
	// the weights then reach the reader's checks of the values, which
	// the hash would refuse first.
	rewrite(f, path, func(m map[string]string) { delete(m, safetensors.SHA256Key) })
	unhashed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(unhashed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := safetensors.Read(b)
		if err != nil {
			return
		}
		defer sf.Close()
		m, err := readModel(sf)
		if err != nil {
			return
		}
		if len(m.Params) != m.Config.NumParams() {
			t.Fatalf("model %v with %d parameters", m.Config, len(m.Params))
		}
		for i, v := range m.Params {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("model with parameter %d = %v", i, v)
			}
		}
	})
}

// A float64 state round-trips exactly, and one whose values do not round
// to the float32 values beside it (from another checkpoint, damaged) is
// refused.
func TestFloat64State(t *testing.T) {
	c := nn.Config{InputDim: 3, HiddenDim: 4, OutputDim: 2, Blocks: 1}
	n := c.NumParams()
	s := &Float64State{Params: make([]float64, n), M: make([]float64, n), V: make([]float64, n)}
	for i := range n {
		s.Params[i] = 1 + float64(i)/3 // not float32 values
		s.M[i] = -float64(i) / 7
		s.V[i] = float64(i) / 11
	}
	round := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	ck := &Checkpoint{Config: c, Params: round(s.Params), M: round(s.M), V: round(s.V), State: []byte("{}"), Float64: s}
	dir := filepath.Join(t.TempDir(), "ck")
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Float64 == nil || !slices.Equal(back.Float64.Params, s.Params) || !slices.Equal(back.Float64.M, s.M) || !slices.Equal(back.Float64.V, s.V) {
		t.Fatal("the float64 state did not round-trip")
	}
	s.V[2] += 1e-3
	dir2 := filepath.Join(t.TempDir(), "ck")
	if err := Save(dir2, ck); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir2); err == nil || !strings.Contains(err.Error(), "exp_avg_sq[2]") {
		t.Errorf("a float64 state that is not the checkpoint's: %v", err)
	}
}

// TestModelMetadataChecked: a file whose metadata says it is not a model,
// or whose step or epoch is not a count, is refused by ReadModel and
// ReadConfig alike; the safetensors library's own "pt" tag is accepted.
func TestModelMetadataChecked(t *testing.T) {
	params := nn.InitParameters[float32](small, 3)
	write := func(meta map[string]string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), ModelFile)
		tensors := make([]safetensors.Tensor, 0)
		for _, ten := range small.Layout().Tensors {
			tensors = append(tensors, safetensors.NewFloat32(ten.Name, ten.Shape, nn.View(params, ten)))
		}
		if err := safetensors.Write(path, tensors, meta); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, c := range []struct {
		meta map[string]string
		want string // "" when the file must load
	}{
		{map[string]string{"format": TorchFormat}, ""},
		{map[string]string{"step": "12", "epoch": "0"}, ""},
		{map[string]string{"format": OptimizerFormat}, "not a model file"},
		{map[string]string{"format": "dinoclip-model/2"}, "not a model file"},
		{map[string]string{"step": "-3"}, `step "-3" is not a count`},
		{map[string]string{"epoch": "two"}, `epoch "two" is not a count`},
		{map[string]string{"step": "+5"}, `step "+5" is not a count`},
		{map[string]string{"precision": "bf16"}, ""},
		{map[string]string{"precision": "xx"}, `precision "xx"`},
		// The config as the Python side reads it: its four keys spelled
		// exactly, each an integer; other keys ignored.
		{map[string]string{"config": `{"input_dim":5,"hidden_dim":6,"output_dim":3,"num_residual_blocks":2,"note":"x"}`}, ""},
		{map[string]string{"config": `{"Input_Dim":6,"hidden_dim":8,"output_dim":4,"num_residual_blocks":1}`}, "input_dim is missing or not an integer"},
		{map[string]string{"config": `{"input_dim":6,"hidden_dim":null,"output_dim":4,"num_residual_blocks":1}`}, "hidden_dim is missing"},
		{map[string]string{"config": `{"input_dim":6,"hidden_dim":8.0,"output_dim":4,"num_residual_blocks":1}`}, "hidden_dim is missing or not an integer"},
		{map[string]string{"config": `[]`}, "a JSON array where an object belongs"},
		{map[string]string{"config": `{"input_dim":5,"hidden_dim":6,"output_dim":3,"num_residual_blocks":2,"hidden_dim":7}`}, `"hidden_dim" appears twice`},
	} {
		path := write(c.meta)
		_, errModel := ReadModel(path)
		_, errConfig := ReadConfig(path)
		for _, err := range []error{errModel, errConfig} {
			switch {
			case c.want == "" && err != nil:
				t.Errorf("meta %v: %v", c.meta, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("meta %v: error %v, want one saying %q", c.meta, err, c.want)
			}
		}
	}
}

// A training checkpoint whose model or moments were converted to another
// dtype (a model file rewritten in bfloat16 to save space, or in float64)
// is refused by Load, the resume's reading: it would continue from other
// values than the run's.
func TestLoadRefusesConvertedTensors(t *testing.T) {
	n := small.NumParams()
	ck := &Checkpoint{Config: small, Params: nn.InitParameters[float32](small, 6), M: make([]float32, n), V: make([]float32, n), State: []byte(`{"step":3}`)}
	for _, file := range []string{ModelFile, OptimizerFile} {
		dir := filepath.Join(t.TempDir(), "step-3")
		if err := Save(dir, ck); err != nil {
			t.Fatal(err)
		}
		// A converter that records the new data's hash: the dtype, not
		// the hash, is what Load must refuse.
		rewriteTensors(t, filepath.Join(dir, file), func(f *safetensors.File, i int, info safetensors.TensorInfo) safetensors.Tensor {
			x, shape := float32Of(t, f, info)
			if i > 0 {
				return safetensors.NewFloat32(info.Name, shape, x)
			}
			x64 := make([]float64, len(x))
			for j, v := range x {
				x64[j] = float64(v)
			}
			return safetensors.NewFloat64(info.Name, shape, x64)
		}, func(tensors []safetensors.Tensor, old map[string]string) map[string]string {
			meta, err := safetensors.WithSHA256(tensors, old)
			if err != nil {
				t.Fatal(err)
			}
			return meta
		})
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "holds float32 tensors") {
			t.Errorf("Load with %s's first tensor in float64: %v, want it refused", file, err)
		}
	}
}

// run.json as encoding/json reads it: a key matched ignoring case, null as
// absent (python/src/dinoclip/checkpoint.py reads it the same way; its
// test_resolve_reads_run_json_as_go_does holds the same cases).
func TestResolveReadsRunJSONKeysIgnoringCase(t *testing.T) {
	n := small.NumParams()
	ck := &Checkpoint{Config: small, Params: make([]float32, n), M: make([]float32, n), V: make([]float32, n), State: []byte(`{"step":1}`)}
	for runJSON, ema := range map[string]bool{`{"options": {"Best_From": "ema"}}`: true, `{"options": null}`: false, `{"options": {"best_from": null}}`: false} {
		run := t.TempDir()
		step := filepath.Join(run, CheckpointsDir, "step-1")
		if err := Save(step, ck); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(step, EMAFile), []byte("ema"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(CheckpointsDir, "step-1"), filepath.Join(run, BestLink)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, RunFile), []byte(runJSON), 0o644); err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(run, BestLink, ModelFile)
		if ema {
			want = filepath.Join(run, BestLink, EMAFile)
		}
		if got, err := Resolve(run); err != nil || got != want {
			t.Errorf("run.json %s: Resolve = %s, %v; want %s", runJSON, got, err, want)
		}
	}
}

// A run's best that is not a link (a file: a link git stored as its text;
// a directory without a model), or absent where run.json records a best
// checkpoint that is there, is refused with the command that mends it:
// last, which Resolve would take instead, is another model. A copy that
// followed the links (best a directory holding the model), a run whose
// recorded best checkpoint is gone, one whose best is recorded after its
// last checkpoint (a resume going back removes the link before it
// rewrites run.json), and a best recorded as no run writes it take what
// they always took.
func TestResolveDamagedBest(t *testing.T) {
	n := small.NumParams()
	ck := &Checkpoint{Config: small, Params: make([]float32, n), M: make([]float32, n), V: make([]float32, n), State: []byte(`{"step":1}`)}
	const one, two = "checkpoints/step-00000001", "checkpoints/step-00000002"
	newRun := func(t *testing.T, recorded string) string {
		run := filepath.Join(t.TempDir(), "my run")
		for _, step := range []string{one, two} {
			if err := Save(filepath.Join(run, step), ck); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(two, filepath.Join(run, LastLink)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, RunFile), []byte(`{"best": {"checkpoint": `+recorded+`}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		return run
	}
	for _, c := range []struct {
		name, recorded, want string
		damage               func(run, best string) error
	}{
		{"a file", `"` + one + `"`, "its best is a file, not a link to its best checkpoint; link it again (mv '%[1]s' '%[1]s.damaged' && ln -s " + one + " '%[1]s')",
			func(run, best string) error { return os.WriteFile(best, []byte(one), 0o644) }},
		{"a directory", `"` + one + `"`, "its best is a directory that holds no model.safetensors, not a link to its best checkpoint; link it again (mv '%[1]s' '%[1]s.damaged' && ln -s " + one + " '%[1]s')",
			func(run, best string) error { return os.MkdirAll(filepath.Join(best, "sub"), 0o755) }},
		{"a file, its checkpoint gone", `"` + one + `"`, "its best is a file, not a link to its best checkpoint, which is gone; move it aside (mv '%[1]s' '%[1]s.damaged'), and its last checkpoint is used",
			func(run, best string) error {
				os.WriteFile(best, []byte(one), 0o644)
				return os.RemoveAll(filepath.Join(run, one))
			}},
		{"absent", `"` + one + `"`, "it records its best checkpoint " + one + " in run.json, but has no best link (a copy that left links out?); link it again (ln -s " + one + " '%[1]s')",
			func(run, best string) error { return nil }},
		{"a copy of its checkpoint", `"` + one + `"`, "",
			func(run, best string) error { return os.CopyFS(best, os.DirFS(filepath.Join(run, one))) }},
		{"absent, its checkpoint gone", `"` + one + `"`, "",
			func(run, best string) error { return os.RemoveAll(filepath.Join(run, one)) }},
		{"absent, recorded after the last checkpoint", `"` + two + `"`, "",
			func(run, best string) error {
				if err := os.Remove(filepath.Join(run, LastLink)); err != nil {
					return err
				}
				return os.Symlink(one, filepath.Join(run, LastLink))
			}},
		{"absent, recorded as no run writes it", `"/elsewhere/` + one + `"`, "",
			func(run, best string) error { return nil }},
		{"absent, recorded as a number", `5`, "",
			func(run, best string) error { return nil }},
	} {
		run := newRun(t, c.recorded)
		best := filepath.Join(run, BestLink)
		if err := c.damage(run, best); err != nil {
			t.Fatal(err)
		}
		got, err := Resolve(run)
		problem := BestProblem(run)
		switch want := fmt.Sprintf(c.want, best); {
		case c.want == "" && (err != nil || problem != ""):
			t.Errorf("best %s: Resolve = %s, %v; BestProblem %q", c.name, got, err, problem)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(problem, want)):
			t.Errorf("best %s: Resolve = %s, %v; BestProblem %q; want %q", c.name, got, err, problem, want)
		}
	}
}

// A checkpoint whose model.safetensors is a link leading nowhere (a disk
// not mounted, a loop) is said to be one, not a directory holding no model.
func TestResolveBrokenModelLink(t *testing.T) {
	for target, why := range map[string]string{"/nonexistent-disk/model.safetensors": "no such file or directory", ModelFile: "too many levels of symbolic links"} {
		ck := t.TempDir()
		if err := os.Symlink(target, filepath.Join(ck, ModelFile)); err != nil {
			t.Skip("no symbolic links here:", err)
		}
		want := fmt.Sprintf("model: %s is a symbolic link to %s, which cannot be opened (%s)", filepath.Join(ck, ModelFile), target, why)
		if _, err := Resolve(ck); err == nil || err.Error() != want {
			t.Errorf("Resolve: %v, want %q", err, want)
		}
		if _, err := Resolve(filepath.Join(ck, ModelFile)); err == nil || err.Error() != want {
			t.Errorf("Resolve of the link itself: %v, want %q", err, want)
		}
		// The same through a run's best or last link (a run kept in
		// git-annex, its disk not mounted).
		for _, link := range []string{BestLink, LastLink} {
			run := t.TempDir()
			if err := os.Rename(ck, filepath.Join(run, "ck")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("ck", filepath.Join(run, link)); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("model: %s is a symbolic link to %s, which cannot be opened (%s)", filepath.Join(run, link, ModelFile), target, why)
			if _, err := Resolve(run); err == nil || err.Error() != want {
				t.Errorf("Resolve of a run through its %s: %v, want %q", link, err, want)
			}
			ck = filepath.Join(run, "ck")
		}
	}
}

func TestIsStateFormat(t *testing.T) {
	for format, want := range map[string]bool{
		OptimizerFormat: true, Float64Format: true, "dinoclip-optimizer/2": true, "dinoclip-float64/7": true,
		ModelFormat: false, "dinoclip-model/2": false, "": false, "pt": false, "dinoclip-optimizers/1": false,
	} {
		if got := IsStateFormat(format); got != want {
			t.Errorf("IsStateFormat(%q) = %v, want %v", format, got, want)
		}
	}
}

// TestStateSHA256: the optimizer file records the SHA-256 of its trainer
// state, which the tensors' SHA-256 does not cover; a state changed on
// disk is refused, and a file without the record (an older dinoclip's)
// is read as it is.
func TestStateSHA256(t *testing.T) {
	n := small.NumParams()
	ck := &Checkpoint{Config: small, Params: nn.InitParameters[float32](small, 6), M: make([]float32, n), V: make([]float32, n), State: []byte(`{"step":3}`)}
	dir := filepath.Join(t.TempDir(), "step-3")
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, OptimizerFile)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	meta := f.Metadata()
	f.Close()
	if meta[StateSHA256Key] != sha256Hex(ck.State) {
		t.Fatalf("%s = %q, want the state's SHA-256", StateSHA256Key, meta[StateSHA256Key])
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(b, []byte(`{\"step\":3}`), []byte(`{\"step\":4}`), 1)
	if bytes.Equal(edited, b) {
		t.Fatal("no state in the file's header")
	}
	if err := os.WriteFile(path, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "its trainer state (metadata \"state\") does not match its SHA-256") {
		t.Errorf("Load of a checkpoint whose state was changed: %v", err)
	}
	delete(meta, StateSHA256Key)
	delete(meta, safetensors.SHA256Key)
	meta["state"] = `{"step":4}`
	if err := safetensors.Write(path, []safetensors.Tensor{safetensors.NewFloat32("exp_avg", []int{n}, ck.M), safetensors.NewFloat32("exp_avg_sq", []int{n}, ck.V)}, meta); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(dir); err != nil || string(got.State) != `{"step":4}` {
		t.Errorf("Load of a checkpoint without %s: %v", StateSHA256Key, err)
	}
}
