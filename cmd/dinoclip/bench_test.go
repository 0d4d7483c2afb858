package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/bench"
	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/train"
)

// benchTiny is every measurement of dinoclip bench at sizes that take
// milliseconds.
var benchTiny = []string{"bench", "--shape", "8x16x1x4", "--batch", "4,8", "--warmup", "0", "--steps", "2", "--min-time", "0",
	"--kernel-min-time", "0", "--topk-images", "10", "--topk-captions", "30", "--topk-dim", "8",
	"--data-rows", "64", "--data-batch", "16"}

func TestBench(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "out", "b.json") // (in the --out that bench makes)
	out := mustRun(t, append(slices.Clone(benchTiny), "--json", jsonPath, "--out", filepath.Join(dir, "out"), "--data-dir", dir)...)
	for _, want := range []string{"Training step", "8x16x1x4", "Kernels of one training step", "gemm_fwd_nt", "Copy bandwidth",
		"text->image", "image->text", "Data loader", "cold", "Unmeasured in this run", "peak device memory"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	r, err := bench.ReadReport(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	want := nn.Config{InputDim: 8, HiddenDim: 16, Blocks: 1, OutputDim: 4}
	if len(r.Train) != 2 || r.Train[0].Config != want || r.Train[0].Batch != 4 || r.Train[1].Batch != 8 || r.Train[0].Steps != 2 {
		t.Errorf("train results %+v", r.Train)
	}
	if r.Kernels.Status != bench.Measured || r.Kernels.Batch != 8 || r.TopK.Status != bench.Measured || r.Data.Status != bench.Measured {
		t.Errorf("kernels %s at batch %d, top-k %s, data %s", r.Kernels.Status, r.Kernels.Batch, r.TopK.Status, r.Data.Status)
	}
	if r.Data.Results[0].InputDim != 8 || r.Data.Results[0].OutputDim != 4 {
		t.Errorf("data widths %d -> %d, want the model's", r.Data.Results[0].InputDim, r.Data.Results[0].OutputDim)
	}
	if r.Env.Device != "cpu" || !slices.Contains(r.Args, "--shape=8x16x1x4") {
		t.Errorf("env %+v, args %q", r.Env, r.Args)
	}
	again, err := bench.ReadReport(filepath.Join(dir, "out", "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Env.Date != r.Env.Date || len(again.Train) != 2 {
		t.Error("--out's bench.json differs from --json's")
	}
	txt, err := os.ReadFile(filepath.Join(dir, "out", "bench.txt"))
	if err != nil || !strings.Contains(string(txt), "Training step") {
		t.Errorf("--out's bench.txt: %v\n%s", err, txt)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "."+bench.DataDirBase+"*")); len(left) != 0 {
		t.Errorf("the data benchmark's shards are left: %v", left)
	}
}

// TestBenchRemovesAKilledRunsShards checks that the shards a bench killed
// by SIGKILL left (tens of megabytes at the defaults) are removed by the
// next one once nobody holds them, and that a directory under their name
// holding what the benchmark never writes is left, and said.
func TestBenchRemovesAKilledRunsShards(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "."+bench.DataDirBase+".tmp-123")
	other := filepath.Join(dir, "."+bench.DataDirBase+".tmp-456")
	for _, f := range []string{
		filepath.Join(dead, "shard-00000"+train.FeatureSuffix), filepath.Join(dead, "shard-00000"+train.TargetSuffix),
		filepath.Join(other, "notes.txt"),
	} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	os.Chtimes(other, old, old)
	// (An empty one may be a bench's at work, before it locks it.)
	empty := filepath.Join(dir, "."+bench.DataDirBase+".tmp-789")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, append(slices.Clone(benchTiny), "--kernels=false", "--topk=false", "--data-dir", dir)...)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	// Removed at once (a bench rerun right after a kill kept them, each
	// as big as the data, for a minute).
	if _, err := os.Stat(dead); err == nil || !strings.Contains(stderr, "removed "+dead+", left by a dinoclip killed while writing the data benchmark's shards") {
		t.Errorf("a killed bench's shards: %v; stderr:\n%s", err, stderr)
	}
	if _, err := os.Stat(empty); err != nil {
		t.Errorf("an empty directory of a minute ago: %v, want it kept", err)
	}
	if _, err := os.Stat(filepath.Join(other, "notes.txt")); err != nil || !strings.Contains(stderr, "warning: removing "+other) {
		t.Errorf("a directory holding another file: %v; stderr:\n%s", err, stderr)
	}
}

