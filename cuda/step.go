//go:build cuda

package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/nn"
)

// The pipelined training step (nn.PipelinedEngine): StepRows enqueues the
// whole step (the batch's row indices and the step's AdamW scalars copied
// up, then gather, forward, loss, backward and AdamW) and returns without
// waiting for the device; the step's loss sum goes by an asynchronous copy
// into pinned host memory, and the host reads it at the next call, after
// the event recorded behind that copy. Nothing in a step waits for the
// device: the one wait is for the step before it, which has long been
// queued behind.
//
// What changes from step to step lives in device memory, written by copies
// enqueued before the step's kernels: the row indices (e.rowIdx) and the
// AdamW scalars (pipe.scalars). The kernels' own parameters are the same at
// every step of a shape, so the step is captured once per shape as a CUDA
// graph and replayed: the first step of a shape runs its launches directly
// (which also does any one-time set-up, such as the tensor-core kernels'
// shared memory limits and tensor maps), the second is captured and
// launched, and later ones launch the graph. A shape is the batch size
// and the buffers the step reads and writes (the workspace, the resident
// data): a new batch size, a grown workspace or reloaded data capture
// again. The kernel timer (enginehooks.KernelTimer) times launches one by
// one, so with it on the step is not captured.
//
// The NaN guard: AdamW is adamw_guarded (kernels/adamw.cu), which skips the
// update when the step's loss sum is not finite and latches a device flag
// (pipe.halted) that makes every later guarded step skip too, so neither
// the diverged step nor the one enqueued before the host read its loss
// changes the parameters or moments. The host reports the non-finite loss
// with nn.ErrNonFinite one call late, and refuses further steps until
// SetParameters loads a state (which clears the flag).

// stepPipe is the state of the pipelined step.
type stepPipe struct {
	mem     uintptr      // the allocation of scalars and halted, 0 until the first StepRows
	scalars buf[float32] // the AdamW scalars of the step being enqueued [adamwScalars]
	halted  buf[int32]   // non-zero once a guarded step saw a non-finite loss [1]
	pinned  []byte       // the loss sums of the last two steps, one float64 a slot (HostAlloc)
	events  [2]driver.Event

	enqueued int  // steps enqueued; step k's loss goes to slot k%2
	pending  bool // the last step's loss has not been returned
	rows     int  // its batch size
	diverged bool // a non-finite loss was returned; SetParameters clears it

	exec     driver.GraphExec // the captured step, nil when none
	graph    driver.Graph
	key      stepKey // what exec was captured for
	eagerKey stepKey // the shape of the last step run launch by launch
	// noGraphs runs every step launch by launch: DINOCLIP_CUDA_GRAPHS=off,
	// a failed capture (logged once), or a test comparing the two.
	noGraphs bool
	captures int // graphs captured, for the tests
	replays  int // steps that launched a captured graph, for the tests
}

// stepKey is what a captured step depends on besides the contents of
// device memory: the batch size and the allocations it reads and writes
// whose address can change (the state's, the pipe's and the InfoNCE
// workspace's do not take part in an MSE step or are fixed).
type stepKey struct {
	rows, capacity int // the workspace's layout is capacity's
	ws, resident   uintptr
	residentBytes  int64
}

// adamwScalars is the number of AdamW scalars adamw_guarded reads: the
// fields of nn.AdamWScalars[float32], in order.
const adamwScalars = 7

var _ nn.PipelinedEngine = (*Engine)(nil)

// StepRows implements nn.PipelinedEngine.
func (e *Engine) StepRows(rows []int32, s nn.AdamWStep) (float64, bool, error) {
	if err := e.checkRows(rows); err != nil {
		return 0, false, err
	}
	if err := s.Validate(); err != nil {
		return 0, false, err
	}
	if e.objective.obj.Contrastive() {
		return 0, false, fmt.Errorf("the pipelined training step computes the MSE loss only, not %s: take ForwardBackwardRows and Step", e.objective.obj.LossName())
	}
	p := &e.pipe
	if p.diverged {
		return 0, false, fmt.Errorf("%w: an earlier step's loss was not finite; load parameters (SetParameters) before stepping again", nn.ErrNonFinite)
	}
	var loss float64
	var done bool
	err := e.dev.do(func() error {
		if err := e.enqueueStep(rows, nn.NewAdamWScalars[float32](s)); err != nil {
			return err
		}
		var err error
		loss, done, err = e.readPending(e.pipe.enqueued - 2)
		p.pending, p.rows = true, len(rows)
		return err
	})
	e.ready = false
	return loss, done, err
}

// FlushLoss implements nn.PipelinedEngine.
func (e *Engine) FlushLoss() (float64, bool, error) {
	var loss float64
	var done bool
	err := e.dev.do(func() error {
		var err error
		loss, done, err = e.readPending(e.pipe.enqueued - 1)
		return err
	})
	return loss, done, err
}

