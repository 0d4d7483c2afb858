package nn

import (
	"errors"
	"fmt"
	"math"
)

// Engine is what the trainer drives. Batches, parameters, gradients and
// moments cross the interface as float32 row-major slices in [Layout]
// order, whatever the engine computes in, so the CPU and GPU engines are
// interchangeable and a checkpoint is the same bytes from either.
type Engine interface {
	// Config is the model shape the engine was built for.
	Config() Config
	// SetObjective sets the loss that ForwardBackward and Loss compute
	// from then on; an engine starts with the unit-norm MSE (the zero
	// Objective). The trainer sets it before every step, with the logit
	// scale it trains. An engine that cannot compute o refuses it with an
	// error that says so.
	SetObjective(o Objective) error
	// ForwardBackward runs forward, the objective's loss against the
	// targets t [n, OutputDim] and backward for the inputs x [n, InputDim],
	// keeping the gradients for Step. It returns the loss.
	ForwardBackward(x, t []float32, n int) (float64, error)
	// LogitScaleGrad is the derivative of the last ForwardBackward's loss
	// with respect to the objective's LogitScale (0 without an InfoNCE
	// term). Step does not apply it: the logit scale is the trainer's.
	LogitScaleGrad() float64
	// Step applies one AdamW update with the gradients of the last
	// ForwardBackward.
	Step(s AdamWStep) error
	// Loss is the loss of x against t with no gradient.
	Loss(x, t []float32, n int) (float64, error)
	// Project writes the model output for x [n, InputDim] into dst
	// [n, OutputDim].
	Project(dst, x []float32, n int) error
	// Parameters, Gradients and Moments copy the engine's buffers out;
	// SetParameters and SetMoments load them. Each slice has NumParams
	// elements.
	Parameters(dst []float32) error
	SetParameters(src []float32) error
	Gradients(dst []float32) error
	Moments(m, v []float32) error
	SetMoments(m, v []float32) error
	// Close releases what the engine holds.
	Close() error
}

// ResidentEngine is an [Engine] that can hold the whole training set in
// its own memory (a GPU's) and take each batch by row index, so that a
// training step moves a few bytes of indices instead of the batch. The
// data is held as float16 (IEEE 754 binary16): float16 shards are held as
// they are, float32 ones rounded to the nearest float16 by the reader, so a
// float32 data set trains on float16-rounded values when resident. The
// trainer uses it when an engine has it, unless told not to (train.Options
// Resident), and falls back to host batches when LoadResident fails with
// [ErrNotResident].
type ResidentEngine interface {
	Engine
	// LoadResident copies rows rows of training data into the engine,
	// calling read for consecutive ranges [lo, hi) that cover [0, rows) in
	// order, in chunks of the engine's choosing (so the host holds one
	// chunk, not the data set). It first makes room for batches of up to
	// batch rows (the workspace of a training step and of evaluation), so
	// that the data takes only what is left. It replaces data loaded
	// before; on any error nothing stays loaded. An error wrapping
	// ErrNotResident (the data does not fit, or read found values it
	// cannot hold) means "train from host batches instead"; any other
	// error, read's included, is a failure.
	LoadResident(rows, batch int, read Float16Reader) error
	// ForwardBackwardRows is ForwardBackward on the resident rows listed in
	// rows, each in [0, rows of LoadResident), converted exactly to
	// float32: the same loss and gradients, bit for bit, as ForwardBackward
	// on the float32 values of those float16 rows.
	ForwardBackwardRows(rows []int32) (float64, error)
}

// PipelinedEngine is a [ResidentEngine] that runs a whole training step on
// resident rows in one call that does not wait for the device, and reads
// each step's loss back one call later, so that the host prepares step k+1
// while the device runs step k. It computes the MSE objective only
// (InfoNCE needs its logit scale's gradient on the host at every step and
// takes ForwardBackwardRows and Step).
//
// The NaN guard moves onto the device: a step whose loss is not finite
// leaves the parameters and moments as they were, and so does every step
// after it (including the one already enqueued when the host reads that
// loss), until SetParameters loads new ones. The host learns of it one
// call late, as an error wrapping [ErrNonFinite]: the engine then holds the
// state after the last step whose finite loss was returned.
type PipelinedEngine interface {
	ResidentEngine
	// StepRows enqueues ForwardBackwardRows(rows) and Step(s) as one step
	// and returns the loss of the step the previous StepRows enqueued, with
	// done set, or done false when no step was pending (the first call, and
	// the first after FlushLoss). The loss of a step is the one
	// ForwardBackwardRows would return, bit for bit, and so are the
	// parameters and moments after it.
	StepRows(rows []int32, s AdamWStep) (prevLoss float64, done bool, err error)
	// FlushLoss waits for the step StepRows enqueued last and returns its
	// loss, or done false when none is pending. After it the engine's state
	// is that of every step whose loss was returned: what a checkpoint,
	// an evaluation or the end of a run needs.
	FlushLoss() (loss float64, done bool, err error)
}

