package bench

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/train"
)

// Configs are the model shapes the benchmark knows by name.
var Configs = map[string]nn.Config{
	// default: the original model, 54.6M parameters.
	"default": nn.DefaultConfig(),
	// small: the original's input and output widths with a narrow, shallow
	// trunk (0.56M parameters), for quick CPU runs; the same shape as
	// nn's BenchmarkTrainStep "small".
	"small": {InputDim: 768, HiddenDim: 256, OutputDim: 512, Blocks: 2},
}

// ConfigNames lists Configs' names in a fixed order.
var ConfigNames = []string{"default", "small"}

// Recipe hyperparameters of the benchmark's steps: the original recipe's
// schedule (SPEC §1.4: OneCycleLR with max_lr 1e-3 over 16 epochs of 8M
// pairs at batch 8192), of which the benchmark runs the first steps. The
// values only set the learning rate and β1; they do not change the work.
const (
	RecipePairs  = 8_000_000
	RecipeEpochs = 16
	RecipeBatch  = 8192
	RecipeMaxLR  = 1e-3
)

// TrainOptions are the parameters of MeasureTrain.
type TrainOptions struct {
	ConfigName string // recorded in the result
	Batch      int
	Timing     Timing
	// Seed draws the initial parameters (nn.InitParameters) and the data.
	Seed uint64
	// DistinctBatches is how many different batches the steps cycle
	// through (default 2).
	DistinctBatches int
	// PeakTFLOPs, when positive, gives FractionOfPeak.
	PeakTFLOPs float64
}

// MeasureTrain times full training steps of e: ForwardBackward on a batch
// already in host memory, then Step with the AdamW hyperparameters of the
// recipe's OneCycleLR schedule. The engine's parameters are reset to
// nn.InitParameters(seed) first and its moments start from zero.
//
// Each step is timed on its own, up to the end of Step (and Synchronize,
// for an engine that implements enginehooks.Synchronizer). An engine whose interface
// takes host slices copies the batch to the device inside the step, so for
// a GPU engine the time includes that copy.
func MeasureTrain(e nn.Engine, o TrainOptions) (TrainResult, error) {
	c := e.Config()
	if o.Batch < 1 {
		return TrainResult{}, fmt.Errorf("train benchmark: batch %d", o.Batch)
	}
	if o.DistinctBatches < 1 {
		o.DistinctBatches = 2
	}
	res := TrainResult{
		ConfigName: o.ConfigName, Config: c, Params: c.NumParams(), Batch: o.Batch,
		Warmup: o.Timing.Warmup, FLOPsPerStep: c.FLOPsPerSample() * float64(o.Batch),
	}
	if err := e.SetParameters(nn.InitParameters[float32](c, o.Seed)); err != nil {
		return res, err
	}
	zeros := make([]float32, c.NumParams())
	if err := e.SetMoments(zeros, zeros); err != nil {
		return res, err
	}
	zeros = nil
	xs, ts := RandomBatches(c, o.DistinctBatches, o.Batch, o.Seed)

	mem, memOK := e.(enginehooks.MemoryReporter)
	if memOK {
		if err := mem.ResetPeakMemory(); err != nil {
			return res, fmt.Errorf("reset peak memory: %w", err)
		}
	}
	sched := train.NewOneCycle(RecipeMaxLR, RecipeEpochs, RecipePairs/RecipeBatch)
	adam := train.DefaultAdamW()
	var sync func() error
	if s, ok := e.(enginehooks.Synchronizer); ok {
		sync = s.Synchronize
	}
	losses := make([]float64, 0, o.Timing.Warmup+o.Timing.Steps)
	stats, err := repeat(o.Timing, sync, func(i int) error {
		b := i % o.DistinctBatches
		loss, err := e.ForwardBackward(xs[b], ts[b], o.Batch)
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		losses = append(losses, loss)
		// Steps beyond the schedule (only in very long runs) reuse its last
		// values; the work is the same.
		step := min(i+1, sched.TotalSteps)
		return e.Step(adam.Step(sched, step))
	})
	if err != nil {
		return res, fmt.Errorf("train benchmark (%s, batch %d): %w", c, o.Batch, err)
	}
	res.Steps = len(stats.Samples)
	res.StepSeconds = stats
	res.SamplesPerSecond = float64(o.Batch) / stats.Median
	res.TFLOPs = res.FLOPsPerStep / stats.Median / 1e12
	if o.PeakTFLOPs > 0 {
		res.PeakTFLOPs = o.PeakTFLOPs
		res.FractionOfPeak = res.TFLOPs / o.PeakTFLOPs
	}
	res.LossFirst, res.LossLast = losses[0], losses[len(losses)-1]
	if math.IsNaN(res.LossLast) || math.IsInf(res.LossLast, 0) {
		return res, fmt.Errorf("train benchmark: loss %v", res.LossLast)
	}
	res.PeakMemory = Memory{Status: Unmeasured, Reason: fmt.Sprintf("engine %T does not report device memory (enginehooks.MemoryReporter)", e)}
	if memOK {
		b, err := mem.PeakMemoryBytes()
		if err != nil {
			res.PeakMemory.Reason = err.Error()
		} else {
			res.PeakMemory = Memory{Status: Measured, Bytes: b}
		}
	}
	return res, nil
}