// readPending returns the loss of step k, the pending one, once the device
// has copied it out (on the worker thread); done is false when no step is
// pending. A non-finite loss is an nn.ErrNonFinite error.
func (e *Engine) readPending(k int) (float64, bool, error) {
	p := &e.pipe
	if !p.pending {
		return 0, false, nil
	}
	p.pending = false
	slot := k % 2
	if err := e.dev.drv.WaitEvent(p.events[slot]); err != nil {
		return 0, false, fmt.Errorf("cuda: waiting for a training step: %w", err)
	}
	sum := math.Float64frombits(binary.LittleEndian.Uint64(p.pinned[8*slot:]))
	// objectiveLoss's mean, from the same sum.
	loss := sum / float64(p.rows*e.cfg.OutputDim)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		p.diverged = true
		return loss, true, fmt.Errorf("%w: %v", nn.ErrNonFinite, loss)
	}
	if p.diverged {
		// Enqueued before the host read the earlier loss: the guard
		// skipped its update.
		return loss, true, fmt.Errorf("%w: the step was skipped after an earlier step's loss was not finite", nn.ErrNonFinite)
	}
	return loss, true, nil
}

// enqueueStep enqueues one step on rows with the AdamW scalars sc, and the
// copy of its loss sum into the next pinned slot (on the worker thread).
func (e *Engine) enqueueStep(rows []int32, sc nn.AdamWScalars[float32]) error {
	n, d, p := len(rows), e.dev, &e.pipe
	if err := e.reserve(n); err != nil {
		return err
	}
	ext, err := e.openPipe()
	if err != nil {
		return err
	}
	if err := upload(d, e.rowIdx, rows); err != nil {
		return err
	}
	scalars := [adamwScalars]float32{sc.Decay, sc.OneMinusBeta1, sc.Beta2, sc.OneMinusBeta2, sc.StepSize, sc.BiasCorrection2Sqrt, sc.Eps}
	if err := upload(d, p.scalars, scalars[:]); err != nil {
		return err
	}
	if err := e.runStep(ext, n); err != nil {
		return err
	}
	slot := p.enqueued % 2
	if err := ext.ToHostAsync(p.pinned[8*slot:8*slot+8], e.lossOut.p); err != nil {
		return fmt.Errorf("cuda: copying the loss out: %w", err)
	}
	if err := d.drv.Record(p.events[slot]); err != nil {
		return fmt.Errorf("cuda: recording an event: %w", err)
	}
	p.enqueued++
	return nil
}

// runStep runs the kernels of a step of n rows: launch by launch, as a
// captured graph, or capturing it (see the top of this file).
func (e *Engine) runStep(ext driver.Extended, n int) error {
	p := &e.pipe
	key := stepKey{rows: n, capacity: e.capacity, ws: e.ws, resident: e.resident, residentBytes: e.residentByteSize}
	switch {
	case p.noGraphs || e.dev.timing:
		return e.stepKernels(n)
	case p.exec != nil && p.key == key:
		p.replays++
		return ext.LaunchGraph(p.exec)
	case p.eagerKey != key:
		// The first step of a shape sets up what a capture may not.
		p.eagerKey = key
		return e.stepKernels(n)
	}
	if err := e.dropGraph(ext); err != nil {
		return err
	}
	g, err := e.captureStep(ext, n)
	if err != nil {
		// Nothing captured has run: the step runs launch by launch now
		// and from now on, and the log says why once.
		p.noGraphs = true
		slog.Warn("cuda: capturing the training step as a CUDA graph failed; running it launch by launch", "err", err.Error())
		return e.stepKernels(n)
	}
	p.graph, p.exec, p.key = g.graph, g.exec, key
	p.captures++
	p.replays++
	return ext.LaunchGraph(p.exec)
}

type capturedStep struct {
	graph driver.Graph
	exec  driver.GraphExec
}

// captureStep captures the kernels of a step of n rows and instantiates
// the graph.
func (e *Engine) captureStep(ext driver.Extended, n int) (capturedStep, error) {
	if err := ext.BeginCapture(); err != nil {
		return capturedStep{}, err
	}
	kerr := e.stepKernels(n)
	g, err := ext.EndCapture()
	if kerr != nil || err != nil {
		if err == nil {
			err = ext.DestroyGraph(g)
		}
		return capturedStep{}, errors.Join(kerr, err)
	}
	exec, err := ext.Instantiate(g)
	if err != nil {
		return capturedStep{}, errors.Join(err, ext.DestroyGraph(g))
	}
	return capturedStep{graph: g, exec: exec}, nil
}