// Float16Reader reads rows [lo, hi) of training data as IEEE 754 binary16
// bits: the features into x [(hi-lo)*InputDim] and the targets into t
// [(hi-lo)*OutputDim], row-major. It reports a NaN or an infinity as an
// error, and a value float16 cannot hold as one wrapping [ErrNotResident].
type Float16Reader func(lo, hi int, x, t []uint16) error

// ErrNotResident is wrapped by the errors of [ResidentEngine.LoadResident]
// that mean the training data cannot be held by the engine and should be
// read from the host instead.
var ErrNotResident = errors.New("training data cannot be resident")

// ErrNonFinite is wrapped by the error of an engine whose loss turned NaN
// or infinite (a diverging run): the trainer stops on it and names the
// last good checkpoint.
var ErrNonFinite = errors.New("loss is not finite")

// CPUEngine is the [Engine] on the CPU, computing in T: float32 to train,
// float64 as the oracle. Its buffers are exported for tests that need the
// full precision of the float64 engine.
//
// Forward-only calls (Loss, Project) pack the weights for the GEMMs once
// and reuse them while the parameters stay as they are (an evaluation over
// many batches): from the second such call after Step or SetParameters
// on, until the next of those. The packs are a second copy of the weights
// (218 MB for the default model), held once made. Parameters changed any
// other way (writing Model.Params) must be loaded again with SetParameters.
type CPUEngine[T Float] struct {
	Model *Model[T]
	M, V  []T  // AdamW moments
	x, t  []T  // the last batch converted to T
	dy    []T  // dL/d(output)
	ready bool // gradients hold a backward pass not yet stepped
	obj   Objective
	// dLogitScale is the last ForwardBackward's dL/d(obj.LogitScale).
	dLogitScale float64
	packs       packState
}

// packState tracks whether the model's packed weights are current.
type packState struct {
	version   uint64 // counts changes of the parameters
	packedAt  uint64 // the version the packs were made at, with packed set
	packed    bool
	calls     int  // forward-only calls at this version
	unpacking bool // packWeights packs nothing here (float64, gonum): do not try again
}

// changed records that the parameters changed.
func (p *packState) changed() { p.version, p.calls = p.version+1, 0 }

// forwardPacked says whether a forward-only call uses packed weights,
// packing them on the second call at a version: a lone call after each
// step would pay for the pack without reusing it.
func (e *CPUEngine[T]) forwardPacked() bool {
	p := &e.packs
	if p.unpacking {
		return false
	}
	if p.packed && p.packedAt == p.version {
		return true
	}
	p.calls++
	if p.calls < 2 {
		return false
	}
	p.packed, p.packedAt = e.Model.packWeights(), p.version
	p.unpacking = !p.packed
	return p.packed
}

// NewCPUEngine returns an engine of shape c with zero parameters and
// moments.
func NewCPUEngine[T Float](c Config) (*CPUEngine[T], error) {
	m, err := NewModel[T](c)
	if err != nil {
		return nil, err
	}
	return &CPUEngine[T]{Model: m, M: make([]T, len(m.Params)), V: make([]T, len(m.Params))}, nil
}

func (e *CPUEngine[T]) Config() Config { return e.Model.Config }

// load converts a float32 batch into dst, growing it as needed, and checks
// its length and values.
func load[T Float](dst *[]T, src []float32, n, d int, what string) error {
	if n < 1 {
		return fmt.Errorf("%s: batch of %d rows", what, n)
	}
	if len(src) != n*d {
		return fmt.Errorf("%s: %d values, want %d rows x %d", what, len(src), n, d)
	}
	if cap(*dst) < len(src) {
		*dst = make([]T, len(src))
	}
	*dst = (*dst)[:len(src)]
	if d32, ok := any(*dst).([]float32); ok {
		copy(d32, src)
		return nil
	}
	for i, v := range src {
		(*dst)[i] = T(v)
	}
	return nil
}

