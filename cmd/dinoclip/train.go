package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

func trainCommand() *cli.Command {
	d := train.DefaultOptions()
	m := nn.DefaultConfig()
	inputDim := intFlag("input-dim", "model input width `N`; must match the training data", 0)
	inputDim.DefaultText = "from --data"
	outputDim := intFlag("output-dim", "model output width `N`; must match the training data", 0)
	outputDim.DefaultText = "from --data"
	return &cli.Command{
		Name:      "train",
		Usage:     "train a projector from DINOv2 features to CLIP embeddings",
		UsageText: "dinoclip train --data DIR --out RUNDIR [--eval DIR ...] [--init MODEL] [options]\ndinoclip train --resume --out RUNDIR",
		Description: "Trains ProjectorWithResiduals on the shards in --data (NAME.dino.npy features, NAME.clip.npy\n" +
			"targets; docs/FORMAT.md) with the unit-norm MSE loss (or --loss infonce, mse+infonce), AdamW\n" +
			"and a OneCycleLR schedule. After every epoch it evaluates on each --eval set, saves a\n" +
			"checkpoint under RUNDIR/checkpoints, and points RUNDIR/last at it and RUNDIR/best at the\n" +
			"best one by --best-metric. Ctrl-C saves a checkpoint (during an evaluation, at once: the\n" +
			"resume then does the evaluation first); 'dinoclip train --resume --out RUNDIR' continues\n" +
			"from it exactly, with the data, evaluation sets and options the run was started with\n" +
			"(RUNDIR/run.json); --data or --eval given with --resume replace the run's (moved files).\n" +
			"run.json records an identity of the inputs (each training file's size and a hash of 32\n" +
			"sampled blocks, each evaluation set's hash; docs/FORMAT.md): a resume on other contents is\n" +
			"refused unless --accept-changed-inputs.\n" +
			"One process at a time trains in a run directory.\n" +
			"--init MODEL fine-tunes: the run starts from MODEL's weights (a model file, a checkpoint\n" +
			"directory, or a run directory's best, else last, checkpoint, its ema.safetensors for a run that\n" +
			"picks its best from the EMA) and takes its shape from it, with a fresh optimizer and schedule;\n" +
			"run.json records MODEL and a hash of its weights.\n" +
			"At the end it prints the recall table and where the best checkpoint is.\n\n" +
			"Example:\n" +
			"   dinoclip train --data features/cc12m --eval features/mscoco-5k --out runs/base --batch 8192",
		Flags: []cli.Flag{
			stringFlag("data", "training data `DIR`: pairs of NAME.dino.npy and NAME.clip.npy", ""),
			outFlag("train", "run `DIR` for checkpoints, metrics.jsonl and run.json (a new or empty directory for a new run, not in another run's directory or checkpoints, nor in a search index)"),
			stringSliceFlag("eval", "evaluation set `DIR`, evaluated after every epoch (repeat for more sets)"),
			intFlag("epochs", "`N` passes over the training data", d.Epochs),
			intFlag("batch", "`N` rows per optimizer step", d.Batch),
			float64Flag("lr", "peak learning rate `X` of the OneCycleLR schedule (max_lr)", d.MaxLR),
			float64Flag("weight-decay", "AdamW weight decay `X`", d.AdamW.WeightDecay),
			uint64Flag("seed", "seed `N` of the initialisation and of the data order", d.Seed),
			intFlag("checkpoint-every", "also save a checkpoint every `N` optimizer steps (0: at epoch ends only)", d.CheckpointEvery),
			intFlag("keep", "keep the `N` newest step checkpoints besides last and best (of those saved at epoch ends and every --checkpoint-every steps: a stop's own checkpoint goes once a later one is saved)", d.Keep),
			stringFlag("best-metric", "`METRIC` that picks the best checkpoint: loss, r5 (mean R@5 of the projection), or SET/t2i@K, SET/i2t@K (K 1, 5, 10); default r5 with --eval sets, else loss", d.BestMetric),
			intFlag("log-every", "write a training record to metrics.jsonl every `N` optimizer steps (0: none)", d.LogEvery),
			inputDim,
			intFlag("hidden-dim", "model hidden width `N` (at least 2: the head is N/2 wide)", m.HiddenDim),
			outputDim,
			intFlag("blocks", "`N` residual blocks (at most 4096)", m.Blocks),
			deviceFlag(),
			stringFlag("resident", "`MODE` of the training data on a GPU: auto keeps it on the GPU as float16 when it fits and takes each batch there (float32 data then trains on its values rounded to float16), off reads every batch on the host", d.Resident),
			stringFlag("init", "fine-tune: start from the weights of `MODEL` (a model file, a checkpoint or a run directory) instead of a random initialisation; the model's shape is MODEL's", ""),
			stringFlag("precision", "`MODE` of the arithmetic: bf16 (GPU only, the default there: bf16 mixed precision, PyTorch autocast's semantics: bf16 GEMMs accumulating in fp32; fp32 weights, gradients, AdamW moments, LayerNorm, GELU and loss), fp32 (the CPU's default; on the GPU the parity mode), or fp64 (CPU only: the float64 engine, PyTorch float64's trajectory to ~1e-14, checked to 1e-10 against a recorded run; slower; checkpoints also hold the float64 state, float64.safetensors); recorded in run.json and the checkpoints, and kept by --resume", ""),
			float64Flag("ema", "keep an exponential moving average of the weights with decay `D` in (0, 1), updated after every optimizer step (on the GPU engine, in GPU memory), evaluated at epoch ends and saved in each checkpoint as ema.safetensors; 0: none", 0),
			stringFlag("best-from", "`WEIGHTS` that pick the best checkpoint: raw (the trained weights) or ema (their moving average; needs --ema and --eval; the run's best model is then RUN/best/ema.safetensors)", d.BestFrom),
			stringFlag("loss", "training `LOSS`: mse (the unit-norm MSE of the original recipe), infonce (CLIP's symmetric contrastive loss over the batch, with a learnable temperature), or mse+infonce (their sum, InfoNCE weighted by --infonce-weight); docs/TRAINING.md", d.Loss),
			float64Flag("infonce-weight", "weight `W` of the InfoNCE term of --loss mse+infonce: positive, at most 3.4e38", 1),
			boolFlag("resume", "continue the run in --out from its last checkpoint, with its data, evaluation sets and options (run.json), on the device it trained on unless --device says otherwise"),
			boolFlag("accept-changed-inputs", "with --resume: continue even when the training data or evaluation sets do not hold the contents the run recorded (the result then differs from the run's own; run.json records the new ones)"),
			configFlag(),
		},
		Before:       applyConfig,
		OnUsageError: usageError,
		Action:       runTrain,
	}
}