// stepKernels enqueues the kernels of a step of n rows: the gather of the
// rows in e.rowIdx, forward with the fused output LayerNorm and MSE loss (enqueueOutputMSE), backward, and
// the guarded AdamW update with the scalars in pipe.scalars.
func (e *Engine) stepKernels(n int) error {
	if err := e.gatherBatch(n); err != nil {
		return err
	}
	if err := e.enqueueOutputMSE(n, true); err != nil {
		return err
	}
	if err := e.backward(n); err != nil {
		return err
	}
	p := &e.pipe
	if e.bf16 {
		return e.dev.adamWGuarded(e.params, e.paramsBF16, e.grads, e.m, e.v, p.scalars, e.lossOut, p.halted, e.np)
	}
	return e.dev.adamWGuarded(e.params, buf[uint16]{}, e.grads, e.m, e.v, p.scalars, e.lossOut, p.halted, e.np)
}

// openPipe makes the pipe's device memory, pinned memory and events at the
// first step (on the worker thread).
func (e *Engine) openPipe() (driver.Extended, error) {
	ext, ok := e.dev.drv.(driver.Extended)
	if !ok {
		return nil, errors.New("cuda: the pipelined training step needs the extended driver calls (pinned memory, graphs), which this driver lacks")
	}
	p := &e.pipe
	if p.mem != 0 {
		return ext, nil
	}
	var a arena
	layout := func(a *arena) { p.scalars, p.halted = carve[float32](a, adamwScalars), carve[int32](a, 1) }
	layout(&a)
	mem, err := e.dev.alloc(a.off)
	if err != nil {
		return nil, e.dev.oom(err, a.off, "the training step's scalars", "", "")
	}
	fail := func(err error) (driver.Extended, error) {
		return nil, errors.Join(err, e.releasePipe())
	}
	p.mem = mem
	layout(&arena{base: mem})
	if err := e.dev.drv.Zero(p.halted.p, 4); err != nil {
		return fail(fmt.Errorf("cuda: %w", err))
	}
	if p.pinned, err = ext.HostAlloc(16); err != nil {
		return fail(err)
	}
	for i := range p.events {
		if p.events[i], err = e.dev.drv.NewEvent(); err != nil {
			return fail(fmt.Errorf("cuda: creating an event: %w", err))
		}
	}
	return ext, nil
}

// dropGraph destroys the captured step, if any (on the worker thread).
func (e *Engine) dropGraph(ext driver.Extended) error {
	p := &e.pipe
	if p.exec == nil {
		return nil
	}
	err := errors.Join(ext.DestroyGraphExec(p.exec), ext.DestroyGraph(p.graph))
	p.exec, p.graph, p.key = nil, nil, stepKey{}
	return err
}

// releasePipe frees what openPipe made (on the worker thread); a pending
// loss is dropped.
func (e *Engine) releasePipe() error {
	p := &e.pipe
	var errs []error
	if ext, ok := e.dev.drv.(driver.Extended); ok {
		errs = append(errs, e.dropGraph(ext))
		if p.pinned != nil {
			errs = append(errs, e.dev.sync(), ext.HostFree(p.pinned))
		}
	}
	for i, ev := range p.events {
		if ev != nil {
			errs = append(errs, e.dev.drv.DestroyEvent(ev))
		}
		p.events[i] = nil
	}
	errs = append(errs, e.dev.free(p.mem))
	*p = stepPipe{noGraphs: p.noGraphs}
	return errors.Join(errs...)
}

// clearDivergence lets steps run again after SetParameters (on the worker
// thread). The loss of a step still pending after a divergence, one the
// guard skipped, is dropped with it.
func (e *Engine) clearDivergence() error {
	p := &e.pipe
	if p.diverged {
		p.pending = false
	}
	p.diverged = false
	if p.mem == 0 {
		return nil
	}
	if err := e.dev.drv.Zero(p.halted.p, 4); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

// adamWGuarded launches adamw_guarded, or adamw_bf16_guarded when pb (the
// bf16 copy of the parameters) is not null: the AdamW update of n
// parameters with the scalars in sc, skipped when *loss is not finite or
// *halted is set (see kernels/adamw.cu).
func (d *Device) adamWGuarded(p buf[float32], pb buf[uint16], g, m, v, sc buf[float32], loss buf[float64], halted buf[int32], n int) error {
	what := "adamw_guarded"
	if pb.p != 0 {
		what = "adamw_bf16_guarded"
	}
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("params", p, n), req("grads", g, n), req("m", m, n), req("v", v, n),
		req("scalars", sc, adamwScalars), req("loss", loss, 1), req("halted", halted, 1)); err != nil {
		return err
	}
	if pb.p == 0 {
		return launch.AdamwGuarded(d.with(elemWork(n, 7)), grid(elementGrid(n), 1), p.ptr(), g.cptr(), m.ptr(), v.ptr(),
			sc.cptr(), loss.cptr(), halted.ptr(), int32(n))
	}
	if err := needAll(what, req("bf16 params", pb, n)); err != nil {
		return err
	}
	return launch.AdamwBf16Guarded(d.with(elemBytes(n, 7*4+2)), grid(elementGrid(n), 1),
		p.ptr(), pb.ptr(), g.cptr(), m.ptr(), v.ptr(), sc.cptr(), loss.cptr(), halted.ptr(), int32(n))
}
