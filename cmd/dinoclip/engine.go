package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

// devices are the values of --device.
var devices = []string{"cpu", "cuda"}

// checkDevice validates --device.
func checkDevice(device string) error {
	for _, d := range devices {
		if device == d {
			return nil
		}
	}
	return fmt.Errorf("--device %q: unknown device, want %s", device, strings.Join(devices, " or "))
}

// projectionFlags reads what every command that runs a model over
// features takes (project, index): no positional arguments, the required
// flags, --batch (at least 1) and --device.
func projectionFlags(cCtx *cli.Context, required ...string) (batch int, device string, err error) {
	if err := noArgs(cCtx); err != nil {
		return 0, "", err
	}
	if err := requireFlags(cCtx, required...); err != nil {
		return 0, "", err
	}
	batch = cCtx.Int("batch")
	if err := checkAtLeast("batch", batch, 1); err != nil {
		return 0, "", err
	}
	device = cCtx.String("device")
	if err := checkDevice(device); err != nil {
		return 0, "", err
	}
	return batch, device, nil
}

// precisionUsage is the --precision flag of the commands that project
// (eval, project); train's adds fp64.
const precisionUsage = "`MODE` of the arithmetic on the GPU: bf16 (the default there: bf16 mixed precision, PyTorch autocast's semantics: bf16 GEMMs accumulating in fp32, fp32 LayerNorm, GELU and loss) or fp32 (the parity mode, as the CPU computes); the CPU computes in fp32"

// devicePrecision resolves --precision for device: "" is the device's
// default (bf16 on the GPU, fp32 on the CPU); bf16 is refused on the CPU,
// fp64 everywhere unless fp64 (train, CPU only). setting names the value
// where it was given (flagSetting).
func devicePrecision(device, precision, setting string, fp64 bool) (string, error) {
	if err := checkPrecisionName(precision, setting, fp64); err != nil {
		return "", err
	}
	switch {
	case precision == "" && device == "cpu":
		return train.PrecisionFP32, nil
	case precision == "":
		return train.PrecisionBF16, nil
	case precision == train.PrecisionBF16 && device == "cpu":
		return "", fmt.Errorf("%s: a mode of the GPU (--device cuda); the CPU engine computes in fp32%s", setting, map[bool]string{true: " or fp64", false: ""}[fp64])
	case precision == train.PrecisionFP64 && device != "cpu":
		return "", fmt.Errorf("%s: a mode of the CPU engine only, not of --device %s", setting, device)
	}
	return precision, nil
}

// precisionSetting names the command's --precision where it was given
// (quoted when it is none of the modes).
func precisionSetting(cCtx *cli.Context) string {
	v := cCtx.String("precision")
	switch v {
	case train.PrecisionFP32, train.PrecisionBF16, train.PrecisionFP64:
	default:
		v = strconv.Quote(v)
	}
	return flagSetting(cCtx, "precision", v)
}

// checkPrecisionName refuses a --precision that is none of fp32, bf16 and
// (when fp64: train) fp64, or "" (the device's default), whatever the
// device: what a command can check before it knows the device. setting
// names the value where it was given (flagSetting).
func checkPrecisionName(precision, setting string, fp64 bool) error {
	switch precision {
	case "", train.PrecisionFP32, train.PrecisionBF16:
		return nil
	case train.PrecisionFP64:
		if !fp64 {
			return fmt.Errorf("%s: want fp32 or bf16 (fp64 is a training mode)", setting)
		}
		return nil
	}
	want := "fp32 or bf16"
	if fp64 {
		want = "fp32, bf16 or fp64"
	}
	return fmt.Errorf("%s: want %s", setting, want)
}

// errNoCUDA is what --device cuda gets from a build without the cuda tag
// (device.go; the cuda build's newEngine never returns it).
var errNoCUDA = errors.New("this dinoclip was built without CUDA; rebuild with -tags cuda (see README)")

