package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/synth"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

// checkSynthPlace refuses an output directory out that synth's sets
// would be written into a run or an index through: out itself, or its
// train or eval directory (an index copied there, a run made there).
func checkSynthPlace(out string) error {
	for _, dir := range []string{out, filepath.Join(out, dataset.TrainDir), filepath.Join(out, dataset.EvalDir)} {
		if err := checkIntoPlace("--out", dir, "the synthetic data"); err != nil {
			return err
		}
	}
	return nil
}

// synthEvalName is the name of the evaluation set synth writes. It is fixed
// because the set's images are drawn from streams named after it.
const synthEvalName = "synth"

// maxSynthSettings caps what is read of a dataset.UnfinishedFile: a
// record of synthJob.settings is far shorter.
const maxSynthSettings = 4096

// readSynthMarker returns the content of the dataset.UnfinishedFile marker
// ("" when there is none). Anything but a regular file there (a link, a
// named pipe, a directory) is refused before it is read or written
// through: synth writes that name, and a link would have it overwrite
// another file, a pipe have it wait forever.
func readSynthMarker(marker string) (string, error) {
	notOurs := func(what string) error {
		return fmt.Errorf("synth: %s is %s, not the file in which dinoclip synth records an unfinished run; remove it and run again", marker, what)
	}
	f, err := atomicfile.OpenRegular(marker, os.O_RDONLY, 0)
	if nr := (*atomicfile.NotRegularError)(nil); errors.As(err, &nr) {
		return "", notOurs(nr.Kind)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("synth: %w", err)
	}
	defer f.Close()
	b, err := atomicfile.ReadAtMost(f, maxSynthSettings)
	if tl := (*atomicfile.TooLargeError)(nil); errors.As(err, &tl) {
		return "", notOurs(err.Error())
	}
	if err != nil {
		return "", fmt.Errorf("synth: %w", err)
	}
	return string(b), nil
}

// A synthJob is what dinoclip synth (and demo, through it) writes under
// its output: training data of rows rows in shards of shardRows, in
// float16 or float32, and an evaluation set of images images with
// perImage captions each, of the world of opts.
type synthJob struct {
	opts             synth.Options
	rows, shardRows  int
	float16          bool
	images, perImage int
	// writing, when not nil, is called as the training data begins to be
	// written: once every check passed, and after every line said before.
	writing func()
}

// settings is the content of dataset.UnfinishedFile while the job is
// written: every setting that changes what is written (opts.Overwrite
// does not). A run that finds its own settings there goes on from an
// interrupted run: the sets it left are replaced without overwrite.
func (j synthJob) settings() string {
	return fmt.Sprintf("dinoclip synth unfinished: rows=%d shard_rows=%d float16=%t seed=%d input_dim=%d output_dim=%d latent_shift=%v eval_images=%d captions_per_image=%d\n",
		j.rows, j.shardRows, j.float16, j.opts.Seed, j.opts.InputDim, j.opts.OutputDim, j.opts.LatentShift, j.images, j.perImage)
}

// synthEnvVar is the environment variable of synth's flag name:
// DINOCLIP_SYNTH_NAME (commandEnvVar).
func synthEnvVar(name string) []string { return commandEnvVar("synth", name) }

// The sizes of what dinoclip synth writes by default, which the demo
// writes too.
const (
	synthDefaultRows             = 20000
	synthDefaultShardRows        = 10000
	synthDefaultEvalImages       = 1000
	synthDefaultCaptionsPerImage = 5
)

