package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/train"
)

func TestTrain(t *testing.T) {
	data := makeData(t)
	eval := makeEvalSet(t, "tiny-eval")
	run := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, append([]string{"train", "--data", data, "--eval", eval, "--out", run,
		"--epochs", "2", "--batch", "16", "--log-every", "1"}, tinyModel...)...)

	m, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	want := nn.Config{InputDim: tIn, HiddenDim: 8, OutputDim: tOut, Blocks: 1}
	if m.Config != want {
		t.Errorf("best model is %v, want %v", m.Config, want)
	}
	b, err := os.ReadFile(filepath.Join(run, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var evals, trains int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("metrics.jsonl line %q: %v", line, err)
		}
		switch rec["type"] {
		case "eval":
			evals++
		case "train":
			trains++
		}
	}
	if evals != 2 || trains != 8 {
		t.Errorf("metrics.jsonl has %d eval and %d train records, want 2 and 8", evals, trains)
	}
	for _, s := range []string{"trained 8 -> 8 x 1 residual blocks -> 4 -> 4, 328 parameters", "2 epochs, 8 optimizer steps", "tiny-eval", "text->image",
		"image->text", "% of CLIP", "best checkpoint: " + filepath.Join(run, "checkpoints", "step-"), "r5 = "} {
		if !strings.Contains(out, s) {
			t.Errorf("train output lacks %q:\n%s", s, out)
		}
	}
}

func TestTrainWithoutEvalSets(t *testing.T) {
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, append([]string{"train", "--data", data, "--out", run, "--epochs", "2", "--batch", "32"}, tinyModel...)...)
	if !strings.Contains(out, "loss = ") || strings.Contains(out, "% of CLIP") {
		t.Errorf("train output without eval sets:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)); err != nil {
		t.Error(err)
	}
}

func TestTrainInterruptedAndResumed(t *testing.T) {
	data := makeData(t)
	eval := makeEvalSet(t, "tiny-eval")
	run := filepath.Join(t.TempDir(), "my run")
	args := append([]string{"train", "--data", data, "--eval", eval, "--out", run, "--epochs", "2", "--batch", "16"}, tinyModel...)
	_, stderr, err := runCLIStopped(t, args...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted train: error %v, want context.Canceled", err)
	}
	// The hint is a command that works as it is printed (the run
	// directory quoted for the shell), and needs nothing but --out.
	hint := "continue it with: dinoclip train --resume --out '" + run + "'\n"
	if !strings.Contains(stderr, hint) {
		t.Errorf("interrupted train does not say %q:\n%s", hint, stderr)
	}
	// A new run into the same directory is refused; a resume with only
	// --out (and the best metric the run took by default, named) finishes
	// it, evaluating on the run's set and keeping its best metric.
	wantError(t, args, "--resume --out '"+run+"'")
	// --data and --eval naming the run's own (stopped again): not said to
	// be given instead of them.
	if _, stderr, err := runCLIStopped(t, "train", "--resume", "--out", run, "--data", data, "--eval", eval); !errors.Is(err, context.Canceled) || strings.Contains(stderr, "instead of the run's") {
		t.Errorf("resume with the run's own --data and --eval: %v\n%s", err, stderr)
	}
	const nothing = "had finished before this resume: nothing was trained"
	out, stderr, err := runCLI(t, "train", "--resume", "--out", run, "--best-metric", "r5")
	if err != nil || strings.Contains(stderr, nothing) {
		t.Fatalf("resume of a stopped run: %v\n%s", err, stderr)
	}
	for _, want := range []string{"2 epochs, 8 optimizer steps", "tiny-eval", "r5 = "} {
		if !strings.Contains(out, want) {
			t.Errorf("resumed run lacks %q:\n%s", want, out)
		}
	}
	// Resumed again, the finished run says that it had finished.
	if _, stderr, err := runCLI(t, "train", "--resume", "--out", run); err != nil || !strings.Contains(stderr, nothing) || !strings.Contains(stderr, "--init '"+run+"'") {
		t.Errorf("resume of a finished run: %v, want a word that nothing was trained:\n%s", err, stderr)
	}
	info, err := train.ReadRunInfo(run)
	if err != nil {
		t.Fatal(err)
	}
	if info.Step != 8 || info.Best == nil || info.Best.Metric != "r5" || len(info.Evals) != 1 {
		t.Errorf("run.json after the resumed run: step %d, best %+v, evals %+v", info.Step, info.Best, info.Evals)
	}
	// The CPU's default precision, fp32, is recorded in run.json and in
	// the checkpoints; a resume asking for bf16 is refused.
	if info.Options.Precision != train.PrecisionFP32 {
		t.Errorf("run.json options precision %q, want fp32", info.Options.Precision)
	}
	if m, err := checkpoint.ReadModel(filepath.Join(run, checkpoint.LastLink, checkpoint.ModelFile)); err != nil {
		t.Error(err)
	} else if m.Meta["precision"] != train.PrecisionFP32 {
		t.Errorf("last checkpoint's metadata: precision %q, want fp32", m.Meta["precision"])
	}
	wantError(t, []string{"train", "--out", run, "--resume", "--precision", "bf16"}, "--precision bf16", "started with fp32")
	// Resuming with options other than the run's is refused; the same ones
	// (a config file used again, say) are fine, and so is the same data
	// at another path.
	wantError(t, []string{"train", "--out", run, "--resume", "--epochs", "3"}, "--epochs 3", "started with 2")
	wantError(t, []string{"train", "--out", run, "--resume", "--hidden-dim", "16"}, "--hidden-dim 16", "has 8")
	wantError(t, []string{"train", "--out", run, "--resume", "--resident", "off"}, "--resident off", "started with auto")
	wantError(t, []string{"train", "--out", run, "--resume", "--best-metric", "loss"}, "--best-metric loss", "started with r5")
	// The message names where the other value came from.
	cfg := writeFile(t, filepath.Join(t.TempDir(), "resume.yaml"), "epochs: 5\nhidden-dim: 16\n")
	wantError(t, []string{"train", "--out", run, "--resume", "--config", cfg, "--hidden-dim", "8"}, "epochs: 5 in "+cfg, "started with 2")
	wantError(t, []string{"train", "--out", run, "--resume", "--config", cfg, "--epochs", "2"}, "hidden-dim: 16 in "+cfg, "has 8")
	t.Setenv("DINOCLIP_EPOCHS", "4")
	wantError(t, []string{"train", "--out", run, "--resume", "--config", cfg, "--hidden-dim", "8"}, "DINOCLIP_EPOCHS=4", "started with 2")
	wantError(t, []string{"train", "--out", run, "--resume", "--epochs=3"}, "--epochs 3", "started with 2")
	epochsRun := filepath.Join(t.TempDir(), "epochs") // a value that is a flag's name is no flag
	if err := os.Symlink(run, epochsRun); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"train", "--resume", "--out", epochsRun}, "DINOCLIP_EPOCHS=4")
	os.Unsetenv("DINOCLIP_EPOCHS")
	wantError(t, []string{"train", "--out", run, "--resume", "--eval", makeEvalSet(t, "other-eval")}, "tiny-eval", "other-eval")
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"train", "--out", run, "--resume"}, "training data", data, "give its new place with --data")
	movedEval := filepath.Join(t.TempDir(), "moved-eval")
	if err := os.Rename(eval, movedEval); err != nil {
		t.Fatal(err)
	}
	wantError(t, []string{"train", "--out", run, "--resume", "--data", moved}, eval, "new places with --eval")
	mustRun(t, "train", "--data", moved, "--eval", movedEval, "--out", run, "--resume", "--epochs", "2", "--hidden-dim", "8", "--resident", "auto")
}

