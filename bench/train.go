package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/internal/leconv"
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
// schedule (docs/TRAINING.md: OneCycleLR with max_lr 1e-3 over 16 epochs of 8M
// pairs at batch 8192), of which the benchmark runs the first steps. The
// values only set the learning rate and β1; they do not change the work.
const (
	RecipePairs  = 8_000_000
	RecipeEpochs = 16
	RecipeBatch  = 8192
	RecipeMaxLR  = 1e-3
)

// DefaultDistinctBatches is how many batches MeasureTrain draws unless told.
const DefaultDistinctBatches = 2

// TrainHostBytes is what MeasureTrain holds in host memory besides the
// engine's own, at batch rows of c with the default options: the initial
// weights and zero moments it loads, and its random batches.
func TrainHostBytes(c nn.Config, batch int) float64 {
	return 8*float64(c.NumParams()) + DefaultDistinctBatches*4*float64(batch)*float64(c.InputDim+c.OutputDim)
}

// TrainOptions are the parameters of MeasureTrain.
type TrainOptions struct {
	ConfigName string // recorded in the result
	Batch      int
	Timing     Timing
	// Seed draws the initial parameters (nn.InitParameters) and the data.
	Seed uint64
	// DistinctBatches is how many different batches the steps cycle
	// through (default DefaultDistinctBatches).
	DistinctBatches int
	// PeakTFLOPs, when positive, gives FractionOfPeak.
	PeakTFLOPs float64
	// HostBatches times the host-batch path (ForwardBackward on batches in
	// host memory) even on an engine that can hold the data resident.
	HostBatches bool
}

// The data paths of a training step, TrainResult.Data.
const (
	// DataResident: the batches' rows are gathered on the engine's device
	// from float16 data loaded once (nn.ResidentEngine), what dinoclip
	// train does on a GPU by default.
	DataResident = "resident"
	// DataHost: each batch is in host memory and the engine takes it from
	// there (nn.Engine.ForwardBackward), what train does on the CPU and with
	// --resident off.
	DataHost = "host"
)

// MeasureTrain times full training steps of e, on the data path dinoclip
// train uses by default: on an nn.ResidentEngine (a GPU) the distinct
// batches are loaded into the engine once, as float16, and each step is
// ForwardBackwardRows on a shuffled batch of row indices; on any other
// engine (or with HostBatches, or when the engine cannot hold the data) it
// is ForwardBackward on a batch in host memory, which a GPU engine copies to
// the device inside the step. Either way Step follows, with the AdamW
// hyperparameters of the recipe's OneCycleLR schedule. The engine's
// parameters are reset to nn.InitParameters(seed) first and its moments
// start from zero.
//
// Each step is timed on its own, up to the end of Step (and Synchronize,
// for an engine that implements enginehooks.Synchronizer); on an
// nn.PipelinedEngine with the data resident, the path dinoclip train takes
// there, a step is one StepRows call, which waits only for the step before
// it (TrainResult.Pipelined).
func MeasureTrain(e nn.Engine, o TrainOptions) (TrainResult, error) {
	c := e.Config()
	if o.Batch < 1 {
		return TrainResult{}, fmt.Errorf("train benchmark: batch %d", o.Batch)
	}
	if o.DistinctBatches < 1 {
		o.DistinctBatches = DefaultDistinctBatches
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
	forwardBackward := func(b int) (float64, error) { return e.ForwardBackward(xs[b], ts[b], o.Batch) }
	res.Data = DataHost
	var pipe nn.PipelinedEngine // the engine, when it takes the pipelined path
	var rows [][]int32
	if re, ok := e.(nn.ResidentEngine); ok && !o.HostBatches {
		var err error
		rows, err = loadResident(re, xs, ts, o.Batch, o.Seed)
		switch {
		case err == nil:
			res.Data = DataResident
			forwardBackward = func(b int) (float64, error) { return re.ForwardBackwardRows(rows[b]) }
			pipe, _ = re.(nn.PipelinedEngine)
		case errors.Is(err, nn.ErrNotResident):
			res.DataNote = err.Error()
		default:
			return res, fmt.Errorf("train benchmark: loading the batches into the engine: %w", err)
		}
	}

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
	// The first and last losses, which the result reports.
	var losses [2]float64
	nLosses := 0
	record := func(loss float64) {
		if nLosses == 0 {
			losses[0] = loss
		}
		losses[1] = loss
		nLosses++
	}
	// Steps beyond the schedule (only in very long runs) reuse its last
	// values; the work is the same.
	hp := func(i int) nn.AdamWStep { return adam.Step(sched, min(i+1, sched.TotalSteps)) }
	step := func(i int) error {
		loss, err := forwardBackward(i % o.DistinctBatches)
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		record(loss)
		return e.Step(hp(i))
	}
	if pipe != nil {
		// The path train takes: each call enqueues a step and waits only
		// for the one before it, so that once the pipeline is full a call
		// lasts as long as the device takes for a step. No Synchronize
		// between steps, which would empty the pipeline.
		res.Pipelined, sync = true, nil
		step = func(i int) error {
			loss, done, err := pipe.StepRows(rows[i%o.DistinctBatches], hp(i))
			if errors.Is(err, nn.ErrNonFinite) {
				return fmt.Errorf("step %d: %w", i, err) // the step before's loss
			}
			if err != nil {
				return fmt.Errorf("step %d: %w", i+1, err)
			}
			if done {
				record(loss)
			}
			return nil
		}
	}
	stats, err := repeat(o.Timing, sync, step)
	if err == nil && pipe != nil {
		var loss float64
		if loss, _, err = pipe.FlushLoss(); err == nil {
			record(loss)
		}
	}
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
	res.LossFirst, res.LossLast = losses[0], losses[1]
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

// loadResident loads the batches xs, ts into e as float16 and returns, for
// each batch, its rows in a shuffled order: a step then gathers rows from
// all over the resident data, as a shuffled epoch does.
func loadResident(e nn.ResidentEngine, xs, ts [][]float32, batch int, seed uint64) ([][]int32, error) {
	c := e.Config()
	n := len(xs) * batch
	read := func(lo, hi int, x, t []uint16) error {
		for r := lo; r < hi; r++ {
			b, i := r/batch, r%batch
			for j, v := range xs[b][i*c.InputDim : (i+1)*c.InputDim] {
				x[(r-lo)*c.InputDim+j] = leconv.Float16Bits(v)
			}
			for j, v := range ts[b][i*c.OutputDim : (i+1)*c.OutputDim] {
				t[(r-lo)*c.OutputDim+j] = leconv.Float16Bits(v)
			}
		}
		return nil
	}
	if err := e.LoadResident(n, batch, read); err != nil {
		return nil, err
	}
	perm := rand.New(rand.NewPCG(seed, 0x5e1ec7)).Perm(n)
	rows := make([][]int32, len(xs))
	for b := range rows {
		rows[b] = make([]int32, batch)
		for i := range batch {
			rows[b][i] = int32(perm[b*batch+i])
		}
	}
	return rows, nil
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
