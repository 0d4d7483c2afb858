//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/nn"
)

// The bf16 mixed-precision mode of the engine, with PyTorch autocast's
// semantics: the master weights, the gradients and the AdamW moments are
// float32 (the state allocation as in the float32 mode) and so are the
// arithmetic of LayerNorm and GELU, the residual stream and the loss;
// every Linear is a bf16 GEMM (kernels/gemm_bf16.cu) of bf16 operands
// accumulating in float32:
//
//   - the weights' bf16 copy, paramsBF16 (the whole flat buffer, so the
//     per-tensor views are the float32 ones' offsets), lives in the state
//     allocation; adamw_bf16 writes it in the AdamW pass and SetParameters
//     refreshes it;
//   - each activation a Linear reads exists in bf16 (x, the block inputs,
//     the GELU outputs, hidden, the head's GELU output), written by what
//     produces it: the LayerNorms (ln_apply's and ln_forward's yb), the
//     input projection's and the head's first GEMM (a second, bf16 output
//     of the epilogue); only the input is cast in a pass of its own. It
//     is the forward GEMM's operand and, in the backward pass, the weight
//     gradient's;
//   - the blocks' GEMMs write their outputs in bf16, as autocast's Linear
//     returns them, with the row statistics of the rounded values, which
//     ln_apply_bf16 merges; it saves the row means and rstds, and the
//     backward pass recomputes xhat and LN1's output from them
//     (blockForwardBF16). The input projection and the head's GEMMs write
//     float32 (the residual stream; the pre-activation of the head's GELU;
//     the output LayerNorm's input), the head's first also the bf16 GELU
//     output the next GEMM reads;
//   - the backward pass (backwardBF16) makes each Linear's output gradient
//     dY in bf16 once (dyb, workspace scratch), in the grad_rows pass that
//     also does the GELU's and LayerNorm's backward before it and the
//     column sums, and reads it in both of the Linear's backward GEMMs:
//     dW = dY^T X (the tn layout, X the stored bf16 input) and dX = dY W
//     (the nn layout, W the bf16 weight copy), written in float32, or
//     added to the residual stream's skip gradient. No operand is
//     transposed in memory.
//
// The nn GEMMs have no fused GELU' epilogue: each GELU's backward feeds
// float32 sums (LN1's backward, the head's bias gradient), and the
// pre-activations GELU' needs are stored in float32 only (autocast
// evaluates GELU and its derivative in float32), so grad_rows applies
// GELU' as it reads the nn GEMM's float32 output.

// NewBF16Engine opens the GPU and returns an engine of shape c in bf16
// mixed precision with zero parameters, gradients and moments. Every
// width of c must be a multiple of 8 (bf16 rows of 16-byte multiples, as
// the GEMMs load them).
func NewBF16Engine(c nn.Config) (*Engine, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := BF16Fits(c); err != nil {
		return nil, fmt.Errorf("%w; use --precision fp32 for this model", err)
	}
	return openEngine(c, true)
}

// BF16Fits says why the bf16 engine cannot run a model of shape c (a width
// not a multiple of 8, or one whose backward row pass needs more shared
// memory than a block has), or nil when it can.
func BF16Fits(c nn.Config) error {
	for _, w := range []struct {
		name string
		n    int
		ln   bool // grad_rows runs a LayerNorm's backward at this width
	}{{"input", c.InputDim, false}, {"hidden", c.HiddenDim, true}, {"head (hidden/2)", c.HeadDim(), false}, {"output", c.OutputDim, true}} {
		if w.n%gemmBF16KMultiple != 0 {
			return fmt.Errorf("bf16 engine: the %s width %d is not a multiple of %d (bf16 GEMM rows must be 16-byte aligned)", w.name, w.n, gemmBF16KMultiple)
		}
		if err := gradRowsFits(w.n, w.ln); err != nil {
			return fmt.Errorf("bf16 engine: the %s width: %w", w.name, err)
		}
	}
	return nil
}

// BF16 says whether the engine computes in bf16 mixed precision.
func (e *Engine) BF16() bool { return e.bf16 }

// layoutBF16 carves the bf16 mode's activations and scratch for n rows,
// after layoutWorkspace's. The GELU outputs of the blocks and of the head
// and hidden_norm's output exist in bf16 only (the LayerNorms and the
// head's GEMM write them so), and so do the blocks' Linears' outputs (the
// LayerNorms' inputs, which their backward passes read again with the
// row means and rstds instead of a saved xhat).
func (e *Engine) layoutBF16(a *arena, n int) {
	c := e.cfg
	h, hd, o, in := c.HiddenDim, c.HeadDim(), c.OutputDim, c.InputDim
	f := func(k int) buf[uint16] { return carve[uint16](a, k) }
	e.xb, e.hiddenb, e.headActb = f(n*in), f(n*h), f(n*hd)
	for i := range e.blocks {
		b := &e.blocks[i]
		b.xb, b.actb, b.pre1b, b.pre2b = f(n*h), f(n*h), f(n*h), f(n*h)
		b.mean1, b.mean2 = carve[float32](a, n), carve[float32](a, n)
	}
	e.dyb = f(n * max(h, hd, o))
	e.gradPartial = carve[float32](a, gradPartialLen(n, max(h, hd, o)))
	// The split-K weight gradients' partial products (gemmBF16TN), for the
	// largest of the Linears' that splits.
	parts := 0
	for _, w := range [][2]int{{h, in}, {h, h}, {hd, h}, {o, hd}} {
		if s := e.dev.tnSplits(w[0], w[1], n); s > 1 {
			parts = max(parts, s*w[0]*w[1])
		}
	}
	e.splitParts = carve[float32](a, parts)
}