// A resume given an option the run does not have is told so, not that
// the run was started with a 0 that stands for none.
func TestResumeOptionTheRunLacks(t *testing.T) {
	run, _, _ := trainRun(t)
	wantError(t, []string{"train", "--resume", "--out", run, "--infonce-weight", "1"},
		"--infonce-weight 1, but the run in "+run+" trains with the loss mse, which has no InfoNCE weight")
	wantError(t, []string{"train", "--resume", "--out", run, "--ema", "0.9"},
		"--ema 0.9, but the run in "+run+" was started without a moving average of the weights")
	// The message's --loss mse+infonce is not the variable's --loss mse.
	t.Setenv("DINOCLIP_LOSS", "mse")
	if _, _, err := runCLI(t, "train", "--resume", "--out", run, "--infonce-weight", "1"); err == nil || strings.Contains(err.Error(), "is set by") {
		t.Errorf("--infonce-weight 1 to a resume of an mse run, DINOCLIP_LOSS=mse: %v", err)
	}
}

// A run whose run.json predates the model, data and evaluation sets in it
// resumes when --data and --eval are given.
func TestResumeOlderRunJSON(t *testing.T) {
	data := makeData(t)
	eval := makeEvalSet(t, "tiny-eval")
	run := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", data, "--eval", eval, "--out", run, "--epochs", "2", "--batch", "16"}, tinyModel...)
	if _, _, err := runCLIStopped(t, args...); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	path := filepath.Join(run, train.RunFile)
	_, old := readJSONDoc(t, path)
	delete(old, "model")
	delete(old, "data_dir")
	delete(old, "evals")
	b, _ := json.Marshal(old)
	writeFile(t, path, string(b))
	wantError(t, []string{"train", "--resume", "--out", run}, "give --data")
	// One that holds no settings at all is damaged, not old.
	for _, damaged := range []string{"{}", "null"} {
		writeFile(t, path, damaged)
		wantError(t, []string{"train", "--resume", "--out", run, "--data", data}, path+" holds none of the run's settings")
	}
	writeFile(t, path, string(b))
	out := mustRun(t, "train", "--resume", "--out", run, "--data", data, "--eval", eval)
	if !strings.Contains(out, "2 epochs, 8 optimizer steps") || !strings.Contains(out, "r5 = ") {
		t.Errorf("resumed run:\n%s", out)
	}
}