// MeasureEngineKernels runs steps training steps of e at batch with its
// kernel timer on and returns the per-kernel times, per step. Engines
// without an enginehooks.KernelTimer get an unmeasured report saying so.
func MeasureEngineKernels(e nn.Engine, configName string, batch, steps int, seed uint64) (KernelReport, error) {
	c := e.Config()
	rep := KernelReport{ConfigName: configName, Config: c, Batch: batch, Source: "engine KernelTimer"}
	kt, ok := e.(enginehooks.KernelTimer)
	if !ok {
		rep.Status = Unmeasured
		rep.Reason = fmt.Sprintf("engine %T does not time its kernels (enginehooks.KernelTimer)", e)
		return rep, nil
	}
	if steps < 1 {
		steps = 1
	}
	xs, ts := RandomBatches(c, 1, batch, seed)
	sched := train.NewOneCycle(RecipeMaxLR, RecipeEpochs, RecipePairs/RecipeBatch)
	adam := train.DefaultAdamW()
	if err := kt.ResetKernelTimings(); err != nil {
		return rep, err
	}
	for i := range steps {
		if _, err := e.ForwardBackward(xs[0], ts[0], batch); err != nil {
			return rep, err
		}
		if err := e.Step(adam.Step(sched, i+1)); err != nil {
			return rep, err
		}
	}
	if s, ok := e.(enginehooks.Synchronizer); ok {
		if err := s.Synchronize(); err != nil {
			return rep, err
		}
	}
	timings, err := kt.KernelTimings()
	if err != nil {
		return rep, err
	}
	rep.Status = Measured
	for _, t := range timings {
		kind := "memory"
		if t.FLOPs > 0 {
			kind = "gemm"
		}
		r := KernelResult{KernelTiming: t, Kind: kind, CallsPerStep: float64(t.Calls) / float64(steps)}
		if t.Calls > 0 {
			r.SecondsPerCall = t.Seconds / float64(t.Calls)
		}
		rep.Kernels = append(rep.Kernels, r)
	}
	return rep, nil
}

// RandomBatches returns n batches of rows: inputs [rows, InputDim] and
// targets [rows, OutputDim] drawn from N(0, 1) with a PCG stream keyed by
// seed.
func RandomBatches(c nn.Config, n, rows int, seed uint64) (xs, ts [][]float32) {
	rng := rand.New(rand.NewPCG(seed, 0xbe7c4))
	for range n {
		x, t := make([]float32, rows*c.InputDim), make([]float32, rows*c.OutputDim)
		fillNormal(rng, x)
		fillNormal(rng, t)
		xs, ts = append(xs, x), append(ts, t)
	}
	return xs, ts
}

func fillNormal(rng *rand.Rand, v []float32) {
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
}
