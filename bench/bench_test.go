package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// tiny is a model small enough for every measurement to take milliseconds.
var tiny = nn.Config{InputDim: 48, HiddenDim: 64, OutputDim: 32, Blocks: 2}

var quick = Timing{Warmup: 1, Steps: 3}

func cpuEngine(c nn.Config) (nn.Engine, error) { return nn.NewCPUEngine[float32](c) }

// TestFLOPsByHand checks the FLOP accounting against a count done by hand,
// and the kernel list's GEMMs against it.
func TestFLOPsByHand(t *testing.T) {
	c := nn.Config{InputDim: 4, HiddenDim: 6, OutputDim: 2, Blocks: 1}
	// Matrix weights: input_proj 4x6 = 24, one block 2 x 6x6 = 72, head
	// 6x3 = 18 and 3x2 = 6: 120 weights, 6 flops each per sample.
	if got := c.FLOPsPerSample(); got != 720 {
		t.Fatalf("FLOPsPerSample = %v, want 720", got)
	}
	const batch = 5
	var gemm float64
	for _, k := range StepKernels(c, batch) {
		if k.Kind == "gemm" {
			gemm += k.FLOPs * float64(k.Calls)
		}
	}
	// Everything but the first layer's input gradient, 2 x 4 x 6 per row.
	if want := 720.0*batch - 2*4*6*batch; gemm != want {
		t.Errorf("GEMM FLOPs of one step = %v, want %v", gemm, want)
	}
	e, err := cpuEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := MeasureTrain(e, TrainOptions{Batch: batch, Timing: quick, Seed: 1, PeakTFLOPs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.FLOPsPerStep != 720*batch {
		t.Errorf("FLOPsPerStep = %v, want %v", res.FLOPsPerStep, 720*batch)
	}
	if want := 720 * batch / res.StepSeconds.Median / 1e12; !(math.Abs(res.TFLOPs-want) <= 1e-12*want) {
		t.Errorf("TFLOPs = %v, want %v", res.TFLOPs, want)
	}
	if res.FractionOfPeak != res.TFLOPs {
		t.Errorf("fraction of a 1 TFLOP/s peak = %v, want %v", res.FractionOfPeak, res.TFLOPs)
	}
}

// TestStepKernelsDefault checks the kernel list of the default model
// against the model: every Linear's forward and weight gradient, every
// Linear but the first's input gradient, and the LayerNorms and GELUs.
func TestStepKernelsDefault(t *testing.T) {
	c := nn.DefaultConfig()
	calls := map[string]int{}
	var gemm float64
	for _, k := range StepKernels(c, 64) {
		calls[k.Name] += k.Calls
		gemm += k.FLOPs * float64(k.Calls)
	}
	want := map[string]int{
		"gemm_fwd_nt": 15, "gemm_dgrad_nn": 14, "gemm_wgrad_tn": 15,
		"layernorm_fwd": 14, "layernorm_bwd": 14, "gelu_fwd": 7, "gelu_bwd": 7,
		"bias_grad_colsum": 15, "unit_norm_mse": 1, "adamw": 1,
	}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls per step %v, want %v", calls, want)
	}
	if w := c.FLOPsPerSample()*64 - 2*768*2048*64; gemm != w {
		t.Errorf("GEMM FLOPs %v, want %v", gemm, w)
	}
}

func TestMeasureTrain(t *testing.T) {
	e, err := cpuEngine(tiny)
	if err != nil {
		t.Fatal(err)
	}
	res, err := MeasureTrain(e, TrainOptions{ConfigName: "tiny", Batch: 16, Timing: quick, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 3 || len(res.StepSeconds.Samples) != 3 || res.Warmup != 1 {
		t.Errorf("steps %d (%d samples), warm-up %d; want 3 timed after 1", res.Steps, len(res.StepSeconds.Samples), res.Warmup)
	}
	s := res.StepSeconds
	if !(s.Min > 0 && s.Min <= s.Median && s.Median <= s.Max && s.Min <= s.Mean && s.Mean <= s.Max) {
		t.Errorf("step statistics out of order: %+v", s)
	}
	if want := 16 / s.Median; res.SamplesPerSecond != want || !(want > 0) {
		t.Errorf("samples/s %v, want %v", res.SamplesPerSecond, want)
	}
	if res.Params != tiny.NumParams() || res.Config != tiny || res.ConfigName != "tiny" {
		t.Errorf("result describes %s %v with %d params", res.ConfigName, res.Config, res.Params)
	}
	if !(res.LossFirst > 0) || math.IsInf(res.LossLast, 0) || res.LossLast >= res.LossFirst {
		t.Errorf("loss %v -> %v: want it finite and falling on repeated batches", res.LossFirst, res.LossLast)
	}
	if res.PeakMemory.Status != Unmeasured || !strings.Contains(res.PeakMemory.Reason, "MemoryReporter") {
		t.Errorf("CPU engine peak memory: %+v, want unmeasured naming the hook", res.PeakMemory)
	}
	if res.FractionOfPeak != 0 {
		t.Errorf("fraction of peak %v without a peak", res.FractionOfPeak)
	}
	if res.Data != DataHost {
		t.Errorf("the CPU engine's steps ran on %q data, want %q", res.Data, DataHost)
	}
}

// residentCPU is a CPU engine that holds its training data resident, as the
// GPU engine does, and counts which path each step took.
type residentCPU struct {
	*nn.CPUEngine[float32]
	notResident      bool // LoadResident fails with nn.ErrNotResident
	rows             int
	x, t             []uint16
	hostSteps        int
	residentSteps    int
	residentRowsSeen map[int32]int
}

func (e *residentCPU) LoadResident(rows, batch int, read nn.Float16Reader) error {
	if e.notResident {
		return fmt.Errorf("%d rows need more memory than the device has: %w", rows, nn.ErrNotResident)
	}
	c := e.Config()
	e.rows, e.x, e.t = rows, make([]uint16, rows*c.InputDim), make([]uint16, rows*c.OutputDim)
	return read(0, rows, e.x, e.t)
}

func (e *residentCPU) ForwardBackward(x, t []float32, n int) (float64, error) {
	e.hostSteps++
	return e.CPUEngine.ForwardBackward(x, t, n)
}

func (e *residentCPU) ForwardBackwardRows(rows []int32) (float64, error) {
	e.residentSteps++
	c := e.Config()
	x, t := make([]float32, len(rows)*c.InputDim), make([]float32, len(rows)*c.OutputDim)
	for i, r := range rows {
		e.residentRowsSeen[r]++
		for j := range c.InputDim {
			x[i*c.InputDim+j] = leconv.Float16Value(e.x[int(r)*c.InputDim+j])
		}
		for j := range c.OutputDim {
			t[i*c.OutputDim+j] = leconv.Float16Value(e.t[int(r)*c.OutputDim+j])
		}
	}
	return e.CPUEngine.ForwardBackward(x, t, len(rows))
}

// TestMeasureTrainResident checks that an engine that can hold the data
// resident is timed on that path, what dinoclip train uses on a GPU.
func TestMeasureTrainResident(t *testing.T) {
	newEngine := func(notResident bool) *residentCPU {
		e, err := nn.NewCPUEngine[float32](tiny)
		if err != nil {
			t.Fatal(err)
		}
		return &residentCPU{CPUEngine: e, notResident: notResident, residentRowsSeen: map[int32]int{}}
	}
	o := TrainOptions{ConfigName: "tiny", Batch: 16, Timing: quick, Seed: 2, DistinctBatches: 3}

	e := newEngine(false)
	res, err := MeasureTrain(e, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Data != DataResident || e.residentSteps != 4 || e.hostSteps != 0 {
		t.Errorf("data %q, %d resident and %d host steps; want resident, 4 and 0", res.Data, e.residentSteps, e.hostSteps)
	}
	// 4 steps cycle through 3 batches of 16 shuffled rows: rows 0..47, the
	// first batch's twice.
	if e.rows != 48 || len(e.residentRowsSeen) != 48 {
		t.Errorf("%d rows loaded, %d distinct rows used; want 48 and 48", e.rows, len(e.residentRowsSeen))
	}
	if !(res.LossLast < res.LossFirst) {
		t.Errorf("loss %v -> %v on resident data: want it falling", res.LossFirst, res.LossLast)
	}

	o.HostBatches = true
	e = newEngine(false)
	if res, err = MeasureTrain(e, o); err != nil {
		t.Fatal(err)
	}
	if res.Data != DataHost || e.residentSteps != 0 || e.hostSteps != 4 || e.rows != 0 {
		t.Errorf("HostBatches: data %q, %d resident and %d host steps, %d rows loaded", res.Data, e.residentSteps, e.hostSteps, e.rows)
	}

	o.HostBatches = false
	e = newEngine(true)
	if res, err = MeasureTrain(e, o); err != nil {
		t.Fatal(err)
	}
	if res.Data != DataHost || e.hostSteps != 4 || !strings.Contains(res.DataNote, "more memory than the device has") {
		t.Errorf("data that does not fit: data %q (%q), %d host steps", res.Data, res.DataNote, e.hostSteps)
	}
}

// pipelinedCPU is a residentCPU that also takes whole steps at once, the
// loss returned a call late, as the GPU engine does (nn.PipelinedEngine).
type pipelinedCPU struct {
	*residentCPU
	pending    bool
	loss       float64
	stepRows   int
	plainSteps int
}

func (e *pipelinedCPU) StepRows(rows []int32, s nn.AdamWStep) (float64, bool, error) {
	e.stepRows++
	prev, done := e.loss, e.pending
	loss, err := e.ForwardBackwardRows(rows)
	if err != nil {
		return 0, false, err
	}
	e.loss, e.pending = loss, true
	return prev, done, e.CPUEngine.Step(s)
}

func (e *pipelinedCPU) FlushLoss() (float64, bool, error) {
	done := e.pending
	e.pending = false
	return e.loss, done, nil
}

func (e *pipelinedCPU) Step(s nn.AdamWStep) error {
	e.plainSteps++
	return e.CPUEngine.Step(s)
}

// TestMeasureTrainPipelined: an engine that takes whole steps is timed on
// that path, what dinoclip train uses for resident MSE steps on a GPU,
// with every step's loss, the last one flushed.
func TestMeasureTrainPipelined(t *testing.T) {
	c, err := nn.NewCPUEngine[float32](tiny)
	if err != nil {
		t.Fatal(err)
	}
	e := &pipelinedCPU{residentCPU: &residentCPU{CPUEngine: c, residentRowsSeen: map[int32]int{}}}
	res, err := MeasureTrain(e, TrainOptions{ConfigName: "tiny", Batch: 16, Timing: quick, Seed: 2, DistinctBatches: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pipelined || res.Data != DataResident || e.stepRows != 4 || e.plainSteps != 0 || e.pending {
		t.Errorf("pipelined %v, data %q, %d StepRows and %d Step calls, a loss left pending %v; want pipelined resident, 4, 0, none",
			res.Pipelined, res.Data, e.stepRows, e.plainSteps, e.pending)
	}
	if !(res.LossLast < res.LossFirst) || res.LossLast != e.loss {
		t.Errorf("loss %v -> %v (the last step's %v): want it falling, ending at the flushed loss", res.LossFirst, res.LossLast, e.loss)
	}
}

func TestRepeatMinTime(t *testing.T) {
	n := 0
	s, err := repeat(Timing{Warmup: 2, Steps: 1, MinTime: 20 * time.Millisecond}, nil, func(int) error {
		n++
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Timed runs continue until they add up to 20 ms and stop then: each
	// sleeps at least 5 ms, so there are 1 to 4 of them (fewer on a loaded
	// machine, where a sleep overshoots).
	var sum float64
	for _, v := range s.Samples {
		sum += v
	}
	last := s.Samples[len(s.Samples)-1]
	if n != len(s.Samples)+2 || len(s.Samples) > 4 || sum < 0.020 || sum-last >= 0.020 {
		t.Errorf("%d runs, %d timed adding up to %.3g s: want 2 warm-up, then timed runs until they add up to 20 ms", n, len(s.Samples), sum)
	}
	if _, err := repeat(Timing{Steps: 0}, nil, func(int) error { return nil }); err == nil {
		t.Error("no error for 0 timed steps")
	}
	if got := NewStats([]float64{4, 1, 3, 2}); got.Median != 2.5 || got.Min != 1 || got.Max != 4 || got.Mean != 2.5 {
		t.Errorf("NewStats = %+v", got)
	}
}

func TestMeasureTopK(t *testing.T) {
	rep, err := MeasureTopK(TopKOptions{Images: 50, Captions: 250, Dim: 16, K: 10, Timing: quick, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Results))
	}
	for i, want := range []struct {
		dir    string
		nq, nk int
	}{{"text->image", 250, 50}, {"image->text", 50, 250}} {
		r := rep.Results[i]
		if r.Direction != want.dir || r.Queries != want.nq || r.Keys != want.nk || r.K != 10 || r.Dim != 16 {
			t.Errorf("result %d: %+v, want %s %d queries over %d keys", i, r, want.dir, want.nq, want.nk)
		}
		if !(r.QueriesPerSecond > 0) || math.Abs(r.TFLOPs-2*float64(want.nq*want.nk*16)/r.Seconds.Median/1e12) > 1e-9*r.TFLOPs {
			t.Errorf("result %d: %v queries/s, %v TFLOP/s", i, r.QueriesPerSecond, r.TFLOPs)
		}
	}
}

func TestMeasureData(t *testing.T) {
	rep, err := MeasureData(DataOptions{
		Dir: t.TempDir(), Rows: 300, Shards: 3, InputDim: 24, OutputDim: 8, Float16: true, Batch: 64, Cold: true, Seed: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[0].Cache != "warm" || rep.Results[1].Cache != "cold" {
		t.Fatalf("results %+v, want a warm and a cold pass", rep.Results)
	}
	for _, r := range rep.Results {
		if r.Batches != 4 {
			t.Errorf("%s: %d batches, want 300/64 = 4", r.Cache, r.Batches)
		}
		if want := int64(4 * 64 * (24 + 8) * 2); r.FileBytes != want {
			t.Errorf("%s: %d file bytes, want %d", r.Cache, r.FileBytes, want)
		}
		if !(r.RowsPerSecond > 0) || !(r.FileBytesPerSecond > 0) {
			t.Errorf("%s: %v rows/s, %v B/s", r.Cache, r.RowsPerSecond, r.FileBytesPerSecond)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(rep.Results[0].Dir, "*")); len(matches) != 0 {
		t.Errorf("the data directory was left behind: %v", matches)
	}
	if _, err := MeasureData(DataOptions{Rows: 10, Shards: 1, InputDim: 2, OutputDim: 2, Batch: 11}); err == nil {
		t.Error("no error for a batch larger than the data")
	}
}

func TestProjectRecipe(t *testing.T) {
	d := nn.DefaultConfig()
	if ProjectRecipe([]TrainResult{{Config: tiny, Batch: 8192, SamplesPerSecond: 1}}) != nil {
		t.Error("projection from a model that is not the default")
	}
	at := func(b int, sps float64) TrainResult { return TrainResult{Config: d, Batch: b, SamplesPerSecond: sps} }
	p := ProjectRecipe([]TrainResult{at(4096, 1e5), at(8192, 2e5), at(16384, 3e5)})
	if p.Steps != 15625 || p.MeasuredBatch != 8192 || p.Scaled || p.Seconds != 128e6/2e5 || p.StepSeconds != 8192/2e5 {
		t.Errorf("projection %+v", p)
	}
	p = ProjectRecipe([]TrainResult{at(64, 100), at(1024, 400)})
	if !p.Scaled || p.MeasuredBatch != 1024 || p.Seconds != 128e6/400 || !strings.Contains(p.Note, "batch 1024") {
		t.Errorf("scaled projection %+v", p)
	}
}

func TestDefaultPeak(t *testing.T) {
	if p := DefaultPeak("cuda", "NVIDIA H100 80GB HBM3", 16); p.TFLOPs != 989 {
		t.Errorf("H100 peak %+v", p)
	}
	if p := DefaultPeak("cuda", "Some GPU", 16); p.TFLOPs != 0 || !strings.Contains(p.Source, "--peak-tflops") {
		t.Errorf("unknown GPU peak %+v", p)
	}
	if p := DefaultPeak("cpu", "", 2); p.TFLOPs < 0 || p.Source == "" {
		t.Errorf("CPU peak %+v", p)
	}
}

func TestFormatDuration(t *testing.T) {
	for s, want := range map[float64]string{3.21: "3.21 s", 59.99: "60 s", 125: "2 min 5 s", 3599.7: "1 h 0 min", 7500: "2 h 5 min", 90000: "1 d 1 h"} {
		if got := FormatDuration(s); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", s, got, want)
		}
	}
}

// TestRunRoundTrip runs every measurement on tiny shapes, writes the JSON,
// reads it back and prints the table.
func TestRunRoundTrip(t *testing.T) {
	o := RunOptions{
		Device: "cpu",
		Cases: []Case{
			{ConfigName: "tiny", Config: tiny, Batches: []int{8, 16}},
			{ConfigName: "tinier", Config: nn.Config{InputDim: 8, HiddenDim: 8, OutputDim: 4, Blocks: 1}, Batches: []int{4}},
		},
		Train: quick, Seed: 5,
		Kernels: true, KernelTiming: Timing{Steps: 2}, CopyBytes: 1 << 20,
		TopK: true, TopKOpts: TopKOptions{Images: 20, Captions: 100, Dim: 8, K: 5, Timing: quick},
		Data: true, DataOpts: DataOptions{Dir: t.TempDir(), Rows: 128, Shards: 2, InputDim: 8, OutputDim: 4, Float16: true, Batch: 32, Cold: true},
	}
	r, err := Run(o, cpuEngine)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Train) != 3 || r.Kernels.Status != Measured || r.Copy.Status != Measured || r.TopK.Status != Measured || r.Data.Status != Measured {
		t.Fatalf("report: %d train results, kernels %s, copy %s, top-k %s, data %s",
			len(r.Train), r.Kernels.Status, r.Copy.Status, r.TopK.Status, r.Data.Status)
	}
	if r.Kernels.Batch != 16 || r.Kernels.StepSeconds != r.Train[1].StepSeconds.Median || !(r.Kernels.AccountedSeconds > 0) {
		t.Errorf("kernels at batch %d, step %v (train %v), accounted %v",
			r.Kernels.Batch, r.Kernels.StepSeconds, r.Train[1].StepSeconds.Median, r.Kernels.AccountedSeconds)
	}
	for _, k := range r.Kernels.Kernels {
		if !(k.SecondsPerCall > 0) || (k.Kind == "gemm") != (k.TFLOPs > 0) || (k.Kind == "memory") != (k.FractionOfCopy > 0) {
			t.Errorf("kernel %+v", k)
		}
	}
	if r.Recipe != nil {
		t.Error("recipe projection without the default model")
	}
	if r.Env.Commit == "" {
		t.Log("no commit found (not in a git checkout?)")
	}
	if r.Env.Device != "cpu" || r.Env.GOMAXPROCS < 1 || r.Env.GoVersion == "" || r.Env.Date == "" || r.Env.Engine == "" {
		t.Errorf("env %+v", r.Env)
	}
	wantUnmeasured := []string{"peak device memory", "recipe projection"}
	for _, w := range wantUnmeasured {
		found := false
		for _, u := range r.Unmeasured {
			found = found || strings.HasPrefix(u, w)
		}
		if !found {
			t.Errorf("unmeasured %q does not list %q", r.Unmeasured, w)
		}
	}

	path := filepath.Join(t.TempDir(), "bench.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("JSON round trip changed the report:\n got %+v\nwant %+v", back, r)
	}
	if _, err := DecodeReport([]byte(`{"schema": "other"}`)); err == nil {
		t.Error("no error for another schema")
	}

	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Training step", "samples/s", "Kernels of one training step", "gemm_fwd_nt", "adamw",
		"Copy bandwidth", "text->image", "image->text", "Data loader", "cold", "Unmeasured in this run"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	// A path with terminal escapes or a newline, in a note or in what was
	// not measured (a --data-dir's), is shown escaped: bench.txt and the
	// terminal get one line for it, and no colour.
	r.Notes = append(r.Notes, "incomplete: write /tmp/esc\x1b[31m\nX: no space left on device")
	r.Unmeasured = append(r.Unmeasured, "cold data loader read: /tmp/esc\x1b[31m\u202eX")
	buf.Reset()
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if s := buf.String(); strings.ContainsAny(s, "\x1b\u202e") || !strings.Contains(s, `/tmp/esc\x1b[31m\x0aX: no space`) || !strings.Contains(s, `/tmp/esc\x1b[31m\u202eX`) {
		t.Errorf("table shows a path raw, or not at all:\n%q", s)
	}
}

// hooked is the CPU engine with every optional hook, standing in for a GPU
// engine.
type hooked struct {
	*nn.CPUEngine[float32]
	syncs, resets int
	timing        bool
	launches      int
}

func (h *hooked) Synchronize() error                   { h.syncs++; return nil }
func (h *hooked) DeviceName() string                   { return "NVIDIA H100 80GB HBM3 (fake)" }
func (h *hooked) ResetPeakMemory() error               { h.resets++; return nil }
func (h *hooked) PeakMemoryBytes() (int64, error)      { return 3 << 30, nil }
func (h *hooked) CopyBandwidth(int64) (float64, error) { return 3e12, nil }
func (h *hooked) ResetKernelTimings() error            { h.timing, h.launches = true, 0; return nil }
func (h *hooked) ForwardBackward(x, t []float32, n int) (float64, error) {
	if h.timing {
		h.launches++
	}
	return h.CPUEngine.ForwardBackward(x, t, n)
}
func (h *hooked) KernelTimings() ([]enginehooks.KernelTiming, error) {
	h.timing = false
	return []enginehooks.KernelTiming{
		{Name: "gemm_nt", Shape: "M=16 N=64 K=64", Calls: 4 * h.launches, Seconds: 1e-3 * float64(h.launches), FLOPs: 2 * 16 * 64 * 64},
		{Name: "layernorm_fwd", Shape: "[16, 64]", Calls: 5 * h.launches, Seconds: 1e-4 * float64(h.launches), Bytes: 12 * 16 * 64},
	}, nil
}
func (h *hooked) TopK(q, k []float32, nq, nk, dim, kk int) ([]int32, []float32, error) {
	return retrieval.TopK(q, k, nq, nk, dim, kk)
}

func TestRunWithHooks(t *testing.T) {
	var engines []*hooked
	newEngine := func(c nn.Config) (nn.Engine, error) {
		e, err := nn.NewCPUEngine[float32](c)
		h := &hooked{CPUEngine: e}
		engines = append(engines, h)
		return h, err
	}
	r, err := Run(RunOptions{
		Device: "cuda", Cases: []Case{{ConfigName: "tiny", Config: tiny, Batches: []int{16}}},
		Train: quick, Kernels: true, KernelSteps: 2,
		TopK: true, TopKOpts: TopKOptions{Images: 20, Captions: 100, Dim: 8, K: 5, Timing: quick},
	}, newEngine)
	if err != nil {
		t.Fatal(err)
	}
	h := engines[0]
	if h.syncs < 4 || h.resets != 1 {
		t.Errorf("%d synchronisations and %d peak-memory resets", h.syncs, h.resets)
	}
	if r.Env.DeviceName != h.DeviceName() || r.Env.Peak.TFLOPs != 989 {
		t.Errorf("device %q, peak %+v", r.Env.DeviceName, r.Env.Peak)
	}
	if m := r.Train[0].PeakMemory; m.Status != Measured || m.Bytes != 3<<30 {
		t.Errorf("peak memory %+v", m)
	}
	if r.Copy.Status != Measured || r.Copy.BytesPerSecond != 3e12 {
		t.Errorf("copy bandwidth %+v", r.Copy)
	}
	k := r.Kernels
	if k.Status != Measured || len(k.Kernels) != 2 {
		t.Fatalf("kernels %+v", k)
	}
	gemm, ln := k.Kernels[0], k.Kernels[1]
	if gemm.Name != "gemm_nt" || gemm.CallsPerStep != 4 || gemm.SecondsPerCall != 2.5e-4 || gemm.Kind != "gemm" {
		t.Errorf("gemm %+v", gemm)
	}
	if want := 2 * 16 * 64 * 64 / 2.5e-4 / 1e12; !(math.Abs(gemm.TFLOPs-want) <= 1e-12) || !(math.Abs(gemm.FractionOfPeak-want/989) <= 1e-12) {
		t.Errorf("gemm rates %v TFLOP/s (%v of peak), want %v", gemm.TFLOPs, gemm.FractionOfPeak, want)
	}
	if want := 12 * 16 * 64 / 2e-5; ln.Kind != "memory" || !(math.Abs(ln.BytesPerSecond-want) <= 1e-6*want) || !(math.Abs(ln.FractionOfCopy-want/3e12) <= 1e-9) {
		t.Errorf("layernorm %+v, want %v B/s", ln, want)
	}
	if !(math.Abs(k.AccountedSeconds-1.1e-3) <= 1e-12) {
		t.Errorf("accounted %v s per step, want 1.1 ms", k.AccountedSeconds)
	}
	if r.TopK.Status != Measured || !strings.Contains(r.TopK.Results[0].Impl, "hooked") {
		t.Errorf("top-k %+v, want it on the engine", r.TopK)
	}
	for _, u := range r.Unmeasured {
		if strings.HasPrefix(u, "peak device memory") || strings.HasPrefix(u, "per-kernel") || strings.HasPrefix(u, "copy") {
			t.Errorf("unmeasured lists %q although the engine provides it", u)
		}
	}
}

// A run that stops at a failure returns what it measured, each section it
// did not measure saying why: the one that failed with its error, the
// ones after it as not reached, those turned off as turned off.
func TestRunStopsAtAFailure(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	o := RunOptions{
		Device: "cpu",
		Cases:  []Case{{ConfigName: "tiny", Config: tiny, Batches: []int{8}}},
		Train:  quick, Seed: 5,
		TopK: true, TopKOpts: TopKOptions{Images: 20, Captions: 100, Dim: 8, K: 5, Timing: quick},
		Data: true, DataOpts: DataOptions{Dir: notDir, Rows: 128, Shards: 2, InputDim: 8, OutputDim: 4, Batch: 32},
	}
	r, err := Run(o, cpuEngine)
	if err == nil || len(r.Train) != 1 || r.TopK.Status != Measured || r.Data.Status != Unmeasured ||
		!strings.HasPrefix(r.Data.Reason, "failed: ") || r.Kernels.Status != Skipped {
		t.Errorf("data stage failing: error %v, %d train results, top-k %s, data %s (%s), kernels %s",
			err, len(r.Train), r.TopK.Status, r.Data.Status, r.Data.Reason, r.Kernels.Status)
	}

	o.Cases = append(o.Cases, Case{ConfigName: "second", Config: tiny, Batches: []int{8}})
	calls := 0
	r, err = Run(o, func(c nn.Config) (nn.Engine, error) {
		if calls++; calls == 2 {
			return nil, errors.New("no engine")
		}
		return cpuEngine(c)
	})
	if err == nil || len(r.Train) != 1 || r.TopK.Reason != "not reached: the run stopped before it" || r.Data.Reason != r.TopK.Reason {
		t.Errorf("second engine failing: error %v, %d train results, top-k %q, data %q", err, len(r.Train), r.TopK.Reason, r.Data.Reason)
	}
}

// A bad timing is refused before anything is measured: one found after the
// training steps threw their minutes away.
func TestRunChecksTimingsFirst(t *testing.T) {
	engines := 0
	newEngine := func(c nn.Config) (nn.Engine, error) {
		engines++
		return nn.NewCPUEngine[float32](c)
	}
	for _, o := range []RunOptions{
		{Device: "cpu", Train: quick, Kernels: true, KernelTiming: Timing{Steps: 1, MinTime: -time.Second}},
		{Device: "cpu", Train: Timing{Steps: 0}},
		{Device: "cpu", Train: quick, TopK: true, TopKOpts: TopKOptions{Images: 20, Captions: 100, Dim: 8, K: 5, Timing: Timing{Steps: 0}}},
		{Device: "cuda", Train: quick, TopK: true, TopKOpts: TopKOptions{Images: 20, Captions: 100, Dim: 8, K: 5, Timing: quick},
			TopKEngineTiming: Timing{Steps: 1, MinTime: -time.Second}},
	} {
		o.Cases = []Case{{ConfigName: "tiny", Config: tiny, Batches: []int{16}}}
		if _, err := Run(o, newEngine); err == nil {
			t.Errorf("Run with %+v / %+v: no error", o.Train, o.KernelTiming)
		}
	}
	if engines != 0 {
		t.Errorf("%d engines made before the timings were refused", engines)
	}
}
