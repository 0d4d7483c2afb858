//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/nn"
)

// objectiveState is the engine's training objective (nn.Objective) and,
// for the InfoNCE losses, their workspace: an allocation of its own beside
// the engine's, made at the first contrastive batch and grown with the
// batch, so that an MSE run allocates nothing for it.
type objectiveState struct {
	obj         nn.Objective
	dLogitScale float64 // of the last ForwardBackward

	mem       uintptr
	rows, dim int          // the batch shape the workspace holds
	ph, th    buf[float32] // unit rows of the output and of the targets [n, d]
	dph       buf[float32] // dL/d(unit output rows) [n, d]
	cos, dcos buf[float32] // cosine matrix and dL/dcos [n, n]
	zero      buf[float32] // the cosine GEMM's bias, zeros [n]
	pn, tn    buf[float64] // row norms [n]
	expSums   buf[float64] // row, then column sums of exp(s cos) [2n]
	rowLoss   buf[float64] // [n]
	rowDS     buf[float64] // [n]
	sums      buf[float64] // the loss and dL/ds sums [2]
}

// maxInfoNCEBatch is the largest batch InfoNCE takes on the GPU: the
// GEMMs index the [n, n] cosine matrix with 32-bit integers.
const maxInfoNCEBatch = 46340 // floor(sqrt(2^31 - 1))

// InfoNCEBytes is the device memory the InfoNCE workspace takes for
// batches of n rows of outputs d wide: the [n, n] cosine matrix and its
// gradient in float32 dominate (8 n^2 bytes: 512 MiB at n = 8192).
func InfoNCEBytes(n, d int) int64 {
	floats := int64(3*n*d + 2*n*n + n)
	doubles := int64(6*n + 2)
	// Each of the 12 buffers may be padded to the arena's alignment.
	return 4*floats + 8*doubles + 12*align
}

// SetObjective implements nn.Engine.
func (e *Engine) SetObjective(o nn.Objective) error {
	if err := o.Validate(); err != nil {
		return err
	}
	e.objective.obj = o
	return nil
}

// LogitScaleGrad implements nn.Engine.
func (e *Engine) LogitScaleGrad() float64 { return e.objective.dLogitScale }

// objectiveLoss computes the objective's loss of the n rows of e.out
// against e.t and, when dy is not null, its gradient into dy and the logit
// scale's into e.objective.dLogitScale (on the worker thread). The sum is
// nn.ObjectiveLoss's: MSE + w InfoNCE for mse+infonce.
func (e *Engine) objectiveLoss(n int, dy buf[float32]) (float64, error) {
	o, st := e.cfg.OutputDim, &e.objective
	obj := st.obj
	st.dLogitScale = 0
	var loss float64
	if obj.LossName() != nn.LossInfoNCE {
		if err := e.dev.unitNormMSE(dy, e.rowLoss, e.out, e.t, n, o); err != nil {
			return 0, err
		}
		if err := e.dev.lossSum(e.lossOut, e.rowLoss, n); err != nil {
			return 0, err
		}
		var sum [1]float64
		if err := download(e.dev, sum[:], e.lossOut); err != nil {
			return 0, err
		}
		loss = sum[0] / float64(n*o)
	}
	if obj.Contrastive() {
		weight, accumulate := 1.0, false
		if obj.LossName() == nn.LossMSEInfoNCE {
			weight, accumulate = obj.InfoNCEWeight, true
		}
		nce, dls, err := e.infoNCE(n, dy, obj.LogitScale, weight, accumulate)
		if err != nil {
			return 0, err
		}
		loss += weight * nce
		st.dLogitScale = weight * dls
	}
	return finiteLoss(loss)
}

// infoNCE computes nn.InfoNCE of e.out against e.t (n rows) with the logit
// scale logitScale: the loss and dL/dlogitScale, and when dy is not null
// weight x dL/d(out) into dy (added to it when accumulate).
func (e *Engine) infoNCE(n int, dy buf[float32], logitScale, weight float64, accumulate bool) (loss, dLogitScale float64, err error) {
	d, o := e.dev, e.cfg.OutputDim
	st := &e.objective
	if n > maxInfoNCEBatch {
		return 0, 0, fmt.Errorf("cuda: InfoNCE on a batch of %d rows: the GPU engine takes at most %d (the batch x batch cosine matrix is indexed with 32-bit integers)", n, maxInfoNCEBatch)
	}
	if err := e.reserveInfoNCE(n); err != nil {
		return 0, 0, err
	}
	s := math.Min(math.Exp(logitScale), nn.MaxLogitScale)
	ph, th, cos := st.ph.at(0, n*o), st.th.at(0, n*o), st.cos.at(0, n*n)
	if err := d.unitRows(ph, st.pn, e.out, n, o); err != nil {
		return 0, 0, err
	}
	if err := d.unitRows(th, st.tn, e.t, n, o); err != nil {
		return 0, 0, err
	}
	var none buf[float32]
	if err := d.linearForward(launch.KGemmNtBias, cos, none, none, ph, th, st.zero, n, o, n); err != nil {
		return 0, 0, err
	}
	if err := d.infoNCESums(st.expSums, cos, s, n); err != nil {
		return 0, 0, err
	}
	dcos := st.dcos.at(0, n*n)
	if err := d.infoNCEGrad(dcos, st.rowLoss, st.rowDS, cos, st.expSums, s, n); err != nil {
		return 0, 0, err
	}
	if dy.p != 0 {
		dph := st.dph.at(0, n*o)
		if err := d.gemmNN(dph, dcos, th, 0, n, o, n); err != nil {
			return 0, 0, err
		}
		if err := d.unitRowsBackward(dy, ph, dph, st.pn, float32(weight), accumulate, n, o); err != nil {
			return 0, 0, err
		}
	}
	if err := d.lossSum(st.sums.at(0, 1), st.rowLoss, n); err != nil {
		return 0, 0, err
	}
	if err := d.lossSum(st.sums.at(1, 1), st.rowDS, n); err != nil {
		return 0, 0, err
	}
	var sums [2]float64
	if err := download(d, sums[:], st.sums); err != nil {
		return 0, 0, err
	}
	loss = sums[0] / float64(2*n)
	if math.Exp(logitScale) <= nn.MaxLogitScale {
		dLogitScale = s * sums[1]
	}
	return loss, dLogitScale, nil
}

