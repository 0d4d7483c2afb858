//go:build cuda

package cuda

import (
	"errors"
	"fmt"

	"github.com/dinoclip/dinoclip/nn"
)

// linear and layerNorm are device views of one layer's parameters and
// gradients in the flat state buffers, as nn.Model's views.
type linear struct {
	w, b, dw, db buf[float32]
	wb           buf[uint16] // bf16 mode: the bf16 copy of w
	in, out      int
}

type layerNorm struct {
	gamma, beta, dgamma, dbeta buf[float32]
	dim                        int
}

// block is one residual block with the activations its backward needs (the
// same set as nn.Model's block).
type block struct {
	l1, l2       linear
	n1, n2       layerNorm
	x            buf[float32] // block input [n,h]
	xhat1        buf[float32] // float32 mode: LN1 normalised [n,h]
	ln1          buf[float32] // float32 mode: LN1 output = GELU input [n,h]
	act          buf[float32] // float32 mode: GELU output = L2 input [n,h]
	xhat2        buf[float32] // float32 mode: LN2 normalised [n,h]
	rstd1, rstd2 buf[float32] // [n]
	xb, actb     buf[uint16]  // bf16 mode: x and act in bf16, the Linears' operands [n,h]
	pre1b, pre2b buf[uint16]  // bf16 mode: L1's and L2's outputs, LN1's and LN2's inputs [n,h]
	mean1, mean2 buf[float32] // bf16 mode: their row means [n]
}

// Engine is the [nn.Engine] on a GPU. NewEngine's computes in float32
// with the semantics of nn.CPUEngine[float32]; NewBF16Engine's in bf16
// mixed precision (engine_bf16.go). See the package documentation for the
// design. An Engine is not safe for concurrent use (nor is the CPU engine).
type Engine struct {
	dev    *Device
	cfg    nn.Config
	layout *nn.Layout
	np     int
	bf16   bool // bf16 mixed precision (engine_bf16.go)

	state               uintptr // one allocation: params | grads | m | v [| paramsBF16]
	stateBytes          int64
	params, grads, m, v buf[float32]
	paramsBF16          buf[uint16] // bf16 mode: bf16(params), in the state allocation

	inProj       linear
	blocks       []block
	hiddenNorm   layerNorm
	head1, head2 linear
	outNorm      layerNorm

	ws       uintptr // the workspace allocation
	wsBytes  int64
	capacity int // rows the workspace holds

	x, t              buf[float32] // the batch [n,in], [n,out]
	stream            buf[float32] // residual stream after the last block [n,h]
	xhatH, hidden     buf[float32] // hidden_norm normalised and output [n,h]
	rstdH             buf[float32] // [n]
	head, headAct     buf[float32] // head pre- and post-GELU [n,hd]
	out, xhatO, rstdO buf[float32] // output LN output and normalised [n,o], rstd [n]
	dy                buf[float32] // dL/d(output) [n,o]
	s1, s2, s3        buf[float32] // scratch [n,h]
	stats             buf[float32] // row statistics [n, tiles, 3]
	partial           buf[float64] // column-reduction partials
	rowLoss, lossOut  buf[float64] // [n], [1]
	rowIdx            buf[int32]   // the batch's rows in the resident data [n]
	xb, hiddenb       buf[uint16]  // bf16 mode: x [n,in] and hidden [n,h] in bf16
	headActb          buf[uint16]  // bf16 mode: headAct [n,hd] in bf16
	dyb               buf[uint16]  // bf16 mode: a Linear's output gradient in bf16 [n, widest output]
	gradPartial       buf[float32] // bf16 mode: grad_rows's column partials
	splitParts        buf[float32] // bf16 mode: the split-K weight gradients' partial products

	// The resident training data (resident.go): a third allocation, float16
	// features [rows, in] then targets [rows, out]; 0 when none is loaded.
	resident         uintptr
	residentRows     int
	residentX        buf[uint16]
	residentT        buf[uint16]
	residentByteSize int64

	// The moving average of the weights (ema.go): an allocation of its
	// own, made by the first StartEMA; emaDecay is 0 until one succeeds.
	ema      buf[float32]
	emaDecay float64

	ready bool // gradients hold a backward pass not yet stepped

	objective objectiveState // the loss (objective.go)

	pipe stepPipe // the pipelined training step (step.go)
}