// toBF16 rounds the n values of an activation a Linear reads into its bf16
// copy; nothing in float32 mode.
func (e *Engine) toBF16(dst buf[uint16], src buf[float32], n int) error {
	if !e.bf16 {
		return nil
	}
	return e.dev.castBF16(dst, src, n)
}

// The forward Linears, in either mode. x is the input, xb its bf16 copy
// (bf16 mode).

// linear sets y = x W^T + b and, in bf16 mode when yb is not null, yb =
// bf16(y) in the same GEMM epilogue (the input projection's output: the
// residual stream and the first block's operand).
func (e *Engine) linear(l linear, y buf[float32], yb buf[uint16], x buf[float32], xb buf[uint16], n int) error {
	if e.bf16 && yb.p != 0 {
		return e.dev.gemmBF16F32Act(ntF32BF16, y, yb, xb, l.wb, l.b, n, l.out, l.in)
	}
	if e.bf16 {
		return e.dev.gemmBF16F32(y, xb, l.wb, l.b, n, l.out, l.in)
	}
	var none buf[float32]
	return e.dev.linearForward(launch.KGemmNtBias, y, none, none, x, l.w, l.b, n, l.in, l.out)
}

// linearNorm sets pre = x W^T + b (f32), then the LayerNorm ln of pre in
// mode (lnApply's arguments out, resid). The GEMM's epilogue writes the
// row statistics of pre per 64-column tile into e.stats, in either mode,
// and ln_apply merges them.
func (e *Engine) linearNorm(l linear, ln layerNorm, mode int, out lnOutputs, pre, x buf[float32], xb buf[uint16], resid buf[float32], n int) error {
	d := e.dev
	var err error
	if e.bf16 {
		err = d.gemmBF16F32Stats(pre, e.stats, xb, l.wb, l.b, n, l.out, l.in)
	} else {
		var none buf[float32]
		err = d.linearForward(launch.KGemmNtBiasStats, pre, none, e.stats, x, l.w, l.b, n, l.in, l.out)
	}
	if err != nil {
		return err
	}
	return d.lnApply(mode, out, pre, buf[uint16]{}, e.stats, ln.gamma, ln.beta, resid, n, l.out)
}

// blockForwardBF16 runs residual block b in bf16 mode, as autocast does:
// each Linear's output is bf16 (pre1b, pre2b; the GEMM's epilogue also
// writes the row statistics of the rounded values), which its LayerNorm
// reads in float32 arithmetic. The LayerNorms save only their inputs' row
// means and rstds besides those bf16 inputs (the backward pass recomputes
// xhat and LN1's output from them) and write the bf16 copies the next
// Linears read: GELU(LN1) into actb, and next = x + LN2 in float32 (the
// residual stream) and, when the next block's bf16 input nextb is given,
// in bf16.
func (e *Engine) blockForwardBF16(b *block, next buf[float32], nextb buf[uint16], n int) error {
	d, h := e.dev, e.cfg.HiddenDim
	var none buf[float32]
	if err := d.gemmBF16BF16Stats(b.pre1b, e.stats, b.xb, b.l1.wb, b.l1.b, n, h, h); err != nil {
		return err
	}
	ln1 := lnOutputs{yb: b.actb, mean: b.mean1, rstd: b.rstd1}
	if err := d.lnApply(lnGELU, ln1, none, b.pre1b, e.stats, b.n1.gamma, b.n1.beta, none, n, h); err != nil {
		return err
	}
	if err := d.gemmBF16BF16Stats(b.pre2b, e.stats, b.actb, b.l2.wb, b.l2.b, n, h, h); err != nil {
		return err
	}
	ln2 := lnOutputs{y: next, yb: nextb, mean: b.mean2, rstd: b.rstd2}
	return d.lnApply(lnResidual, ln2, none, b.pre2b, e.stats, b.n2.gamma, b.n2.beta, b.x, n, h)
}

// linearGELU sets pre = x W^T + b and act = GELU(pre), both in the
// GEMM's epilogue: in float32 mode act (f32); in bf16 mode actb (bf16,
// the next GEMM's operand), and pre (f32, which GELU's backward pass
// reads) only when a backward pass follows (grad).
func (e *Engine) linearGELU(l linear, pre, act buf[float32], actb buf[uint16], x buf[float32], xb buf[uint16], n int, grad bool) error {
	d := e.dev
	if e.bf16 && !grad {
		return d.gemmBF16GELU(actb, xb, l.wb, l.b, n, l.out, l.in)
	}
	if e.bf16 {
		return d.gemmBF16F32Act(ntF32GELU, pre, actb, xb, l.wb, l.b, n, l.out, l.in)
	}
	var none buf[float32]
	return d.linearForward(launch.KGemmNtBiasGelu, pre, act, none, x, l.w, l.b, n, l.in, l.out)
}

