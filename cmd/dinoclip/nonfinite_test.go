package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
)

// A model whose weights hold a NaN is refused by every command that loads
// one (project used to write all-NaN output and exit 0), and so is a run
// whose last checkpoint holds one, on resume. info describes it, saying it
// cannot be used.
func TestNonFiniteWeightsRefused(t *testing.T) {
	run, data, eval := trainRun(t)
	model := filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile)
	m, err := checkpoint.ReadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	m.Params[3] = float32(math.NaN())
	bad := filepath.Join(t.TempDir(), "nan.safetensors")
	if err := checkpoint.WriteModel(bad, m.Config, m.Params, m.Meta); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "in.npy")
	writeF32(t, in, []int{2, tIn}, make([]float32, 2*tIn))
	out := filepath.Join(t.TempDir(), "out.npy")
	wantError(t, []string{"project", "--model", bad, "--in", in, "--out", out}, "is NaN")
	if _, err := os.Stat(out); err == nil {
		t.Error("project wrote an output from a NaN model")
	}
	wantError(t, []string{"eval", "--model", bad, "--eval", eval}, "is NaN")
	// A NaN in the features index is given is the features' (not an error
	// writing the index's shard).
	nanFeatures := make([]float32, 3*tIn)
	nanFeatures[2*tIn+3] = float32(math.NaN())
	writeF32(t, in, []int{3, tIn}, nanFeatures)
	if err := wantError(t, []string{"index", "--model", run, "--features", in, "--out", filepath.Join(t.TempDir(), "ix")}, in+": row 2, column 3 is NaN"); err != nil && strings.Contains(err.Error(), "write ") {
		t.Errorf("index of NaN features: %v, an error of writing", err)
	}
	projected := filepath.Join(t.TempDir(), "p.npy")
	if err := wantError(t, []string{"project", "--model", run, "--in", in, "--out", projected}, in+": row 2, column 3 is NaN"); err != nil && strings.Contains(err.Error(), "write ") {
		t.Errorf("project of NaN features: %v, an error of writing", err)
	}
	if out := mustRun(t, "info", bad); !strings.Contains(out, "weights: NOT USABLE: 1 of the 328 weights is NaN or infinite") || !strings.Contains(out, "optimizer step 8") {
		t.Errorf("info of a model with a NaN weight:\n%s", out)
	}

	// The run's last checkpoint, damaged the same way, is not resumed.
	if err := os.Rename(bad, model); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"train", "--data", data, "--out", run, "--resume"}, "is NaN")
	if out := mustRun(t, "info", run); !strings.Contains(out, "last checkpoint's weights: NOT USABLE") {
		t.Errorf("info of a run whose last checkpoint has a NaN weight:\n%s", out)
	}
}

// info on a run, and on its checkpoint, says when the moving average of
// the weights a run keeps (its model under --best-from ema) holds a NaN,
// which every other command refuses.
func TestInfoNonFiniteMovingAverage(t *testing.T) {
	run, _, _ := trainRun(t, "--ema", "0.8", "--best-from", "ema")
	ema := filepath.Join(run, checkpoint.LastLink, checkpoint.EMAFile)
	m, err := checkpoint.ReadModel(ema)
	if err != nil {
		t.Fatal(err)
	}
	m.Params[0] = float32(math.NaN())
	if err := checkpoint.WriteModel(ema, m.Config, m.Params, m.Meta); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{run: "moving average ema.safetensors of the last checkpoint: NOT USABLE: 1 of the 328 weights is NaN",
		filepath.Join(run, checkpoint.LastLink): "moving average ema.safetensors: NOT USABLE: 1 of the 328 weights is NaN"} {
		if out := mustRun(t, "info", p); !strings.Contains(out, want) {
			t.Errorf("info %s with a NaN in the moving average:\n%s", p, out)
		}
	}
	// The best checkpoint's average too, when best is another checkpoint
	// (here a copy of the last one, with an infinity in its average).
	other := filepath.Join(run, train.CheckpointsDir, "step-00000001")
	os.Mkdir(other, 0o755)
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		b, err := os.ReadFile(filepath.Join(run, checkpoint.LastLink, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(other, f), b, 0o644)
	}
	best := filepath.Join(run, checkpoint.BestLink)
	os.Remove(best)
	os.Symlink(filepath.Join(train.CheckpointsDir, "step-00000001"), best)
	bestEMA := filepath.Join(best, checkpoint.EMAFile)
	m.Params[0] = float32(math.Inf(1))
	if err := checkpoint.WriteModel(bestEMA, m.Config, m.Params, m.Meta); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "info", run); !strings.Contains(out, "moving average ema.safetensors of the best checkpoint: NOT USABLE") {
		t.Errorf("info of a run with an infinity in its best checkpoint's moving average:\n%s", out)
	}
}

// info of an F64 model holding a value beyond float32's range says so, not
// that a run diverged (no run writes F64 models; eval and project say the
// same in their refusal).
func TestInfoFloat64BeyondFloat32(t *testing.T) {
	c := nn.Config{InputDim: tIn, HiddenDim: 8, OutputDim: tOut, Blocks: 1}
	params := nn.InitParameters[float64](c, 3)
	var tensors []safetensors.Tensor
	for i, tn := range c.Layout().Tensors {
		v := nn.View(params, tn)
		if i == 2 {
			v[0] = 1e300
		}
		tensors = append(tensors, safetensors.NewFloat64(tn.Name, tn.Shape, v))
	}
	path := filepath.Join(t.TempDir(), "f64.safetensors")
	if err := safetensors.Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "info", path)
	if !strings.Contains(out, "F64 values beyond float32's range") || strings.Contains(out, "diverged") {
		t.Errorf("info of an F64 model with a weight of 1e300:\n%s", out)
	}
}