// trainOptions reads and validates the flags that set training options.
func trainOptions(cCtx *cli.Context) (train.Options, error) {
	o := train.DefaultOptions()
	o.Epochs = cCtx.Int("epochs")
	o.Batch = cCtx.Int("batch")
	o.MaxLR = cCtx.Float64("lr")
	o.AdamW.WeightDecay = cCtx.Float64("weight-decay")
	o.Seed = cCtx.Uint64("seed")
	o.CheckpointEvery = cCtx.Int("checkpoint-every")
	o.Keep = cCtx.Int("keep")
	o.BestMetric = cCtx.String("best-metric")
	o.LogEvery = cCtx.Int("log-every")
	o.Resident = cCtx.String("resident")
	for _, c := range []struct {
		name     string
		v, least int
	}{{"epochs", o.Epochs, 1}, {"batch", o.Batch, 1}, {"checkpoint-every", o.CheckpointEvery, 0}, {"keep", o.Keep, 0}, {"log-every", o.LogEvery, 0}} {
		if err := checkAtLeast(c.name, c.v, c.least); err != nil {
			return o, err
		}
	}
	if o.Resident != train.ResidentAuto && o.Resident != train.ResidentOff {
		return o, fmt.Errorf("--resident %q: want %s or %s", o.Resident, train.ResidentAuto, train.ResidentOff)
	}
	o.EMA = cCtx.Float64("ema")
	if o.EMA != 0 && !(o.EMA > 0 && o.EMA < 1) {
		near := ""
		if o.EMA == 1 {
			// (0.99999999999999999 was typed, and said to be 1.)
			near = " (a decay within about 5.6e-17 of 1 reads as 1 in float64)"
		}
		return o, fmt.Errorf("--ema %v: the decay must be in (0, 1), or 0 for no moving average%s", o.EMA, near)
	}
	o.BestFrom = cCtx.String("best-from")
	if o.BestFrom != train.BestFromRaw && o.BestFrom != train.BestFromEMA {
		return o, fmt.Errorf("--best-from %q: want %s or %s", o.BestFrom, train.BestFromRaw, train.BestFromEMA)
	}
	// (A resume compares the flags given with the run's options instead:
	// its --ema is the run's.)
	if o.BestFrom == train.BestFromEMA && o.EMA == 0 && !cCtx.Bool("resume") {
		return o, fmt.Errorf("--best-from ema needs a moving average: give --ema DECAY")
	}
	// "" until the device is known: its default (devicePrecision).
	o.Precision = cCtx.String("precision")
	if err := checkPrecisionName(o.Precision, precisionSetting(cCtx), true); err != nil {
		return o, err
	}
	o.Loss = cCtx.String("loss")
	if o.Loss != nn.LossMSE && o.Loss != nn.LossInfoNCE && o.Loss != nn.LossMSEInfoNCE {
		return o, fmt.Errorf("--loss %q: want %s, %s or %s", o.Loss, nn.LossMSE, nn.LossInfoNCE, nn.LossMSEInfoNCE)
	}
	// A weight given with another loss is refused for a new run (in
	// runTrain); a resume compares it with the run's.
	if o.Loss == nn.LossMSEInfoNCE || cCtx.IsSet("infonce-weight") {
		o.InfoNCEWeight = cCtx.Float64("infonce-weight")
		if !nn.ValidInfoNCEWeight(o.InfoNCEWeight) {
			return o, fmt.Errorf("--infonce-weight %v: %s", o.InfoNCEWeight, nn.InfoNCEWeightRange)
		}
	}
	if !(o.MaxLR > 0) || math.IsInf(o.MaxLR, 0) {
		return o, fmt.Errorf("--lr %v: must be a positive number", o.MaxLR)
	}
	if !(o.AdamW.WeightDecay >= 0) || math.IsInf(o.AdamW.WeightDecay, 0) {
		return o, fmt.Errorf("--weight-decay %v: must be a non-negative number", o.AdamW.WeightDecay)
	}
	return o, nil
}

