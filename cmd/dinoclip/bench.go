package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dinoclip/dinoclip/bench"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

// Defaults of dinoclip bench by device. The CPU defaults finish in about a
// minute on two cores: the original model at batch 64 (a few seconds a
// step) and the small shape at batch 256. The GPU defaults are the batch
// sizes of the performance targets, 1024 to 16384, on the original model.
var benchDefaults = map[string]struct {
	shapes                []string
	batches               map[string][]int
	warmup, steps         int
	minTime               time.Duration
	topkWarmup, topkSteps int
	kernelSteps           int
	copyBytes             int64
	dataRows, dataBatch   int
	dataShards            int
}{
	"cpu": {
		shapes:  []string{"default", "small"},
		batches: map[string][]int{"default": {64}, "small": {256}},
		warmup:  1, steps: 3, minTime: 3 * time.Second,
		topkWarmup: 0, topkSteps: 1, // an engine's own top-k; retrieval.TopK on the CPU runs once (seconds)
		kernelSteps: 3,
		copyBytes:   256 << 20,
		dataRows:    65536, dataBatch: 8192, dataShards: 4,
	},
	"cuda": {
		shapes:  []string{"default"},
		batches: map[string][]int{"default": {1024, 2048, 4096, 8192, 16384}, "small": {1024, 2048, 4096, 8192, 16384}},
		warmup:  5, steps: 20, minTime: time.Second,
		topkWarmup: 2, topkSteps: 10,
		kernelSteps: 3,
		copyBytes:   1 << 30,
		dataRows:    65536, dataBatch: 8192, dataShards: 4,
	},
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure training, retrieval and data-loading speed against the hardware's limits",
		UsageText: "dinoclip bench [--device cpu|cuda] [--shape default|small|IxHxBxO ...] [--batch N ...]\n" +
			"   [--json FILE] [--out DIR] [options]",
		Description: "Times full training steps (forward, unit-norm MSE, backward, AdamW with the recipe's OneCycleLR)\n" +
			"of the engine on --device for each --shape and --batch, with their achieved FLOP/s and fraction\n" +
			"of the device's peak; each kernel of one step against the peak or the measured copy bandwidth;\n" +
			"retrieval top-k at MSCOCO's shapes (25,000 captions x 5,000 images x 512) in both directions;\n" +
			"and the data loader reading .npy shards it writes to disk. It projects the original recipe's\n" +
			"training time (8M pairs x 16 epochs at batch 8192) from the measured step times, prints the\n" +
			"tables, and writes everything with the device, date and commit as JSON (--json, --out).\n" +
			"What the engine cannot measure (per-kernel times and peak memory need a GPU engine) is listed\n" +
			"as unmeasured. bench/compare.py runs this beside PyTorch (bench/torch_ref.py) and writes the\n" +
			"ratios; see bench/README.md.\n\n" +
			"Shapes: default (" + bench.Configs["default"].Describe() + ",\n" +
			"the original),\n" +
			"small (" + bench.Configs["small"].Describe() + "),\n" +
			"or IxHxBxO (input, hidden, blocks, output). Without --batch: on cpu, default at 64 and small at\n" +
			"256 (about a minute on two cores); on cuda, 1024 to 16384. A --batch N is for the shapes without\n" +
			"sizes of their own (--batch SHAPE:N/N); one that is for none is refused.\n\n" +
			"Examples:\n" +
			"   dinoclip bench --out bench-out\n" +
			"   dinoclip bench --device cuda --json bench.json",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "`DEVICE` to run the engine on: cpu, or cuda (a build with -tags cuda)"},
			&cli.StringFlag{Name: "precision", Value: train.PrecisionFP32, Usage: "`MODE` of the engine's arithmetic: fp32, or bf16 (cuda only: bf16 mixed precision, train's default on the GPU); recorded with the arguments"},
			&cli.StringSliceFlag{Name: "shape", Usage: "model `SHAPE`: default, small or IxHxBxO (repeat or separate with commas)", DefaultText: "cpu: default,small; cuda: default"},
			&cli.StringSliceFlag{Name: "batch", Usage: "batch size `N` for every shape without sizes of its own, or SHAPE:N[/N...] for one shape (repeat or separate with commas)", DefaultText: "cpu: default:64, small:256; cuda: 1024 to 16384"},
			&cli.IntFlag{Name: "warmup", Usage: "`N` untimed training steps first", DefaultText: "cpu 1, cuda 5"},
			&cli.IntFlag{Name: "steps", Usage: "at least `N` timed training steps", DefaultText: "cpu 3, cuda 20"},
			&cli.DurationFlag{Name: "min-time", Usage: "keep timing steps until they add up to `DURATION` (at most max(1000, 100 x --steps) steps)", DefaultText: "cpu 3s, cuda 1s"},
			&cli.BoolFlag{Name: "host-batches", Usage: "time training steps on batches in host memory, as train --resident off does, instead of on data resident on the GPU (train's default)"},
			&cli.BoolFlag{Name: "kernels", Value: true, Usage: "time each kernel of one step and the copy bandwidth (--kernels=false to skip)"},
			&cli.DurationFlag{Name: "kernel-min-time", Usage: "on the CPU, time each kernel for at least `DURATION`", Value: 200 * time.Millisecond},
			&cli.BoolFlag{Name: "topk", Value: true, Usage: "time retrieval top-k (--topk=false to skip)"},
			&cli.IntFlag{Name: "topk-images", Value: bench.COCOImages, Usage: "`N` images (keys of text->image)"},
			&cli.IntFlag{Name: "topk-captions", Value: bench.COCOCaptions, Usage: "`N` captions (queries of text->image)"},
			&cli.IntFlag{Name: "topk-dim", Value: bench.COCODim, Usage: "embedding width `N`"},
			&cli.IntFlag{Name: "topk-k", Value: bench.COCOK, Usage: "keep the `K` best"},
			&cli.BoolFlag{Name: "data", Value: true, Usage: "time the data loader (--data=false to skip)"},
			&cli.StringFlag{Name: "data-dir", Usage: "write the data loader's shards under `DIR` (a temporary directory, removed after)", DefaultText: "the system's temporary directory"},
			&cli.IntFlag{Name: "data-rows", Usage: "`N` rows of shards to write and read", DefaultText: "65536"},
			&cli.IntFlag{Name: "data-batch", Usage: "rows per read `N`", DefaultText: "8192"},
			&cli.StringFlag{Name: "data-dtype", Value: "float16", Usage: "`DTYPE` of the shards: float16 or float32"},
			&cli.Float64Flag{Name: "peak-tflops", Usage: "device peak `TFLOPS` for the fractions of peak, in TFLOP/s (0: the default)", DefaultText: "H100/H200: 989 (dense BF16); CPU: a nominal estimate"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "`SEED` of the parameters and the random data"},
			&cli.StringFlag{Name: "json", Usage: "write the report as JSON to `FILE` (an earlier report there is replaced; another file is refused)"},
			&cli.StringFlag{Name: "out", Usage: "write bench.json and bench.txt into `DIR`"},
		},
		OnUsageError: usageError,
		Action:       runBench,
	}
}

