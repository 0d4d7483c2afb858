package nn

import (
	"fmt"

	"github.com/dinoclip/dinoclip/internal/sgemm"
	"github.com/dinoclip/dinoclip/internal/vec32"
)

// linear and layerNorm are views of one layer's parameters and gradients in
// the flat buffers.
type linear[T Float] struct {
	w, b, dw, db []T
	in, out      int
	packed       sgemm.PackedB // W^T packed for the forward GEMM (float32; see packWeights)
}

type layerNorm[T Float] struct {
	gamma, beta, dgamma, dbeta []T
	dim                        int
}

// block is one residual block, x + LN2(L2(GELU(LN1(L1(x))))), with the
// activations its backward pass needs.
type block[T Float] struct {
	l1, l2 linear[T]
	n1, n2 layerNorm[T]
	x      []T // block input [n,h]
	xhat1  []T // LN1 normalised [n,h]
	ln1    []T // LN1 output = GELU input [n,h]
	act    []T // GELU output = L2 input [n,h]
	xhat2  []T // LN2 normalised [n,h]
	rstd1  []T // [n]
	rstd2  []T // [n]
}

// Model is ProjectorWithResiduals on the CPU in precision T. Params and
// Grads are flat buffers in [Layout] order; Forward caches what Backward
// needs, for up to the largest batch seen so far.
type Model[T Float] struct {
	Config Config
	Layout *Layout
	Params []T
	Grads  []T

	inProj            linear[T]
	blocks            []block[T]
	hiddenNorm        layerNorm[T]
	head1, head2      linear[T]
	outNorm           layerNorm[T]
	n                 int // rows of the cached forward pass
	capacity          int // rows the activation buffers hold
	input             []T // the caller's input of the cached pass [n,in]
	stream            []T // residual stream after the last block [n,h]
	xhatH, hidden     []T // hidden_norm normalised and output [n,h]
	head, headAct     []T // head pre- and post-GELU [n,h/2]
	xhatO, out        []T // output LayerNorm normalised and output [n,out]
	rstdH, rstdO      []T // [n]
	scratch, scratch2 []T // [n,h] gradients flowing backwards
	scratch3          []T // [n,h]
}

// NewModel returns a model of shape c with zero parameters; load them with
// copy(m.Params, ...) or [InitParameters].
func NewModel[T Float](c Config) (*Model[T], error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	l := c.Layout()
	m := &Model[T]{Config: c, Layout: l, Params: make([]T, l.Size), Grads: make([]T, l.Size)}
	next := 0
	take := func() Tensor { t := l.Tensors[next]; next++; return t }
	lin := func() linear[T] {
		w, b := take(), take()
		return linear[T]{w: View(m.Params, w), b: View(m.Params, b), dw: View(m.Grads, w), db: View(m.Grads, b), in: w.Shape[1], out: w.Shape[0]}
	}
	ln := func() layerNorm[T] {
		g, b := take(), take()
		return layerNorm[T]{gamma: View(m.Params, g), beta: View(m.Params, b), dgamma: View(m.Grads, g), dbeta: View(m.Grads, b), dim: g.Shape[0]}
	}
	m.inProj = lin()
	m.blocks = make([]block[T], c.Blocks)
	for i := range m.blocks {
		b := &m.blocks[i]
		b.l1, b.n1, b.l2, b.n2 = lin(), ln(), lin(), ln()
	}
	m.hiddenNorm, m.head1, m.head2, m.outNorm = ln(), lin(), lin(), ln()
	return m, nil
}

