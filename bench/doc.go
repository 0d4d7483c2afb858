// Package bench measures dinoclip against the hardware and against PyTorch.
//
// It holds engine-agnostic measurement functions, each of which returns a
// JSON-ready result carrying its own parameters:
//
//   - [MeasureTrain]: training-step throughput of any [nn.Engine] at a model
//     shape and batch size (warm-up steps, then timed steps: samples/s,
//     ms/step, achieved TFLOP/s and the fraction of a stated peak);
//   - [MeasureCPUKernels]: the CPU engine's operations (GEMMs, LayerNorm,
//     GELU, loss, AdamW) timed one by one at the shapes of one training
//     step, each with its achieved GFLOP/s or GB/s, and [MeasureCopyBandwidth],
//     the memory bandwidth they are judged against;
//   - [MeasureTopK]: retrieval top-k throughput at MSCOCO-like shapes
//     (25,000 captions x 5,000 images x 512), in both directions;
//   - [MeasureData]: the data loader (train.Dataset.ReadRows over
//     train.Order batches) reading shards it writes to disk, warm (page
//     cache) and cold (the files' pages dropped first).
//
// An engine may implement the optional hooks of package
// internal/enginehooks (Synchronizer, KernelTimer, MemoryReporter,
// DeviceNamer, CopyBandwidthProber, TopKer); what an engine
// does not provide is reported as "unmeasured" with the reason, never left
// out silently.
//
// # Accounting
//
// Model FLOPs are nn.Config.FLOPsPerSample times the batch: 6 flops per
// matrix weight per sample (forward, input gradient, weight gradient). Both
// dinoclip and PyTorch skip the input gradient of the first layer, so this
// counts 2*InputDim*HiddenDim flops per sample (0.5% of the default model)
// that neither executes; the same count is used for both sides, so ratios
// are unaffected. Bytes of a memory-bound kernel are the fewest it must move
// (each input read once, each output written once); copy bandwidth counts
// bytes read plus bytes written.
//
// # Timing
//
// Every timed region ends with the device idle (an engine that runs
// asynchronously must implement enginehooks.Synchronizer), but for the
// pipelined training steps of an nn.PipelinedEngine: each is one StepRows
// call, which waits only for the step before it, as training's steps do,
// so that once the pipeline is full a step's time is the device's. A
// measurement runs its warm-up, then at least Steps timed repetitions and
// at least MinTime of them, each timed on its own; the reported time is
// the median, with min, max and mean beside it.
//
// The PyTorch side of each comparison is bench/torch_ref.py, and
// bench/compare.py runs both on one machine in one run and writes the
// ratios; see bench/README.md.
package bench