// backwardBF16 is backward in bf16 mode. In front of each Linear's two
// backward GEMMs one grad_rows pass (gradPass) turns the gradient arriving
// from above into the Linear's output gradient: through the LayerNorm that
// follows the Linear (the output LayerNorm, LN2, LN1) and the GELU that
// follows LN1 or the head's first Linear, written once in bf16 (e.dyb, both
// GEMMs' operand) with its column sums as the bias gradient and the
// LayerNorm's parameter gradients from the same pass. Only hidden_norm's
// backward writes float32 (the residual stream's gradient, in place).
// Then dW = dY^T X (tn, X the stored bf16 input) and dX = dY W (nn, W the
// bf16 weight copy), written, or added where the skip connection's
// gradient is already there.
func (e *Engine) backwardBF16(n int) error {
	c := e.cfg
	h, hd, o := c.HiddenDim, c.HeadDim(), c.OutputDim
	pass := func(p gradPass, dim int) error {
		p.rows, p.dim, p.partial = n, dim, e.gradPartial
		if p.dx.p == 0 {
			p.dxb = e.dyb.at(0, n*dim)
		}
		return e.dev.gradRows(p)
	}
	norm := func(p gradPass, ln layerNorm, xhat, rstd buf[float32]) gradPass {
		p.xhat, p.rstd, p.gamma, p.dbeta, p.dgamma = xhat, rstd, ln.gamma, ln.dbeta, ln.dgamma
		return p
	}
	recompute := func(p gradPass, ln layerNorm, xin buf[uint16], mean, rstd buf[float32]) gradPass {
		p = norm(p, ln, buf[float32]{}, rstd)
		p.xin, p.mean = xin, mean
		return p
	}
	// The output LayerNorm's backward, unless outnorm_mse has done it
	// (then dy already holds dL/d(head output)).
	p := gradPass{dy: e.dy.at(0, n*o), db: e.head2.db}
	if !e.fusedMSE() {
		p = norm(p, e.outNorm, e.xhatO, e.rstdO)
	}
	if err := pass(p, o); err != nil {
		return err
	}
	dHead := e.s2.at(0, n*hd)
	if err := e.linearGradsBF16(e.head2, dHead, e.headActb, n, false); err != nil {
		return err
	}
	if err := pass(gradPass{dy: dHead, pre: e.head, db: e.head1.db}, hd); err != nil {
		return err
	}
	dStream := e.s1
	if err := e.linearGradsBF16(e.head1, dStream, e.hiddenb, n, false); err != nil {
		return err
	}
	if err := pass(norm(gradPass{dx: dStream, dy: dStream}, e.hiddenNorm, e.xhatH, e.rstdH), h); err != nil {
		return err
	}
	dIn2 := e.s3
	for i := len(e.blocks) - 1; i >= 0; i-- {
		b := &e.blocks[i]
		// dStream is dL/d(block output), which is also dL/d(LN2 output).
		if err := pass(recompute(gradPass{dy: dStream, db: b.l2.db}, b.n2, b.pre2b, b.mean2, b.rstd2), h); err != nil {
			return err
		}
		if err := e.linearGradsBF16(b.l2, dIn2, b.actb, n, false); err != nil {
			return err
		}
		// dIn2 is dL/d(GELU output): GELU' of LN1's output, recomputed.
		p := recompute(gradPass{dy: dIn2, db: b.l1.db}, b.n1, b.pre1b, b.mean1, b.rstd1)
		p.geluBeta = b.n1.beta
		if err := pass(p, h); err != nil {
			return err
		}
		// The skip connection: dL/d(block input) = dStream + dL/d(L1 output) W1.
		if err := e.linearGradsBF16(b.l1, dStream, b.xb, n, true); err != nil {
			return err
		}
	}
	if err := pass(gradPass{dy: dStream, db: e.inProj.db}, h); err != nil {
		return err
	}
	return e.linearGradsBF16(e.inProj, buf[float32]{}, e.xb, n, false)
}

// linearGradsBF16 runs a Linear's backward GEMMs on the output gradient
// in e.dyb: l.dw [out,in] = dyb^T xb[n,in] and, when dx is not null, dx
// [n,in] = dyb W (added to dx when accumulate), accumulating in float32.
func (e *Engine) linearGradsBF16(l linear, dx buf[float32], xb buf[uint16], n int, accumulate bool) error {
	d := e.dev
	dyb := e.dyb.at(0, n*l.out)
	if err := d.gemmBF16TN(l.dw, dyb, xb, l.out, l.in, n, e.splitParts); err != nil {
		return err
	}
	if dx.p == 0 {
		return nil
	}
	return d.gemmBF16NN(dx, dyb, l.wb, n, l.in, l.out, accumulate)
}