// reserve sizes the activation buffers for n rows.
func (m *Model[T]) reserve(n int) {
	if n <= m.capacity {
		return
	}
	h, hd, o := m.Config.HiddenDim, m.Config.HeadDim(), m.Config.OutputDim
	for i := range m.blocks {
		b := &m.blocks[i]
		b.x, b.xhat1, b.ln1, b.act, b.xhat2 = make([]T, n*h), make([]T, n*h), make([]T, n*h), make([]T, n*h), make([]T, n*h)
		b.rstd1, b.rstd2 = make([]T, n), make([]T, n)
	}
	m.stream, m.xhatH, m.hidden = make([]T, n*h), make([]T, n*h), make([]T, n*h)
	m.head, m.headAct = make([]T, n*hd), make([]T, n*hd)
	m.xhatO, m.out = make([]T, n*o), make([]T, n*o)
	m.rstdH, m.rstdO = make([]T, n), make([]T, n)
	m.scratch, m.scratch2, m.scratch3 = make([]T, n*h), make([]T, n*h), make([]T, n*h)
	m.capacity = n
}

// Forward runs the model on x [n, InputDim] and returns the output
// [n, OutputDim], a view into the model's buffers valid until the next call.
// x must stay unchanged until Backward, which uses it for input_proj's
// weight gradient.
func (m *Model[T]) Forward(x []T, n int) ([]T, error) { return m.forward(x, n, false) }

// linears lists the linear layers in the order of the forward pass.
func (m *Model[T]) linears() []*linear[T] {
	ls := []*linear[T]{&m.inProj}
	for i := range m.blocks {
		ls = append(ls, &m.blocks[i].l1, &m.blocks[i].l2)
	}
	return append(ls, &m.head1, &m.head2)
}

// packWeights packs every linear layer's W^T as the forward GEMM reads it,
// once, for forward passes with packed set, which then skip packing each
// weight for each batch. The packs are a copy: they stay valid until the
// parameters change, which the caller (CPUEngine) tracks. It returns false,
// packing nothing, for float64 and where the GEMM has no packed kernel.
func (m *Model[T]) packWeights() bool {
	for _, l := range m.linears() {
		w, ok := any(l.w).([]float32)
		if !ok || !l.packed.Pack(true, l.in, l.out, w, l.in) {
			return false
		}
	}
	return true
}

// linearForward is LinearForward for layer l, from its packed weights
// when packed is set (the same bits: see sgemm.GemmPacked).
func linearForward[T Float](y, x []T, l *linear[T], n int, packed bool) {
	if !packed {
		LinearForward(y, x, l.w, l.b, n, l.in, l.out)
		return
	}
	sgemm.GemmPacked(false, n, any(x).([]float32), l.in, &l.packed, any(y).([]float32), l.out, false)
	addBias(y, l.b, n, l.out)
}

func (m *Model[T]) forward(x []T, n int, packed bool) ([]T, error) {
	c := m.Config
	if n < 1 || len(x) != n*c.InputDim {
		return nil, fmt.Errorf("forward: input has %d values, want %d rows x %d", len(x), n, c.InputDim)
	}
	m.reserve(n)
	m.n, m.input = n, x
	h, hd, o := c.HiddenDim, c.HeadDim(), c.OutputDim
	stream := m.stream[:n*h]
	if len(m.blocks) > 0 {
		stream = m.blocks[0].x[:n*h]
	}
	linearForward(stream, x, &m.inProj, n, packed)
	for i := range m.blocks {
		b := &m.blocks[i]
		next := m.stream[:n*h]
		if i+1 < len(m.blocks) {
			next = m.blocks[i+1].x[:n*h]
		}
		pre := m.scratch[:n*h]
		linearForward(pre, b.x[:n*h], &b.l1, n, packed)
		LayerNormForward(b.ln1[:n*h], b.xhat1[:n*h], b.rstd1[:n], pre, b.n1.gamma, b.n1.beta, n, h)
		GELUForward(b.act[:n*h], b.ln1[:n*h])
		linearForward(pre, b.act[:n*h], &b.l2, n, packed)
		LayerNormForward(pre, b.xhat2[:n*h], b.rstd2[:n], pre, b.n2.gamma, b.n2.beta, n, h)
		addInto(next, b.x[:n*h], pre)
	}
	LayerNormForward(m.hidden[:n*h], m.xhatH[:n*h], m.rstdH[:n], m.stream[:n*h], m.hiddenNorm.gamma, m.hiddenNorm.beta, n, h)
	linearForward(m.head[:n*hd], m.hidden[:n*h], &m.head1, n, packed)
	GELUForward(m.headAct[:n*hd], m.head[:n*hd])
	out := m.out[:n*o]
	linearForward(out, m.headAct[:n*hd], &m.head2, n, packed)
	LayerNormForward(out, m.xhatO[:n*o], m.rstdO[:n], out, m.outNorm.gamma, m.outNorm.beta, n, o)
	return out, nil
}