// openEngine builds an engine of shape c on device in precision (fp32 or
// bf16, resolved by devicePrecision): the float32 CPU engine for cpu,
// newEngine (device.go, by build tag) for the others.
func openEngine(device, precision string, c nn.Config) (nn.Engine, error) {
	if err := checkDevice(device); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if device == "cpu" {
		if precision != train.PrecisionFP32 {
			return nil, fmt.Errorf("--precision %s: the CPU engine computes in fp32", precision)
		}
		return nn.NewCPUEngine[float32](c)
	}
	e, err := newEngine(device, precision, c)
	if err != nil {
		return nil, deviceError{device, err}
	}
	return e, nil
}

// deviceError is an error of the engine or searcher on device, said as
// the flag that chose it: "--device cuda: ...", without the "cuda: " the
// GPU engine's own errors begin with.
type deviceError struct {
	device string
	err    error
}

func (e deviceError) Error() string {
	return "--device " + e.device + ": " + strings.TrimPrefix(e.err.Error(), e.device+": ")
}

func (e deviceError) Unwrap() error { return e.err }

// loadedModel is a model file read and put on an engine.
type loadedModel struct {
	Path string // the model file that --model resolved to
	// File is that file where it is (absolute, links resolved) when it
	// was read, for records that must name the file read: a run's best or
	// last link moves on as it trains.
	File      string
	Model     *checkpoint.Model
	Engine    nn.Engine
	Precision string // the engine's: the one asked for, or fp32 where the default bf16 does not fit
}

// resolveModel is checkpoint.Resolve, saying what a directory that holds
// no model is where it is another of dinoclip's outputs or inputs, given
// by a slip (an index, an evaluation set).
func resolveModel(path string) (string, error) {
	p, err := checkpoint.Resolve(path)
	if err == nil {
		return p, nil
	}
	what := ""
	switch {
	case retrieval.IsIndex(path):
		what = "a search index"
	case fileExists(filepath.Join(path, searchInfoFile)):
		what = "a search's output"
	case retrieval.HoldsSet(path):
		what = "an evaluation set"
	case train.HoldsShards(path), train.HoldsFeaturesOnly(path):
		what = "a directory of features"
	default:
		return "", err
	}
	return "", fmt.Errorf("%w: it is %s, not a model", err, what)
}

