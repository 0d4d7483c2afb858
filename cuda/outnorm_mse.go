//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/nn"
)

// The MSE objective's output: the output LayerNorm, the unit-norm MSE loss
// and the LayerNorm's backward pass in one kernel, outnorm_mse
// (kernels/outnorm_mse.cu), in both precisions (the LayerNorm and the loss
// are float32 math with float64 sums in either). The contrastive
// objectives keep the separate kernels (forward's LayerNorm, objective.go's
// losses, backward's layerNormBackward): their gradient w.r.t. the output
// is complete only after the InfoNCE terms are added.

// outNormMSERows is the rows of a block of outnorm_mse (OUTNORM_MSE_ROWS).
const outNormMSERows = 32

// outNormMSEChunks is the number of blocks, and of column-partial chunks,
// of outnorm_mse over rows.
func outNormMSEChunks(rows int) int { return ceilDiv(rows, outNormMSERows) }

// fusedMSE says whether batchLoss and backward take the fused output path:
// the objective is MSE alone.
func (e *Engine) fusedMSE() bool { return e.objective.obj.LossName() == nn.LossMSE }

// outNormMSE launches outnorm_mse on x, t [rows, dim]: rowLoss and, when
// dx is not null, dx = dL/dx [rows, dim] and the column partials of the
// LayerNorm's dbeta and dgamma (2 outNormMSEChunks(rows) dim doubles, for
// colSumFinal).
func (d *Device) outNormMSE(dx buf[float32], rowLoss, partial buf[float64], x, t, gamma, beta buf[float32], rows, dim int) error {
	const what = "outnorm_mse"
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	chunks := outNormMSEChunks(rows)
	if err := rowGrid(what, chunks); err != nil {
		return err
	}
	if err := needAll(what, req("rowloss", rowLoss, rows), req("x", x, rows*dim), req("t", t, rows*dim), req("gamma", gamma, dim), req("beta", beta, dim)); err != nil {
		return err
	}
	// The fewest bytes: x and t read, gamma and beta, the row losses; for
	// training dx written and the partials.
	words := 2*rows*dim + 2*dim + 2*rows
	if dx.p != 0 {
		if err := needAll(what, req("dx", dx, rows*dim), req("partial", partial, 2*chunks*dim)); err != nil {
			return err
		}
		if overlap(dx, x) || overlap(dx, t) {
			return fmt.Errorf("cuda: %s: dx overlaps the input or the targets", what)
		}
		words += rows*dim + 4*chunks*dim
	} else {
		partial = buf[float64]{}
	}
	return launch.OutnormMse(d.with(rowWork(rows, dim, words)), grid(chunks, 1), dx.ptr(), rowLoss.ptr(), partial.ptr(),
		x.cptr(), t.cptr(), gamma.cptr(), beta.cptr(), int32(rows), int32(dim))
}

// outputMSE is batchLoss for the MSE objective: enqueueOutputMSE, then
// the loss read back, an error when it is not finite (on the worker
// thread).
func (e *Engine) outputMSE(n int, grad bool) (float64, error) {
	e.objective.dLogitScale = 0
	if err := e.enqueueOutputMSE(n, grad); err != nil {
		return 0, err
	}
	var sum [1]float64
	if err := download(e.dev, sum[:], e.lossOut); err != nil {
		return 0, err
	}
	return finiteLoss(sum[0] / float64(n*e.cfg.OutputDim))
}

// enqueueOutputMSE enqueues the model up to the head's last Linear into
// e.out, then outnorm_mse (with the output LayerNorm's input gradient into
// e.dy and its parameter gradients when grad), and the loss sum into
// e.lossOut. It waits for nothing: the pipelined step (stepKernels) runs
// it inside a captured graph and reads e.lossOut a step late.
func (e *Engine) enqueueOutputMSE(n int, grad bool) error {
	d, o := e.dev, e.cfg.OutputDim
	if err := e.forwardHead(n, grad); err != nil {
		return err
	}
	if err := e.linear(e.head2, e.out, buf[uint16]{}, e.headAct, e.headActb, n); err != nil {
		return err
	}
	var dx buf[float32]
	if grad {
		dx = e.dy.at(0, n*o)
	}
	ln := e.outNorm
	if err := d.outNormMSE(dx, e.rowLoss, e.partial, e.out, e.t, ln.gamma, ln.beta, n, o); err != nil {
		return err
	}
	if grad {
		if err := d.colSumFinal(ln.dbeta, ln.dgamma, e.partial, outNormMSEChunks(n), o); err != nil {
			return err
		}
	}
	return d.lossSum(e.lossOut, e.rowLoss, n)
}

// overlap says whether a and b share memory.
func overlap(a, b buf[float32]) bool {
	return a.p < b.p+uintptr(4*b.n) && b.p < a.p+uintptr(4*a.n)
}

// finiteLoss returns loss, with nn.ErrNonFinite when it is NaN or
// infinite.
func finiteLoss(loss float64) (float64, error) {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, fmt.Errorf("%w: %v", nn.ErrNonFinite, loss)
	}
	return loss, nil
}