var _ nn.Engine = (*Engine)(nil)

// NewEngine opens the GPU and returns an engine of shape c with zero
// parameters, gradients and moments, like nn.NewCPUEngine.
func NewEngine(c nn.Config) (*Engine, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return openEngine(c, false)
}

// openEngine opens the GPU and builds an engine of shape c on it, in bf16
// mode or not, closing the device again when that fails.
func openEngine(c nn.Config, bf16 bool) (*Engine, error) {
	// (buildEngine and newEngine check too; first, a setting mistyped or a
	// precision refused opens nothing: the first open of a process checks
	// the engine on a device of its own.)
	if _, err := graphsOff(); err != nil {
		return nil, err
	}
	if err := checkEngine(bf16); err != nil {
		return nil, err
	}
	dev, err := Open()
	if err != nil {
		return nil, err
	}
	e, err := newEngine(dev, c, bf16)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return e, nil
}

// newEngine builds an engine of shape c on dev, in bf16 mode or not, after
// the checks of the process's first open (gemm_check.go, engine_check.go).
func newEngine(dev *Device, c nn.Config, bf16 bool) (*Engine, error) {
	if bf16 {
		if err := dev.do(dev.checkBF16GEMMs); err != nil {
			return nil, err
		}
	}
	if err := checkEngine(bf16); err != nil {
		return nil, err
	}
	return buildEngine(dev, c, bf16)
}

// buildEngine builds an engine of shape c on dev, in bf16 mode or not
// (where dev has taken the GEMM check's verdict), with zero parameters,
// gradients and moments.
func buildEngine(dev *Device, c nn.Config, bf16 bool) (*Engine, error) {
	noGraphs, err := graphsOff()
	if err != nil {
		return nil, err
	}
	l := c.Layout()
	e := &Engine{dev: dev, cfg: c, layout: l, np: l.Size, bf16: bf16, pipe: stepPipe{noGraphs: noGraphs}}
	state := func(a *arena) {
		e.params, e.grads = carve[float32](a, e.np), carve[float32](a, e.np)
		e.m, e.v = carve[float32](a, e.np), carve[float32](a, e.np)
		if bf16 {
			e.paramsBF16 = carve[uint16](a, e.np)
		}
	}
	// Measured, not 16 bytes a parameter: each buffer starts at the
	// arena's alignment, which pads all but the last when NumParams is not
	// a multiple of 64.
	var measure arena
	state(&measure)
	err = dev.do(func() error {
		bytes := measure.off
		p, err := dev.alloc(bytes)
		if err != nil {
			return dev.oom(err, bytes, fmt.Sprintf("the model (%d parameters)", e.np), "parameters, gradients and AdamW moments", "")
		}
		e.state, e.stateBytes = p, bytes
		if err := dev.drv.Zero(p, bytes); err != nil {
			return fmt.Errorf("cuda: %w", err)
		}
		return dev.sync()
	})
	if err != nil {
		return nil, err
	}
	state(&arena{base: e.state})

	next := 0
	take := func() nn.Tensor { t := l.Tensors[next]; next++; return t }
	view := func(b buf[float32], t nn.Tensor) buf[float32] { return b.at(t.Offset, t.Size()) }
	lin := func() linear {
		w, b := take(), take()
		lin := linear{w: view(e.params, w), b: view(e.params, b), dw: view(e.grads, w), db: view(e.grads, b), in: w.Shape[1], out: w.Shape[0]}
		if bf16 {
			lin.wb = e.paramsBF16.at(w.Offset, w.Size())
		}
		return lin
	}
	ln := func() layerNorm {
		g, b := take(), take()
		return layerNorm{gamma: view(e.params, g), beta: view(e.params, b), dgamma: view(e.grads, g), dbeta: view(e.grads, b), dim: g.Shape[0]}
	}
	e.inProj = lin()
	e.blocks = make([]block, c.Blocks)
	for i := range e.blocks {
		b := &e.blocks[i]
		b.l1, b.n1, b.l2, b.n2 = lin(), ln(), lin(), ln()
	}
	e.hiddenNorm, e.head1, e.head2, e.outNorm = ln(), lin(), lin(), ln()
	return e, nil
}

