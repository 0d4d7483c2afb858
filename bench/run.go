package bench

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"time"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/nn"
)

// Case is one model shape and the batch sizes to time it at.
type Case struct {
	ConfigName string
	Config     nn.Config
	Batches    []int
}

// RunOptions are the parameters of Run.
type RunOptions struct {
	// Device is recorded in the report and picks the kernel and copy
	// bandwidth measurements: "cpu" times nn's operations and Go's copy
	// itself; any other device asks the engine's hooks.
	Device string
	Cases  []Case
	// Train is the timing of training steps.
	Train Timing
	Seed  uint64
	// PeakTFLOPs overrides DefaultPeak when positive.
	PeakTFLOPs float64
	// HostBatches times training steps on batches in host memory even on an
	// engine that can hold the data resident (TrainOptions.HostBatches).
	HostBatches bool

	// Kernels times the kernels of one step of the first case, at its batch
	// nearest 8192, with KernelTiming (CPU) or KernelSteps steps (engine
	// hook).
	Kernels      bool
	KernelTiming Timing
	KernelSteps  int
	// CopyBytes is the buffer size of the CPU copy-bandwidth measurement.
	CopyBytes int64

	TopK bool
	// TopKOpts.Timing times retrieval.TopK on the CPU; TopKEngineTiming,
	// if set, times an engine's own top-k (a GPU kernel takes milliseconds
	// where the CPU takes seconds).
	TopKOpts         TopKOptions
	TopKEngineTiming Timing

	Data     bool
	DataOpts DataOptions

	// Log, if not nil, gets a line as each measurement starts.
	Log io.Writer
}