func synthCommand() *cli.Command {
	sizeFlag := func(name, usage string, value int) cli.Flag {
		return &cli.IntFlag{Name: name, Usage: usage, Value: value, EnvVars: synthEnvVar(name), Base: 10}
	}
	return &cli.Command{
		Name:  "synth",
		Usage: "write synthetic training data and an evaluation set (no real features needed)",
		UsageText: "dinoclip synth --out DIR [--rows N] [--shard-rows N] [--eval-images N] [--captions-per-image N]\n" +
			"   [--seed N] [--input-dim N] [--output-dim N] [--latent-shift X] [--float16] [--force]",
		Description: "Writes DIR/train (training shards) and DIR/eval (an evaluation set named \"synth\") in the formats\n" +
			"of docs/FORMAT.md, with the real shapes, but made up: each image is a random latent vector; its\n" +
			"\"DINOv2 feature\" is a fixed random map of it, and its \"CLIP embedding\" a different, hidden,\n" +
			"nonlinear map of it (a random MLP), each plus noise; its captions are its CLIP embedding moved\n" +
			"towards images of similar content, plus noise, at CLIP text-embedding norms. So a projector has\n" +
			"a nonlinear map to learn, and retrieval has a meaningful answer: CLIP's own text-to-image R@1 on\n" +
			"the default evaluation set is about 60%, near CLIP ViT-B/16's on Flickr30k.\n\n" +
			"Use it to try training, evaluation and the GPU engine end to end, to benchmark, and to test:\n" +
			"without DINOv2, CLIP or a captioned image collection at hand. Numbers measured on it say\n" +
			"nothing about real data.\n\n" +
			"The same flags write the same bytes on every machine. The seed fixes the hidden maps, so\n" +
			"training data and evaluation sets of one seed belong together; the evaluation images are not\n" +
			"training images. Training rows do not depend on --shard-rows, and fewer rows are a prefix of\n" +
			"more. --float16 stores the training shards as float16 (the evaluation set is always float32).\n" +
			"--latent-shift X writes a shifted domain of the seed's world: the same feature map and teacher,\n" +
			"images drawn around another point of the latent space (a model trained at shift 0 extrapolates\n" +
			"there; train --init fine-tunes it on the shifted data).\n" +
			"An existing data set in DIR/train or DIR/eval is refused unless --force is given; --force\n" +
			"replaces every *.dino.npy and *.clip.npy in DIR/train, so no old shard is read with the new\n" +
			"ones. Each set is written apart (in a hidden .train.synth.tmp-N or .eval.synth.tmp-N beside\n" +
			"it) and put in place in one step once whole, so a reader never sees part of one, and an\n" +
			"interrupted or failed run leaves the old set as it was (not where DIR/train or DIR/eval is a\n" +
			"mount point or its parent cannot be written: then the set is written inside it and the files\n" +
			"moved in one by one, and a failed --force run leaves no old set); run the same command again\n" +
			"to go on from an interrupted one (it is not refused). Each flag can also be set with\n" +
			"DINOCLIP_SYNTH_<FLAG> (for example DINOCLIP_SYNTH_ROWS).\n\n" +
			"Example:\n" +
			"   dinoclip synth --out /tmp/synth --rows 100000\n" +
			"   dinoclip train --data /tmp/synth/train --eval /tmp/synth/eval --out runs/synth",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "write the data under `DIR` (DIR/train and DIR/eval)", EnvVars: synthEnvVar("out")},
			sizeFlag("rows", "`N` training rows (images) to write", synthDefaultRows),
			sizeFlag("shard-rows", "`N` rows per training shard (the last shard may be shorter)", synthDefaultShardRows),
			sizeFlag("eval-images", "`N` images in the evaluation set", synthDefaultEvalImages),
			sizeFlag("captions-per-image", "`N` captions of each evaluation image", synthDefaultCaptionsPerImage),
			&cli.Uint64Flag{Name: "seed", Usage: "seed `N` of the synthetic world and of every random draw in it", EnvVars: synthEnvVar("seed"), Base: 10},
			sizeFlag("input-dim", fmt.Sprintf("width `N` of the DINOv2 features (1 to %d)", synth.MaxDim), synth.DefaultInputDim),
			sizeFlag("output-dim", fmt.Sprintf("width `N` of the CLIP embeddings (1 to %d)", synth.MaxDim), synth.DefaultOutputDim),
			&cli.Float64Flag{Name: "latent-shift", Usage: fmt.Sprintf("move the images' latent vectors by `X` standard deviations (-%d to %d) along a direction the seed fixes: a shifted domain of the same world (same feature map and teacher), e.g. to try fine-tuning with train --init", synth.MaxLatentShift, synth.MaxLatentShift), EnvVars: synthEnvVar("latent-shift")},
			&cli.BoolFlag{Name: "float16", Usage: "store the training shards as float16 instead of float32", EnvVars: synthEnvVar("float16")},
			&cli.BoolFlag{Name: "force", Usage: "replace a data set already in DIR/train or DIR/eval", EnvVars: synthEnvVar("force")},
		},
		OnUsageError: usageError,
		Action:       runSynth,
	}
}