func TestTrainErrors(t *testing.T) {
	data := makeData(t)
	eval := makeEvalSet(t, "tiny-eval")
	run := filepath.Join(t.TempDir(), "run")
	base := []string{"train", "--data", data, "--out", run, "--batch", "16", "--epochs", "1", "--hidden-dim", "8", "--blocks", "1"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	other := t.TempDir()
	synthOut := t.TempDir() // (as dinoclip synth --out writes it: the shards in train/)
	if os.Symlink(data, filepath.Join(synthOut, "train")) != nil || os.Symlink(eval, filepath.Join(synthOut, "eval")) != nil {
		t.Fatal("cannot link the data into a synth output")
	}
	wideEval := filepath.Join(t.TempDir(), "wide")
	os.Mkdir(wideEval, 0o755)
	writeF32(t, filepath.Join(wideEval, "images.dino.npy"), []int{1, 3}, []float32{1, 2, 3})

	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"missing data", []string{"train", "--out", run}, []string{"missing --data", "DINOCLIP_DATA"}},
		{"missing out", []string{"train", "--data", data}, []string{"missing --out"}},
		{"nonexistent data", []string{"train", "--data", filepath.Join(other, "nope"), "--out", run}, []string{filepath.Join(other, "nope"), "no such directory"}},
		{"not training data", []string{"train", "--data", other, "--out", run}, []string{other, "no shards"}},
		{"a list in one --eval", with("--eval", eval+","+eval), []string{"no such directory (for several sets, repeat --eval, one set each, or list them in the --config file"}},
		{"synth's output as --data", []string{"train", "--data", synthOut, "--out", run}, []string{"no shards", "the shards are in " + filepath.Join(synthOut, "train")}},
		{"an evaluation set as --data", []string{"train", "--data", eval, "--out", run}, []string{eval + " is an evaluation set, not training data (--eval takes it)"}},
		{"training data as --eval", with("--eval", data), []string{"evaluation set " + data + ": no images.dino.npy there: not an evaluation set (a set holds images.dino.npy"}},
		{"synth's output as --eval", with("--eval", synthOut), []string{"not an evaluation set (the set is in " + filepath.Join(synthOut, "eval") + ")"}},
		{"negative epochs", with("--epochs", "-1"), []string{"--epochs -1", "at least 1"}},
		{"batch 0", with("--batch", "0"), []string{"--batch 0", "at least 1"}},
		{"batch over rows", with("--batch", "65"), []string{"--batch 65", "64 rows"}},
		{"bad lr", with("--lr", "0"), []string{"--lr 0"}},
		{"negative weight decay", with("--weight-decay", "-0.1"), []string{"--weight-decay -0.1"}},
		{"negative keep", with("--keep", "-1"), []string{"--keep -1"}},
		{"unknown resident mode", with("--resident", "on"), []string{`--resident "on"`, "auto or off"}},
		{"unknown precision", with("--precision", "fp16"), []string{`--precision "fp16"`, "fp32, bf16 or fp64"}},
		{"bf16 on the CPU", with("--precision", "bf16"), []string{"--precision bf16", "GPU", "fp32 or fp64"}},
		{"fp64 on a GPU", with("--precision", "fp64", "--device", "cuda"), []string{"fp64", "CPU engine only"}},
		{"ema decay 1", with("--ema", "1"), []string{"--ema 1", "(0, 1)"}},
		{"ema decay that reads as 1", with("--ema", "0.99999999999999999"), []string{"--ema 1", "(0, 1)", "reads as 1 in float64"}},
		{"ema decay NaN", with("--ema", "NaN"), []string{"--ema NaN", "(0, 1)"}},
		{"best from ema without ema", with("--best-from", "ema"), []string{"--best-from ema", "--ema"}},
		{"best from ema without eval", with("--best-from", "ema", "--ema", "0.9"), []string{"--best-from ema", "--eval"}},
		{"best from ema by loss", with("--best-from", "ema", "--ema", "0.9", "--eval", eval, "--best-metric", "loss"), []string{"--best-from ema with --best-metric loss", "recall metric"}},
		{"best from unknown", with("--best-from", "both"), []string{`--best-from "both"`}},
		{"unknown loss", with("--loss", "mae"), []string{`--loss "mae"`, "mse, infonce or mse+infonce"}},
		{"infonce weight with mse", with("--infonce-weight", "0.5"), []string{"--infonce-weight", "--loss mse+infonce"}},
		{"infonce weight with infonce", with("--loss", "infonce", "--infonce-weight", "0.5"), []string{"--infonce-weight", "--loss mse+infonce"}},
		{"infonce weight 0", with("--loss", "mse+infonce", "--infonce-weight", "0"), []string{"--infonce-weight 0", "positive"}},
		{"infonce weight NaN", with("--loss", "mse+infonce", "--infonce-weight", "NaN"), []string{"--infonce-weight NaN", "positive"}},
		{"infonce weight Inf", with("--loss", "mse+infonce", "--infonce-weight", "Inf"), []string{"--infonce-weight +Inf", "positive"}},
		{"infonce weight beyond float32", with("--loss", "mse+infonce", "--infonce-weight", "1e39"), []string{"--infonce-weight 1e+39", "float32"}},
		{"unknown device", with("--device", "tpu"), []string{`--device "tpu"`, "cpu or cuda"}},
		{"cuda in the default build", with("--device", "cuda"), []string{"built without CUDA", "-tags cuda"}},
		{"input dim not the data's", with("--input-dim", "10"), []string{"--input-dim 10", "8-wide features"}},
		{"output dim not the data's", with("--output-dim", "5"), []string{"--output-dim 5", "4-wide targets"}},
		{"hidden dim too small", with("--hidden-dim", "1"), []string{"--hidden-dim 1"}},
		{"hidden dim overflowing", with("--hidden-dim", "3037000500"), []string{"3037000500", "weights, more than"}},
		{"blocks beyond the bound", with("--blocks", "1000000000"), []string{"residual blocks 1000000000", "more than the 4096"}},
		{"blocks beyond memory", with("--hidden-dim", "8192", "--blocks", "20"), []string{"x 20 residual blocks", "weights, more than"}},
		{"eval set wider than the data", with("--eval", wideEval), []string{wideEval}},
		{"eval set missing", with("--eval", filepath.Join(other, "nope")), []string{filepath.Join(other, "nope")}},
		{"unknown best metric", with("--eval", eval, "--best-metric", "r7"), []string{"best metric", "r7"}},
		{"resume nothing", with("--resume"), []string{"no such run directory"}},
		{"epochs overflow", with("--epochs", "2305843009213693953"), []string{"--epochs 2305843009213693953", "overflow"}},
		{"unknown flag", with("--epoch", "3"), []string{"epoch", "--help"}},
		{"stray argument", with("extra"), []string{`unexpected argument "extra"`}},
		{"bad integer", with("--epochs", "many"), []string{"many"}},
	}
	for _, c := range cases {
		if cudaBuild && c.name == "cuda in the default build" {
			continue // the GPU engine is there: nothing to refuse
		}
		t.Run(c.name, func(t *testing.T) { wantError(t, c.args, c.wants...) })
	}
	// None of the refused runs left a run behind.
	if _, err := os.Lstat(filepath.Join(run, checkpoint.LastLink)); err == nil {
		t.Errorf("a refused run left %s", filepath.Join(run, checkpoint.LastLink))
	}
	// A directory used for something else is not a run directory.
	busy := filepath.Join(other, "thesis")
	os.MkdirAll(busy, 0o755)
	os.WriteFile(filepath.Join(busy, "thesis.tex"), []byte("x"), 0o644)
	wantError(t, []string{"train", "--data", data, "--out", busy, "--batch", "16", "--epochs", "1", "--hidden-dim", "8", "--blocks", "1"},
		busy, "thesis.tex", "new or empty directory")
	if entries, _ := os.ReadDir(busy); len(entries) != 1 {
		t.Errorf("the refused run wrote into %s: %d entries", busy, len(entries))
	}
	// A named pipe as --out is refused at once (listing it waited
	// forever for a writer, and Ctrl-C on the wait).
	t.Run("named pipe", func(t *testing.T) {
		fifo := filepath.Join(other, "fifo")
		makeFifo(t, fifo)
		done := make(chan error, 1)
		go func() { _, _, err := runCLI(t, "train", "--data", data, "--out", fifo); done <- err }()
		select {
		case err := <-done:
			if want := "--out " + fifo + " is a named pipe, not a directory"; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("train --out a named pipe: %v, want %q", err, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("train --out a named pipe: no answer in 30 s")
		}
	})
}