// loadModel resolves --model (a model file, a checkpoint directory or a run
// directory), reads it and loads it onto an engine on device in precision.
// Where precision is the GPU's default (flag, the --precision given, is
// empty) and the model's widths do not fit the bf16 engine, it computes in
// fp32 instead and says so on warn; an explicit --precision bf16 is
// refused for such a model.
func loadModel(model, device, precision, flag string, warn io.Writer) (*loadedModel, error) {
	if err := checkDevice(device); err != nil {
		return nil, err
	}
	path, err := resolveModel(model)
	if err != nil {
		return nil, err
	}
	file := atomicfile.RealOrAbs(path)
	m, err := checkpoint.ReadModel(file)
	if err != nil {
		if file != atomicfile.AbsPath(path) { // (the errors name the file read: say what led there)
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
		return nil, fmt.Errorf("model: %w", err)
	}
	if flag == "" && precision == train.PrecisionBF16 {
		if why := bf16Fits(m.Config); why != nil {
			fmt.Fprintf(warn, "dinoclip: %s: computing in fp32, not the GPU's default bf16 (%v)\n", printable.String(path), why)
			precision = train.PrecisionFP32
		}
	}
	e, err := openEngine(device, precision, m.Config)
	if err != nil {
		return nil, err
	}
	if err := e.SetParameters(m.Params); err != nil {
		e.Close()
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return &loadedModel{Path: path, File: file, Model: m, Engine: e, Precision: precision}, nil
}

// processMemory is the memory the Go runtime holds from the system now.
func processMemory() float64 {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return float64(sample[0].Value.Uint64())
}

// heapShare is the part of the available memory the Go heap is held under
// (checkCPUMemory): the rest is for what the collector does not count
// (stacks, the GEMM's C buffers, mapped training data pages).
const heapShare = 0.9

// checkProjectionMemory refuses a projection whose chunks of rows rows
// would not fit in the memory left once the model is loaded, before it
// starts: the chunk's features, projections and their encoding on the
// host, and on the CPU the engine's forward pass (nn.Config.CPUForwardBytes;
// the engine's own state is allocated already). A --batch far beyond the
// machine ended in an allocation failure's runtime trace, or the system's
// OOM killer. When it fits, the heap is held as checkCPUMemory holds it.
func checkProjectionMemory(c nn.Config, device string, rows int) error {
	need := 4 * float64(rows) * float64(c.InputDim+2*c.OutputDim)
	what := "the chunk's features and projections on the host"
	if device == "cpu" {
		need += c.CPUForwardBytes(rows)
		what = "a forward pass's activations, the packed weights, and " + what
	}
	avail, fits := fitsMemory(need)
	if fits {
		return nil
	}
	return fmt.Errorf("projecting %d rows at a time (--batch) needs about %.1f GiB beyond the model loaded (%s), but only %.1f GiB is available (free memory, less any cgroup or ulimit -v limit): use a smaller --batch",
		rows, need/(1<<30), what, avail/(1<<30))
}

// fitsMemory reports whether need bytes fit in the memory available, and
// holds the heap under it when they do (holdHeap); where the available
// memory cannot be read, they are taken to fit. avail is that memory, for
// a refusal's message.
func fitsMemory(need float64) (avail float64, fits bool) {
	a, ok := sysmem.Available()
	if !ok {
		return 0, true
	}
	if need > float64(a) {
		return float64(a), false
	}
	holdHeap(float64(a), need)
	return float64(a), true
}

// holdHeap holds the Go heap under what the process holds plus heapShare
// of avail, the memory available, or plus need, what the work ahead
// needs, if that is more (debug.SetMemoryLimit), unless GOMEMLIMIT or an
// earlier call set a limit: see checkCPUMemory.
func holdHeap(avail, need float64) {
	if debug.SetMemoryLimit(-1) == math.MaxInt64 && os.Getenv("GOMEMLIMIT") == "" {
		// On top of what the process holds already (the evaluation sets,
		// the model loaded, say), and never below the need itself.
		debug.SetMemoryLimit(int64(processMemory() + max(avail*heapShare, need)))
	}
}

// checkCPUMemory refuses a CPU run that would not fit in the memory this
// machine has left, before anything is allocated: the kernel would
// otherwise kill the process partway, with no message.
//
// When it fits, the Go heap is held under what the process holds plus 90%
// of the available memory, or plus the need if that is more (holdHeap,
// debug.SetMemoryLimit, unless GOMEMLIMIT set one): by default the
// collector lets the heap grow to twice what is live before it collects,
// and a run whose live memory fits could still be killed at twice its
// size (measured: 2.25 GB resident for an estimate of 1.1 GB).
//
// host is what the command holds besides the engine, hostWhat its name
// for the message (train.Options.HostBytes: a checkpoint's copies), and
// smaller the flags a refusal advises to lower.
func checkCPUMemory(c nn.Config, batch, elemSize int, o nn.Objective, host float64, hostWhat, smaller string) error {
	need := c.CPUEngineBytes(batch, elemSize) + o.CPUBytes(batch, c.OutputDim) + host
	avail, fits := fitsMemory(need)
	if fits {
		return nil
	}
	what := "parameters, gradients, AdamW moments and activations"
	if o.Contrastive() {
		what += ", InfoNCE's batch x batch logits"
	}
	what += ", and " + hostWhat
	return fmt.Errorf("the model (%s) needs about %.1f GiB on the CPU at --batch %d (%s), but only %.1f GiB is available to it (free memory, less any cgroup or ulimit -v limit): use a smaller %s",
		c.Describe(), need/(1<<30), batch, what, avail/(1<<30), smaller)
}