// TestBenchRateAbovePeak checks that a rate above a --peak-tflops (one
// given in GFLOP/s, say) is warned of, and shown as ">100%" in the table,
// where its percentage broke the columns, while the JSON keeps the
// fraction measured.
func TestBenchRateAbovePeak(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "b.json")
	out, stderr, err := runCLI(t, "bench", "--shape", "8x16x1x4", "--batch", "4", "--warmup", "0", "--steps", "1", "--min-time", "0",
		"--kernels=false", "--topk=false", "--data=false", "--peak-tflops", "1e-6", "--json", jsonPath)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "dinoclip: warning: measured ") || !strings.Contains(stderr, "more than the --peak-tflops 1e-06 (0.001 GFLOP/s): it is likely in the wrong unit, as the flag takes TFLOP/s") {
		t.Errorf("stderr lacks the warning:\n%s", stderr)
	}
	if !strings.Contains(out, " >100% ") || strings.Contains(out, "00.0%") {
		t.Errorf("the table's fraction of peak:\n%s", out)
	}
	r, err := bench.ReadReport(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if x := r.Train[0]; x.FractionOfPeak != x.TFLOPs/1e-6 {
		t.Errorf("JSON fraction of peak %v, want %v", x.FractionOfPeak, x.TFLOPs/1e-6)
	}
}

func TestBenchPerShapeBatchesAndSkips(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "b.json")
	// (The plain 2 for the shape without sizes of its own.)
	mustRun(t, "bench", "--shape", "8x16x1x4,4x8x0x2", "--batch", "8x16x1x4:4/8", "--batch", "2",
		"--warmup", "0", "--steps", "1", "--min-time", "0", "--kernels=false", "--topk=false", "--data=false", "--json", jsonPath)
	r, err := bench.ReadReport(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range r.Train {
		got = append(got, fmt.Sprintf("%s:%d", x.ConfigName, x.Batch))
	}
	if want := []string{"8x16x1x4:4", "8x16x1x4:8", "4x8x0x2:2"}; !slices.Equal(got, want) {
		t.Errorf("cases %q, want %q", got, want)
	}
	if r.Kernels.Status != bench.Skipped || r.TopK.Status != bench.Skipped || r.Data.Status != bench.Skipped {
		t.Errorf("kernels %s, top-k %s, data %s; want all skipped", r.Kernels.Status, r.TopK.Status, r.Data.Status)
	}
	for _, w := range []string{"per-kernel times", "top-k throughput", "data loader throughput"} {
		if !slices.ContainsFunc(r.Unmeasured, func(u string) bool { return strings.HasPrefix(u, w) }) {
			t.Errorf("unmeasured %q lacks %q", r.Unmeasured, w)
		}
	}
}