func runTrain(cCtx *cli.Context) error {
	if err := noArgs(cCtx); err != nil {
		return err
	}
	resume := cCtx.Bool("resume")
	required := []string{"data", "out"}
	if resume {
		required = []string{"out"} // the rest is in the run's run.json
		if cCtx.IsSet("init") {
			return fmt.Errorf("--init with --resume: a resumed run continues from its last checkpoint (run.json records the model it was started from); drop --init, or start a new run with another --out")
		}
	}
	if err := requireFlags(cCtx, required...); err != nil {
		return err
	}
	if cCtx.Bool("accept-changed-inputs") && !resume {
		return fmt.Errorf("--accept-changed-inputs is for --resume: a new run records its inputs")
	}
	opts, err := trainOptions(cCtx)
	if err != nil {
		return err
	}
	device := cCtx.String("device")
	if err := checkDevice(device); err != nil {
		return err
	}
	for _, n := range []string{"input-dim", "output-dim"} {
		if err := checkAtLeast(n, cCtx.Int(n), 0); err != nil {
			return err
		}
	}
	if err := checkAtLeast("hidden-dim", cCtx.Int("hidden-dim"), 2); err != nil {
		return err
	}
	if err := checkAtLeast("blocks", cCtx.Int("blocks"), 0); err != nil {
		return err
	}
	runDir, err := atomicfile.ResolveDotDotOut(cCtx.String("out")) // (LINK/.. as the system takes it, before names are joined to it)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	dataDir, evalDirs := cCtx.String("data"), cCtx.StringSlice("eval")
	log := slog.New(slog.NewTextHandler(cCtx.App.ErrWriter, nil))
	var run train.RunInfo
	deviceOfRun := false // the device is the run's, not a flag's
	otherDevice := ""    // the warning of a resume on another device than the run's
	if !resume {
		// (A named pipe there would block its listing forever, Ctrl-C
		// waiting on it.)
		if err := checkDirOrNone(runDir); err != nil {
			return fmt.Errorf("--out %w: a run is written into a directory", err)
		}
		if err := checkOutPlace(runDir, "the new run"); err != nil {
			return err
		}
		// (Before the data is read and the engine opened: a GPU's engine
		// checks itself as it opens.)
		if err := train.CheckNewRun(runDir); err != nil {
			return err
		}
	}
	if resume {
		if run, err = resumedRun(cCtx, runDir, opts); err != nil {
			return err
		}
		// The run's device, unless another is asked for: there the run
		// goes on, but its arithmetic differs in the last place (said once
		// the engine is open: the run may be refused there first).
		if run.Device != "" && checkDevice(run.Device) != nil {
			return fmt.Errorf("--resume: %s records the device %q, which dinoclip does not know (an edited run.json?)", filepath.Join(runDir, train.RunFile), run.Device)
		}
		switch {
		case run.Device == "" || run.Device == device:
		case !cCtx.IsSet("device"):
			device, deviceOfRun = run.Device, true
		default:
			otherDevice = fmt.Sprintf("dinoclip: warning: the run in %s trained on %s, and goes on on %s (%s): its arithmetic differs in the last place there, so it will not end with the bits of a run never stopped\n",
				printable.String(runDir), shown(run.Device), device, flagSetting(cCtx, "device", device))
		}
		dataDir, evalDirs = resumeInputs(cCtx, log, run)
		if dataDir == "" {
			return fmt.Errorf("--resume: %s does not say where the training data is: give --data", filepath.Join(runDir, train.RunFile))
		}
		if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) && !cCtx.IsSet("data") {
			return fmt.Errorf("--resume: the run's training data %s is gone: if it was moved, give its new place with --data", dataDir)
		}
		for _, dir := range evalDirs {
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && !cCtx.IsSet("eval") {
				return fmt.Errorf("--resume: the run's evaluation set %s is gone: if it was moved, give the run's sets' new places with --eval", dir)
			}
		}
	}

	if err := checkDir("training data", dataDir); err != nil {
		return err
	}
	data, err := train.OpenDataset(dataDir)
	if err != nil {
		// (dinoclip synth --out DIR puts its training data in DIR/train.)
		switch sub := filepath.Join(dataDir, dataset.TrainDir); {
		case retrieval.HoldsSet(dataDir):
			// (Its images' two files read as a shard, its captions' as a
			// lone half.)
			err = fmt.Errorf("%w: %s is an evaluation set, not training data (--eval takes it)", err, dataDir)
		case !train.HoldsShards(dataDir) && train.HoldsShards(sub):
			err = fmt.Errorf("%w; the shards are in %s (--data %s)", err, sub, printable.ShellArg(sub))
		}
		return err
	}
	defer data.Close()
	warnZeroTargets(cCtx.App.ErrWriter, data)
	warnShardCopies(cCtx.App.ErrWriter, data)
	var evals []*retrieval.Set
	for _, dir := range evalDirs {
		s, err := loadEvalSet(dir, cCtx.App.ErrWriter)
		if err != nil {
			return err
		}
		if s.FeatureDim != data.InputDim || s.EmbeddingDim != data.OutputDim {
			return fmt.Errorf("evaluation set %s is %d -> %d wide, the training data %s %d -> %d",
				dir, s.FeatureDim, s.EmbeddingDim, dataDir, data.InputDim, data.OutputDim)
		}
		evals = append(evals, s)
	}
	if err := checkDistinctNames(evals); err != nil {
		return err
	}

	c := run.Model
	var init *train.InitModel
	// The models the run's vectors come from: the training data's, as its
	// extract.json names them; a fine-tuning run's --init model's where it
	// names none; and a resumed run's own, as its checkpoint records them,
	// whatever the data's say now.
	encoders := extractedEncoders(cCtx.App.ErrWriter, dataDir)
	if resume {
		own := checkpointEncoders(runDir)
		warnEncoders(cCtx.App.ErrWriter, "the run "+runDir, own, "training data "+dataDir, encoders)
		encoders = own.Or(encoders)
	} else {
		if cCtx.IsSet("init") {
			if init, c, err = initModel(cCtx, data); err != nil {
				return err
			}
			warnEncoders(cCtx.App.ErrWriter, "the --init model "+init.Path, init.Encoders, "training data "+dataDir, encoders)
			encoders = encoders.Or(init.Encoders)
		} else if c, err = modelConfig(cCtx, data); err != nil {
			return err
		}
		metric, err := train.ParseMetric(opts.BestMetric, evals)
		if err != nil {
			return fmt.Errorf("--best-metric: %w", err)
		}
		if opts.InfoNCEWeight != 0 && opts.Loss != nn.LossMSEInfoNCE {
			return fmt.Errorf("--infonce-weight with --loss %s: the weight is of the InfoNCE term of --loss %s", opts.Loss, nn.LossMSEInfoNCE)
		}
		if opts.BestFrom == train.BestFromEMA && len(evals) == 0 {
			return fmt.Errorf("--best-from ema picks by an evaluation of the moving average: give --eval sets")
		}
		if opts.BestFrom == train.BestFromEMA && metric.Name == "loss" {
			return fmt.Errorf("--best-from ema with --best-metric loss: the moving average is picked by an evaluation of it, and the training loss is the raw weights': give a recall metric (--best-metric r5, say)")
		}
		if data.Rows < opts.Batch {
			return fmt.Errorf("--batch %d: the training data %s has only %d rows, fewer than one batch", opts.Batch, dataDir, data.Rows)
		}
		spe, total, err := train.Steps(opts.Epochs, data.Rows, opts.Batch)
		if err != nil {
			return fmt.Errorf("--epochs %d: %w", opts.Epochs, err)
		}
		if err := train.NewOneCycle(opts.MaxLR, opts.Epochs, spe).Validate(); err != nil {
			return fmt.Errorf("--epochs %d x %d steps per epoch (%d rows / --batch %d) = %d optimizer steps: %w",
				opts.Epochs, spe, data.Rows, opts.Batch, total, err)
		}
		// Whatever else the trainer refuses of a new run's options, before
		// the engine opens (the checks above say theirs in flags).
		if err := opts.Check(c, data, evals); err != nil {
			return err
		}
	}

	for _, s := range evals {
		warnEncoders(cCtx.App.ErrWriter, "training data "+dataDir, encoders, "evaluation set "+s.Name, s.Encoders)
	}

	// A resumed run's options are the run's, not the flags' defaults.
	runOpts := opts
	if resume {
		runOpts = run.Options
	}
	precision, setting := opts.Precision, precisionSetting(cCtx)
	if resume {
		precision = run.Options.PrecisionMode()
		setting = "its precision " + precision
	}
	if precision, err = devicePrecision(device, precision, setting, true); err != nil {
		if resume {
			return fmt.Errorf("--resume: the run in %s trains in %s: %w (a run resumes in its precision: resume it where that is computed, or %s)",
				runDir, run.Options.PrecisionMode(), err, newRunFrom(runDir))
		}
		return err
	}
	opts.Precision = precision
	if device == "cpu" {
		elemSize := 4
		if precision == train.PrecisionFP64 {
			elemSize = 8
		}
		host := runOpts
		host.Precision = precision
		if err := checkCPUMemory(c, runOpts.Batch, elemSize, nn.Objective{Loss: runOpts.Loss}, host.HostBytes(c, data.Rows),
			"the shuffle, and a checkpoint's copies while it is saved", "--hidden-dim, --blocks or --batch"); err != nil {
			if resume { // (the batch is the run's, not a flag given)
				return fmt.Errorf("--resume: with the settings of %s: %w", filepath.Join(runDir, train.RunFile), err)
			}
			return err
		}
	}
	saved := runOpts
	saved.Precision = precision
	if err := checkRunDisk(cCtx.App.ErrWriter, runDir, c, saved, data.Rows, resume); err != nil {
		return err
	}
	engine, err := openTrainingEngine(device, precision, c)
	if err != nil {
		if deviceOfRun {
			return resumeOpenError(runDir, device, precision, err)
		}
		return err
	}
	fmt.Fprint(cCtx.App.ErrWriter, otherDevice)
	defer engine.Close()
	tr := &train.Trainer{
		Engine:  engine,
		Data:    data,
		Evals:   evals,
		Options: opts,
		RunDir:  runDir,
		Log:     log,
		Init:    init,

		AcceptChangedInputs: cCtx.Bool("accept-changed-inputs"),
		Device:              device,
		Encoders:            encoders,
	}
	if !resume {
		tr.CheckPlace = func() error { return checkOutPlace(runDir, "the new run") }
	}
	if f := terminal(cCtx); f != nil {
		tr.Progress = f
	}
	res, err := tr.Run(cCtx.Context, resume)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			if _, lerr := os.Lstat(filepath.Join(runDir, checkpoint.LastLink)); lerr == nil {
				fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: training stopped; continue it with: dinoclip train --resume --out %s\n", printable.ShellArg(runDir))
			} else {
				fmt.Fprintln(cCtx.App.ErrWriter, "dinoclip: training stopped before its first checkpoint; start it again (the same --out will do)")
			}
		}
		return err
	}
	if res.AlreadyFinished {
		fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: the run in %s had finished before this resume: nothing was trained (a resume goes on with the run as it was started; to train on from its model, start a new run with --init %s --out NEW_RUN)\n",
			printable.String(runDir), printable.ShellArg(runDir))
	}
	return writeTrainSummary(cCtx.App.Writer, runDir, c, res)
}

