package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
)

// goldenFullBatch is PyTorch 2.15.0's float64 run of python/tools/golden.py:
// 20 full-batch steps (one batch of 6 float32-exact rows, every step) of
// AdamW under OneCycleLR on a 12 -> 16 x 2 -> 8 model.
const goldenFullBatch = "../../train/testdata/golden_fullbatch_f64.safetensors"

// fp64Run writes the golden run's initial model and data and returns the
// train arguments that replay it (without --out).
func fp64Run(t *testing.T) (args []string, f *safetensors.File, c nn.Config) {
	t.Helper()
	f, err := safetensors.Open(goldenFullBatch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	md := f.Metadata()
	atoi := func(k string) int {
		n, err := strconv.Atoi(md[k])
		if err != nil {
			t.Fatalf("metadata %s: %v", k, err)
		}
		return n
	}
	c = nn.Config{InputDim: atoi("input_dim"), HiddenDim: atoi("hidden_dim"), OutputDim: atoi("output_dim"), Blocks: atoi("num_residual_blocks")}
	if d := train.DefaultAdamW(); md["beta2"] != fmt.Sprint(d.Beta2) || md["eps"] != fmt.Sprint(d.Eps) {
		t.Fatalf("the golden run's beta2 %s and eps %s are not the trainer's %v and %v", md["beta2"], md["eps"], d.Beta2, d.Eps)
	}
	init := make([]float32, c.NumParams())
	for _, tn := range c.Layout().Tensors {
		v, _, err := f.Float64("init/" + tn.Name)
		if err != nil {
			t.Fatal(err)
		}
		dst := nn.View(init, tn)
		for i, x := range v {
			if dst[i] = float32(x); float64(dst[i]) != x {
				t.Fatalf("init/%s[%d] = %v is not a float32", tn.Name, i, x)
			}
		}
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "init.safetensors")
	if err := checkpoint.WriteModel(model, c, init, nil); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	batch := atoi("batch")
	for _, a := range []struct {
		name, suffix string
		d            int
	}{{"x", train.FeatureSuffix, c.InputDim}, {"t", train.TargetSuffix, c.OutputDim}} {
		v, _, err := f.Float64(a.name)
		if err != nil {
			t.Fatal(err)
		}
		rows := make([]float32, batch*a.d) // the first step's batch: every step's
		for i := range rows {
			if rows[i] = float32(v[i]); float64(rows[i]) != v[i] {
				t.Fatalf("%s[%d] is not a float32", a.name, i)
			}
		}
		writeF32(t, filepath.Join(data, "shard-00000"+a.suffix), []int{batch, a.d}, rows)
	}
	args = []string{"train", "--init", model, "--data", data, "--precision", "fp64",
		"--batch", md["batch"], "--epochs", md["steps"], "--lr", md["max_lr"], "--weight-decay", md["weight_decay"],
		"--log-every", "1", "--keep", "100"}
	return args, f, c
}

// trainLosses are the losses of the train records of a run's metrics.jsonl.
func trainLosses(t *testing.T, run string) []float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var rec struct {
			Type string  `json:"type"`
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Type == "train" {
			losses = append(losses, rec.Loss)
		}
	}
	return losses
}