// maxBenchDataRows bounds --data-rows, and maxBenchDataBytes the shards'
// size on disk, whatever the widths --shape gives: 16M rows of 768 + 512
// float32 values are 86 GB.
const (
	maxBenchDataRows  = 1 << 24
	maxBenchDataBytes = maxBenchDataRows * (768 + 512) * 4
)

// diskFree, memAvailable and sameFilesystem are sysmem.DiskFree,
// sysmem.Available and atomicfile.SameFilesystem (variables: tests give a
// full disk, a machine with little memory, or directories on two disks).
var (
	diskFree       = sysmem.DiskFree
	memAvailable   = sysmem.Available
	sameFilesystem = atomicfile.SameFilesystem
)

// minPeakTFLOPs bounds a --peak-tflops from below: a megaflop per second
// in TFLOP/s, far below any device's peak, and far enough above zero that
// every rate over it is a finite fraction.
const minPeakTFLOPs = 1e-6

// maxBenchSteps bounds --steps and --warmup: far beyond what any
// measurement needs, and small enough that the times kept of the timed
// steps (8 bytes each) fit in memory.
const maxBenchSteps = 1_000_000

func runBench(cCtx *cli.Context) error {
	if err := noArgs(cCtx); err != nil {
		return err
	}
	device := cCtx.String("device")
	if err := checkDevice(device); err != nil {
		return err
	}
	precision, err := devicePrecision(device, cCtx.String("precision"), precisionSetting(cCtx), false)
	if err != nil {
		return err
	}
	def := benchDefaults[device]
	intOr := func(name string, v int) int {
		if cCtx.IsSet(name) {
			return cCtx.Int(name)
		}
		return v
	}

	shapes := splitList(cCtx.StringSlice("shape"))
	for i, s := range shapes {
		if slices.Contains(shapes[:i], s) {
			return fmt.Errorf("--shape %s given twice (it would be measured twice over)", s)
		}
	}
	if len(shapes) == 0 {
		shapes = def.shapes
	}
	common, perShape, err := parseBatches(splitList(cCtx.StringSlice("batch")))
	if err != nil {
		return err
	}
	for s := range perShape {
		if !slices.Contains(shapes, s) {
			return fmt.Errorf("--batch %s:...: shape %q is not among the --shape values %s", s, s, strings.Join(shapes, ","))
		}
	}
	// A plain N is for the shapes without sizes of their own: with none
	// left it ran nowhere, without a word (the 8 of --batch SHAPE:4,8, the
	// comma splitting it off, too).
	if len(common) > 0 && !slices.ContainsFunc(shapes, func(s string) bool { return perShape[s] == nil }) {
		plain := make([]string, len(common))
		for i, n := range common {
			plain[i] = strconv.Itoa(n)
		}
		return fmt.Errorf("--batch %s: every --shape (%s) has batch sizes of its own (SHAPE:N), so it would run for none: list one shape's sizes as SHAPE:N/N, or leave it out",
			strings.Join(plain, ","), strings.Join(shapes, ","))
	}
	var cases []bench.Case
	for _, s := range shapes {
		c, err := parseShape(s)
		if err != nil {
			return err
		}
		batches := perShape[s]
		if len(batches) == 0 {
			batches = common
		}
		if len(batches) == 0 {
			batches = def.batches[s]
		}
		if len(batches) == 0 {
			batches = def.batches["default"]
		}
		cases = append(cases, bench.Case{ConfigName: s, Config: c, Batches: batches})
	}

	timing := bench.Timing{Warmup: intOr("warmup", def.warmup), Steps: intOr("steps", def.steps), MinTime: def.minTime}
	if cCtx.IsSet("min-time") {
		timing.MinTime = cCtx.Duration("min-time")
	}
	if err := checkAtLeast("warmup", timing.Warmup, 0); err != nil {
		return err
	}
	if err := checkAtLeast("steps", timing.Steps, 1); err != nil {
		return err
	}
	for _, n := range []struct {
		flag  string
		value int
	}{{"warmup", timing.Warmup}, {"steps", timing.Steps}} {
		if n.value > maxBenchSteps {
			return fmt.Errorf("--%s %d: at most %d (each timed step's time is kept)", n.flag, n.value, maxBenchSteps)
		}
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{{"min-time", timing.MinTime}, {"kernel-min-time", cCtx.Duration("kernel-min-time")}} {
		if d.value < 0 {
			return fmt.Errorf("--%s %v: must not be negative", d.flag, d.value)
		}
	}
	peak := cCtx.Float64("peak-tflops")
	if !(peak >= 0) || math.IsInf(peak, 0) {
		return fmt.Errorf("--peak-tflops %v: must be a finite number, not negative", peak)
	}
	// (A fraction of a peak of 1e-320 overflowed to +Inf, which no JSON
	// holds: the report was refused after the whole run.)
	if peak > 0 && peak < minPeakTFLOPs {
		return fmt.Errorf("--peak-tflops %v: below %v, a megaflop per second, which is no device's peak: it takes TFLOP/s", peak, minPeakTFLOPs)
	}

	o := bench.RunOptions{
		Device: device, Cases: cases, Train: timing, Seed: cCtx.Uint64("seed"), PeakTFLOPs: peak,
		HostBatches:  cCtx.Bool("host-batches"),
		Kernels:      cCtx.Bool("kernels"),
		KernelTiming: bench.Timing{Warmup: 1, Steps: 3, MinTime: cCtx.Duration("kernel-min-time")},
		KernelSteps:  def.kernelSteps,
		CopyBytes:    def.copyBytes,
		TopK:         cCtx.Bool("topk"),
		TopKOpts: bench.TopKOptions{
			Images: cCtx.Int("topk-images"), Captions: cCtx.Int("topk-captions"), Dim: cCtx.Int("topk-dim"), K: cCtx.Int("topk-k"),
			Timing: bench.Timing{Warmup: 0, Steps: 1}, Seed: cCtx.Uint64("seed"),
		},
		TopKEngineTiming: bench.Timing{Warmup: def.topkWarmup, Steps: def.topkSteps},
		Data:             cCtx.Bool("data"),
		DataOpts: bench.DataOptions{
			Dir: cCtx.String("data-dir"), Rows: intOr("data-rows", def.dataRows), Shards: def.dataShards,
			InputDim: cases[0].Config.InputDim, OutputDim: cases[0].Config.OutputDim,
			Batch: intOr("data-batch", def.dataBatch), Cold: true, Seed: cCtx.Uint64("seed"),
		},
		Log: cCtx.App.ErrWriter,
	}
	for _, n := range []string{"topk-images", "topk-captions", "topk-dim", "topk-k"} {
		if err := checkAtLeast(n, cCtx.Int(n), 1); err != nil {
			return err
		}
	}
	// Both directions rank: the images are the keys of text->image, the
	// captions those of image->text; a k beyond either is no top-k.
	if t := o.TopKOpts; t.K > min(t.Images, t.Captions) {
		return fmt.Errorf("--topk-k %d: more than the %d keys of one direction (--topk-images %d, --topk-captions %d)", t.K, min(t.Images, t.Captions), t.Images, t.Captions)
	}
	if o.TopK {
		if err := checkTopKMemory(o.TopKOpts); err != nil {
			return err
		}
	}
	for _, c := range cases {
		for _, b := range c.Batches {
			host := bench.TrainHostBytes(c.Config, b)
			if device == "cpu" {
				if err := checkCPUMemory(c.Config, b, 4, nn.Objective{}, host, "the initial weights and moments, and the random batches", "--shape or --batch"); err != nil {
					return fmt.Errorf("--shape %s --batch %d: %w", c.ConfigName, b, err)
				}
				continue
			}
			// (The engine's own memory is the GPU's, which it checks.)
			if avail, fits := fitsMemory(host); !fits {
				return fmt.Errorf("--shape %s --batch %d: the training benchmark needs about %.1f GiB of host memory (the initial weights and moments, and %d random batches), but only %.1f GiB is available to it (free memory, less any cgroup or ulimit -v limit): use a smaller --shape or --batch",
					c.ConfigName, b, host/(1<<30), bench.DefaultDistinctBatches, avail/(1<<30))
			}
		}
	}
	if o.Data {
		if err := checkAtLeast("data-rows", o.DataOpts.Rows, 1); err != nil {
			return err
		}
		if err := checkAtLeast("data-batch", o.DataOpts.Batch, 1); err != nil {
			return err
		}
		if o.DataOpts.Batch > o.DataOpts.Rows {
			return fmt.Errorf("--data-batch %d: more than the %d --data-rows", o.DataOpts.Batch, o.DataOpts.Rows)
		}
		if o.DataOpts.Rows > maxBenchDataRows {
			return fmt.Errorf("--data-rows %d: at most %d (the shards are written to disk and read back)", o.DataOpts.Rows, maxBenchDataRows)
		}
		o.DataOpts.Shards = min(o.DataOpts.Shards, o.DataOpts.Rows)
		elemSize := 4
		switch cCtx.String("data-dtype") {
		case "float16":
			o.DataOpts.Float16 = true
			elemSize = 2
		case "float32":
		default:
			return fmt.Errorf("--data-dtype %q: want float16 or float32", cCtx.String("data-dtype"))
		}
		// (In float64: --shape's widths may be large enough to overflow.)
		if size := float64(o.DataOpts.Rows) * float64(o.DataOpts.InputDim+o.DataOpts.OutputDim) * float64(elemSize); size > maxBenchDataBytes {
			return fmt.Errorf("--data-rows %d of %d + %d %s values are %.3g GB of shards, more than the %.3g GB the data benchmark writes at most: fewer --data-rows, or --data=false",
				o.DataOpts.Rows, o.DataOpts.InputDim, o.DataOpts.OutputDim, cCtx.String("data-dtype"), size/1e9, float64(maxBenchDataBytes)/1e9)
		}
	}
	// (--json and --out given empty are refused by emptyValues: the report
	// went nowhere without a word.)
	jsonPath := cCtx.String("json")
	outDir, err := atomicfile.ResolveDotDotOut(cCtx.String("out")) // (LINK/.. as the system takes it)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	// Refused now, not after the measurements (and again when written, at
	// the end: benchOutPlaces), before --out is made: a place where a run
	// or an index keeps its files; for --json, one of --out's files, a
	// directory, a pipe, a device, a read-only file, or a directory it
	// cannot be written into (a temporary made there and removed).
	if err := benchOutPlaces(jsonPath, outDir); err != nil {
		return err
	}
	var dest string
	if jsonPath != "" {
		dest, err = atomicfile.Destination(jsonPath)
		if err == nil && outDir != "" {
			err = notABenchFile(dest, outDir)
		}
		if err != nil {
			return fmt.Errorf("--json %s: %w", jsonPath, err)
		}
	}
	if outDir != "" {
		madeTop, err := madedirs.MkdirAll(outDir)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		// What it made of --out goes again if the run ends with nothing
		// written there (refused, or failed before any measurement).
		defer madedirs.Remove(outDir, madeTop)
	}
	if jsonPath != "" {
		if err := probeWrite(filepath.Dir(dest), filepath.Base(dest)); err != nil {
			return fmt.Errorf("--json %s: %w", jsonPath, err)
		}
		sweepLeftovers(cCtx.App.ErrWriter, dest, nil)
	}
	if outDir != "" {
		if err := probeWrite(outDir, benchJSONFile); err != nil {
			return fmt.Errorf("--out %s: %w", outDir, err)
		}
		for _, name := range []string{benchJSONFile, benchTextFile} {
			sweepLeftovers(cCtx.App.ErrWriter, filepath.Join(outDir, name), nil)
		}
	}
	// The data benchmark writes its shards in a directory of its own there
	// (bench.DataDirBase's), removed however the run ends but by SIGKILL
	// or a crash: what such a run left is removed now, once no run at work
	// holds it. A --data-dir that cannot take them fails now, not after
	// hours of benchmarks.
	if o.Data {
		dataDir := o.DataOpts.Dir
		if dataDir != "" {
			if err := checkIntoPlace("--data-dir", dataDir, "the data benchmark's shards"); err != nil {
				return err
			}
		} else {
			dataDir = os.TempDir()
		}
		atomicfile.SweepDeadDirs(dataDir, bench.DataDirBase, bench.IsDataFile).Report(cCtx.App.ErrWriter, "the data benchmark's shards")
		if err := probeWrite(dataDir, bench.DataDirBase); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		// (With room for the headers, and for what the benchmarks before
		// it write meanwhile.)
		need := o.DataOpts.Bytes() + o.DataOpts.Bytes()/16 + 64<<20
		if free, ok := diskFree(dataDir); ok && uint64(need) > free {
			return fmt.Errorf("--data-dir: the data benchmark's shards take %.3g GB; with their headers and a margin of 64 MiB for what the benchmarks before it write, it needs %.3g GB, and the file system of %s has %.3g GB free: give --data-dir on a larger one, fewer --data-rows, or --data=false",
				float64(o.DataOpts.Bytes())/1e9, float64(need)/1e9, dataDir, float64(free)/1e9)
		}
	}

	start := time.Now()
	r, err := bench.Run(o, func(c nn.Config) (nn.Engine, error) { return openEngine(device, precision, c) })
	if err != nil {
		// What was measured before the failure (a later step's: the data
		// loader's disk full, say) is still shown and saved, the section
		// that failed saying so; not when a signal is ending the process,
		// which removed the data benchmark's files under it.
		if r != nil && len(r.Train) > 0 && !exitingOnSignal(cCtx.Context) {
			r.Args = benchArgs(cCtx)
			r.Notes = append(r.Notes, "incomplete: the run stopped at a failure: "+err.Error())
			if werr := writeBenchReport(cCtx, r, jsonPath, outDir); werr != nil {
				fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: bench: %s\n", printable.String(werr.Error()))
			}
		}
		return fmt.Errorf("bench: %w", err)
	}
	r.Args = benchArgs(cCtx)
	fmt.Fprintf(cCtx.App.ErrWriter, "bench: done in %s\n", bench.Elapsed(start))
	return writeBenchReport(cCtx, r, jsonPath, outDir)
}

// writeBenchReport prints the report's table and writes it where --json
// and --out say.
func writeBenchReport(cCtx *cli.Context, r *bench.Report, jsonPath, outDir string) error {
	if err := r.WriteTable(cCtx.App.Writer); err != nil {
		return err
	}
	if w := r.PeakWarning(); w != "" {
		fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: warning: %s\n", printable.String(w))
	}
	if err := benchOutPlaces(jsonPath, outDir); err != nil {
		return err
	}
	if jsonPath != "" {
		if err := r.WriteJSON(jsonPath); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if outDir != "" {
		// The directory's own files, replaced (atomicfile.Replace: a link
		// at their names led the report into an index's manifest), both
		// written before either is renamed: a full disk left the new
		// bench.json beside the old run's bench.txt.
		b, err := r.JSON()
		if err != nil {
			return err
		}
		var sb strings.Builder
		if err := r.WriteTable(&sb); err != nil {
			return err
		}
		defer lockBenchOut(outDir)()
		paths := []string{filepath.Join(outDir, benchJSONFile), filepath.Join(outDir, benchTextFile)}
		if err := atomicfile.ReplaceAllBytes(paths, [][]byte{b, []byte(sb.String())}); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

// benchLockWait is how long a bench waits for the lock of --out's
// directory, which another bench holds for milliseconds, while it writes.
const benchLockWait = 2 * time.Second

// lockBenchOut takes the lock of --out's directory dir for the write of
// its two files, waiting out another bench writing there: two benches
// ending at once left one's bench.json beside the other's bench.txt.
// Where the lock is held longer (a demo or a synth writing its own files
// there holds it for minutes) or cannot be taken (a directory that cannot
// be read, only written), the files are written without it: only a bench
// writes them, and the report is not lost for a lock. (No lock file of its
// own: one left in a directory emptied by hand made it no longer empty.)
func lockBenchOut(dir string) (release func()) {
	for deadline := time.Now().Add(benchLockWait); ; time.Sleep(20 * time.Millisecond) {
		release, err := flock.LockDir(dir)
		switch {
		case err == nil:
			return release
		case !errors.Is(err, flock.ErrLocked) || time.Now().After(deadline):
			return func() {}
		}
	}
}

// checkTopKMemory refuses a top-k benchmark whose vectors the host
// cannot hold: the images and captions, dim floats each, twice (drawn,
// then normalised), and each direction's answers (k ids and scores per
// query). It counts in float64, so that sizes whose product overflows an
// int are refused too, with or without a known amount of free memory.
func checkTopKMemory(o bench.TopKOptions) error {
	rows := float64(o.Images) + float64(o.Captions)
	need := 8*rows*float64(o.Dim) + 8*rows*float64(o.K)
	avail, ok := sysmem.Available()
	if need <= float64(math.MaxInt)/8 && (!ok || need <= float64(avail)) {
		return nil
	}
	return fmt.Errorf("--topk-images %d, --topk-captions %d, --topk-dim %d, --topk-k %d need about %.3g GiB of memory, more than the %.1f GiB available: use smaller ones",
		o.Images, o.Captions, o.Dim, o.K, need/(1<<30), float64(avail)/(1<<30))
}

// benchOutPlaces refuses --json's file or --out's directory (either may
// be "") where a run or an index keeps its files: at the start, and again
// when the report is written, since a run or an index may have been made
// there during the measurements.
func benchOutPlaces(jsonPath, outDir string) error {
	if jsonPath != "" {
		// (A destination that cannot be written is said with the rest.)
		if dest, err := atomicfile.Destination(jsonPath); err == nil {
			if err := destPlaceError("--json", jsonPath, dest, "the bench report"); err != nil {
				return err
			}
			if err := replacesOtherFile(jsonPath, dest); err != nil {
				return err
			}
		}
	}
	if outDir != "" {
		return checkIntoPlace("--out", outDir, "the bench report")
	}
	return nil
}

// maxReportBytes bounds what replacesOtherFile reads of a file to tell
// an earlier report: reports are kilobytes.
const maxReportBytes = 64 << 20

// replacesOtherFile refuses --json's destination dest where a file is
// there that is no bench report (a model, features or a configuration
// file named by a slip), which the report would replace, as project and
// average refuse an output of another kind (otherKindError). An empty
// file may go.
func replacesOtherFile(jsonPath, dest string) error {
	// (Stat first: opening a pipe would wait for a writer.)
	if st, err := os.Stat(dest); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil // (none, or what the write refuses in its own words)
	}
	b, err := atomicfile.ReadRegular(dest, maxReportBytes)
	switch tooLarge := (*atomicfile.TooLargeError)(nil); {
	case errors.As(err, &tooLarge): // (no report, read no further)
	case err != nil:
		return fmt.Errorf("--json %s exists and cannot be read to tell whether it is an earlier bench report, which the report may replace: %w", jsonPath, err)
	case bench.IsReport(b):
		return nil
	}
	return fmt.Errorf("--json %s exists and is no dinoclip bench report, which the report would replace: remove it first if it may go, or write the report elsewhere", jsonPath)
}

// notABenchFile refuses --json's destination dest when it is one of the
// files --out's directory outDir receives, which would overwrite it.
func notABenchFile(dest, outDir string) error {
	st, serr := os.Stat(dest)
	for _, name := range []string{benchJSONFile, benchTextFile} {
		f := filepath.Join(outDir, name)
		if atomicfile.AbsPath(dest) == atomicfile.AbsPath(f) {
			return fmt.Errorf("it is --out's %s", name)
		}
		if ft, err := os.Stat(f); serr == nil && err == nil && os.SameFile(st, ft) {
			return fmt.Errorf("it is --out's %s (%s)", name, f)
		}
	}
	return nil
}

// The files bench --out writes.
const (
	benchJSONFile = "bench.json"
	benchTextFile = "bench.txt"
)

// parseShape reads a --shape: a name from bench.Configs or IxHxBxO.
func parseShape(s string) (nn.Config, error) {
	if c, ok := bench.Configs[s]; ok {
		return c, nil
	}
	parts := strings.Split(s, "x")
	bad := fmt.Errorf("--shape %q: want %s, or IxHxBxO (input, hidden, blocks, output; e.g. 768x2048x6x512)",
		s, strings.Join(bench.ConfigNames, ", "))
	if len(parts) != 4 {
		return nn.Config{}, bad
	}
	var v [4]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || !isDecimal(p) {
			return nn.Config{}, bad
		}
		v[i] = n
	}
	c := nn.Config{InputDim: v[0], HiddenDim: v[1], Blocks: v[2], OutputDim: v[3]}
	if err := c.Validate(); err != nil {
		return nn.Config{}, fmt.Errorf("--shape %q: %w", s, err)
	}
	return c, nil
}

// parseBatches reads the --batch entries: N for every shape, or
// SHAPE:N[/N...] for one.
func parseBatches(entries []string) ([]int, map[string][]int, error) {
	var common []int
	perShape := map[string][]int{}
	for _, e := range entries {
		shape, list, ok := strings.Cut(e, ":")
		if ok && shape == "" {
			// (Taken for a plain N, it ran for every shape.)
			return nil, nil, fmt.Errorf("--batch %q: the shape before the colon is empty: want SHAPE:N[/N...], or N", e)
		}
		if !ok {
			shape, list = "", e
		}
		for _, p := range strings.Split(list, "/") {
			p = strings.TrimSpace(p)
			n, err := strconv.Atoi(p)
			if err != nil || !isDecimal(p) || n < 1 {
				return nil, nil, fmt.Errorf("--batch %q: want a positive batch size N, or SHAPE:N[/N...]", e)
			}
			sizes, of := common, "the shapes without sizes of their own"
			if shape != "" {
				sizes, of = perShape[shape], shape
			}
			if slices.Contains(sizes, n) {
				// (Measured twice over, for nothing.)
				return nil, nil, fmt.Errorf("--batch %q: batch size %d given twice for %s", e, n, of)
			}
			if shape == "" {
				common = append(common, n)
			} else {
				perShape[shape] = append(perShape[shape], n)
			}
		}
	}
	return common, perShape, nil
}

// splitList splits comma-separated entries of a repeatable flag.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// benchArgs records the flags that were set, for the report.
func benchArgs(cCtx *cli.Context) []string {
	args := []string{"dinoclip", "bench"}
	names := cCtx.LocalFlagNames()
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		args = append(args, fmt.Sprintf("--%s=%v", n, flagValue(cCtx, n)))
	}
	return args
}

func flagValue(cCtx *cli.Context, name string) any {
	switch v := cCtx.Value(name).(type) {
	case cli.StringSlice:
		return strings.Join(v.Value(), ",")
	case *cli.StringSlice:
		return strings.Join(v.Value(), ",")
	default:
		return v
	}
}

// probeWrite refuses a directory no file named name can be written into
// (read-only, immutable, not ours), by making a temporary there and
// removing it: the report is written after the measurements, which a
// refusal then would waste.
func probeWrite(dir, name string) error {
	probe, err := os.CreateTemp(dir, "."+atomicfile.TempBase(name)+".tmp-*")
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return fmt.Errorf("cannot write into %s: %w", dir, pe.Err) // (not the probe's name)
	}
	if err != nil {
		return err
	}
	probe.Close()
	return os.Remove(probe.Name())
}