// A new run the trainer would refuse for its directory or its options is
// refused before the engine opens, which on a GPU checks itself first (and
// in the default build refuses --device cuda: what is refused first shows
// the order).
func TestTrainRefusedBeforeTheEngine(t *testing.T) {
	data := makeData(t)
	eval := makeEvalSet(t, "tiny-eval")
	run := filepath.Join(t.TempDir(), "run")
	small := []string{"--data", data, "--batch", "16", "--epochs", "1", "--hidden-dim", "8", "--blocks", "1"}
	mustRun(t, append([]string{"train", "--out", run}, small...)...)
	wantError(t, append([]string{"train", "--out", run, "--device", "cuda"}, small...), "already holds a run", "--resume --out "+run)
	fresh := filepath.Join(t.TempDir(), "fresh")
	wantError(t, append([]string{"train", "--out", fresh, "--device", "cuda", "--best-from", "ema", "--ema", "0.9", "--eval", eval, "--best-metric", "loss"}, small...), "--best-from ema with --best-metric loss")
	if _, err := os.Lstat(fresh); err == nil {
		t.Errorf("the refused run made %s", fresh)
	}
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"train", "eval", "project", "info"} {
		out := mustRun(t, cmd, "--help")
		if !strings.Contains(out, "Example:") || !strings.Contains(out, "dinoclip "+cmd) {
			t.Errorf("dinoclip %s --help has no example:\n%s", cmd, out)
		}
	}
}

// Runs of 1 to 3 optimizer steps train, as PyTorch's OneCycleLR runs them
// (train.TestOneCycleShortAgainstPyTorch checks their learning rates).
func TestTrainShortSchedules(t *testing.T) {
	data := makeData(t)
	for _, batch := range []string{"64", "32", "21"} { // 1, 2 and 3 steps of the 64 rows
		run := filepath.Join(t.TempDir(), "run")
		out := mustRun(t, "train", "--data", data, "--out", run, "--batch", batch, "--epochs", "1", "--hidden-dim", "8", "--blocks", "1", "--log-every", "1")
		want := map[string]string{"64": "1 epoch, 1 optimizer step,", "32": "1 epoch, 2 optimizer steps", "21": "1 epoch, 3 optimizer steps"}[batch]
		if !strings.Contains(out, want) {
			t.Errorf("--batch %s:\n%s", batch, out)
		}
	}
}

