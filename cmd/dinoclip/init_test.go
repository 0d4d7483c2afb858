package main

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
)

// writeBareModel writes m's tensors without dinoclip's metadata, as a
// model converted from the original .pt holds them: its shape is inferred.
func writeBareModel(t *testing.T, path string, m *checkpoint.Model) {
	t.Helper()
	l := m.Config.Layout()
	tensors := make([]safetensors.Tensor, len(l.Tensors))
	for i, tn := range l.Tensors {
		tensors[i] = safetensors.NewFloat32(tn.Name, tn.Shape, nn.View(m.Params, tn))
	}
	if err := safetensors.Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
}

// A fine-tuning run starts from exactly the init model's weights (its
// step-0 checkpoint, saved by a run cancelled before its first step,
// holds them bit for bit), records the model and the weights' hash in
// run.json, keeps that record through a resume, and finishes.
func TestTrainInit(t *testing.T) {
	base, data, eval := trainRun(t)
	bm, err := checkpoint.ReadModel(filepath.Join(base, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), "converted.safetensors")
	writeBareModel(t, bare, bm)
	for _, from := range []struct{ name, arg, file string }{
		{"run directory", base, filepath.Join(base, checkpoint.BestLink, checkpoint.ModelFile)},
		{"converted model", bare, bare},
	} {
		t.Run(from.name, func(t *testing.T) {
			run := filepath.Join(t.TempDir(), "ft")
			args := []string{"train", "--data", data, "--eval", eval, "--out", run, "--init", from.arg, "--epochs", "1", "--batch", "16", "--lr", "1e-4"}
			if _, _, err := runCLIStopped(t, args...); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled run: %v", err)
			}
			ck, err := checkpoint.Load(filepath.Join(run, checkpoint.LastLink))
			if err != nil {
				t.Fatal(err)
			}
			if ck.Config != bm.Config || !slices.Equal(ck.Params, bm.Params) {
				t.Fatalf("the step-0 checkpoint is %v and not the init model's weights", ck.Config)
			}
			real, err := filepath.EvalSymlinks(from.file)
			if err != nil {
				t.Fatal(err)
			}
			wantInit := train.InitRef{Path: real, SHA256: train.ParamsSHA256(bm.Params)}
			checkInit := func(when string) {
				info, err := train.ReadRunInfo(run)
				if err != nil {
					t.Fatal(err)
				}
				if info.Init == nil || *info.Init != wantInit {
					t.Errorf("%s: run.json init %+v, want %+v", when, info.Init, wantInit)
				}
			}
			checkInit("started")
			mustRun(t, "train", "--resume", "--out", run)
			checkInit("resumed")
			if out := mustRun(t, "info", run); !strings.Contains(out, "fine-tuned from: "+real) || !strings.Contains(out, wantInit.SHA256) {
				t.Errorf("info of the run does not name its init model:\n%s", out)
			}
		})
	}
	// A changed parameter changes the hash.
	p := slices.Clone(bm.Params)
	p[0] = math.Nextafter32(p[0], 1)
	if train.ParamsSHA256(p) == train.ParamsSHA256(bm.Params) {
		t.Error("ParamsSHA256 ignores a change of one ulp")
	}
}

func TestTrainInitErrors(t *testing.T) {
	base, data, eval := trainRun(t)
	model := filepath.Join(base, checkpoint.BestLink, checkpoint.ModelFile)
	bm, err := checkpoint.ReadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	nan := filepath.Join(t.TempDir(), "nan.safetensors")
	p := slices.Clone(bm.Params)
	p[3] = float32(math.NaN())
	if err := checkpoint.WriteModel(nan, bm.Config, p, nil); err != nil {
		t.Fatal(err)
	}
	narrow := filepath.Join(t.TempDir(), "narrow.safetensors")
	nc := nn.Config{InputDim: tIn + 1, HiddenDim: 8, OutputDim: tOut, Blocks: 1}
	if err := checkpoint.WriteModel(narrow, nc, nn.InitParameters[float32](nc, 1), nil); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	run := filepath.Join(t.TempDir(), "ft")
	base2 := []string{"train", "--data", data, "--eval", eval, "--out", run, "--epochs", "1", "--batch", "16"}
	with := func(extra ...string) []string { return append(slices.Clone(base2), extra...) }
	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"with resume", []string{"train", "--resume", "--out", base, "--init", model}, []string{"--init with --resume"}},
		{"directory without a model", with("--init", empty), []string{"--init", empty, "no model.safetensors"}},
		{"missing file", with("--init", filepath.Join(empty, "nope.safetensors")), []string{"--init", "nope.safetensors"}},
		{"NaN weight", with("--init", nan), []string{"--init", "NaN", "finite"}},
		{"contradicting hidden dim", with("--init", model, "--hidden-dim", "16"), []string{"--hidden-dim 16", "has 8", "drop --hidden-dim"}},
		{"contradicting blocks", with("--init", model, "--blocks", "2"), []string{"--blocks 2", "has 1"}},
		{"widths not the data's", with("--init", narrow), []string{"--init", "maps 9 -> 4", "8 -> 4"}},
	} {
		t.Run(c.name, func(t *testing.T) { wantError(t, c.args, c.wants...) })
	}
	// Flags that agree with the model are fine.
	mustRun(t, with("--init", model, "--hidden-dim", "8", "--blocks", "1")...)
}