// Config implements nn.Engine.
func (e *Engine) Config() nn.Config { return e.cfg }

// String describes the engine: the device, and on a GPU the compiled form
// of the kernels it loaded (sm_90a cubins or portable PTX), and where the
// engine runs though it failed its check (DINOCLIP_CUDA_CHECK=warn), why.
// The trainer logs it, and dinoclip bench records it.
func (e *Engine) String() string {
	s := "CUDA engine on "
	if e.bf16 {
		s = "CUDA engine (bf16 mixed precision) on "
	}
	s += e.dev.String()
	if wrong := uncheckedEngine(e.bf16); wrong != "" {
		s += "; UNCHECKED: the engine failed its check (" + wrong + ") and runs as " + checkEnv + "=warn asks"
	}
	return s
}

// layoutWorkspace carves the workspace for n rows out of a (a measuring
// arena when its base is 0).
func (e *Engine) layoutWorkspace(a *arena, n int) {
	c := e.cfg
	h, hd, o, in := c.HiddenDim, c.HeadDim(), c.OutputDim, c.InputDim
	f := func(k int) buf[float32] { return carve[float32](a, k) }
	// The float32 activations that bf16 mode does not keep (it keeps the
	// Linears' inputs and the LayerNorms' inputs in bf16 instead).
	f32Only := func(k int) buf[float32] {
		if e.bf16 {
			return buf[float32]{}
		}
		return f(k)
	}
	e.x, e.t = f(n*in), f(n*o)
	for i := range e.blocks {
		b := &e.blocks[i]
		b.x, b.xhat1, b.ln1, b.act, b.xhat2 = f(n*h), f32Only(n*h), f32Only(n*h), f32Only(n*h), f32Only(n*h)
		b.rstd1, b.rstd2 = f(n), f(n)
	}
	e.stream, e.xhatH, e.hidden, e.rstdH = f(n*h), f(n*h), f32Only(n*h), f(n)
	e.head, e.headAct = f(n*hd), f32Only(n*hd)
	e.out, e.xhatO, e.rstdO, e.dy = f(n*o), f(n*o), f(n), f(n*o)
	e.s1, e.s2, e.s3 = f(n*h), f(n*h), f(n*h)
	e.stats = f(n * statsTiles(max(h, o)) * 3)
	e.partial = carve[float64](a, 2*max(colChunks(n)*max(h, hd, o), outNormMSEChunks(n)*o))
	e.rowLoss, e.lossOut = carve[float64](a, n), carve[float64](a, 1)
	e.rowIdx = carve[int32](a, n)
	if e.bf16 {
		e.layoutBF16(a, n)
	}
}

// WorkspaceBytes is the device memory the activations and scratch of a batch
// of n rows take, besides the state (16 bytes per parameter, 18 in bf16
// mode).
func (e *Engine) WorkspaceBytes(n int) int64 {
	saved := *e
	saved.blocks = append([]block(nil), e.blocks...)
	var a arena
	saved.layoutWorkspace(&a, n)
	return a.off
}

// reserve makes the workspace hold n rows (on the worker thread).
func (e *Engine) reserve(n int) error {
	if n <= e.capacity {
		return nil
	}
	bytes := e.WorkspaceBytes(n)
	if err := e.dev.sync(); err != nil {
		return err
	}
	if err := e.dev.free(e.ws); err != nil {
		return fmt.Errorf("cuda: freeing the workspace: %w", err)
	}
	e.ws, e.wsBytes, e.capacity = 0, 0, 0
	p, err := e.dev.alloc(bytes)
	if err != nil {
		return e.dev.oom(err, bytes, fmt.Sprintf("batch %d", n), "activations and scratch",
			fmt.Sprintf("the parameters, gradients and AdamW moments take another %.2f GiB", float64(e.stateBytes)/gib))
	}
	e.ws, e.wsBytes, e.capacity = p, bytes, n
	a := arena{base: p}
	e.layoutWorkspace(&a, n)
	return nil
}

// checkBatch validates a batch as nn's load does.
func checkBatch(v []float32, n, d int, what string) error {
	if n < 1 {
		return fmt.Errorf("%s: batch of %d rows", what, n)
	}
	if len(v) != n*d {
		return fmt.Errorf("%s: %d values, want %d rows x %d", what, len(v), n, d)
	}
	return nil
}