// resumeOpenError is the error of a resumed run whose engine (on device, in
// precision, as the run trained) did not open: what stands in the way and
// how the run goes on.
func resumeOpenError(runDir, device, precision string, err error) error {
	if precision != train.PrecisionBF16 {
		return fmt.Errorf("--resume: the run in %s trained on %s, and this dinoclip cannot go on there: %w (--device cpu goes on on the CPU, where the run will not end with the bits of one never stopped)", runDir, device, err)
	}
	switch {
	case errors.Is(err, nn.ErrFailedCheck):
		// (It says to use fp32, which a resumed run does not switch to.)
		return fmt.Errorf("--resume: %w (the run trains in bf16, and a run resumes in its precision: to go on in fp32, %s --precision fp32)", err, newRunFrom(runDir))
	case errors.Is(err, errNoCUDA):
		return fmt.Errorf("--resume: the run in %s trained on %s, and this dinoclip cannot go on there: %w (the run trains in bf16, which only the GPU engine computes: resume it with a build that has it)", runDir, device, err)
	}
	return fmt.Errorf("--resume: the run in %s trained on %s in bf16: %w", runDir, device, err)
}

// newRunFrom is the advice to go on from the run in runDir as a new run,
// in another precision or on another device: from its last link, or from
// the checkpoint a killed run saved without linking it (which a resume
// links first; an --init reads what is there).
func newRunFrom(runDir string) string {
	last := filepath.Join(runDir, checkpoint.LastLink)
	if pending := train.PendingLastLink(runDir); pending != "" {
		last = filepath.Join(runDir, pending)
	}
	return fmt.Sprintf("start a new run from its last checkpoint: dinoclip train --init %s --out NEW_RUN ...", printable.ShellArg(last))
}