// A run with --ema and --best-from ema: eval --model RUN evaluates the
// best checkpoint's moving average, and a resume keeps the decay.
func TestTrainEMA(t *testing.T) {
	run, data, eval := trainRun(t, "--ema", "0.8", "--best-from", "ema")
	path, err := checkpoint.Resolve(run)
	if err != nil || filepath.Base(path) != checkpoint.EMAFile {
		t.Fatalf("the run's model is %s (%v), want its best ema.safetensors", path, err)
	}
	evalOut := mustRun(t, "eval", "--model", run, "--eval", eval)
	if !strings.Contains(evalOut, "tiny-eval") {
		t.Errorf("eval of the run:\n%s", evalOut)
	}
	// train's closing summary shows the model the run is, the average:
	// the table eval prints of it.
	again := filepath.Join(t.TempDir(), "again")
	summary, log, err := runCLI(t, append([]string{"train", "--data", data, "--eval", eval, "--out", again,
		"--epochs", "2", "--batch", "16", "--log-every", "1", "--ema", "0.8", "--best-from", "ema"}, tinyModel...)...)
	if err != nil {
		t.Fatal(err)
	}
	table := evalOut[strings.Index(evalOut, "set  "):]
	if !strings.Contains(summary, "of the moving average of the weights") || !strings.Contains(summary, table) {
		t.Errorf("train's summary of a run whose best is the moving average:\n%s\nlacks eval's table of it:\n%s", summary, table)
	}
	// ... and names that file as the best model, not the checkpoint alone,
	// whose model.safetensors is the raw weights.
	if want := "its model: " + filepath.Join(again, checkpoint.BestLink, checkpoint.EMAFile) + ", the moving average"; !strings.Contains(summary, want) {
		t.Errorf("train's summary does not say %q:\n%s", want, summary)
	}
	// info of the best checkpoint shows the average's evaluation beside
	// the raw weights'.
	var indented strings.Builder
	for line := range strings.Lines(strings.TrimRight(table, "\n")) {
		indented.WriteString("    " + line)
	}
	if out := mustRun(t, "info", filepath.Join(again, checkpoint.BestLink)); !strings.Contains(out, "moving average: ema.safetensors, decay 0.8 (what --best-from ema picks by") ||
		!strings.Contains(out, "metrics of the moving average at this checkpoint:\n") || !strings.Contains(out, indented.String()) {
		t.Errorf("info of the best checkpoint does not show its moving average and eval's table of it:\n%s\nwant:\n%s", out, table)
	}
	// Piped, its step lines give the pace and the time left.
	if !regexp.MustCompile(`msg=step step=\d+ of=\d+ .* samples_per_s=\d+ time_left=\S+`).MatchString(log) {
		t.Errorf("no step log line gives samples_per_s and time_left:\n%s", log)
	}
	// Its last "epoch done" log line gives the average's recall too, not
	// the raw weights' beside the average's metric.
	var pctOfCLIP string
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); strings.Contains(line, "text->image") {
			pctOfCLIP = f[len(f)-1]
		}
	}
	lines := strings.Split(log, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "epoch done") && strings.Contains(l, "epoch=2") })
	logged, want := "", -1.0
	if i >= 0 {
		_, logged, _ = strings.Cut(lines[i], "tiny-eval_t2i_pct_clip=")
		logged, _, _ = strings.Cut(logged, " ")
		want, _ = strconv.ParseFloat(pctOfCLIP, 64)
	}
	if got, err := strconv.ParseFloat(logged, 64); i < 0 || !strings.Contains(lines[i], " of=ema ") || err != nil || !(math.Abs(got-want) <= 0.006) {
		t.Errorf("the last epoch's log line does not give the average's %% of CLIP %s (of=ema):\n%s", pctOfCLIP, log)
	}
	wantError(t, []string{"train", "--resume", "--out", run, "--ema", "0.9"}, "--ema 0.9", "0.8")
	// --best-from given to a resume is the run's, or refused as another:
	// not told to give --ema, which the run has.
	wantError(t, []string{"train", "--resume", "--out", run, "--best-from", "raw"}, "--best-from raw, but the run", "was started with ema")
	if _, stderr, err := runCLI(t, "train", "--resume", "--out", run, "--best-from", "ema"); err != nil || !strings.Contains(stderr, "had finished before this resume") {
		t.Errorf("train --resume --best-from ema of a finished run with a moving average: %v\n%s", err, stderr)
	}
	if out := mustRun(t, "info", run); !strings.Contains(out, "moving average of the weights with decay 0.8, best from ema") {
		t.Errorf("info of the run:\n%s", out)
	}
}

// A contrastive run: run.json records the loss and the logit scale, info
// shows them, and a resume refuses another loss or weight.
func TestTrainInfoNCE(t *testing.T) {
	run, _, _ := trainRun(t, "--loss", "mse+infonce", "--infonce-weight", "0.5")
	info, err := train.ReadRunInfo(run)
	if err != nil {
		t.Fatal(err)
	}
	if info.Options.Loss != nn.LossMSEInfoNCE || info.Options.InfoNCEWeight != 0.5 || info.LogitScale == nil || info.LogitScale.Value == nn.InitLogitScale {
		t.Errorf("run.json: options %+v, logit scale %+v", info.Options, info.LogitScale)
	}
	if out := mustRun(t, "info", run); !strings.Contains(out, "loss mse+infonce (InfoNCE weight 0.5), logit scale") {
		t.Errorf("info of the run:\n%s", out)
	}
	wantError(t, []string{"train", "--resume", "--out", run, "--loss", "infonce"}, "--loss infonce", "mse+infonce")
	wantError(t, []string{"train", "--resume", "--out", run, "--loss", "mse+infonce", "--infonce-weight", "0.7"}, "--infonce-weight 0.7", "0.5")
	// The same loss and weight given again are the run's: no refusal (the
	// run is finished, so the resume has nothing left to do).
	mustRun(t, "train", "--resume", "--out", run, "--loss", "mse+infonce", "--infonce-weight", "0.5")
	mustRun(t, "train", "--resume", "--out", run, "--infonce-weight", "0.5")
	wantError(t, []string{"train", "--resume", "--out", run, "--infonce-weight", "0.25"}, "--infonce-weight 0.25", "0.5")
	// A model of a contrastive run is the original architecture's file:
	// the logit scale is not in it.
	run2, _, eval := trainRun(t, "--loss", "infonce")
	if out := mustRun(t, "eval", "--model", run2, "--eval", eval); !strings.Contains(out, "tiny-eval") {
		t.Errorf("eval of the InfoNCE run:\n%s", out)
	}
}