// Run measures what o asks for with engines from newEngine and returns the
// report. Engines are built one case at a time and closed after it. A
// measurement that fails stops the run: the report of what was measured
// is returned with the error, its sections saying which failed and which
// were not reached.
func Run(o RunOptions, newEngine func(nn.Config) (nn.Engine, error)) (*Report, error) {
	if len(o.Cases) == 0 {
		return nil, fmt.Errorf("bench: no model shapes to measure")
	}
	// Every timing is checked before the first is measured: a bad one
	// found after the training steps would throw their minutes away.
	if err := o.Train.validate(); err != nil {
		return nil, fmt.Errorf("bench: training steps: %w", err)
	}
	if err := o.KernelTiming.validate(); o.Kernels && o.Device == "cpu" && err != nil { // (an engine's kernels: KernelSteps)
		return nil, fmt.Errorf("bench: kernels: %w", err)
	}
	if err := o.TopKOpts.Timing.validate(); o.TopK && err != nil {
		return nil, fmt.Errorf("bench: top-k: %w", err)
	}
	if err := o.TopKEngineTiming.validate(); o.TopK && o.TopKEngineTiming.Steps > 0 && err != nil {
		return nil, fmt.Errorf("bench: top-k on the engine: %w", err)
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	r := &Report{Schema: Schema, Env: NewEnv(o.Device)}
	// Each section says why it holds no measurement until one replaces
	// that: turned off, or, when the run stops early (a failure), not
	// reached.
	const notReached = "not reached: the run stopped before it"
	r.Kernels = KernelReport{Status: Skipped, Reason: "turned off (--kernels=false)"}
	r.Copy = CopyBandwidth{Status: Skipped, Reason: "turned off with the kernels (--kernels=false)"}
	if o.Kernels {
		r.Kernels = KernelReport{Status: Unmeasured, Reason: notReached}
		r.Copy = CopyBandwidth{Status: Unmeasured, Reason: notReached}
	}
	r.TopK = TopKReport{Status: Skipped, Reason: "turned off (--topk=false)"}
	if o.TopK {
		r.TopK = TopKReport{Status: Unmeasured, Reason: notReached}
	}
	r.Data = DataReport{Status: Skipped, Reason: "turned off (--data=false)"}
	if o.Data {
		r.Data = DataReport{Status: Unmeasured, Reason: notReached}
	}
	err := runStages(r, o, newEngine, logf)
	r.Recipe = ProjectRecipe(r.Train)
	r.Env.LoadAvgEnd = LoadAvg()
	r.Unmeasured = unmeasured(r)
	return r, err
}

// runStages runs Run's measurements in turn, filling r, and stops at the
// first that fails, whose section then says so.
func runStages(r *Report, o RunOptions, newEngine func(nn.Config) (nn.Engine, error), logf func(string, ...any)) error {
	for ci, cs := range o.Cases {
		if len(cs.Batches) == 0 {
			return fmt.Errorf("bench: no batch sizes for %s", cs.ConfigName)
		}
		e, err := newEngine(cs.Config)
		if err != nil {
			return err
		}
		err = runCase(r, o, ci, cs, e, logf)
		if cerr := e.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		runtime.GC()
	}

	if o.TopK && r.TopK.Status != Measured {
		t := o.TopKOpts
		logf("top-k: %d captions x %d images x %d, k %d, on the CPU", t.Captions, t.Images, t.Dim, t.K)
		rep, err := MeasureTopK(t)
		if err != nil {
			r.TopK.Reason = "failed: " + err.Error()
			return err
		}
		r.TopK = rep
	}
	if o.Data {
		d := o.DataOpts
		logf("data loader: %d rows in %d shards, batch %d", d.Rows, d.Shards, d.Batch)
		rep, err := MeasureData(d)
		if err != nil {
			r.Data.Reason = "failed: " + err.Error()
			return err
		}
		r.Data = rep
	}
	return nil
}

// PeakFlagSource is the Source of a peak given by RunOptions.PeakTFLOPs.
const PeakFlagSource = "--peak-tflops"

// runCase measures one case on its engine; the first case also carries the
// device-wide measurements (device name, peak, copy bandwidth, kernels,
// top-k on the engine).
func runCase(r *Report, o RunOptions, ci int, cs Case, e nn.Engine, logf func(string, ...any)) error {
	if ci == 0 {
		r.Env.Engine = engineDescription(e)
		if d, ok := e.(enginehooks.DeviceNamer); ok {
			r.Env.DeviceName = d.DeviceName()
		}
		r.Env.Peak = DefaultPeak(o.Device, r.Env.DeviceName, r.Env.GOMAXPROCS)
		if o.PeakTFLOPs > 0 {
			r.Env.Peak = Peak{TFLOPs: o.PeakTFLOPs, Precision: "as given", Source: PeakFlagSource}
		}
	}
	peak := r.Env.Peak.TFLOPs
	for _, b := range cs.Batches {
		logf("train: %s (%s), batch %d", cs.ConfigName, cs.Config, b)
		res, err := MeasureTrain(e, TrainOptions{ConfigName: cs.ConfigName, Batch: b, Timing: o.Train, Seed: o.Seed, PeakTFLOPs: peak, HostBatches: o.HostBatches})
		if err != nil {
			return err
		}
		path := res.Data + " data"
		if res.Pipelined {
			path += ", pipelined steps"
		}
		logf("  %.4g ms/step, %.4g samples/s, %s", 1e3*res.StepSeconds.Median, res.SamplesPerSecond, path)
		r.Train = append(r.Train, res)
	}
	if ci != 0 {
		return nil
	}

	if o.Kernels {
		if o.Device == "cpu" {
			logf("copy bandwidth: %d MiB", o.CopyBytes>>20)
			c, err := MeasureCopyBandwidth(o.CopyBytes, o.KernelTiming)
			if err != nil {
				r.Copy.Reason = "failed: " + err.Error()
				return err
			}
			r.Copy = c
		} else if p, ok := e.(enginehooks.CopyBandwidthProber); ok {
			logf("copy bandwidth on the device")
			bps, err := p.CopyBandwidth(1 << 30)
			if err != nil {
				r.Copy.Reason = "failed: " + err.Error()
				return err
			}
			r.Copy = CopyBandwidth{Status: Measured, Source: fmt.Sprintf("%T.CopyBandwidth", e), Bytes: 1 << 30, BytesPerSecond: bps}
		} else {
			r.Copy = CopyBandwidth{Status: Unmeasured, Reason: fmt.Sprintf("engine %T does not measure its copy bandwidth (enginehooks.CopyBandwidthProber)", e)}
		}

		kb := nearestBatch(cs.Batches, RecipeBatch)
		var rep KernelReport
		var err error
		if o.Device == "cpu" {
			logf("kernels: %s, batch %d, one by one", cs.ConfigName, kb)
			rep, err = MeasureCPUKernels(cs.ConfigName, cs.Config, kb, o.KernelTiming, r.Copy.BytesPerSecond, peak, o.Seed)
		} else {
			logf("kernels: %s, batch %d, through the engine's timer", cs.ConfigName, kb)
			rep, err = MeasureEngineKernels(e, cs.ConfigName, kb, max(1, o.KernelSteps), o.Seed)
			rep.CopyBytesPerSecond, rep.PeakTFLOPs = r.Copy.BytesPerSecond, peak
			if rep.Status == Measured {
				FinishKernels(&rep)
			}
		}
		if err != nil {
			r.Kernels.Reason = "failed: " + err.Error()
			return err
		}
		for _, t := range r.Train {
			if t.Config == cs.Config && t.Batch == kb {
				rep.StepSeconds = t.StepSeconds.Median
			}
		}
		r.Kernels = rep
	}

	if o.TopK && o.Device != "cpu" {
		if tk, ok := e.(enginehooks.TopKer); ok {
			t := o.TopKOpts
			t.Engine = tk
			if o.TopKEngineTiming.Steps > 0 {
				t.Timing = o.TopKEngineTiming
			}
			logf("top-k: %d captions x %d images x %d, k %d, on the engine", t.Captions, t.Images, t.Dim, t.K)
			rep, err := MeasureTopK(t)
			if err != nil {
				r.TopK.Reason = "failed: " + err.Error()
				return err
			}
			r.TopK = rep
			// The engine's first search checked the GPU's, which its
			// description then tells of.
			r.Env.Engine = engineDescription(e)
		} else {
			r.Notes = append(r.Notes, fmt.Sprintf("engine %T has no top-k of its own (enginehooks.TopKer): top-k was timed on the CPU (retrieval.TopK)", e))
		}
	}
	return nil
}

// engineDescription is e's own description where it has one (the GPU
// engine's: the GPU, the kernels it loaded, any fallback of its checks),
// else its Go type.
func engineDescription(e nn.Engine) string {
	if d, ok := e.(fmt.Stringer); ok {
		return d.String()
	}
	return fmt.Sprintf("%T", e)
}

// nearestBatch is the batch in bs nearest target on a log scale, the larger
// on a tie.
func nearestBatch(bs []int, target int) int {
	best := bs[0]
	d := func(b int) float64 { return math.Abs(math.Log(float64(b) / float64(target))) }
	for _, b := range bs[1:] {
		if d(b) < d(best) || (d(b) == d(best) && b > best) {
			best = b
		}
	}
	return best
}

// unmeasured lists in words what r lacks and why.
func unmeasured(r *Report) []string {
	out := []string{}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, t := range r.Train {
		if t.PeakMemory.Status != Measured {
			add("peak device memory: " + t.PeakMemory.Reason)
		}
	}
	if r.Kernels.Status != Measured {
		add("per-kernel times: " + r.Kernels.Reason)
	}
	if r.Copy.Status != Measured {
		add("copy bandwidth: " + r.Copy.Reason)
	}
	if r.TopK.Status != Measured {
		add("top-k throughput: " + r.TopK.Reason)
	}
	if r.Data.Status != Measured {
		add("data loader throughput: " + r.Data.Reason)
	}
	for _, d := range r.Data.Results {
		if d.ColdError != "" {
			add("cold data loader read: " + d.ColdError)
		}
	}
	if r.Env.Peak.TFLOPs <= 0 {
		add("fraction of peak: " + r.Env.Peak.Source)
	}
	if r.Recipe == nil {
		add("recipe projection: the default model was not measured")
	}
	return out
}

// Elapsed is a helper for callers that log how long a run took.
func Elapsed(start time.Time) string { return FormatDuration(time.Since(start).Seconds()) }