// openTrainingEngine is openEngine, or the float64 CPU engine for an fp64
// run (precision resolved by devicePrecision).
func openTrainingEngine(device, precision string, c nn.Config) (nn.Engine, error) {
	if precision != train.PrecisionFP64 {
		return openEngine(device, precision, c)
	}
	// (fp64 is the CPU's: devicePrecision refused it elsewhere.)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	return nn.NewCPUEngine[float64](c)
}

// loadEvalSet loads an evaluation set directory, checking first that it
// is one.
func loadEvalSet(dir string, warn io.Writer) (*retrieval.Set, error) {
	if err := checkDir("evaluation set", dir); err != nil {
		if _, serr := os.Stat(dir); strings.Contains(dir, ",") && errors.Is(serr, os.ErrNotExist) {
			// (--eval takes one set a time: a comma is part of a name.)
			err = fmt.Errorf("%w (for several sets, repeat --eval, one set each, or list them in the --config file, eval: [A, B]; DINOCLIP_EVAL names one)", err)
		}
		return nil, err
	}
	s, err := retrieval.LoadSet(dir)
	if err != nil {
		return nil, err
	}
	for _, w := range s.Warnings {
		fmt.Fprintf(warn, "dinoclip: warning: %s\n", printable.String(w))
	}
	return s, nil
}

// checkDistinctNames refuses two evaluation sets of the same name: their
// results and the best metric would be ambiguous.
func checkDistinctNames(sets []*retrieval.Set) error {
	seen := map[string]string{}
	for _, s := range sets {
		if d, ok := seen[s.Name]; ok {
			if atomicfile.SameFile(d, s.Dir) {
				return fmt.Errorf("evaluation set %s is given twice (as %s and %s): give each set once", shown(s.Name), d, s.Dir)
			}
			return fmt.Errorf("evaluation sets %s and %s are both named %q (set \"name\" in one's eval.json)", d, s.Dir, s.Name)
		}
		seen[s.Name] = s.Dir
	}
	return nil
}

