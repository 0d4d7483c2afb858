package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/mountpoint"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/synth"
	"github.com/dinoclip/dinoclip/train"
)

// demoMarker marks a directory the demo made, so a second demo may replace
// what the first wrote there, and nothing else.
const demoMarker = ".dinoclip-demo"

// demoDefaultConfig is the model the demo trains without flags: the original's
// widths with a narrow, shallow trunk, so that the whole demo takes about
// ten seconds on two cores.
var demoDefaultConfig = nn.Config{InputDim: synth.DefaultInputDim, HiddenDim: 256, OutputDim: synth.DefaultOutputDim, Blocks: 2}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "synthesise data, train a small projector on the CPU, evaluate it and plot the run",
		UsageText: "dinoclip demo [--out DIR] [--rows N] [--epochs N] [--hidden-dim N] [--blocks N] [--batch N]\n" +
			"   [--lr X] [--seed N] [--device cpu|cuda]",
		Description: "The whole product end to end in about ten seconds on two cores, with no downloads: it writes a\n" +
			"synthetic data set (see dinoclip synth) under DIR/data, trains a small ProjectorWithResiduals\n" +
			"on it (" + demoDefaultConfig.Describe() + " by default)\n" +
			"with the unit-norm MSE loss, AdamW and OneCycleLR (docs/MODEL.md, docs/TRAINING.md),\n" +
			"evaluates text-image retrieval after every epoch, prints the recall table of the original\n" +
			"project's results (R@1/5/10 both ways for CLIP and for the projection, and % of CLIP), and plots\n" +
			"the loss and recall curves into DIR/demo.png. The run itself is in DIR/run: try\n" +
			"dinoclip info DIR/run, or dinoclip eval --model DIR/run --eval DIR/data/eval.\n\n" +
			"DIR must be new, empty, or one an earlier demo made: a demo run again into it replaces DIR/data,\n" +
			"DIR/run and DIR/demo.png whole (files put in them included; copy out what you want to keep).\n\n" +
			"Example:\n" +
			"   dinoclip demo --out /tmp/dinoclip-demo",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "dinoclip-demo", Usage: "write data, run and plot under `DIR`"},
			&cli.IntFlag{Name: "rows", Value: synthDefaultRows, Usage: "`N` synthetic training rows"},
			&cli.IntFlag{Name: "epochs", Value: 4, Usage: "`N` epochs"},
			&cli.IntFlag{Name: "hidden-dim", Value: demoDefaultConfig.HiddenDim, Usage: "model hidden width `N` (at least 2: the head is N/2 wide)"},
			&cli.IntFlag{Name: "blocks", Value: demoDefaultConfig.Blocks, Usage: "`N` residual blocks (at most 4096)"},
			&cli.IntFlag{Name: "batch", Value: 256, Usage: "`N` rows per optimizer step"},
			&cli.Float64Flag{Name: "lr", Value: 2e-3, Usage: "peak learning rate `X`"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed `N` of the data and the model"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "`DEVICE` to train on: cpu, or cuda (a build with -tags cuda; in fp32 there too)"},
		},
		OnUsageError: usageError,
		Action:       runDemo,
	}
}