// Backward takes dL/d(output) [n, OutputDim] for the last Forward and sets
// Grads (overwriting them). When dx is not nil it also receives dL/d(input)
// [n, InputDim]. dy is used as scratch and overwritten.
func (m *Model[T]) Backward(dy, dx []T) error {
	c, n := m.Config, m.n
	h, hd, o := c.HiddenDim, c.HeadDim(), c.OutputDim
	if n == 0 {
		return fmt.Errorf("backward: no forward pass to differentiate")
	}
	if len(dy) != n*o {
		return fmt.Errorf("backward: output gradient has %d values, want %d x %d", len(dy), n, o)
	}
	if dx != nil && len(dx) != n*c.InputDim {
		return fmt.Errorf("backward: input gradient has %d values, want %d x %d", len(dx), n, c.InputDim)
	}
	LayerNormBackward(dy, m.outNorm.dgamma, m.outNorm.dbeta, dy, m.xhatO[:n*o], m.rstdO[:n], m.outNorm.gamma, n, o)
	dHead := m.scratch2[:n*hd]
	LinearBackward(dHead, m.head2.dw, m.head2.db, dy, m.headAct[:n*hd], m.head2.w, n, hd, o, 0)
	GELUBackward(dHead, dHead, m.head[:n*hd])
	dStream := m.scratch[:n*h]
	LinearBackward(dStream, m.head1.dw, m.head1.db, dHead, m.hidden[:n*h], m.head1.w, n, h, hd, 0)
	LayerNormBackward(dStream, m.hiddenNorm.dgamma, m.hiddenNorm.dbeta, dStream, m.xhatH[:n*h], m.rstdH[:n], m.hiddenNorm.gamma, n, h)
	dOut2, dIn2 := m.scratch2[:n*h], m.scratch3[:n*h]
	for i := len(m.blocks) - 1; i >= 0; i-- {
		b := &m.blocks[i]
		// dStream is dL/d(block output), which is also dL/d(LN2 output).
		LayerNormBackward(dOut2, b.n2.dgamma, b.n2.dbeta, dStream, b.xhat2[:n*h], b.rstd2[:n], b.n2.gamma, n, h)
		LinearBackward(dIn2, b.l2.dw, b.l2.db, dOut2, b.act[:n*h], b.l2.w, n, h, h, 0)
		GELUBackward(dIn2, dIn2, b.ln1[:n*h])
		LayerNormBackward(dIn2, b.n1.dgamma, b.n1.dbeta, dIn2, b.xhat1[:n*h], b.rstd1[:n], b.n1.gamma, n, h)
		// The skip connection: dL/d(block input) = dStream + dL/d(L1 output) W1.
		LinearBackward(dStream, b.l1.dw, b.l1.db, dIn2, b.x[:n*h], b.l1.w, n, h, h, 1)
	}
	LinearBackward(dx, m.inProj.dw, m.inProj.db, dStream, m.input, m.inProj.w, n, c.InputDim, h, 0)
	return nil
}

// addInto sets dst = a + b elementwise.
func addInto[T Float](dst, a, b []T) {
	if d32, ok := any(dst).([]float32); ok {
		a32, b32 := any(a).([]float32), any(b).([]float32)
		parallelFor(len(dst), 1, func(lo, hi int) { vec32.Add(d32[lo:hi], a32[lo:hi], b32[lo:hi]) })
		return
	}
	parallelFor(len(dst), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = a[i] + b[i]
		}
	})
}