// A resume on training data rewritten in place with other values of the
// same shape is refused, naming the file and --accept-changed-inputs,
// which then continues; the flag without --resume is refused.
func TestResumeChangedDataCLI(t *testing.T) {
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--data", data, "--out", run, "--epochs", "2", "--batch", "16"}, tinyModel...)
	if _, _, err := runCLIStopped(t, args...); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted train: error %v, want context.Canceled", err)
	}
	wd := newWorld(2)
	x, _ := wd.sample(40)
	writeF32(t, filepath.Join(data, "shard-00000.dino.npy"), []int{40, tIn}, x)
	wantError(t, []string{"train", "--resume", "--out", run}, "shard-00000.dino.npy is not the file", "--accept-changed-inputs")
	mustRun(t, "train", "--resume", "--out", run, "--accept-changed-inputs")
	// Data of another size is another run's, which the flag cannot help.
	os.Remove(filepath.Join(data, "shard-00000.clip.npy"))
	x, y := wd.sample(48)
	writeF32(t, filepath.Join(data, "shard-00000.dino.npy"), []int{48, tIn}, x)
	writeF32(t, filepath.Join(data, "shard-00000.clip.npy"), []int{48, tOut}, y)
	wantError(t, []string{"train", "--resume", "--out", run, "--accept-changed-inputs"}, "the run was started on training data of 64 rows",
		"a run continues only on data of its own size, --accept-changed-inputs or not", "dinoclip train --init "+filepath.Join(run, "last"))
	// Data of other widths is no model's of the run: no --init advice.
	wide := t.TempDir()
	writeF32(t, filepath.Join(wide, "shard-00000.dino.npy"), []int{48, tIn + 1}, make([]float32, 48*(tIn+1)))
	writeF32(t, filepath.Join(wide, "shard-00000.clip.npy"), []int{48, tOut}, y)
	_, _, err := runCLI(t, "train", "--resume", "--out", run, "--data", wide)
	if err == nil || !strings.Contains(err.Error(), "which the run's model does not map: restore the run's data") || strings.Contains(err.Error(), "--init") {
		t.Errorf("a resume on data of other widths: %v", err)
	}
	wantError(t, append(args[:len(args):len(args)], "--out", filepath.Join(t.TempDir(), "new"), "--accept-changed-inputs"), "--accept-changed-inputs is for --resume")
	// Set to false (a config file shared with resumes), it is no refusal.
	if _, _, err := runCLIStopped(t, append(args[:len(args):len(args)], "--out", filepath.Join(t.TempDir(), "new2"), "--accept-changed-inputs=false")...); !errors.Is(err, context.Canceled) {
		t.Errorf("a new run with --accept-changed-inputs=false: error %v, want context.Canceled", err)
	}
}