// checkPairs checks a batch of n inputs and their targets.
func (e *Engine) checkPairs(x, t []float32, n int) error {
	if err := checkBatch(x, n, e.cfg.InputDim, "inputs"); err != nil {
		return err
	}
	return checkBatch(t, n, e.cfg.OutputDim, "targets")
}

// ForwardBackward implements nn.Engine.
func (e *Engine) ForwardBackward(x, t []float32, n int) (float64, error) {
	if err := e.checkPairs(x, t, n); err != nil {
		return 0, err
	}
	var loss float64
	err := e.dev.do(func() error {
		var err error
		if loss, err = e.forwardLoss(x, t, n, true); err != nil {
			return err
		}
		if err := e.backward(n); err != nil {
			return err
		}
		return e.dev.sync()
	})
	if err != nil {
		return 0, err
	}
	e.ready = true
	return loss, nil
}

// Loss implements nn.Engine.
func (e *Engine) Loss(x, t []float32, n int) (float64, error) {
	if err := e.checkPairs(x, t, n); err != nil {
		return 0, err
	}
	var loss float64
	err := e.dev.do(func() error {
		var err error
		loss, err = e.forwardLoss(x, t, n, false)
		return err
	})
	return loss, err
}

// forwardLoss uploads the batch and returns batchLoss (on the worker
// thread).
func (e *Engine) forwardLoss(x, t []float32, n int, grad bool) (float64, error) {
	if err := e.reserve(n); err != nil {
		return 0, err
	}
	if err := upload(e.dev, e.x, x); err != nil {
		return 0, err
	}
	if err := upload(e.dev, e.t, t); err != nil {
		return 0, err
	}
	return e.batchLoss(n, grad)
}

// batchLoss runs forward and the loss on the n rows in e.x and e.t (with
// the loss's gradient into dy when grad) and returns the loss, an error
// when it is not finite (on the worker thread).
func (e *Engine) batchLoss(n int, grad bool) (float64, error) {
	if e.fusedMSE() {
		return e.outputMSE(n, grad)
	}
	if err := e.forward(n, grad); err != nil {
		return 0, err
	}
	var dy buf[float32]
	if grad {
		dy = e.dy.at(0, n*e.cfg.OutputDim)
	}
	return e.objectiveLoss(n, dy)
}

// forward runs the model on the n rows in e.x, leaving the output in e.out
// and, when grad, the activations for backward (on the worker thread). It
// mirrors nn.Model.Forward.
func (e *Engine) forward(n int, grad bool) error {
	if err := e.forwardHead(n, grad); err != nil {
		return err
	}
	var none buf[float32]
	return e.linearNorm(e.head2, e.outNorm, lnPlain, lnOutputs{y: e.out, xhat: e.xhatO, rstd: e.rstdO}, e.out, e.headAct, e.headActb, none, n)
}

// forwardHead is forward up to the input of the head's last Linear
// (e.headAct, e.headActb).
func (e *Engine) forwardHead(n int, grad bool) error {
	c, d := e.cfg, e.dev
	h, in := c.HiddenDim, c.InputDim
	var none buf[float32]
	first, firstb := e.stream, buf[uint16]{}
	if len(e.blocks) > 0 {
		first, firstb = e.blocks[0].x, e.blocks[0].xb
	}
	if err := e.toBF16(e.xb, e.x, n*in); err != nil {
		return err
	}
	if err := e.linear(e.inProj, first, firstb, e.x, e.xb, n); err != nil {
		return err
	}
	pre := e.s1
	for i := range e.blocks {
		b := &e.blocks[i]
		next, nextb := e.stream, buf[uint16]{}
		if i+1 < len(e.blocks) {
			next, nextb = e.blocks[i+1].x, e.blocks[i+1].xb
		}
		if e.bf16 {
			if err := e.blockForwardBF16(b, next, nextb, n); err != nil {
				return err
			}
			continue
		}
		// pre = L1(x); ln1 = LN1(pre), act = GELU(ln1).
		if err := e.linearNorm(b.l1, b.n1, lnGELU, lnOutputs{y: b.ln1, y2: b.act, xhat: b.xhat1, rstd: b.rstd1}, pre, b.x, b.xb, none, n); err != nil {
			return err
		}
		// pre = L2(act); next = x + LN2(pre).
		if err := e.linearNorm(b.l2, b.n2, lnResidual, lnOutputs{y: next, xhat: b.xhat2, rstd: b.rstd2}, pre, b.act, b.actb, b.x, n); err != nil {
			return err
		}
	}
	// hidden_norm's output exists in bf16 only in bf16 mode (e.hidden is
	// null there): the head's first Linear reads it.
	out := lnOutputs{y: e.hidden, xhat: e.xhatH, rstd: e.rstdH}
	if e.bf16 {
		out.yb = e.hiddenb
	}
	if err := d.lnForward(lnPlain, out, e.stream, e.hiddenNorm.gamma, e.hiddenNorm.beta, none, n, h); err != nil {
		return err
	}
	return e.linearGELU(e.head1, e.head, e.headAct, e.headActb, e.hidden, e.hiddenb, n, grad)
}