func TestBenchErrors(t *testing.T) {
	wantError(t, []string{"bench", "--shape", "huge"}, "--shape", "default, small", "IxHxBxO")
	wantError(t, []string{"bench", "--shape", "8x0x1x4"}, "hidden dim")
	wantError(t, []string{"bench", "--batch", "0"}, "--batch", "positive")
	wantError(t, []string{"bench", "--shape", "small", "--batch", "default:64"}, "not among the --shape values")
	// A plain N is for the shapes without sizes of their own: one for none
	// (a comma's too) ran nowhere, and an empty shape name ran for all.
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", "8x8x1x8:4", "--batch", "5"}, "--batch 5: every --shape (8x8x1x8) has batch sizes of its own", "SHAPE:N/N")
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", "8x8x1x8:4,8"}, "--batch 8: every --shape")
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", ":4"}, `--batch ":4": the shape before the colon is empty`)
	// What is given twice would be measured twice over.
	wantError(t, []string{"bench", "--shape", "small,small"}, "--shape small given twice")
	wantError(t, []string{"bench", "--shape", "small", "--batch", "small:8", "--batch", "small:4/8"}, `--batch "small:4/8": batch size 8 given twice for small`)
	wantError(t, []string{"bench", "--batch", "4,4"}, `--batch "4": batch size 4 given twice for the shapes without sizes of their own`)
	wantError(t, []string{"bench", "--device", "tpu"}, "unknown device")
	// Counts that would not fit in memory (or overflow) are refused before
	// anything runs, as is a k beyond the keys of a direction.
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", "4", "--steps", "99999999999"}, "--steps 99999999999", "at most 1000000")
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", "4", "--warmup", "9223372036854775807"}, "--warmup", "at most 1000000")
	wantError(t, []string{"bench", "--topk-images", "100", "--topk-k", "1000"}, "--topk-k 1000", "100 keys")
	wantError(t, []string{"bench", "--json", t.TempDir()}, "--json", "a directory, not a regular file")
	// Given empty, the report went nowhere without a word.
	wantError(t, []string{"bench", "--json", ""}, `bench: --json "" is empty: give --json a value`)
	wantError(t, []string{"bench", "--out", ""}, `bench: --out "" is empty`)
	wantError(t, []string{"bench", "--precision", ""}, `bench: --precision "" is empty`)
	noDir := filepath.Join(t.TempDir(), "nonexistent", "x.json")
	wantError(t, []string{"bench", "--json", noDir}, "--json "+noDir+": cannot write into "+filepath.Dir(noDir)+": no such file or directory")
	if entries, _ := os.ReadDir(filepath.Dir(filepath.Dir(noDir))); len(entries) != 0 {
		t.Errorf("a refused --json left %v", entries)
	}
	// Numbers in decimal, as everywhere: 016 is refused, not read as 16.
	wantError(t, []string{"bench", "--shape", "016x16x1x8"}, `--shape "016x16x1x8"`)
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", "010"}, `--batch "010"`)
	// The report goes nowhere a run or an index keeps its files, and
	// --json is none of --out's files.
	run, data, _ := trainRun(t)
	index := filepath.Join(t.TempDir(), "index")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	model := filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile)
	wantError(t, []string{"bench", "--json", model}, "--json "+model+" is in a training checkpoint")
	// A refusal makes no --out.
	newOut := filepath.Join(t.TempDir(), "new", "out")
	wantError(t, []string{"bench", "--out", newOut, "--json", model}, "in a training checkpoint")
	wantError(t, []string{"bench", "--out", newOut, "--json", filepath.Join(t.TempDir(), "nonexistent", "b.json")}, "cannot write into")
	wantError(t, append(slices.Clone(benchTiny), "--out", newOut, "--data-dir", filepath.Join(t.TempDir(), "nonexistent")), "--data-dir")
	if _, err := os.Stat(filepath.Dir(newOut)); err == nil {
		t.Errorf("a refused bench made %s", filepath.Dir(newOut))
	}
	wantError(t, []string{"bench", "--json", filepath.Join(index, "manifest.json")}, "in the search index")
	wantError(t, []string{"bench", "--out", filepath.Join(run, train.CheckpointsDir)}, "checkpoints directory "+filepath.Join(run, train.CheckpointsDir))
	wantError(t, []string{"bench", "--out", index}, "in the search index")
	// The data benchmark's scratch shards go nowhere a run or an index
	// keeps its files (a killed bench leaves them there).
	wantError(t, append(slices.Clone(benchTiny), "--data-dir", index), "--data-dir "+index+" is in the search index")
	wantError(t, append(slices.Clone(benchTiny), "--data-dir", run), "--data-dir "+run+" is in the run directory")
	outDir := t.TempDir()
	wantError(t, []string{"bench", "--out", outDir, "--json", filepath.Join(outDir, "bench.txt")}, "it is --out's bench.txt")
	wantError(t, []string{"bench", "--steps", "0"}, "--steps 0")
	wantError(t, []string{"bench", "--shape", "8x16x1x4", "--batch", "2", "--kernel-min-time", "-1s"}, "--kernel-min-time -1s", "must not be negative")
	wantError(t, []string{"bench", "--data-dtype", "int8", "--shape", "8x16x1x4", "--batch", "4"}, "--data-dtype")
	wantError(t, []string{"bench", "--data-rows", "10", "--data-batch", "20"}, "--data-batch 20")
	wantError(t, []string{"bench", "extra"}, "unexpected argument")
	wantError(t, []string{"bench", "--precision", "bf16"}, "--precision bf16", "GPU")
	wantError(t, []string{"bench", "--precision", "fp64"}, "--precision fp64", "fp32 or bf16")
	wantError(t, []string{"bench", "--peak-tflops", "Inf"}, "--peak-tflops +Inf", "finite")
	wantError(t, []string{"bench", "--peak-tflops", "NaN"}, "--peak-tflops NaN", "finite")
	// (Its fractions overflowed to +Inf, and the JSON was refused at the end.)
	wantError(t, []string{"bench", "--peak-tflops", "1e-320"}, "--peak-tflops 1e-320: below 1e-06", "TFLOP/s")
	wantError(t, []string{"bench", "--data-rows", "1000000000000"}, "--data-rows 1000000000000", "at most")
	// Within the rows bound, but --shape's widths make the shards too large.
	wantError(t, []string{"bench", "--shape", "1000000x2x0x1", "--data-rows", "100000"}, "--data-rows 100000 of 1000000 + 1 float16 values", "GB of shards")
	// A --data-dir that cannot hold the shards fails before any benchmark.
	missing := filepath.Join(t.TempDir(), "nope")
	_, stderr, err := runCLI(t, append(slices.Clone(benchTiny), "--data-dir", missing)...)
	if err == nil || !strings.Contains(err.Error(), "--data-dir") || strings.Contains(stderr, "train: ") {
		t.Errorf("bench with a missing --data-dir: %v, want it refused before the training benchmark; stderr:\n%s", err, stderr)
	}
	// So does one whose file system has too little room for them, and the
	// scratch directory made there goes.
	small := t.TempDir()
	defer func(saved func(string) (uint64, bool)) { diskFree = saved }(diskFree)
	diskFree = func(string) (uint64, bool) { return 1 << 20, true }
	_, stderr, err = runCLI(t, append(slices.Clone(benchTiny), "--data-dir", small)...)
	if err == nil || !strings.Contains(err.Error(), "with their headers and a margin of 64 MiB for what the benchmarks before it write, it needs") || !strings.Contains(err.Error(), "0.00105 GB free") || strings.Contains(stderr, "train: ") {
		t.Errorf("bench with a --data-dir of 1 MiB free: %v, want it refused before the training benchmark; stderr:\n%s", err, stderr)
	}
	if entries, _ := os.ReadDir(small); len(entries) != 0 {
		t.Errorf("the refused bench left %v in --data-dir", entries)
	}
}