// SetObjective implements [Engine].
func (e *CPUEngine[T]) SetObjective(o Objective) error {
	if err := o.Validate(); err != nil {
		return err
	}
	e.obj = o
	return nil
}

// LogitScaleGrad implements [Engine].
func (e *CPUEngine[T]) LogitScaleGrad() float64 { return e.dLogitScale }

// ForwardBackward implements [Engine].
func (e *CPUEngine[T]) ForwardBackward(x, t []float32, n int) (float64, error) {
	out, err := e.forward(x, t, n, false)
	if err != nil {
		return 0, err
	}
	if cap(e.dy) < len(out) {
		e.dy = make([]T, len(out))
	}
	e.dy = e.dy[:len(out)]
	loss, dls := ObjectiveLoss(e.obj, e.dy, out, e.t, n, e.Model.Config.OutputDim)
	if err := checkFinite(loss); err != nil {
		return loss, err
	}
	if err := e.Model.Backward(e.dy, nil); err != nil {
		return 0, err
	}
	e.dLogitScale, e.ready = dls, true
	return loss, nil
}

// forward loads a batch and runs the model on it, with the packed weights
// when packed.
func (e *CPUEngine[T]) forward(x, t []float32, n int, packed bool) ([]T, error) {
	c := e.Model.Config
	if err := load(&e.x, x, n, c.InputDim, "inputs"); err != nil {
		return nil, err
	}
	if err := load(&e.t, t, n, c.OutputDim, "targets"); err != nil {
		return nil, err
	}
	return e.Model.forward(e.x, n, packed)
}

func checkFinite(loss float64) error {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return fmt.Errorf("%w: %v", ErrNonFinite, loss)
	}
	return nil
}

// Step implements [Engine].
func (e *CPUEngine[T]) Step(s AdamWStep) error {
	if !e.ready {
		return ErrNoGradients
	}
	if err := s.Validate(); err != nil {
		return err
	}
	AdamW(e.Model.Params, e.Model.Grads, e.M, e.V, s)
	e.packs.changed()
	e.ready = false
	return nil
}

// Loss implements [Engine].
func (e *CPUEngine[T]) Loss(x, t []float32, n int) (float64, error) {
	out, err := e.forward(x, t, n, e.forwardPacked())
	if err != nil {
		return 0, err
	}
	loss, _ := ObjectiveLoss(e.obj, nil, out, e.t, n, e.Model.Config.OutputDim)
	return loss, checkFinite(loss)
}

// Project implements [Engine].
func (e *CPUEngine[T]) Project(dst, x []float32, n int) error {
	c := e.Model.Config
	if len(dst) != n*c.OutputDim {
		return fmt.Errorf("project: output has room for %d values, want %d rows x %d", len(dst), n, c.OutputDim)
	}
	if err := load(&e.x, x, n, c.InputDim, "inputs"); err != nil {
		return err
	}
	out, err := e.Model.forward(e.x, n, e.forwardPacked())
	if err != nil {
		return err
	}
	for i, v := range out {
		dst[i] = float32(v)
	}
	return nil
}

func (e *CPUEngine[T]) Parameters(dst []float32) error {
	return export(dst, e.Model.Params, "parameters")
}
func (e *CPUEngine[T]) Gradients(dst []float32) error { return export(dst, e.Model.Grads, "gradients") }

func (e *CPUEngine[T]) SetParameters(src []float32) error {
	e.packs.changed()
	return importInto(e.Model.Params, src, "parameters")
}

func (e *CPUEngine[T]) Moments(m, v []float32) error {
	if err := export(m, e.M, "first moments"); err != nil {
		return err
	}
	return export(v, e.V, "second moments")
}

func (e *CPUEngine[T]) SetMoments(m, v []float32) error {
	if err := importInto(e.M, m, "first moments"); err != nil {
		return err
	}
	return importInto(e.V, v, "second moments")
}

func (e *CPUEngine[T]) Close() error { return nil }

func export[T Float](dst []float32, src []T, what string) error {
	if len(dst) != len(src) {
		return fmt.Errorf("%s: buffer of %d values, the model has %d", what, len(dst), len(src))
	}
	for i, v := range src {
		dst[i] = float32(v)
	}
	return nil
}

func importInto[T Float](dst []T, src []float32, what string) error {
	if len(dst) != len(src) {
		return fmt.Errorf("%s: %d values, the model has %d", what, len(src), len(dst))
	}
	for i, v := range src {
		dst[i] = T(v)
	}
	return nil
}
