package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/enginehooks"
	"github.com/dinoclip/dinoclip/nn"
)

// Schema names the layout of a Report; it changes when a field changes
// meaning.
const Schema = schemaName + "1"

// schemaName begins the schema of a Report of every version.
const schemaName = "dinoclip-bench/"

// Status of a section or measurement.
const (
	Measured   = "measured"
	Unmeasured = "unmeasured" // wanted, but not measured: the engine or machine cannot provide it, or the run failed there or stopped before it (the reason says which)
	Skipped    = "skipped"    // turned off by the caller
)

// Report is one benchmark run: where it ran and everything it measured, each
// measurement with its parameters. It is the JSON that `dinoclip bench
// --json` writes and bench/compare.py reads.
type Report struct {
	Schema string   `json:"schema"`
	Env    Env      `json:"env"`
	Args   []string `json:"args,omitempty"`

	Train   []TrainResult     `json:"train"`
	Recipe  *RecipeProjection `json:"recipe_projection,omitempty"`
	Kernels KernelReport      `json:"kernels"`
	Copy    CopyBandwidth     `json:"copy_bandwidth"`
	TopK    TopKReport        `json:"topk"`
	Data    DataReport        `json:"data"`
	Notes   []string          `json:"notes,omitempty"`
	// Unmeasured lists, in words, every quantity this run was asked for or
	// is expected to report but did not measure, and why.
	Unmeasured []string `json:"unmeasured"`
}

// Stats summarises repeated timings of one thing, in seconds.
type Stats struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Mean    float64   `json:"mean"`
	Samples []float64 `json:"samples"`
}