func runSynth(cCtx *cli.Context) error {
	if err := noArgs(cCtx); err != nil {
		return err
	}
	out, err := atomicfile.ResolveDotDotOut(cCtx.String("out")) // (LINK/.. as the system takes it)
	if err != nil {
		return fmt.Errorf("synth: --out: %w", err)
	}
	if out == "" {
		return fmt.Errorf("synth: missing --out (or %s); see 'dinoclip synth --help'", synthEnvVar("out")[0])
	}
	for _, f := range []string{"rows", "shard-rows", "eval-images", "captions-per-image", "input-dim", "output-dim"} {
		if err := checkAtLeast(f, cCtx.Int(f), 1); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	opts := synth.DefaultOptions()
	opts.Seed = cCtx.Uint64("seed")
	opts.InputDim = cCtx.Int("input-dim")
	opts.OutputDim = cCtx.Int("output-dim")
	opts.Overwrite = cCtx.Bool("force")
	opts.LatentShift = cCtx.Float64("latent-shift")
	job := synthJob{opts: opts, rows: cCtx.Int("rows"), shardRows: cCtx.Int("shard-rows"), float16: cCtx.Bool("float16"),
		images: cCtx.Int("eval-images"), perImage: cCtx.Int("captions-per-image")}
	if job.rows > job.shardRows {
		var bar *countBar
		job.writing = func() { bar = newCountBar(cCtx, int64(job.rows), "synthesising", "rows", true) }
		defer func() { bar.finish() }()
		job.opts.Progress = func(rows int) { bar.set(int64(rows)) }
	}
	start := time.Now()
	unlock, err := synthesise(cCtx.Context, cCtx.App.Writer, cCtx.App.ErrWriter, out, job)
	if err != nil {
		return err
	}
	unlock()
	fmt.Fprintf(cCtx.App.Writer, "done in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// synthesise writes job's training data and evaluation set into
// out/dataset.TrainDir and out/dataset.EvalDir, saying what it wrote on w
// and what it removed of killed runs on errW. It holds out's lock
// (synth.LockDir), so that another synth or demo into out is refused, and
// keeps dataset.UnfinishedFile in out until both sets are written, so
// that readers refuse them while they may not belong together (a run
// killed between them). It returns with out still locked, until unlock: a
// caller that goes on to read the sets (demo) keeps a synth from
// replacing them meanwhile.
func synthesise(ctx context.Context, w, errW io.Writer, out string, job synthJob) (unlock func(), err error) {
	job.opts.Log = errW
	if err := checkSynthJob(out, job); err != nil {
		return nil, err
	}
	// The whole output, training data and evaluation set, is one run's:
	// another synth into it waits for no step of this one.
	unlock, err = synth.LockDir(out)
	if err != nil {
		return nil, err
	}
	// Again under the lock: a run started in out meanwhile holds its own
	// lock on it, or has made its files there.
	if err := checkSynthPlace(out); err != nil {
		unlock()
		return nil, err
	}
	if err := writeSynthSets(ctx, w, errW, out, job); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// checkSynthJob refuses a job into out before anything is made (a refusal
// after it would leave a half-made output, or a new empty directory,
// behind): its options, both sets' sizes, directories that are none, sets
// already there, the memory and disk they take, and the place. (Sets
// already there first: a run told to free disk for them was refused for
// them next.)
func checkSynthJob(out string, job synthJob) error {
	if err := job.opts.Validate(); err != nil {
		return err
	}
	if err := synth.CheckEvalSet(job.opts, synthEvalName, job.images, job.perImage); err != nil {
		return err
	}
	if err := synth.CheckTrainingSizes(filepath.Join(out, dataset.TrainDir), job.opts, job.rows, job.shardRows); err != nil {
		return err
	}
	if err := checkDirOrNone(out); err != nil {
		return fmt.Errorf("synth: --out %w: the data is written into a directory", err)
	}
	for _, dir := range []string{dataset.TrainDir, dataset.EvalDir} {
		if err := checkDirOrNone(filepath.Join(out, dir)); err != nil {
			return fmt.Errorf("synth: %w: a set is written into a directory", err)
		}
	}
	recorded, err := readSynthMarker(filepath.Join(out, dataset.UnfinishedFile))
	if err != nil {
		return err
	}
	if _, err := checkSynthSets(out, job, recorded); err != nil {
		return err
	}
	if err := checkSynthResources(out, job); err != nil {
		return err
	}
	if err := checkSynthTargets(out, job); err != nil {
		return err
	}
	return checkSynthPlace(out)
}

// checkSynthTargets refuses a directory where the job puts a file of its
// sets: it failed the set's last step (a rename replaces a file or a link,
// not a directory), after all the work, and every rerun (--force too) the
// same way.
func checkSynthTargets(out string, job synthJob) error {
	check := func(dir, name string) error {
		p := filepath.Join(out, dir, name)
		if st, err := os.Lstat(p); err == nil && st.IsDir() {
			return fmt.Errorf("synth: %s is a directory, where the set's file of that name goes: remove it, or write elsewhere", p)
		}
		return nil
	}
	for i := range (job.rows + job.shardRows - 1) / job.shardRows {
		for _, suffix := range []string{dataset.FeatureSuffix, dataset.TargetSuffix} {
			if err := check(dataset.TrainDir, synth.ShardName(i)+suffix); err != nil {
				return err
			}
		}
	}
	for _, name := range []string{dataset.ImageFeaturesFile, dataset.ImageCLIPFile, dataset.CaptionCLIPFile, dataset.CaptionImageFile, dataset.EvalInfoFile} {
		if err := check(dataset.EvalDir, name); err != nil {
			return err
		}
	}
	return nil
}

// checkSynthSets refuses sets in out that job may not replace, where
// recorded is the content of out's dataset.UnfinishedFile, and returns the
// options job's sets are written with: an unfinished run of the job's own
// settings (killed, say, between the two sets) is gone on with, what it
// wrote being what this run writes, and so replaced without overwrite.
// Both sets are checked before either is written: a refusal of the second
// would leave the first written.
func checkSynthSets(out string, job synthJob, recorded string) (synth.Options, error) {
	opts := job.opts
	if recorded == job.settings() {
		opts.Overwrite = true
	}
	if err := synth.CheckTrainingData(filepath.Join(out, dataset.TrainDir), opts, job.rows, job.shardRows); err != nil {
		return opts, err
	}
	return opts, synth.CheckEvalDir(filepath.Join(out, dataset.EvalDir), opts.Overwrite)
}

// writeSynthSets is synthesise's work once it holds out's lock.
func writeSynthSets(ctx context.Context, w, errW io.Writer, out string, job synthJob) error {
	trainDir, evalDir := filepath.Join(out, dataset.TrainDir), filepath.Join(out, dataset.EvalDir)
	marker := filepath.Join(out, dataset.UnfinishedFile)
	settings := job.settings()
	sweepLeftovers(errW, marker, nil) // (a run killed while writing the marker)
	recorded, err := readSynthMarker(marker)
	if err != nil {
		return err
	}
	opts, err := checkSynthSets(out, job, recorded)
	if err != nil {
		return err
	}
	if recorded == settings {
		fmt.Fprintf(w, "going on from an interrupted dinoclip synth of the same settings in %s\n", printable.String(out))
	}
	// A new marker goes with a process ended at once (Ctrl-\) until the
	// training data is put in place, as it goes on a failed or cancelled
	// write, with the staging directory: until then the sets are as they
	// were. (A marker that was there stays: the sets it flags are
	// unfinished still.)
	forgetMarker := func() {}
	if recorded == "" {
		forgetMarker, err = atomicfile.WriteBytesRemovedOnExit(marker, []byte(settings))
	} else {
		err = atomicfile.WriteBytes(marker, []byte(settings))
	}
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	defer forgetMarker()
	opts.Publishing = forgetMarker
	if job.writing != nil {
		job.writing()
	}
	files, err := synth.WriteTrainingDataContext(ctx, trainDir, opts, job.rows, job.shardRows, job.float16)
	if err != nil {
		// The training data is as it was (a failed or cancelled write
		// publishes nothing), and so is the evaluation set: the marker
		// too, or readers would refuse the sets this run never touched.
		if recorded == "" {
			os.Remove(marker)
		} else {
			atomicfile.WriteBytes(marker, []byte(recorded))
		}
		return err
	}
	shifted := ""
	if opts.LatentShift != 0 {
		shifted = fmt.Sprintf(", latent shift %g", opts.LatentShift)
	}
	fmt.Fprintf(w, "training data: %d rows in %s, %d -> %d, seed %d%s, in %s\n",
		job.rows, plural.Count(len(files)/2, "shard", "shards"), opts.InputDim, opts.OutputDim, opts.Seed, shifted, printable.String(trainDir))
	printSynthFiles(w, files)
	if err := ctx.Err(); err != nil {
		return err
	}

	files, err = synth.WriteEvalSet(evalDir, opts, job.images, job.perImage, synthEvalName)
	if err != nil {
		// (The two sets no longer belong together: the marker stays, and
		// readers refuse them, until a run of the same settings ends.)
		return fmt.Errorf("%w; the training data in %s is this run's, its evaluation set in %s is yet to be written (%s marks the pair unfinished, which train and eval refuse): once the problem is fixed, run the same command again",
			err, trainDir, evalDir, dataset.UnfinishedFile)
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	atomicfile.SyncDir(out)
	fmt.Fprintf(w, "evaluation set %q: %d images, %d captions (%d per image), in %s\n",
		synth.EvalSetName(synthEvalName, opts), job.images, job.images*job.perImage, job.perImage, printable.String(evalDir))
	printSynthFiles(w, files)
	return nil
}

// printSynthFiles lists the files written, one a line; a long list of shards
// is cut to its first and last two.
func printSynthFiles(w io.Writer, files []synth.File) {
	const head, tail = 2, 2
	for i, f := range files {
		if len(files) > head+tail+2 && i >= head && i < len(files)-tail {
			if i == head {
				fmt.Fprintf(w, "  ... %d more files\n", len(files)-head-tail)
			}
			continue
		}
		if f.Shape == nil { // eval.json
			fmt.Fprintf(w, "  %s\n", printable.String(f.Path))
			continue
		}
		fmt.Fprintf(w, "  %s  %s %s\n", printable.String(f.Path), shapeString(f.Shape), f.DType.Name())
	}
}

// checkSynthResources refuses a job this machine cannot hold: shards or an
// evaluation set beyond the memory left (it ended out of memory partway),
// or an output beyond the free disk under out (it filled the disk an hour
// in), or more rows than a training run takes.
func checkSynthResources(out string, job synthJob) error {
	if job.rows > train.MaxRows {
		return fmt.Errorf("synth: --rows %d: more than the %d rows a training run takes", job.rows, train.MaxRows)
	}
	shardRows := min(job.shardRows, job.rows)
	if avail, ok := memAvailable(); ok {
		if need := synth.MemoryBytes(job.opts, shardRows, job.images, job.perImage); need > float64(avail) {
			return fmt.Errorf("synth: %d-row shards of %d + %d values a row and an evaluation set of %d images x %d captions need about %s of memory at once, more than the %s available: write smaller shards, or a smaller evaluation set",
				shardRows, job.opts.InputDim, job.opts.OutputDim, job.images, job.perImage, sizeText(need), sizeText(float64(avail)))
		}
	}
	// Each set ends on its own directory's filesystem (staged beside it,
	// or inside it where it is a mount point); both on one, their sum
	// counts. (Directories not made yet: as far as their paths exist.)
	trainDir, evalDir := madedirs.Existing(filepath.Join(out, dataset.TrainDir)), madedirs.Existing(filepath.Join(out, dataset.EvalDir))
	trainWhat := fmt.Sprintf("%d training rows", job.rows)
	evalWhat := fmt.Sprintf("an evaluation set of %d images x %d captions", job.images, job.perImage)
	trainNeed := synth.TrainingDiskBytes(job.opts, job.rows, job.float16)
	evalNeed := synth.EvalDiskBytes(job.opts, job.images, job.perImage)
	if sameFilesystem(trainDir, evalDir) {
		return checkSynthDisk(out, trainDir, trainWhat+" and "+evalWhat, trainNeed+evalNeed, dataset.TrainDir, dataset.EvalDir)
	}
	if err := checkSynthDisk(out, trainDir, trainWhat, trainNeed, dataset.TrainDir); err != nil {
		return err
	}
	return checkSynthDisk(out, evalDir, evalWhat, evalNeed, dataset.EvalDir)
}

// checkSynthDisk refuses what (need bytes, of sets of out) where dir's
// filesystem has not that much free, counting as free what interrupted
// runs left of those sets (removed before the writing).
func checkSynthDisk(out, dir, what string, need float64, sets ...string) error {
	free, ok := diskFree(dir)
	if !ok {
		return nil
	}
	free += uint64(synth.LeftoverBytes(out, sets...))
	if need > float64(free) {
		return fmt.Errorf("synth: %s take about %s on disk, more than the %s free under %s (a set replaced stays until the new one is whole): write fewer rows (float16 ones take half the space), or elsewhere",
			what, sizeText(need), sizeText(float64(free)), dir)
	}
	return nil
}

// sizeText is a number of bytes for a message, in the unit that keeps it
// readable (0.0 GiB said nothing of 40 MB).
func sizeText(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", math.Ceil(b/(1<<10)))
}