// backward sets the gradients from dy for the last forward of n rows (on
// the worker thread). It mirrors nn.Model.Backward.
func (e *Engine) backward(n int) error {
	if e.bf16 {
		return e.backwardBF16(n)
	}
	c, d := e.cfg, e.dev
	h, hd, o := c.HiddenDim, c.HeadDim(), c.OutputDim
	dy := e.dy.at(0, n*o)
	// With the MSE objective, outnorm_mse has already done the output
	// LayerNorm's backward pass: dy holds dL/d(head output).
	if !e.fusedMSE() {
		if err := e.layerNormBackward(e.outNorm, dy, dy, e.xhatO, e.rstdO, n); err != nil {
			return err
		}
	}
	dHead := e.s2.at(0, n*hd)
	if err := e.linearBackward(e.head2, dHead, dy, e.headAct, n, false); err != nil {
		return err
	}
	if err := d.geluBackward(dHead, dHead, e.head, n*hd); err != nil {
		return err
	}
	dStream := e.s1
	if err := e.linearBackward(e.head1, dStream, dHead, e.hidden, n, false); err != nil {
		return err
	}
	if err := e.layerNormBackward(e.hiddenNorm, dStream, dStream, e.xhatH, e.rstdH, n); err != nil {
		return err
	}
	dOut2, dIn2 := e.s2, e.s3
	for i := len(e.blocks) - 1; i >= 0; i-- {
		b := &e.blocks[i]
		// dStream is dL/d(block output), which is also dL/d(LN2 output).
		if err := e.layerNormBackward(b.n2, dOut2, dStream, b.xhat2, b.rstd2, n); err != nil {
			return err
		}
		if err := e.linearBackward(b.l2, dIn2, dOut2, b.act, n, false); err != nil {
			return err
		}
		if err := d.geluBackward(dIn2, dIn2, b.ln1, n*h); err != nil {
			return err
		}
		if err := e.layerNormBackward(b.n1, dIn2, dIn2, b.xhat1, b.rstd1, n); err != nil {
			return err
		}
		// The skip connection: dL/d(block input) = dStream + dL/d(L1 output) W1.
		if err := e.linearBackward(b.l1, dStream, dIn2, b.x, n, true); err != nil {
			return err
		}
	}
	var none buf[float32]
	return e.linearBackward(e.inProj, none, dStream, e.x, n, false)
}

// linearBackward is nn.LinearBackward: dW = dy^T x, db = column sums of dy
// and, when dx is not null, dx = dy W (added to dx when accumulate).
func (e *Engine) linearBackward(l linear, dx, dy, x buf[float32], n int, accumulate bool) error {
	d := e.dev
	if err := d.gemmTN(l.dw, dy, x, n, l.in, l.out); err != nil {
		return err
	}
	var none buf[float32]
	if err := d.colSums(l.db, none, dy, none, e.partial, n, l.out); err != nil {
		return err
	}
	if dx.p == 0 {
		return nil
	}
	var beta float32
	if accumulate {
		beta = 1
	}
	return d.gemmNN(dx, dy, l.w, beta, n, l.in, l.out)
}