// reserveInfoNCE makes the InfoNCE workspace hold batches of n rows (on
// the worker thread).
func (e *Engine) reserveInfoNCE(n int) error {
	st, o := &e.objective, e.cfg.OutputDim
	if n <= st.rows && st.dim == o {
		return nil
	}
	if err := e.dev.free(st.mem); err != nil {
		return fmt.Errorf("cuda: freeing the InfoNCE workspace: %w", err)
	}
	st.mem, st.rows, st.dim = 0, 0, 0
	bytes := InfoNCEBytes(n, o)
	p, err := e.dev.alloc(bytes)
	if err != nil {
		return e.dev.oom(err, bytes, fmt.Sprintf("batch %d", n), "InfoNCE's batch x batch logits", "")
	}
	a := arena{base: p}
	st.ph, st.th, st.dph = carve[float32](&a, n*o), carve[float32](&a, n*o), carve[float32](&a, n*o)
	st.cos, st.dcos = carve[float32](&a, n*n), carve[float32](&a, n*n)
	st.zero = carve[float32](&a, n)
	st.pn, st.tn = carve[float64](&a, n), carve[float64](&a, n)
	st.expSums = carve[float64](&a, 2*n)
	st.rowLoss, st.rowDS = carve[float64](&a, n), carve[float64](&a, n)
	st.sums = carve[float64](&a, 2)
	if a.off > bytes {
		panic(fmt.Sprintf("cuda: InfoNCE workspace of %d bytes laid out in %d", bytes, a.off))
	}
	st.mem, st.rows, st.dim = p, n, o
	return upload(e.dev, st.zero, make([]float32, n))
}

// unitRows launches unit_rows: unit = a / max(|a|, 1e-12) row by row and
// the rows' norms.
func (d *Device) unitRows(unit buf[float32], norms buf[float64], a buf[float32], rows, dim int) error {
	const what = "unit_rows"
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	if err := rowGrid(what, rows); err != nil {
		return err
	}
	if err := needAll(what, req("unit", unit, rows*dim), req("norms", norms, rows), req("a", a, rows*dim)); err != nil {
		return err
	}
	return launch.UnitRows(d.with(rowWork(rows, dim, 2*rows*dim+2*rows)), grid(rows, 1), unit.ptr(), norms.ptr(), a.cptr(), int32(rows), int32(dim))
}

// infoNCESums launches infonce_sums: the sums of exp(scale x cos) over
// the rows, then over the columns, of cos [n, n].
func (d *Device) infoNCESums(sums buf[float64], cos buf[float32], scale float64, n int) error {
	const what = "infonce_sums"
	if err := dims(what, n, 2*n, n*n); err != nil {
		return err
	}
	if err := rowGrid(what, 2*n); err != nil {
		return err
	}
	if err := needAll(what, req("sums", sums, 2*n), req("cos", cos, n*n)); err != nil {
		return err
	}
	return launch.InfonceSums(d.with(rowWork(2*n, n, 2*n*n+4*n)), grid(2*n, 1), sums.ptr(), cos.cptr(), scale, int32(n))
}

// infoNCEGrad launches infonce_grad: dcos = s G, and per row the loss and
// dL/ds terms.
func (d *Device) infoNCEGrad(dcos buf[float32], rowLoss, rowDS buf[float64], cos buf[float32], expSums buf[float64], scale float64, n int) error {
	const what = "infonce_grad"
	if err := dims(what, n, n*n); err != nil {
		return err
	}
	if err := rowGrid(what, n); err != nil {
		return err
	}
	if dcos.p == cos.p {
		return fmt.Errorf("cuda: %s: dcos aliases cos", what)
	}
	if err := needAll(what, req("dcos", dcos, n*n), req("rowloss", rowLoss, n), req("rowds", rowDS, n), req("cos", cos, n*n), req("sums", expSums, 2*n)); err != nil {
		return err
	}
	return launch.InfonceGrad(d.with(rowWork(n, n, 2*n*n+8*n)), grid(n, 1), dcos.ptr(), rowLoss.ptr(), rowDS.ptr(), cos.cptr(), expSums.cptr(), scale, int32(n))
}

// unitRowsBackward launches unit_rows_backward: grad (+)= weight dL/da from
// dL/du for u = a / max(|a|, 1e-12).
func (d *Device) unitRowsBackward(grad, unit, dunit buf[float32], norms buf[float64], weight float32, accumulate bool, rows, dim int) error {
	const what = "unit_rows_backward"
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	if err := rowGrid(what, rows); err != nil {
		return err
	}
	if err := needAll(what, req("grad", grad, rows*dim), req("unit", unit, rows*dim), req("dunit", dunit, rows*dim), req("norms", norms, rows)); err != nil {
		return err
	}
	acc := int32(0)
	if accumulate {
		acc = 1
	}
	moved := 3*rows*dim + 2*rows
	if accumulate {
		moved += rows * dim
	}
	return launch.UnitRowsBackward(d.with(rowWork(rows, dim, moved)), grid(rows, 1), grad.ptr(), unit.cptr(), dunit.cptr(), norms.cptr(), weight, acc, int32(rows), int32(dim))
}
