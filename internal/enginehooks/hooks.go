package enginehooks

// Synchronizer is an engine that runs asynchronously (a GPU engine):
// Synchronize returns once all work queued so far has finished. Timed
// regions end with a call to it, so that a step's time includes its work.
type Synchronizer interface {
	Synchronize() error
}

// DeviceNamer names the device an engine runs on, e.g. "NVIDIA H100 80GB
// HBM3"; the report's device name and the default peak come from it.
type DeviceNamer interface {
	DeviceName() string
}

// KernelTimer is an engine that can time its own kernels (with device
// events, say). After ResetKernelTimings, the engine accumulates one entry
// per kernel and shape until KernelTimings is called. Timing may slow the
// engine down, so package bench times kernels in steps of their own, after
// the timed training steps.
type KernelTimer interface {
	// ResetKernelTimings starts (or restarts) accumulating timings.
	ResetKernelTimings() error
	// KernelTimings returns what accumulated since the last reset, and
	// stops accumulating.
	KernelTimings() ([]KernelTiming, error)
}

// KernelTiming is one kernel at one shape, as a KernelTimer reports it.
type KernelTiming struct {
	// Name is the kernel, e.g. "gemm_nt_bias" or "ln_forward".
	Name string `json:"name"`
	// Shape describes its problem size in the engine's words, e.g.
	// "M=8192 N=2048 K=2048".
	Shape string `json:"shape,omitempty"`
	// Calls is how many launches the total covers.
	Calls int `json:"calls"`
	// Seconds is the device time of all Calls launches together.
	Seconds float64 `json:"seconds"`
	// FLOPs and Bytes are the work of one launch: FLOPs for compute-bound
	// kernels (GEMMs), Bytes (the fewest the kernel must read and write)
	// for memory-bound ones. Zero means not applicable.
	FLOPs float64 `json:"flops,omitempty"`
	Bytes float64 `json:"bytes,omitempty"`
}

// MemoryReporter is an engine that knows its peak device memory use.
type MemoryReporter interface {
	// ResetPeakMemory starts a new peak from the current use.
	ResetPeakMemory() error
	// PeakMemoryBytes is the most device memory in use since the last reset
	// (or since the engine was built).
	PeakMemoryBytes() (int64, error)
}

// CopyBandwidthProber is an engine that can measure its device's
// device-to-device copy bandwidth (bytes read plus bytes written per
// second), the ceiling its memory-bound kernels are judged against.
type CopyBandwidthProber interface {
	CopyBandwidth(bytes int64) (bytesPerSecond float64, err error)
}

// TopKer is an engine that ranks keys itself (a GPU top-k kernel), with the
// contract of retrieval.TopK. Without it package bench times retrieval.TopK
// on the CPU.
type TopKer interface {
	TopK(queries, keys []float32, nQueries, nKeys, dim, k int) ([]int32, []float32, error)
}
