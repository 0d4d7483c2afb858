package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock/flocktest"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/synth"
	"github.com/dinoclip/dinoclip/train"
)

// The demo end to end at a tiny size: data, a trained run, the table and a
// PNG; a second demo into the same directory replaces the first; a
// directory the demo did not make is refused.
func TestDemo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	// 9 steps: fewer than the default log interval, which once left the
	// loss curve without a point.
	args := []string{"dinoclip", "demo", "--out", out, "--rows", "600", "--epochs", "1", "--hidden-dim", "16", "--blocks", "1", "--batch", "64"}
	for run := 0; run < 2; run++ {
		var stdout bytes.Buffer
		app := newApp()
		app.Writer = &stdout
		if err := app.Run(args); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, want := range []string{"% of CLIP", "text->image", "image->text", "best checkpoint", "demo.png"} {
			if !strings.Contains(stdout.String(), want) {
				t.Fatalf("run %d: output lacks %q:\n%s", run, want, stdout.String())
			}
		}
		png, err := os.ReadFile(filepath.Join(out, "demo.png"))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("run %d: demo.png: %v", run, err)
		}
		if _, err := os.Stat(filepath.Join(out, "run", "best", "model.safetensors")); err != nil {
			t.Fatal(err)
		}
		// (Where a train --resume of the demo's run goes on.)
		if info, err := train.ReadRunInfo(filepath.Join(out, "run")); err != nil || info.Device != "cpu" {
			t.Errorf("run %d: the demo's run.json records device %q (%v), want cpu", run, info.Device, err)
		}
	}
	// A run that diverges is told what the demo can change (the trainer's
	// own advice names train's flags and the run directory).
	err := wantError(t, []string{"demo", "--out", filepath.Join(t.TempDir(), "demo"), "--rows", "256", "--epochs", "1", "--batch", "32",
		"--hidden-dim", "8", "--blocks", "1", "--lr", "1e30"}, "diverged", "run the demo again with a lower --lr")
	if strings.Contains(err.Error(), "weight-decay") || strings.Contains(err.Error(), "--out") {
		t.Errorf("demo's divergence advice names what demo does not take: %v", err)
	}
	// So is one whose only step diverges, found by the evaluation after it
	// (it blamed a damaged model).
	wantError(t, []string{"demo", "--out", filepath.Join(t.TempDir(), "demo"), "--rows", "300", "--epochs", "1", "--batch", "256",
		"--hidden-dim", "8", "--blocks", "1", "--lr", "1e30"}, "step 1", "the epoch's last update diverged", "run the demo again with a lower --lr")
	// Settings that cannot train are refused before anything is written.
	for _, c := range []struct{ args, want []string }{
		{[]string{"--lr", "NaN"}, []string{"--lr NaN"}},
		{[]string{"--lr", "-1"}, []string{"--lr -1"}},
		{[]string{"--rows", "100", "--batch", "256"}, []string{"--rows 100", "--batch of 256"}},
		{[]string{"--hidden-dim", "100000000"}, []string{"weights, more than"}},
		{[]string{"--rows", "99999999999"}, []string{"--rows 99999999999", "at most 300000000 rows"}},
	} {
		fresh := filepath.Join(t.TempDir(), "demo")
		wantError(t, append([]string{"demo", "--out", fresh}, c.args...), c.want...)
		if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("demo %v: refused, but wrote %s (%v)", c.args, fresh, err)
		}
	}
	// A place that cannot be a directory, or none, is said to be so,
	// with no advice to wait for another process; a bad flag is one line.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if err := wantError(t, []string{"demo", "--out", file}, "not a directory"); strings.Contains(err.Error(), "wait") {
		t.Errorf("demo into a file advises waiting: %v", err)
	}
	wantError(t, []string{"demo", "--out", ""}, `demo: --out "" is empty`)
	wantError(t, []string{"demo", "--bogus"}, "demo: flag provided but not defined: --bogus; see 'dinoclip demo --help'")
	// A marker that is a link (to a user's file) or not a regular file is
	// no demo's: refused, nothing written through it.
	victim := filepath.Join(t.TempDir(), "victim.txt")
	os.WriteFile(victim, []byte("precious"), 0o644)
	linked := t.TempDir()
	os.Symlink(victim, filepath.Join(linked, demoMarker))
	wantError(t, []string{"demo", "--out", linked}, "not made by dinoclip demo")
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("demo wrote through a linked marker: %q", b)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "precious.txt"), []byte("keep me"), 0o644)
	err = newApp().Run([]string{"dinoclip", "demo", "--out", other})
	if err == nil || !strings.Contains(err.Error(), "not made by dinoclip demo") {
		t.Fatalf("demo into a foreign directory: %v", err)
	}
}