// TestBenchJSONReplacesOnlyAReport checks that --json replaces an
// earlier report, or an empty file, and refuses any other file (a model
// or a configuration file named by a slip), before measuring, leaving it
// as it was.
func TestBenchJSONReplacesOnlyAReport(t *testing.T) {
	dir := t.TempDir()
	quick := []string{"bench", "--shape", "8x16x1x4", "--batch", "4", "--warmup", "0", "--steps", "1", "--min-time", "0",
		"--kernels=false", "--topk=false", "--data=false", "--json"}
	report := filepath.Join(dir, "b.json")
	mustRun(t, append(slices.Clone(quick), report)...)
	mustRun(t, append(slices.Clone(quick), report)...)
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, append(slices.Clone(quick), empty)...)
	if _, err := bench.ReadReport(empty); err != nil {
		t.Errorf("the empty file was not replaced by a report: %v", err)
	}
	others := map[string][]byte{
		"config.yaml":       []byte("epochs: 4\n"),
		"other.json":        []byte(`{"schema": "dinoclip-bench-compare/1"}`),
		"model.safetensors": nil,
	}
	run, _, _ := trainRun(t)
	model, err := os.ReadFile(filepath.Join(run, checkpoint.BestLink, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	others["model.safetensors"] = model
	for name, content := range others {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := runCLI(t, append(slices.Clone(quick), path)...)
		if err == nil || !strings.Contains(err.Error(), "--json "+path+" exists and is no dinoclip bench report") || strings.Contains(stderr, "train: ") {
			t.Errorf("bench --json %s: %v, want it refused before measuring; stderr:\n%s", name, err, stderr)
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
			t.Errorf("bench --json %s changed the file", name)
		}
	}
}

// TestBenchOutWaitsForAnotherWriter checks that a bench writing its report
// into --out waits while another bench holds the directory's lock for the
// moment of its writing (two benches ending at once left one's bench.json
// beside the other's bench.txt), that one held longer (a demo or a synth
// writing there holds it for minutes) does not lose the report, and that
// a bench removes the temporaries a bench killed while writing left there
// and leaves nothing of its own but its two files.
func TestBenchOutWaitsForAnotherWriter(t *testing.T) {
	out := t.TempDir()
	stale := filepath.Join(out, ".bench.txt.tmp-123456")
	if err := os.WriteFile(stale, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	quick := []string{"bench", "--shape", "8x16x1x4", "--batch", "4", "--warmup", "0", "--steps", "1", "--min-time", "0",
		"--kernels=false", "--topk=false", "--data=false", "--out", out}
	release, err := flock.LockDir(out) // (as a demo writing there holds it, throughout)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, quick...)
	if err != nil {
		t.Fatalf("bench into a directory a demo holds: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) || !strings.Contains(stderr, "removed "+stale) {
		t.Errorf("the leftover of a killed bench: %v\n%s", err, stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 2 {
		t.Errorf("bench --out left %v, want its two files", entries)
	}
	first, err := os.ReadFile(filepath.Join(out, benchJSONFile))
	if err != nil {
		t.Fatal(err)
	}
	// Held for less than the wait, as by another bench writing: waited for.
	done := make(chan error)
	go func() {
		_, _, err := runCLI(t, quick...)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("bench ended while another held --out's lock for less than its wait: %v", err)
	case <-time.After(benchLockWait / 2):
	}
	if now, _ := os.ReadFile(filepath.Join(out, benchJSONFile)); !bytes.Equal(now, first) {
		t.Error("bench wrote its report while another held --out's lock")
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := bench.ReadReport(filepath.Join(out, benchJSONFile)); err != nil {
		t.Error(err)
	}
}

// TestBenchCUDAWithoutTheTag checks that the CPU-only build says how to get
// the GPU engine rather than benchmarking something else.
func TestBenchCUDAWithoutTheTag(t *testing.T) {
	if _, err := newEngine("cuda", train.PrecisionFP32, nn.Config{InputDim: 8, HiddenDim: 16, Blocks: 1, OutputDim: 4}); err == nil {
		t.Skip("this build has a CUDA engine")
	}
	wantError(t, []string{"bench", "--device", "cuda", "--shape", "8x16x1x4", "--batch", "4", "--topk=false", "--data=false"},
		"--device cuda", "-tags cuda")
}

// Sizes the host cannot hold are refused with a message before anything
// is allocated: a top-k width whose vectors overflow an int (it panicked
// in makeslice), top-k counts and a training batch beyond the free memory
// (the runtime died out of memory).
func TestBenchRefusesSizesBeyondMemory(t *testing.T) {
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--kernels=false", "--topk-dim", "99999999999999"}, "--topk-dim 99999999999999", "GiB of memory")
	if _, ok := sysmem.Available(); !ok {
		t.Skip("this system gives no free-memory figure, so the checks against it are off")
	}
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--kernels=false", "--topk-images", "2000000000", "--topk-captions", "2000000000"}, "--topk-images 2000000000", "GiB of memory")
	wantError(t, []string{"bench", "--shape", "8x8x1x8", "--batch", "99999999999", "--kernels=false", "--topk=false"}, "--shape 8x8x1x8 --batch 99999999999", "GiB on the CPU", "use a smaller --shape or --batch")
	// On a GPU the batches are drawn in host memory too, before the engine
	// checks the GPU's (in every build: the check comes before the device).
	wantError(t, []string{"bench", "--device", "cuda", "--shape", "8x8x1x8", "--batch", "99999999999", "--kernels=false", "--topk=false"},
		"--shape 8x8x1x8 --batch 99999999999", "GiB of host memory", "use a smaller --shape or --batch")
}

// probeWrite refuses a directory nothing can be written into, naming it,
// and leaves nothing in one that can.
func TestProbeWrite(t *testing.T) {
	dir := t.TempDir()
	if err := probeWrite(dir, benchJSONFile); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the probe left %v", entries)
	}
	file := filepath.Join(dir, "f")
	writeFile(t, file, "x")
	if err := probeWrite(file, benchJSONFile); err == nil || !strings.Contains(err.Error(), "cannot write into "+file) {
		t.Errorf("a probe into a file: %v, want a refusal naming it", err)
	}
}

// A link at --out's bench.json or bench.txt is replaced by the report, not
// written through: one at an index's manifest replaced the manifest.
func TestBenchOutReplacesLinks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bench.json", "bench.txt"} {
		victim := filepath.Join(dir, "victim-"+name)
		if err := os.WriteFile(victim, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, filepath.Join(out, name)); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "bench", "--shape", "8x16x1x4", "--batch", "4", "--warmup", "0", "--steps", "1", "--min-time", "0",
		"--kernels=false", "--topk=false", "--data=false", "--out", out)
	for _, name := range []string{"bench.json", "bench.txt"} {
		if b, _ := os.ReadFile(filepath.Join(dir, "victim-"+name)); string(b) != "mine" {
			t.Errorf("the file a link at --out's %s led to was written: %q", name, b)
		}
		if st, err := os.Lstat(filepath.Join(out, name)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("--out's %s: %v, %v; want the report, a plain file", name, st.Mode(), err)
		}
	}
}