// layerNormBackward is nn.LayerNormBackward: dbeta = sum dy, dgamma =
// sum dy*xhat (read before dx, which may alias dy, is written), then dx.
func (e *Engine) layerNormBackward(ln layerNorm, dx, dy, xhat, rstd buf[float32], n int) error {
	d := e.dev
	if err := d.colSums(ln.dbeta, ln.dgamma, dy, xhat, e.partial, n, ln.dim); err != nil {
		return err
	}
	return d.lnBackward(dx, dy, xhat, rstd, ln.gamma, n, ln.dim)
}

// Step implements nn.Engine.
func (e *Engine) Step(s nn.AdamWStep) error {
	if !e.ready {
		return nn.ErrNoGradients
	}
	if err := s.Validate(); err != nil {
		return err
	}
	err := e.dev.do(func() error {
		var err error
		if e.bf16 {
			err = e.dev.adamWBF16(e.params, e.paramsBF16, e.grads, e.m, e.v, e.np, s)
		} else {
			err = e.dev.adamW(e.params, e.grads, e.m, e.v, e.np, s)
		}
		if err != nil {
			return err
		}
		return e.dev.sync()
	})
	if err != nil {
		return err
	}
	e.ready = false
	return nil
}

// Project implements nn.Engine.
func (e *Engine) Project(dst, x []float32, n int) error {
	c := e.cfg
	if len(dst) != n*c.OutputDim {
		return fmt.Errorf("project: output has room for %d values, want %d rows x %d", len(dst), n, c.OutputDim)
	}
	if err := checkBatch(x, n, c.InputDim, "inputs"); err != nil {
		return err
	}
	return e.dev.do(func() error {
		if err := e.reserve(n); err != nil {
			return err
		}
		if err := upload(e.dev, e.x, x); err != nil {
			return err
		}
		if err := e.forward(n, false); err != nil {
			return err
		}
		return download(e.dev, dst, e.out)
	})
}

// copyOut downloads one state buffer.
func (e *Engine) copyOut(dst []float32, src buf[float32], what string) error {
	if len(dst) != e.np {
		return fmt.Errorf("%s: buffer of %d values, the model has %d", what, len(dst), e.np)
	}
	return e.dev.do(func() error { return download(e.dev, dst, src) })
}

// copyIn uploads one state buffer; then, when it is the parameters of a
// bf16 engine, refreshes their bf16 copy.
func (e *Engine) copyIn(dst buf[float32], src []float32, what string) error {
	if len(src) != e.np {
		return fmt.Errorf("%s: %d values, the model has %d", what, len(src), e.np)
	}
	return e.dev.do(func() error {
		if err := upload(e.dev, dst, src); err != nil {
			return err
		}
		if e.bf16 && dst == e.params {
			if err := e.dev.castBF16(e.paramsBF16, e.params, e.np); err != nil {
				return err
			}
		}
		if dst == e.params {
			if err := e.clearDivergence(); err != nil {
				return err
			}
		}
		return e.dev.sync()
	})
}

// Parameters implements nn.Engine.
func (e *Engine) Parameters(dst []float32) error { return e.copyOut(dst, e.params, "parameters") }

// SetParameters implements nn.Engine.
func (e *Engine) SetParameters(src []float32) error { return e.copyIn(e.params, src, "parameters") }

// Gradients implements nn.Engine.
func (e *Engine) Gradients(dst []float32) error { return e.copyOut(dst, e.grads, "gradients") }

// Moments implements nn.Engine.
func (e *Engine) Moments(m, v []float32) error {
	if err := e.copyOut(m, e.m, "first moments"); err != nil {
		return err
	}
	return e.copyOut(v, e.v, "second moments")
}

// SetMoments implements nn.Engine.
func (e *Engine) SetMoments(m, v []float32) error {
	if err := e.copyIn(e.m, m, "first moments"); err != nil {
		return err
	}
	return e.copyIn(e.v, v, "second moments")
}

// Close implements nn.Engine: it frees the GPU memory and closes the device.
// Closing twice is not an error; every other method of a closed engine
// returns an error.
func (e *Engine) Close() error {
	// A closed device has nothing left to release.
	perr := e.dev.do(e.releasePipe)
	if errors.Is(perr, errClosed) {
		perr = nil
	}
	return errors.Join(perr, e.dev.Close())
}