// modelConfig is the model shape of a new run: the flags, with the input
// and output widths taken from the data unless given (and then checked
// against it).
func modelConfig(cCtx *cli.Context, data *train.Dataset) (nn.Config, error) {
	c := nn.Config{InputDim: data.InputDim, HiddenDim: cCtx.Int("hidden-dim"), OutputDim: data.OutputDim, Blocks: cCtx.Int("blocks")}
	if n := cCtx.Int("input-dim"); n != 0 && n != data.InputDim {
		return c, fmt.Errorf("--input-dim %d: the training data %s has %d-wide features (%s)", n, data.Dir, data.InputDim, train.FeatureSuffix)
	}
	if n := cCtx.Int("output-dim"); n != 0 && n != data.OutputDim {
		return c, fmt.Errorf("--output-dim %d: the training data %s has %d-wide targets (%s)", n, data.Dir, data.OutputDim, train.TargetSuffix)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("model: %w", err)
	}
	return c, nil
}

// checkpointEncoders is what the model of the run's last checkpoint
// records of the models its data came from (its header alone); none
// where it cannot be read (the resume says why).
func checkpointEncoders(runDir string) dataset.Encoders {
	f, err := safetensors.Open(filepath.Join(runDir, checkpoint.LastLink, checkpoint.ModelFile))
	if err != nil {
		return dataset.Encoders{}
	}
	defer f.Close()
	return dataset.EncodersOf(f.Metadata())
}

// initModel reads the model of --init: its weights and its shape, which
// shape flags given explicitly and the training data must agree with.
func initModel(cCtx *cli.Context, data *train.Dataset) (*train.InitModel, nn.Config, error) {
	path, err := resolveModel(cCtx.String("init"))
	if err != nil {
		return nil, nn.Config{}, fmt.Errorf("--init: %w", err)
	}
	m, err := checkpoint.ReadModel(path)
	if err != nil {
		return nil, nn.Config{}, fmt.Errorf("--init: %w", err)
	}
	c := m.Config
	for _, s := range []struct {
		flag  string
		model int
	}{{"input-dim", c.InputDim}, {"hidden-dim", c.HiddenDim}, {"output-dim", c.OutputDim}, {"blocks", c.Blocks}} {
		if cCtx.IsSet(s.flag) && cCtx.Int(s.flag) != s.model {
			return nil, c, fmt.Errorf("--init: --%s %d, but the model %s has %d (it is %v); a fine-tuning run takes its shape from the model, so drop --%s",
				s.flag, cCtx.Int(s.flag), path, s.model, c, s.flag)
		}
	}
	if c.InputDim != data.InputDim || c.OutputDim != data.OutputDim {
		return nil, c, fmt.Errorf("--init: the model %s maps %d -> %d, but the training data %s is %d -> %d (%s -> %s)",
			path, c.InputDim, c.OutputDim, data.Dir, data.InputDim, data.OutputDim, train.FeatureSuffix, train.TargetSuffix)
	}
	return &train.InitModel{Path: path, Params: m.Params, Encoders: dataset.EncodersOf(m.Meta)}, c, nil
}

// resumedRun reads the run.json of the run to resume. Shape and option
// flags given explicitly must agree with the run: a resumed run continues
// as it was started (more epochs, say, would change its learning-rate
// schedule from the first step).
func resumedRun(cCtx *cli.Context, runDir string, opts train.Options) (train.RunInfo, error) {
	if err := train.CheckResumable(runDir); err != nil {
		return train.RunInfo{}, fmt.Errorf("--resume: %w", err)
	}
	run, err := train.ReadRunInfo(runDir)
	if err != nil {
		return run, fmt.Errorf("--resume: %w", err)
	}
	// Every run.json records its options ({} or null was read as one from
	// before the model was recorded, and asked for --data).
	if run.Options.Epochs == 0 && run.Options.Batch == 0 {
		return run, fmt.Errorf("--resume: %s holds none of the run's settings (it is empty or damaged): restore it from a copy, or start a new run", filepath.Join(runDir, train.RunFile))
	}
	if run.Model == (nn.Config{}) { // a run.json from before it recorded the model
		if run.Model, err = train.ModelConfigOf(runDir); err != nil {
			return run, fmt.Errorf("--resume: %w", err)
		}
	}
	c := run.Model
	if err := c.Validate(); err != nil {
		return run, fmt.Errorf("--resume: %s: model: %w", filepath.Join(runDir, train.RunFile), err)
	}
	shape := []struct {
		flag string
		run  int
	}{{"input-dim", c.InputDim}, {"hidden-dim", c.HiddenDim}, {"output-dim", c.OutputDim}, {"blocks", c.Blocks}}
	for _, s := range shape {
		if cCtx.IsSet(s.flag) && cCtx.Int(s.flag) != s.run {
			return run, fmt.Errorf("--resume: %s, but the run in %s has %d (its model is %v)", flagSetting(cCtx, s.flag, cCtx.Int(s.flag)), runDir, s.run, c)
		}
	}
	ro := run.Options
	runMetric := ro.BestMetric
	if runMetric == "" && run.Evals != nil { // (nil: a run.json from before it recorded the sets)
		runMetric = train.DefaultMetric(len(run.Evals))
	}
	type opt struct {
		flag      string
		set, want any
	}
	for _, o := range []opt{
		{"epochs", opts.Epochs, ro.Epochs}, {"batch", opts.Batch, ro.Batch}, {"lr", opts.MaxLR, ro.MaxLR},
		{"weight-decay", opts.AdamW.WeightDecay, ro.AdamW.WeightDecay}, {"seed", opts.Seed, ro.Seed},
		{"checkpoint-every", opts.CheckpointEvery, ro.CheckpointEvery}, {"keep", opts.Keep, ro.Keep},
		{"best-metric", opts.BestMetric, runMetric}, {"log-every", opts.LogEvery, ro.LogEvery},
		{"resident", opts.Resident, ro.ResidentMode()}, {"precision", opts.Precision, ro.PrecisionMode()},
		{"ema", opts.EMA, ro.EMA}, {"best-from", opts.BestFrom, ro.BestFromMode()},
		{"loss", opts.Loss, ro.LossName()}, {"infonce-weight", opts.InfoNCEWeight, ro.InfoNCEWeight},
	} {
		if !cCtx.IsSet(o.flag) || o.set == o.want {
			continue
		}
		// (A 0 that stands for none is said as none.)
		started := fmt.Sprintf("was started with %v", o.want)
		switch {
		case o.flag == "infonce-weight" && ro.LossName() != nn.LossMSEInfoNCE:
			started = fmt.Sprintf("trains with the loss %s, which has no InfoNCE weight (the weight is of the InfoNCE term of --loss %s)", ro.LossName(), nn.LossMSEInfoNCE)
		case o.flag == "ema" && ro.EMA == 0:
			started = "was started without a moving average of the weights"
		}
		return run, fmt.Errorf("--resume: %s, but the run in %s %s, and a resumed run keeps its options (start a new run with another --out to change them)",
			flagSetting(cCtx, o.flag, o.set), runDir, started)
	}
	return run, nil
}