// Memory is a peak memory figure or why there is none.
type Memory struct {
	Status string `json:"status"`
	Bytes  int64  `json:"bytes,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// TrainResult is the training-step throughput of one engine at one shape
// and batch: forward, unit-norm MSE loss, backward and one AdamW step with
// OneCycleLR hyperparameters, on batches already in memory.
type TrainResult struct {
	ConfigName string    `json:"config_name"`
	Config     nn.Config `json:"config"`
	Params     int       `json:"params"`
	Batch      int       `json:"batch"`
	Warmup     int       `json:"warmup_steps"`
	Steps      int       `json:"timed_steps"`
	// Data is the steps' data path, DataResident or DataHost; DataNote says
	// why an engine that can hold the data resident did not.
	Data     string `json:"data"`
	DataNote string `json:"data_note,omitempty"`
	// Pipelined: each step was one nn.PipelinedEngine.StepRows call (the
	// whole step enqueued at once, on a GPU as a captured CUDA graph, its
	// loss read a step late), as train runs resident MSE steps.
	Pipelined bool `json:"pipelined,omitempty"`

	StepSeconds      Stats   `json:"step_seconds"`
	SamplesPerSecond float64 `json:"samples_per_second"` // batch / median step time
	FLOPsPerStep     float64 `json:"flops_per_step"`     // Config.FLOPsPerSample x batch
	TFLOPs           float64 `json:"tflops"`             // FLOPsPerStep / median step time
	PeakTFLOPs       float64 `json:"peak_tflops,omitempty"`
	FractionOfPeak   float64 `json:"fraction_of_peak,omitempty"`

	LossFirst  float64 `json:"loss_first"`
	LossLast   float64 `json:"loss_last"`
	PeakMemory Memory  `json:"peak_memory"`
}

// KernelReport is the time of each kernel (or CPU operation) of one
// training step.
type KernelReport struct {
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Source     string    `json:"source,omitempty"`
	ConfigName string    `json:"config_name,omitempty"`
	Config     nn.Config `json:"config"`
	Batch      int       `json:"batch,omitempty"`
	// CopyBytesPerSecond is the copy bandwidth memory-bound kernels are
	// judged against; PeakTFLOPs the compute peak GEMMs are.
	CopyBytesPerSecond float64 `json:"copy_bytes_per_second,omitempty"`
	PeakTFLOPs         float64 `json:"peak_tflops,omitempty"`
	// StepSeconds is the measured median training step at this shape and
	// batch (0 if not measured); AccountedSeconds the per-step sum of the
	// kernels below, each at its calls per step.
	StepSeconds      float64        `json:"step_seconds,omitempty"`
	AccountedSeconds float64        `json:"accounted_seconds,omitempty"`
	Kernels          []KernelResult `json:"kernels,omitempty"`
}

// KernelResult is one kernel at one shape.
type KernelResult struct {
	enginehooks.KernelTiming
	Kind           string  `json:"kind"`                     // "gemm" or "memory"
	CallsPerStep   float64 `json:"calls_per_step,omitempty"` // launches of this kernel and shape in one training step
	SecondsPerCall float64 `json:"seconds_per_call"`
	TFLOPs         float64 `json:"tflops,omitempty"`
	BytesPerSecond float64 `json:"bytes_per_second,omitempty"`
	// FractionOfPeak (GEMMs) and FractionOfCopy (memory-bound kernels).
	FractionOfPeak float64 `json:"fraction_of_peak,omitempty"`
	FractionOfCopy float64 `json:"fraction_of_copy,omitempty"`
}

// CopyBandwidth is the measured memory copy bandwidth: bytes read plus
// bytes written per second.
type CopyBandwidth struct {
	Status         string  `json:"status"`
	Reason         string  `json:"reason,omitempty"`
	Source         string  `json:"source,omitempty"`
	Bytes          int64   `json:"bytes,omitempty"` // size of the buffer copied
	Seconds        Stats   `json:"seconds"`
	BytesPerSecond float64 `json:"bytes_per_second,omitempty"`
}

// TopKReport is retrieval top-k throughput in both directions.
type TopKReport struct {
	Status  string       `json:"status"`
	Reason  string       `json:"reason,omitempty"`
	Results []TopKResult `json:"results,omitempty"`
}

// TopKResult is one direction of retrieval: every query row against every
// key row, keeping the k best.
type TopKResult struct {
	Direction        string  `json:"direction"` // "text->image" or "image->text"
	Impl             string  `json:"impl"`
	Queries          int     `json:"queries"`
	Keys             int     `json:"keys"`
	Dim              int     `json:"dim"`
	K                int     `json:"k"`
	Seconds          Stats   `json:"seconds"`
	QueriesPerSecond float64 `json:"queries_per_second"`
	// TFLOPs counts the scores: 2 x queries x keys x dim flops.
	TFLOPs float64 `json:"tflops"`
}

// DataReport is the data loader's throughput.
type DataReport struct {
	Status  string       `json:"status"`
	Reason  string       `json:"reason,omitempty"`
	Results []DataResult `json:"results,omitempty"`
}

// DataResult is one pass of the data loader: batches of an epoch's
// permutation read with train.Dataset.ReadRows, from shards on disk.
type DataResult struct {
	Dir       string `json:"dir"`
	Rows      int    `json:"rows"`
	Shards    int    `json:"shards"`
	InputDim  int    `json:"input_dim"`
	OutputDim int    `json:"output_dim"`
	DType     string `json:"dtype"`
	Batch     int    `json:"batch"`
	Batches   int    `json:"batches"`
	// Cache is "warm" (the files in the page cache, as right after writing
	// them) or "cold" (their pages dropped with posix_fadvise DONTNEED
	// before opening); ColdError says why a cold pass could not be set up.
	Cache     string  `json:"cache"`
	ColdError string  `json:"cold_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	// FileBytes is what the rows occupy in the files (what must come off
	// the disk); RowsPerSecond and FileBytesPerSecond are over Seconds.
	FileBytes          int64   `json:"file_bytes"`
	RowsPerSecond      float64 `json:"rows_per_second"`
	FileBytesPerSecond float64 `json:"file_bytes_per_second"`
}

// JSON is the report as WriteJSON writes it (indented, a final newline).
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	return append(b, '\n'), err
}

// WriteJSON writes the report to path (atomicfile.Write: a link there is
// followed).
func (r *Report) WriteJSON(path string) error {
	b, err := r.JSON()
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, b)
}

// ReadReport reads a Report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeReport(b)
}

// DecodeReport parses a Report and checks its schema.
func DecodeReport(b []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench report: %w", err)
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("bench report: schema %q, want %q", r.Schema, Schema)
	}
	return &r, nil
}

// IsReport reports whether b is the JSON of a Report of any schema
// version: a file that bench --json may replace.
func IsReport(b []byte) bool {
	var r struct {
		Schema string `json:"schema"`
	}
	return json.Unmarshal(b, &r) == nil && strings.HasPrefix(r.Schema, schemaName)
}