func runDemo(cCtx *cli.Context) error {
	if err := noArgs(cCtx); err != nil {
		return err
	}
	for _, f := range []string{"rows", "epochs", "batch", "hidden-dim"} {
		if err := checkAtLeast(f, cCtx.Int(f), 1); err != nil {
			return err
		}
	}
	if err := checkAtLeast("blocks", cCtx.Int("blocks"), 0); err != nil {
		return err
	}
	so := synth.DefaultOptions()
	so.Seed = cCtx.Uint64("seed")
	// The run's settings and its engine before the data is written: a
	// refusal after minutes of synthesis would waste them.
	rows, epochs, batch, lr := cCtx.Int("rows"), cCtx.Int("epochs"), cCtx.Int("batch"), cCtx.Float64("lr")
	if rows < batch {
		return fmt.Errorf("--rows %d: fewer than one --batch of %d rows", rows, batch)
	}
	if rows > synth.MaxShards*synthDefaultShardRows {
		return fmt.Errorf("--rows %d: demo writes at most %d rows (%d shards of %d)", rows, synth.MaxShards*synthDefaultShardRows, synth.MaxShards, synthDefaultShardRows)
	}
	spe, _, err := train.Steps(epochs, rows, batch)
	if err != nil {
		return fmt.Errorf("--epochs %d: %w", epochs, err)
	}
	if err := train.NewOneCycle(lr, epochs, spe).Validate(); err != nil {
		return fmt.Errorf("--lr %v: %w", lr, err)
	}
	c := nn.Config{InputDim: so.InputDim, HiddenDim: cCtx.Int("hidden-dim"), OutputDim: so.OutputDim, Blocks: cCtx.Int("blocks")}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if cCtx.String("device") == "cpu" {
		defaults := train.DefaultOptions()
		if err := checkCPUMemory(c, batch, 4, nn.Objective{Loss: defaults.Loss}, defaults.HostBytes(c, rows), "the shuffle, and a checkpoint's copies while it is saved", "--hidden-dim, --blocks or --batch"); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	engine, err := openEngine(cCtx.String("device"), train.PrecisionFP32, c)
	if err != nil {
		return err
	}
	defer engine.Close()

	w := cCtx.App.Writer
	out, err := atomicfile.ResolveDotDotOut(cCtx.String("out")) // (LINK/.. as the system takes it)
	if err != nil {
		return fmt.Errorf("demo: --out: %w", err)
	}
	if err := checkDirOrNone(out); err != nil {
		return fmt.Errorf("demo: --out %w: the demo writes into a directory", err)
	}
	dataRoot, runDir := filepath.Join(out, "data"), filepath.Join(out, "run")
	if err := train.CheckRecordedPath("demo --out", out); err != nil { // (the run would refuse its data's path)
		return err
	}
	job := synthJob{opts: so, rows: rows, shardRows: synthDefaultShardRows, images: synthDefaultEvalImages, perImage: synthDefaultCaptionsPerImage}
	// Into a new or empty --out, the data's refusals (the place, the disk)
	// come before the directory and its marker are made, which they would
	// leave behind. (An earlier demo's --out is judged once its old data is
	// gone, whose room the new data takes.)
	if entries, err := os.ReadDir(out); len(entries) == 0 && (err == nil || errors.Is(err, os.ErrNotExist)) {
		// The run's first checkpoint, after the data, on the same disk:
		// the data fitting, a demo stopped there, minutes in. (Judged
		// before the data alone, whose refusal is worded for synth's
		// flags.)
		data := synth.TrainingDiskBytes(so, rows, false) + synth.EvalDiskBytes(so, job.images, job.perImage)
		ckpt := train.DefaultOptions().CheckpointBytes(c)
		if free, ok := diskFree(madedirs.Existing(out)); ok && data+ckpt > float64(free) {
			return fmt.Errorf("demo: its data (%s) and its run's first checkpoint (%s) take more than the %s free under %s: use fewer --rows, a smaller --hidden-dim or --blocks, or another --out",
				sizeText(data), sizeText(ckpt), sizeText(float64(free)), madedirs.Existing(out))
		}
		if err := checkSynthJob(dataRoot, job); err != nil {
			return err
		}
	}
	// Locked for the whole demo, so that a second demo into it is refused
	// before it replaces the first one's data and run.
	unlock, err := synth.LockDir(out)
	if err != nil {
		return fmt.Errorf("demo --out %s: %w", out, withLockAdvice(err))
	}
	defer unlock()
	if err := prepareDemoDir(out); err != nil {
		return err
	}
	start := time.Now()
	// What an earlier demo wrote is the demo's own, and removed whole
	// before anything is written: a killed demo's data in whatever state,
	// its staging copies, and a run and plot not made of the new data.
	if err := removeDemoOutputs([]demoOutput{{dataRoot, lockData}, {runDir, lockRun}, {filepath.Join(out, "demo.png"), nil}}); err != nil {
		return err
	}
	// The data is written as dinoclip synth --out DATA writes it, with the
	// unfinished-run marker and DATA's lock: a demo killed between its two
	// sets leaves sets that readers refuse, and a synth into DATA
	// meanwhile, training included, is refused.
	dataDir, evalDir := filepath.Join(dataRoot, dataset.TrainDir), filepath.Join(dataRoot, dataset.EvalDir)
	fmt.Fprintf(w, "1/3 synthesising %d training rows and an evaluation set of %d images x %d captions in %s\n",
		rows, job.images, job.perImage, printable.String(dataRoot))
	unlockData, err := synthesise(cCtx.Context, w, cCtx.App.ErrWriter, dataRoot, job)
	if err != nil {
		return err
	}
	defer unlockData()

	data, err := train.OpenDataset(dataDir)
	if err != nil {
		return err
	}
	defer data.Close()
	set, err := retrieval.LoadSet(evalDir)
	if err != nil {
		return err
	}
	opts := train.DefaultOptions()
	opts.Epochs, opts.Batch, opts.MaxLR, opts.Seed = epochs, batch, lr, cCtx.Uint64("seed")
	// About ten points on the loss curve at least, however short the run
	// (one of three steps logged none, and there was no curve to plot).
	steps := int64(opts.Epochs) * int64(data.Rows/max(opts.Batch, 1))
	opts.LogEvery = int(max(1, min(int64(opts.LogEvery), steps/10)))
	fmt.Fprintf(w, "2/3 training %s for %s of %s on %s\n",
		c.Describe(), plural.Count(opts.Epochs, "epoch", "epochs"), plural.Count(data.Rows/opts.Batch, "step", "steps"), cCtx.String("device"))
	tr := &train.Trainer{Engine: engine, Data: data, Evals: []*retrieval.Set{set}, Options: opts, RunDir: runDir, Device: cCtx.String("device"),
		Log: slog.New(slog.NewTextHandler(cCtx.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if f := terminal(cCtx); f != nil {
		tr.Progress = f
	}
	res, err := tr.Run(cCtx.Context, false)
	var stopped *train.StepError
	if errors.As(err, &stopped) && (errors.Is(err, train.ErrNonFinite) && stopped.Step > 1 || errors.Is(err, train.ErrDiverged)) {
		// (The trainer's advice names train's flags and the run directory.
		// A loss not finite at the first step came before any update: the
		// data's, which its advice says.)
		stopped.Advice = "the training diverged; run the demo again with a lower --lr"
	}
	if err != nil {
		return err
	}

	fmt.Fprintf(w, "3/3 results after %s (%s):\n\n", plural.Count(res.State.Epoch, "epoch", "epochs"), time.Since(start).Round(time.Second))
	if err := writeTrainSummary(w, runDir, c, res); err != nil {
		return err
	}
	png := filepath.Join(out, "demo.png")
	if err := plotRun(runDir, png); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nloss and recall curves: %s\n", printable.String(png))
	return nil
}

// A demoOutput is what a demo writes under its --out, and the lock that
// the writer of it in another process holds (nil: none).
type demoOutput struct {
	path string
	lock func(dir string) (unlock func(), err error)
}

// removeDemoOutputs removes what an earlier demo wrote (a link or file
// there, not what it leads to) once it holds the lock on each: a writer
// at work in any (a dinoclip synth --out DIR/data, a dinoclip train
// --resume --out DIR/run) is refused before anything is removed.
//
// Windows removes no file that is open, and the run's lock file is open
// while it is held: once the locks are let go, that lock file and the
// directories left empty are removed one by one (on other systems nothing
// is left then), so that a process that took a directory in between keeps
// its files, and the demo fails.
func removeDemoOutputs(outputs []demoOutput) error {
	var unlocks []func()
	unlock := func() {
		for _, u := range unlocks {
			u()
		}
		unlocks = nil
	}
	defer unlock()
	for _, o := range outputs {
		st, err := os.Lstat(o.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("demo: %w", err)
		case st.IsDir() && mountpoint.Is(o.path, st):
			// (Its contents removed, the mount point itself could not be:
			// every rerun failed so, after emptying it.)
			return fmt.Errorf("demo: %s is a mount point: a rerun replaces it whole, which a mount point cannot be; unmount it, or give another --out", o.path)
		case st.IsDir() && o.lock != nil:
			unlock, err := o.lock(o.path)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			unlocks = append(unlocks, unlock)
		}
	}
	var left []string
	for _, o := range outputs {
		if err := os.RemoveAll(o.path); err != nil {
			if runtime.GOOS != "windows" {
				return fmt.Errorf("demo: %w", err)
			}
			left = append(left, o.path)
		}
	}
	unlock()
	for _, path := range left {
		os.Remove(filepath.Join(path, train.LockFile))
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// lockData is synth.LockDir as removeDemoOutputs takes a lock, with
// advice.
func lockData(dir string) (func(), error) {
	unlock, err := synth.LockDir(dir)
	if err != nil {
		return nil, withLockAdvice(err)
	}
	return unlock, nil
}

// withLockAdvice adds to a refusal of synth.LockDir what to do, when it is
// another process's hold (not a file in the way, a read-only place).
func withLockAdvice(err error) error {
	if errors.Is(err, flock.ErrLocked) {
		return fmt.Errorf("%w; wait for it to end, or choose another --out", err)
	}
	return err
}

// lockRun is train.LockRunDir as removeDemoOutputs takes a lock (its
// error gives advice).
func lockRun(dir string) (func(), error) {
	l, err := train.LockRunDir(dir)
	if err != nil {
		return nil, err
	}
	return func() { l.Release() }, nil
}

// prepareDemoDir makes out ready for a demo: a new directory, an empty one,
// or one an earlier demo made (whose data and run the demo replaces).
// Anything else is refused rather than written into.
func prepareDemoDir(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("demo: %w", err)
	case len(entries) == 0:
	default:
		// A plain file only: through a link the demo would write where it
		// leads, and a named pipe would hang it.
		if st, err := os.Lstat(filepath.Join(out, demoMarker)); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("demo: %s exists and was not made by dinoclip demo; choose another --out", out)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	f, err := atomicfile.OpenRegular(filepath.Join(out, demoMarker), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	// (Truncated once opened: OpenRegular checks the file it opened is
	// the one it looked at, which O_TRUNC would have cut first.)
	if err = f.Truncate(0); err == nil {
		_, err = f.WriteString("made by dinoclip demo\n")
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