// resumeInputs are the training data and evaluation sets of a resumed
// run: the ones in run.json, or the --data and --eval given, which may
// name the same data at a new place (the trainer checks that they are the
// run's: the same shape of data, sets of the same names). A new place is
// said in the log.
func resumeInputs(cCtx *cli.Context, log *slog.Logger, run train.RunInfo) (string, []string) {
	dataDir := run.DataDir
	if cCtx.IsSet("data") {
		dataDir = cCtx.String("data")
		if abs, _ := filepath.Abs(dataDir); abs != run.DataDir && run.DataDir != "" {
			log.Info("training data given by --data instead of the run's", "data", dataDir, "run_data", run.DataDir)
		}
	}
	var evalDirs []string
	for _, e := range run.Evals {
		evalDirs = append(evalDirs, e.Dir)
	}
	if cCtx.IsSet("eval") {
		given := cCtx.StringSlice("eval")
		abs := make([]string, len(given))
		for i, d := range given {
			abs[i], _ = filepath.Abs(d)
		}
		if !slices.Equal(abs, evalDirs) {
			log.Info("evaluation sets given by --eval instead of the run's", "eval", given, "run_eval", evalDirs)
		}
		evalDirs = given
	}
	return dataDir, evalDirs
}

// writeTrainSummary prints what a finished run reached: the last
// evaluation, and the best checkpoint with its own evaluation when it is
// another.
func writeTrainSummary(w io.Writer, runDir string, c nn.Config, res train.Result) error {
	st := res.State
	fmt.Fprintf(w, "trained %s: %s, %s, in %s\n",
		c.Describe(), plural.Count(st.Epoch, "epoch", "epochs"), plural.Count(st.Step, "optimizer step", "optimizer steps"), printable.String(runDir))
	// A run whose best is picked by the moving average of its weights is
	// that average: its evaluations are the ones shown (those of the raw
	// weights are in metrics.jsonl).
	ema := st.Options.BestFromMode() == train.BestFromEMA
	reports, of := res.Reports, ""
	if ema {
		reports, of = res.EMAReports, " of the moving average of the weights"
	}
	if len(reports) > 0 {
		fmt.Fprintf(w, "\nevaluation%s after epoch %d (step %d):\n", of, st.Epoch, st.Step)
		if err := writeRecallTable(w, reports); err != nil {
			return err
		}
	}
	if st.Best == nil {
		fmt.Fprintf(w, "\nlast checkpoint: %s\n", printable.String(filepath.Join(runDir, checkpoint.LastLink)))
		return nil
	}
	b := st.Best
	if _, err := os.Stat(filepath.Join(runDir, b.Checkpoint)); err != nil {
		// Pruned before the run was pointed back to an older checkpoint
		// by hand (see train's alignBest): its evaluation is all that is left.
		fmt.Fprintf(w, "\nbest checkpoint: %s is gone; last checkpoint: %s\n", printable.String(filepath.Join(runDir, b.Checkpoint)), printable.String(filepath.Join(runDir, checkpoint.LastLink)))
	} else {
		fmt.Fprintf(w, "\nbest checkpoint: %s (%s)\n", printable.String(filepath.Join(runDir, b.Checkpoint)), printable.String(filepath.Join(runDir, checkpoint.BestLink)))
		if ema {
			// (Its model.safetensors holds the raw weights, which this
			// value is not of.)
			fmt.Fprintf(w, "  its model: %s, the moving average of the weights (--model %s reads it)\n",
				printable.String(filepath.Join(runDir, checkpoint.BestLink, checkpoint.EMAFile)), printable.ShellArg(runDir))
		}
	}
	fmt.Fprintf(w, "  %s = %.6g after epoch %d (step %d)\n", b.Metric, b.Value, b.Epoch, b.Step)
	if b.Step != st.Step {
		if reports := evalAt(runDir, b.Step, ema); len(reports) > 0 {
			fmt.Fprintf(w, "\nevaluation%s of the best checkpoint:\n", of)
			return writeRecallTable(w, reports)
		}
	}
	return nil
}