// Paths with a ".." after a symbolic link (L/../x) name what the system
// opens: x beside where L leads, not x beside L, for the training data,
// the evaluation set and the run directory, and in eval and info.
func TestDotDotAfterLink(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "deep")
	os.MkdirAll(filepath.Join(deep, "a"), 0o755)
	if err := os.Symlink(filepath.Join(deep, "a"), filepath.Join(base, "L")); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	// The data and the set exist only where the system looks.
	if err := os.Rename(makeData(t), filepath.Join(deep, "td")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(makeEvalSet(t, "tiny-eval"), filepath.Join(deep, "ev")); err != nil {
		t.Fatal(err)
	}
	via := func(name string) string { return filepath.Join(base, "L") + "/../" + name }
	mustRun(t, append([]string{"train", "--data", via("td"), "--eval", via("ev"), "--out", via("run"),
		"--epochs", "1", "--batch", "16"}, tinyModel...)...)
	if _, err := os.Stat(filepath.Join(deep, "run", train.RunFile)); err != nil {
		t.Errorf("the run is not where L/../run leads: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "run")); err == nil {
		t.Error("train made a run directory beside the link")
	}
	if out := mustRun(t, "eval", "--model", via("run"), "--eval", via("ev")); !strings.Contains(out, "tiny-eval") {
		t.Errorf("eval through L/..:\n%s", out)
	}
	if out := mustRun(t, "info", via("td")); !strings.Contains(out, "training data") {
		t.Errorf("info through L/..:\n%s", out)
	}
	// NEW/../x names nothing while NEW does not exist (as the system
	// says); the directory is not made.
	wantError(t, append([]string{"train", "--data", via("td"), "--out", filepath.Join(base, "new") + "/../run2", "--epochs", "1"}, tinyModel...),
		"--out", "no such file or directory")
	if _, err := os.Lstat(filepath.Join(base, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("train --out NEW/../run made NEW (%v)", err)
	}
}

// A training set whose targets are all zero vectors (embeddings never
// written), or all shorter than 1e-12, is warned of: it trained without a
// word, its loss constant. One with real targets is not.
func TestTrainWarnsZeroTargets(t *testing.T) {
	data := makeData(t)
	const warning = "targets are all zero vectors"
	_, stderr, err := runCLI(t, append([]string{"train", "--data", data, "--out", filepath.Join(t.TempDir(), "run"), "--epochs", "1", "--batch", "16"}, tinyModel...)...)
	if err != nil || strings.Contains(stderr, warning) {
		t.Fatalf("a run on real targets: %v, warned %v\n%s", err, strings.Contains(stderr, warning), stderr)
	}
	fillTargets(t, data, 0)
	_, stderr, err = runCLI(t, append([]string{"train", "--data", data, "--out", filepath.Join(t.TempDir(), "run"), "--epochs", "1", "--batch", "16"}, tinyModel...)...)
	if err != nil || !strings.Contains(stderr, "training data "+data+": its first 64 "+warning) {
		t.Errorf("a run on zero targets: %v, stderr lacks the warning:\n%s", err, stderr)
	}
	fillTargets(t, data, 1e-20) // (rows of length 2e-20, far below 1e-12)
	_, stderr, err = runCLI(t, append([]string{"train", "--data", data, "--out", filepath.Join(t.TempDir(), "run"), "--epochs", "1", "--batch", "16"}, tinyModel...)...)
	if err != nil || !strings.Contains(stderr, "training data "+data+": its first 64 targets are all shorter than 1e-12 (values of at most 1e-20)") {
		t.Errorf("a run on targets shorter than 1e-12: %v, stderr lacks the warning:\n%s", err, stderr)
	}
}

// fillTargets sets every target of makeData's shards in data to value.
func fillTargets(t *testing.T, data string, value float32) {
	t.Helper()
	for _, shard := range []string{"shard-00000", "shard-00001"} {
		a, err := npy.Open(filepath.Join(data, shard+".clip.npy"))
		if err != nil {
			t.Fatal(err)
		}
		shape := a.Shape()
		a.Close()
		targets := make([]float32, shape[0]*shape[1])
		for i := range targets {
			targets[i] = value
		}
		writeF32(t, filepath.Join(data, shard+".clip.npy"), shape, targets)
	}
}

// A run whose disk cannot take one checkpoint is refused before it trains
// (it stopped at its first checkpoint, an epoch in); one that cannot take
// as many as it keeps is warned of.
func TestTrainChecksDisk(t *testing.T) {
	data := makeData(t)
	defer func(saved func(string) (uint64, bool)) { diskFree = saved }(diskFree)
	c := nn.Config{InputDim: tIn, HiddenDim: 8, OutputDim: tOut, Blocks: 1}
	one := train.DefaultOptions().CheckpointBytes(c)
	args := append([]string{"train", "--data", data, "--epochs", "1", "--batch", "16", "--keep", "2"}, tinyModel...)
	diskFree = func(string) (uint64, bool) { return uint64(one / 2), true }
	run := filepath.Join(t.TempDir(), "run")
	wantError(t, append(args, "--out", run), "takes about", "the run would stop at its first checkpoint")
	if _, err := os.Stat(run); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a run refused for its disk left %s (%v)", run, err)
	}
	// A resume's next checkpoint is not its first, and it cannot train
	// elsewhere without starting over.
	if err := checkRunDisk(io.Discard, run, c, train.DefaultOptions(), 64, true); err == nil || !strings.Contains(err.Error(), "the resumed run would stop at its next checkpoint; free space, or move the run to a larger disk") {
		t.Errorf("a resume without room for a checkpoint: %v", err)
	}
	diskFree = func(string) (uint64, bool) { return uint64(2 * one), true }
	// (64 rows: 4 steps, a checkpoint after each, the last the epoch's.)
	_, stderr, err := runCLI(t, append(args, "--out", run, "--checkpoint-every", "1")...)
	if err != nil || !strings.Contains(stderr, "holds up to 4 at once (--keep 2, last, best and the one being saved, of the 4 it saves") {
		t.Errorf("a disk of 2 checkpoints for a run keeping 5: %v, stderr:\n%s", err, stderr)
	}
	// A --keep beyond what the run saves (to keep them all) counts what it
	// saves: one, at its epoch's end.
	_, stderr, err = runCLI(t, append(args, "--out", filepath.Join(t.TempDir(), "all"), "--keep", "100")...)
	if err != nil || strings.Contains(stderr, "warning") {
		t.Errorf("a disk of 2 checkpoints for a run saving 1, --keep 100: %v, stderr:\n%s", err, stderr)
	}
}

// run.json records the device a run trains on, and a resume goes on
// there unless told otherwise: the hint a stopped GPU run prints (train
// --resume --out RUN) resumed it on the CPU, silently, where it did not
// end with the bits of a run never stopped. Told another device, the
// resume goes on there with a warning saying so.
func TestResumeKeepsTheRunsDevice(t *testing.T) {
	if cudaBuild {
		t.Skip("a run recorded as the GPU's resumes on the GPU engine here")
	}
	run, _, _ := trainRun(t)
	info, err := train.ReadRunInfo(run)
	if err != nil || info.Device != "cpu" {
		t.Fatalf("run.json of a CPU run records device %q (%v), want cpu", info.Device, err)
	}
	path := filepath.Join(run, train.RunFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, strings.Replace(string(b), `"device": "cpu"`, `"device": "cuda"`, 1))
	wantError(t, []string{"train", "--resume", "--out", run}, "the run in "+run+" trained on cuda", "--device cpu goes on on the CPU")
	_, stderr, err := runCLI(t, "train", "--resume", "--out", run, "--device", "cpu")
	if err != nil || !strings.Contains(stderr, "trained on cuda, and goes on on cpu") {
		t.Errorf("resume on the CPU of a GPU run: %v, want a warning:\n%s", err, stderr)
	}
	if info, err := train.ReadRunInfo(run); err != nil || info.Device != "cpu" {
		t.Errorf("run.json after the resume on the CPU records device %q (%v), want cpu", info.Device, err)
	}
	// A device dinoclip does not know is refused whatever --device says,
	// quoted (an edited run.json could hold escapes for the terminal), and
	// info calls it unknown.
	for _, odd := range []struct{ json, want string }{{"tpu", `"tpu"`}, {"CPU", `"CPU"`}, {`\u001b[31mRED`, `"\x1b[31mRED"`}} {
		writeFile(t, path, strings.Replace(string(b), `"device": "cpu"`, `"device": "`+odd.json+`"`, 1))
		for _, args := range [][]string{{"train", "--resume", "--out", run}, {"train", "--resume", "--out", run, "--device", "cpu"}} {
			wantError(t, args, "records the device "+odd.want+", which dinoclip does not know")
		}
		if out := mustRun(t, "info", run); !strings.Contains(out, "device: "+odd.want+": UNKNOWN") {
			t.Errorf("info of a run recording the device %s:\n%s", odd.want, out)
		}
	}
	// A bf16 run (the GPU's default) cannot go on on the CPU: the advice
	// says so, not to use --device cpu.
	bf16 := strings.Replace(strings.Replace(string(b), `"device": "cpu"`, `"device": "cuda"`, 1), `"precision": "fp32"`, `"precision": "bf16"`, 1)
	if bf16 == strings.Replace(string(b), `"device": "cpu"`, `"device": "cuda"`, 1) {
		t.Fatalf("run.json records no fp32 precision to edit:\n%s", b)
	}
	writeFile(t, path, bf16)
	// (And in the last checkpoint's trainer state, which a resume holds
	// run.json to: the same length, so its header stays whole; these
	// resumes are refused before its checksum is read.)
	optimizer := filepath.Join(run, "last", checkpoint.OptimizerFile)
	ob, err := os.ReadFile(optimizer)
	if err != nil {
		t.Fatal(err)
	}
	fp32State, bf16State := `\"precision\":\"fp32\"`, `\"precision\":\"bf16\"`
	if !strings.Contains(string(ob), fp32State) {
		t.Fatalf("%s records no fp32 precision to edit", optimizer)
	}
	writeFile(t, optimizer, strings.Replace(string(ob), fp32State, bf16State, 1))
	err = wantError(t, []string{"train", "--resume", "--out", run}, "trained on cuda", "trains in bf16, which only the GPU engine computes")
	if err != nil && strings.Contains(err.Error(), "--device cpu goes on") {
		t.Errorf("the advice for a bf16 run is to go on on the CPU: %v", err)
	}
	// Asked to go on on the CPU, it says how: a new run from its checkpoint.
	err = wantError(t, []string{"train", "--resume", "--out", run, "--device", "cpu"}, "trains in bf16", "train --init "+filepath.Join(run, "last")+" --out NEW_RUN")
	if err == nil || !strings.Contains(err.Error(), "resume it where that is computed") {
		t.Errorf("a bf16 run resumed on the CPU: %v", err)
	}
	// Killed before it linked its first checkpoint, the run has no last
	// link: the advice names the checkpoint.
	lastLink, pendingLink := filepath.Join(run, checkpoint.LastLink), filepath.Join(run, checkpoint.NewLinkName(checkpoint.LastLink))
	target, err := os.Readlink(lastLink)
	if err != nil || os.Rename(lastLink, pendingLink) != nil {
		t.Fatalf("cannot unlink the last checkpoint: %v", err)
	}
	wantError(t, []string{"train", "--resume", "--out", run, "--device", "cpu"}, "train --init "+filepath.Join(run, target)+" --out NEW_RUN")
	if err := os.Rename(pendingLink, lastLink); err != nil {
		t.Fatal(err)
	}
	// Edited in run.json alone, it is refused as edited.
	writeFile(t, optimizer, string(ob))
	wantError(t, []string{"train", "--resume", "--out", run}, "record other options (precision fp32 in the checkpoint, bf16 in run.json)", "was edited")
	// info says where a resume goes on.
	writeFile(t, path, string(b))
	if out := mustRun(t, "info", run); !strings.Contains(out, "device: cpu (where train --resume goes on)") {
		t.Errorf("info of a run does not say its device:\n%s", out)
	}
}

// A resumed run whose engine does not open is told how it goes on: a bf16
// run refused by a check on this GPU by a new run from its checkpoint (it
// cannot switch to fp32, which the refusal advises), a bf16 run in a build
// without the GPU engine by another build, a bf16 run whose GPU failed
// otherwise by nothing (it may go on there later), an fp32 run by the CPU.
func TestResumeOpenError(t *testing.T) {
	refusal := fmt.Errorf("cuda: a test's refusal; use --precision fp32: %w", nn.ErrFailedCheck)
	failure := errors.New("cuda: out of memory")
	for _, c := range []struct {
		precision string
		err       error
		want      []string
	}{
		{train.PrecisionBF16, refusal, []string{"--resume: cuda: a test's refusal", "start a new run from its last checkpoint: dinoclip train --init " + filepath.Join("RUN", "last") + " --out NEW_RUN ... --precision fp32)"}},
		{train.PrecisionBF16, fmt.Errorf("--device cuda: %w", errNoCUDA), []string{"trained on cuda, and this dinoclip cannot go on there", "resume it with a build that has it"}},
		{train.PrecisionBF16, failure, []string{"--resume: the run in RUN trained on cuda in bf16: cuda: out of memory"}},
		{train.PrecisionFP32, refusal, []string{"trained on cuda, and this dinoclip cannot go on there", "--device cpu goes on on the CPU"}},
	} {
		err := resumeOpenError("RUN", "cuda", c.precision, c.err)
		if !errors.Is(err, c.err) {
			t.Errorf("%s, %v: %v does not wrap it", c.precision, c.err, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s, %v: %v, want %q in it", c.precision, c.err, err, w)
			}
		}
		if c.err == failure && strings.Contains(err.Error(), "(") {
			t.Errorf("a bf16 run whose GPU failed is given advice: %v", err)
		}
	}
}