// A full-batch --precision fp64 run from --init follows PyTorch float64's
// trajectory. Tolerance 1e-10 relative, as train.TestGoldenFloat64 and for
// the same reason: both sides compute the same formulas in float64 and
// differ in the order of sums (here also the order of the batch's rows,
// which the trainer shuffles every epoch), ~1e-16 per operation, ~1e-14
// after 20 steps; a semantic difference (a β1 one step off, a float32
// rounding anywhere) is ~1e-3 or ~1e-7.
func TestTrainFP64FollowsPyTorch(t *testing.T) {
	args, f, c := fp64Run(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, append(args, "--out", run)...)

	want, _, err := f.Float64("loss")
	if err != nil {
		t.Fatal(err)
	}
	got := trainLosses(t, run)
	if len(got) != len(want) {
		t.Fatalf("%d train records, want %d", len(got), len(want))
	}
	worst := 0.0
	for s := range want {
		d := math.Abs(got[s]-want[s]) / want[s]
		worst = max(worst, d)
		if !(d <= 1e-10) {
			t.Errorf("step %d: loss %v, PyTorch %v: relative difference %.3g > 1e-10", s+1, got[s], want[s], d)
		}
	}
	ck, err := checkpoint.Load(filepath.Join(run, checkpoint.LastLink))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Float64 == nil {
		t.Fatalf("the fp64 run's checkpoint holds no %s", checkpoint.Float64File)
	}
	worstW := 0.0
	for _, tn := range c.Layout().Tensors {
		w, _, err := f.Float64("final/" + tn.Name)
		if err != nil {
			t.Fatal(err)
		}
		var diff, norm float64
		for i, x := range nn.View(ck.Float64.Params, tn) {
			diff += (x - w[i]) * (x - w[i])
			norm += w[i] * w[i]
		}
		d := math.Sqrt(diff / norm)
		worstW = max(worstW, d)
		if !(d <= 1e-10) {
			t.Errorf("%s after %d steps: relative difference %.3g > 1e-10", tn.Name, len(want), d)
		}
	}
	t.Logf("worst relative difference from PyTorch float64: loss %.3g, final weights %.3g", worst, worstW)
	info, err := train.ReadRunInfo(run)
	if err != nil {
		t.Fatal(err)
	}
	if info.Options.Precision != train.PrecisionFP64 {
		t.Errorf("run.json options precision %q", info.Options.Precision)
	}
	wantError(t, []string{"train", "--resume", "--out", run, "--precision", "fp32"}, "--precision fp32", "fp64")
	// info describes the float64 state beside the checkpoint's model.
	f64 := filepath.Join(run, checkpoint.LastLink, checkpoint.Float64File)
	n := info.Model.NumParams()
	for _, want := range []string{"a checkpoint's float64 state", fmt.Sprintf("params: F64 [%d]", n), fmt.Sprintf("exp_avg_sq: F64 [%d]", n)} {
		if out := mustRun(t, "info", f64); !strings.Contains(out, want) {
			t.Errorf("info %s lacks %q:\n%s", f64, want, out)
		}
	}
}

// A fp64 run stopped after step 10 and resumed ends with the bits of the
// run never stopped: the checkpoint's float64 state, not its float32
// rounding, is what it continues from. The stop is made by copying the
// first 10 steps of a whole run, as a kill after the checkpoint of step
// 10 would leave them.
func TestTrainFP64ResumesBitIdentical(t *testing.T) {
	args, _, _ := fp64Run(t)
	whole := filepath.Join(t.TempDir(), "whole")
	mustRun(t, append(args, "--out", whole)...)
	run := filepath.Join(t.TempDir(), "run")
	os.MkdirAll(filepath.Join(run, train.CheckpointsDir), 0o755)
	for step := 1; step <= 10; step++ {
		name := fmt.Sprintf("step-%08d", step)
		os.Mkdir(filepath.Join(run, train.CheckpointsDir, name), 0o755)
		for _, file := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile, checkpoint.Float64File} {
			copyFile(t, filepath.Join(whole, train.CheckpointsDir, name, file), filepath.Join(run, train.CheckpointsDir, name, file))
		}
	}
	for _, file := range []string{train.RunFile, train.MetricsFile} {
		copyFile(t, filepath.Join(whole, file), filepath.Join(run, file))
	}
	// The loss falls every epoch (one step each), so step 10 is also the best.
	for _, l := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		if err := os.Symlink(filepath.Join(train.CheckpointsDir, "step-00000010"), filepath.Join(run, l)); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "train", "--resume", "--out", run)
	for _, file := range []string{checkpoint.Float64File, checkpoint.ModelFile} {
		a, _ := os.ReadFile(filepath.Join(whole, checkpoint.LastLink, file))
		b, err := os.ReadFile(filepath.Join(run, checkpoint.LastLink, file))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s of the resumed run differs from the whole run's (%v)", file, err)
		}
	}
	a, b := trainLosses(t, whole), trainLosses(t, run)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("losses of the resumed run %v, of the whole run %v", b, a)
	}
	// Without its float64 state the checkpoint cannot continue the run.
	os.Remove(filepath.Join(run, checkpoint.LastLink))
	os.Symlink(filepath.Join(train.CheckpointsDir, "step-00000010"), filepath.Join(run, checkpoint.LastLink))
	os.Remove(filepath.Join(run, train.CheckpointsDir, "step-00000010", checkpoint.Float64File))
	wantError(t, []string{"train", "--resume", "--out", run}, "float64", checkpoint.Float64File)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