// evalAt reads the evaluation recorded at step from the run's
// metrics.jsonl, of the moving average of the weights when ema is true;
// nil if there is none, or the file cannot be read to its end.
func evalAt(runDir string, step int, ema bool) []retrieval.Report {
	var found []retrieval.Report
	err := train.ScanMetricsFile(filepath.Join(runDir, train.MetricsFile), func(line []byte) error {
		var rec struct {
			Type string             `json:"type"`
			Step int                `json:"step"`
			Sets []retrieval.Report `json:"sets"`
			EMA  struct {
				Sets []retrieval.Report `json:"sets"`
			} `json:"ema"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Type == "eval" && rec.Step == step {
			found = rec.Sets
			if ema {
				found = rec.EMA.Sets
			}
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return found
}

// checkRunDisk refuses a run whose checkpoints' disk cannot take one
// checkpoint, and warns of a new one whose disk cannot take as many as it
// keeps, of those it saves in all (rows of training data at o.Batch a
// step): the first checkpoint comes an epoch in (or --checkpoint-every
// steps), and a full disk stopped the run there, the epoch's work lost.
func checkRunDisk(w io.Writer, runDir string, c nn.Config, o train.Options, rows int, resume bool) error {
	dir := madedirs.Existing(filepath.Join(runDir, train.CheckpointsDir))
	free, ok := diskFree(dir)
	if !ok {
		return nil
	}
	one := o.CheckpointBytes(c)
	if one > float64(free) {
		stop, remedy := "the run would stop at its first checkpoint", "free space, or train elsewhere"
		if resume {
			stop, remedy = "the resumed run would stop at its next checkpoint", "free space, or move the run to a larger disk"
		}
		return fmt.Errorf("a checkpoint of the model (%s) takes about %s on disk, more than the %s free under %s: %s; %s", c.Describe(), sizeText(one), sizeText(float64(free)), dir, stop, remedy)
	}
	// --keep step checkpoints, last and best, and the one being saved;
	// no more than the run saves (a large --keep, to keep them all, was
	// warned of hundreds). (In float64: counts that overflow an int.)
	saves := float64(o.CheckpointsSaved(rows))
	if n := min(float64(o.Keep)+3, saves); !resume && n*one > float64(free) {
		fmt.Fprintf(w, "dinoclip: warning: a checkpoint of the model takes about %s on disk and the run holds up to %.0f at once (--keep %d, last, best and the one being saved, of the %.0f it saves: %s), but %s is free under %s: it will stop at a checkpoint once the disk is full; free space, or lower --keep\n",
			sizeText(one), n, o.Keep, saves, sizeText(n*one), sizeText(float64(free)), printable.String(dir))
	}
	return nil
}

// warnShardCopies warns of shards that are links to an earlier shard's
// files: their rows are trained on twice each epoch, which a set linked
// together from others does by mistake (a deliberate weighting goes on,
// warned).
func warnShardCopies(w io.Writer, data *train.Dataset) {
	copies := data.Copies()
	if len(copies) == 0 {
		return
	}
	var list []string
	for _, c := range copies[:min(len(copies), 5)] {
		list = append(list, fmt.Sprintf("%s is %s", c[0], c[1]))
	}
	if len(copies) > 5 {
		list = append(list, fmt.Sprintf("and %d more", len(copies)-5))
	}
	fmt.Fprintf(w, "dinoclip: warning: training data %s: %s to the files of an earlier shard (%s): their rows are trained on twice each epoch\n", printable.String(data.Dir), plural.Count(len(copies), "shard is a link", "shards are links"), printable.String(strings.Join(list, ", ")))
}

// zeroTargetSample is how many rows, the set's first, warnZeroTargets reads.
const zeroTargetSample = 4096

// warnZeroTargets warns when the first rows of the training data have all
// zero targets (embeddings never written, say), or all shorter than
// F.normalize's 1e-12 (embeddings of another scale): normalised, such a
// target is (next to) zero, its loss the same whatever the model outputs,
// and such a run trained without a word, its loss constant. (A set with
// some such rows is not warned of; a read error is the run's to report.)
func warnZeroTargets(w io.Writer, data *train.Dataset) {
	n := min(data.Rows, zeroTargetSample)
	rows := make([]int32, n)
	for i := range rows {
		rows[i] = int32(i)
	}
	x, t := make([]float32, n*data.InputDim), make([]float32, n*data.OutputDim)
	if err := data.ReadRows(rows, x, t); err != nil || len(retrieval.TinyRows(t, data.OutputDim)) < n {
		return
	}
	what := "are all zero vectors: a zero target's loss"
	if len(retrieval.ZeroRows(t, data.OutputDim)) < n {
		what = fmt.Sprintf("are all shorter than 1e-12 (values of at most %.3g): normalisation divides them by 1e-12 (as PyTorch's F.normalize), which leaves them next to zero, and such a target's loss", retrieval.MaxAbs(t))
	}
	fmt.Fprintf(w, "dinoclip: warning: training data %s: its first %d targets %s is the same whatever the model outputs, so they teach it nothing (were the CLIP embeddings written, and at their own scale?)\n", printable.String(data.Dir), n, what)
}