// A demo into an --out that another demo is using is refused at once,
// before it removes the other's data and run.
func TestDemoLocksItsOutput(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows")
	}
	out := t.TempDir()
	for _, p := range []string{demoMarker, "data/train/shard-00000.dino.npy", "run/run.json"} {
		os.MkdirAll(filepath.Dir(filepath.Join(out, p)), 0o755)
		if err := os.WriteFile(filepath.Join(out, p), []byte("the other demo's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flocktest.Hold(t, out, true, 0) // (as a dinoclip writer at work in it)
	wantError(t, []string{"demo", "--out", out, "--rows", "600", "--epochs", "1", "--hidden-dim", "16", "--blocks", "1", "--batch", "64"},
		out, "in use by another dinoclip", "wait for it to end")
	for _, p := range []string{demoMarker, "data/train/shard-00000.dino.npy", "run/run.json"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != "the other demo's" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
}

// demoTiny are the flags of a demo at a tiny size into out.
func demoTiny(out string) []string {
	return []string{"demo", "--out", out, "--rows", "600", "--epochs", "1", "--hidden-dim", "16", "--blocks", "1", "--batch", "64"}
}

// A demo killed between its training data and its evaluation set (here:
// interrupted then) leaves its new training data, without an evaluation
// set (the old one went with the old data), and the unfinished-run marker
// that dinoclip synth keeps, so that every reader of the set refuses it; a
// demo again replaces the data and the run.
func TestDemoKilledBetweenSets(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	mustRun(t, demoTiny(out)...)
	again := append(demoTiny(out), "--seed", "1")
	_, _, err := runCLIWatched(t, func(written string, cancel context.CancelFunc) {
		if strings.Contains(written, "training data: ") {
			cancel()
		}
	}, again...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a demo interrupted after its training data: %v", err)
	}
	data := filepath.Join(out, "data")
	trainDir, evalDir := filepath.Join(data, dataset.TrainDir), filepath.Join(data, dataset.EvalDir)
	if _, err := os.Stat(evalDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old evaluation set is still there beside the new training data: %v", err)
	}
	if info := mustRun(t, "info", data); !strings.Contains(info, "unfinished") {
		t.Errorf("info on the interrupted demo's data:\n%s", info)
	}
	for _, args := range [][]string{
		{"info", trainDir},
		{"train", "--data", trainDir, "--out", filepath.Join(t.TempDir(), "run")},
	} {
		wantError(t, args, "interrupted", "run that dinoclip synth or demo again")
	}
	mustRun(t, again...)
	if _, err := os.Lstat(filepath.Join(data, dataset.UnfinishedFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a finished demo left its unfinished-run marker: %v", err)
	}
	mustRun(t, "info", trainDir)
	mustRun(t, "info", evalDir)
}

// A synth into a demo's data directory while the demo writes it, or
// trains on it, is refused with a word of who holds it, and changes
// nothing: the demo finishes on its own data.
func TestDemoLocksItsData(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("directories are not locked on Windows")
	}
	out := filepath.Join(t.TempDir(), "demo")
	data := filepath.Join(out, "data")
	intruder := append([]string{"synth", "--out", data, "--force"}, synthSmall...)
	refusals := map[string]error{}
	_, stderr, err := runCLIWatched(t, func(written string, _ context.CancelFunc) {
		for _, when := range []string{"training data: ", "2/3 training"} {
			if strings.HasPrefix(written, when) {
				_, _, refusals[when] = runCLI(t, intruder...)
			}
		}
	}, demoTiny(out)...)
	if err != nil {
		t.Fatalf("the demo: %v\n%s", err, stderr)
	}
	for _, when := range []string{"training data: ", "2/3 training"} {
		if err, ok := refusals[when]; !ok || err == nil || !strings.Contains(err.Error(), data+" is in use by another dinoclip") {
			t.Errorf("a synth into %s at %q: %v; want it refused", data, when, err)
		}
	}
	info := mustRun(t, "info", filepath.Join(data, dataset.TrainDir))
	if !strings.Contains(info, "rows: 600") {
		t.Errorf("the demo's training data:\n%s", info)
	}
}

// A demo replaces whatever an earlier demo left in its data directory,
// in any state (a killed demo's staging copies, an older synth's .partial,
// a file where the directory was), rather than refusing it as synth
// refuses a user's sets; a run directory that a dinoclip train holds is
// refused, not deleted under.
func TestDemoReplacesItsOwn(t *testing.T) {
	for name, mess := range map[string]func(out string) error{
		"partial": func(out string) error {
			return os.MkdirAll(filepath.Join(out, "data", dataset.TrainDir, ".partial"), 0o755)
		},
		"staging": func(out string) error {
			return os.WriteFile(filepath.Join(out, "data", ".train.synth.tmp-7"), []byte("not synth's"), 0o644)
		},
		"file": func(out string) error {
			if err := os.RemoveAll(filepath.Join(out, "data")); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(out, "data"), []byte("a file"), 0o644)
		},
		"marker-dir": func(out string) error { return os.Mkdir(filepath.Join(out, "data", dataset.UnfinishedFile), 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "demo")
			mustRun(t, demoTiny(out)...)
			if err := mess(out); err != nil {
				t.Fatal(err)
			}
			mustRun(t, demoTiny(out)...)
			entries, _ := os.ReadDir(filepath.Join(out, "data"))
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{dataset.EvalDir, dataset.TrainDir}) {
				t.Errorf("the demo's data directory after the demo again: %q", names)
			}
			mustRun(t, "info", filepath.Join(out, "data", dataset.TrainDir))
		})
	}
	if runtime.GOOS == "windows" {
		return
	}
	out := filepath.Join(t.TempDir(), "demo")
	mustRun(t, demoTiny(out)...)
	l, err := train.LockRunDir(filepath.Join(out, "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	wantError(t, demoTiny(out), "run", "wait for it to end")
	if _, err := os.Stat(filepath.Join(out, "run", train.RunFile)); err != nil {
		t.Errorf("the run a train holds: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "data", dataset.TrainDir)); err != nil {
		t.Errorf("a demo refused for a held run removed the data the run trains on: %v", err)
	}
}

// A demo refused for its place (in a run's checkpoints), its disk or its
// path leaves nothing behind: it made its --out and marker first, then
// refused.
func TestDemoRefusalLeavesNothing(t *testing.T) {
	run, _, _ := trainRun(t)
	out := filepath.Join(run, "checkpoints", "zz")
	wantError(t, []string{"demo", "--out", out}, "in the checkpoints directory")
	defer func(saved func(string) (uint64, bool)) { diskFree = saved }(diskFree)
	diskFree = func(string) (uint64, bool) { return 1 << 20, true }
	full := filepath.Join(t.TempDir(), "demo")
	wantError(t, []string{"demo", "--out", full}, "demo: its data (", "take more than the 1.0 MiB free")
	// Room for the data, not for the run's first checkpoint beside it.
	so := synth.DefaultOptions()
	data := synth.TrainingDiskBytes(so, 1000, false) + synth.EvalDiskBytes(so, synthDefaultEvalImages, synthDefaultCaptionsPerImage)
	c := nn.Config{InputDim: so.InputDim, HiddenDim: 1024, OutputDim: so.OutputDim, Blocks: 2}
	diskFree = func(string) (uint64, bool) { return uint64(data + train.DefaultOptions().CheckpointBytes(c)/2), true }
	wantError(t, []string{"demo", "--out", full, "--rows", "1000", "--hidden-dim", "1024", "--blocks", "2"}, "and its run's first checkpoint")
	// A path that is not UTF-8, which the run would refuse to record after
	// the data was written.
	latin1 := filepath.Join(t.TempDir(), "d\xe9mo")
	wantError(t, []string{"demo", "--out", latin1}, "the path is not UTF-8 text")
	for _, p := range []string{out, full, latin1} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused demo left %s (%v)", p, err)
		}
	}
}
