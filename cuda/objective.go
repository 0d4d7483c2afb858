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
	rows, dim int // the batch shape the workspace holds
	infoNCEBuffers
}

// infoNCEBuffers is the InfoNCE workspace of a batch of n rows d wide. The
// float32 engine's GEMMs read float32 unit rows; the bf16 engine's read
// bf16 copies, with the batch dimension of the gradient GEMM (its K)
// padded to ld = a multiple of 8 by zeros.
type infoNCEBuffers struct {
	ph      buf[float32] // unit rows of the output [n, d]
	th      buf[float32] // unit rows of the targets [n, d] (float32 engine)
	phb     buf[uint16]  // bf16 copy of ph (bf16 engine)
	thb     buf[uint16]  // bf16 unit rows of the targets [ld, d], rows n.. zero (bf16 engine)
	dph     buf[float32] // dL/d(unit output rows) [n, d]
	cos     buf[float32] // cosine matrix [n, n]
	dcos    buf[float32] // dL/dcos [n, n] (float32 engine)
	dcosb   buf[uint16]  // bf16 dL/dcos [n, ld], columns n.. zero (bf16 engine)
	zero    buf[float32] // the float32 cosine GEMM's bias, zeros [n] (float32 engine)
	pn, tn  buf[float64] // row norms [n]
	expSums buf[float64] // row, then column sums of exp(s cos) [2n]
	rowLoss buf[float64] // [n]
	rowDS   buf[float64] // [n]
	sums    buf[float64] // the loss and dL/ds sums [2]
}

// infoNCEK is the bf16 gradient GEMM's K for a batch of n rows: n rounded
// up to the multiple of 8 that bf16 rows of 16-byte multiples need.
func infoNCEK(n int) int { return (n + gemmBF16KMultiple - 1) / gemmBF16KMultiple * gemmBF16KMultiple }

// layoutInfoNCE carves the InfoNCE workspace of n rows d wide from a.
func layoutInfoNCE(a *arena, n, d int, bf16 bool) infoNCEBuffers {
	var b infoNCEBuffers
	f32, f64 := func(k int) buf[float32] { return carve[float32](a, k) }, func(k int) buf[float64] { return carve[float64](a, k) }
	b.ph, b.dph, b.cos = f32(n*d), f32(n*d), f32(n*n)
	if bf16 {
		ld := infoNCEK(n)
		b.phb, b.thb, b.dcosb = carve[uint16](a, n*d), carve[uint16](a, ld*d), carve[uint16](a, n*ld)
	} else {
		b.th, b.dcos, b.zero = f32(n*d), f32(n*n), f32(n)
	}
	b.pn, b.tn, b.expSums = f64(n), f64(n), f64(2*n)
	b.rowLoss, b.rowDS, b.sums = f64(n), f64(n), f64(2)
	return b
}

// maxInfoNCEBatch is the largest batch InfoNCE takes on the GPU: the
// float32 engine's GEMMs index the [n, n] cosine matrix with 32-bit
// integers, and the bf16 engine's dL/dcos [n, infoNCEK(n)] is counted in
// them too (n infoNCEK(n) < 2^31 up to n = 46337).
func maxInfoNCEBatch(bf16 bool) int {
	if bf16 {
		return 46337
	}
	return 46340 // floor(sqrt(2^31 - 1))
}

// InfoNCEBytes is the device memory the InfoNCE workspace takes for
// batches of n rows of outputs d wide, in the bf16 engine when bf16: the
// [n, n] float32 cosine matrix and its gradient dominate, 8 n^2 bytes in
// float32 (512 MiB at n = 8192), 6 n^2 in bf16 (the gradient in bf16,
// 384 MiB).
func InfoNCEBytes(n, d int, bf16 bool) int64 {
	var a arena
	layoutInfoNCE(&a, n, d, bf16)
	return a.off
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
		if err := e.mseLoss(n, dy); err != nil {
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

// mseLoss enqueues the unit-norm MSE of the n rows of e.out against e.t:
// its sum into e.lossOut and, when dy is not null, its gradient into dy.
func (e *Engine) mseLoss(n int, dy buf[float32]) error {
	if err := e.dev.unitNormMSE(dy, e.rowLoss, e.out, e.t, n, e.cfg.OutputDim); err != nil {
		return err
	}
	return e.dev.lossSum(e.lossOut, e.rowLoss, n)
}

// infoNCE computes nn.InfoNCE of e.out against e.t (n rows) with the logit
// scale logitScale: the loss and dL/dlogitScale, and when dy is not null
// weight x dL/d(out) into dy (added to it when accumulate). The engine's
// mode picks the GEMMs (infoNCECosines, infoNCEUnitGrad) and dL/dcos's
// type; the unit rows, the softmax statistics and the loss are float32 and
// double in both modes.
func (e *Engine) infoNCE(n int, dy buf[float32], logitScale, weight float64, accumulate bool) (loss, dLogitScale float64, err error) {
	d, o := e.dev, e.cfg.OutputDim
	st := &e.objective
	if limit := maxInfoNCEBatch(e.bf16); n > limit {
		return 0, 0, fmt.Errorf("cuda: InfoNCE on a batch of %d rows: the GPU engine takes at most %d (the batch x batch cosine matrix is indexed with 32-bit integers)", n, limit)
	}
	if err := e.reserveInfoNCE(n); err != nil {
		return 0, 0, err
	}
	s := math.Min(math.Exp(logitScale), nn.MaxLogitScale)
	if err := e.infoNCECosines(n); err != nil {
		return 0, 0, err
	}
	cos := st.cos.at(0, n*n)
	if err := d.infoNCESums(st.expSums, cos, s, n); err != nil {
		return 0, 0, err
	}
	if e.bf16 {
		err = d.infoNCEGradBF16(st.dcosb.at(0, n*infoNCEK(n)), st.rowLoss, st.rowDS, cos, st.expSums, s, n)
	} else {
		err = d.infoNCEGrad(st.dcos.at(0, n*n), st.rowLoss, st.rowDS, cos, st.expSums, s, n)
	}
	if err != nil {
		return 0, 0, err
	}
	if dy.p != 0 {
		dph := st.dph.at(0, n*o)
		if err := e.infoNCEUnitGrad(dph, n); err != nil {
			return 0, 0, err
		}
		if err := d.unitRowsBackward(dy, st.ph.at(0, n*o), dph, st.pn, float32(weight), accumulate, n, o); err != nil {
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

// infoNCECosines normalises the rows of e.out and e.t into the workspace
// and computes the cosine matrix cos = ph th^T [n, n] in float32: in the
// float32 engine with the SIMT GEMM of float32 unit rows, in the bf16
// engine with the bf16 nt GEMM (tensor cores, float32 accumulation) of
// their bf16 copies, which unit_rows_bf16 writes beside the float32 rows
// (the targets' in bf16 only, with the zero rows the gradient GEMM's K
// padding needs).
func (e *Engine) infoNCECosines(n int) error {
	d, o, st := e.dev, e.cfg.OutputDim, &e.objective
	ph, cos := st.ph.at(0, n*o), st.cos.at(0, n*n)
	if e.bf16 {
		ld := infoNCEK(n)
		phb, thb := st.phb.at(0, n*o), st.thb.at(0, ld*o)
		if err := d.unitRowsBF16(ph, phb, st.pn, e.out, n, n, o); err != nil {
			return err
		}
		if err := d.unitRowsBF16(buf[float32]{}, thb, st.tn, e.t, n, ld, o); err != nil {
			return err
		}
		return d.gemmBF16F32(cos, phb, thb.at(0, n*o), buf[float32]{}, n, n, o)
	}
	th := st.th.at(0, n*o)
	if err := d.unitRows(ph, st.pn, e.out, n, o); err != nil {
		return err
	}
	if err := d.unitRows(th, st.tn, e.t, n, o); err != nil {
		return err
	}
	var none buf[float32]
	return d.linearForward(launch.KGemmNtBias, cos, none, none, ph, th, st.zero, n, o, n)
}

// infoNCEUnitGrad computes dph = dL/d(unit output rows) = dcos th [n, d]
// from the dL/dcos of infonce_grad: in the float32 engine with the SIMT nn
// GEMM; in the bf16 engine with the bf16 nn GEMM of the bf16 dcos [n, ld]
// and the bf16 targets [ld, d] (K = ld, the padding zero in both).
func (e *Engine) infoNCEUnitGrad(dph buf[float32], n int) error {
	d, o, st := e.dev, e.cfg.OutputDim, &e.objective
	if !e.bf16 {
		return d.gemmNN(dph, st.dcos.at(0, n*n), st.th.at(0, n*o), 0, n, o, n)
	}
	ld := infoNCEK(n)
	return d.gemmBF16NN(dph, st.dcosb.at(0, n*ld), st.thb.at(0, ld*o), n, o, ld, false)
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
	bytes := InfoNCEBytes(n, o, e.bf16)
	p, err := e.dev.alloc(bytes)
	if err != nil {
		return e.dev.oom(err, bytes, fmt.Sprintf("batch %d", n), "InfoNCE's batch x batch logits", "")
	}
	a := arena{base: p}
	st.infoNCEBuffers = layoutInfoNCE(&a, n, o, e.bf16)
	st.mem, st.rows, st.dim = p, n, o
	if e.bf16 {
		return nil
	}
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

// unitRowsBF16 launches unit_rows_bf16: unit (when not null) and its bf16
// copy unitB = a / max(|a|, 1e-12) row by row for the n rows of a, zeros
// in unitB's rows n .. rows-1, and the rows' norms.
func (d *Device) unitRowsBF16(unit buf[float32], unitB buf[uint16], norms buf[float64], a buf[float32], n, rows, dim int) error {
	const what = "unit_rows_bf16"
	if err := dims(what, n, rows, dim); err != nil {
		return err
	}
	if rows < n {
		return fmt.Errorf("cuda: %s: %d rows for %d rows of values", what, rows, n)
	}
	if err := rowGrid(what, rows); err != nil {
		return err
	}
	rs := []required{req("unit_bf16", unitB, rows*dim), req("norms", norms, n), req("a", a, n*dim)}
	words := n*dim + rows*dim/2 + 2*n
	if unit.p != 0 {
		rs = append(rs, req("unit", unit, n*dim))
		words += n * dim
	}
	if err := needAll(what, rs...); err != nil {
		return err
	}
	return launch.UnitRowsBf16(d.with(rowWork(rows, dim, words)), grid(rows, 1), unit.ptr(), unitB.ptr(), norms.ptr(), a.cptr(), int32(n), int32(rows), int32(dim))
}

// infoNCESums launches infonce_sums: the sums of exp(scale x cos) over
// the columns (a block per 32, the long ones first), then over the rows (a
// block each), of cos [n, n].
func (d *Device) infoNCESums(sums buf[float64], cos buf[float32], scale float64, n int) error {
	const what = "infonce_sums"
	blocks := n + ceilDiv(n, 32)
	if err := dims(what, n, blocks, n*n); err != nil {
		return err
	}
	if err := rowGrid(what, blocks); err != nil {
		return err
	}
	if err := needAll(what, req("sums", sums, 2*n), req("cos", cos, n*n)); err != nil {
		return err
	}
	return launch.InfonceSums(d.with(rowWork(2*n, n, 2*n*n+4*n)), grid(blocks, 1), sums.ptr(), cos.cptr(), scale, int32(n))
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

// infoNCEGradBF16 launches infonce_grad_bf16: infonce_grad with dcos in
// bf16, [n, infoNCEK(n)] with zero padding columns (the bf16 nn GEMM's A).
func (d *Device) infoNCEGradBF16(dcos buf[uint16], rowLoss, rowDS buf[float64], cos buf[float32], expSums buf[float64], scale float64, n int) error {
	const what = "infonce_grad_bf16"
	ld := infoNCEK(n)
	if err := dims(what, n, n*ld); err != nil {
		return err
	}
	if err := rowGrid(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("dcos", dcos, n*ld), req("rowloss", rowLoss, n), req("rowds", rowDS, n), req("cos", cos, n*n), req("sums", expSums, 2*n)); err != nil {
		return err
	}
	return launch.InfonceGradBf16(d.with(rowWork(n, n, n*n+n*ld/2+8*n)), grid(n, 1), dcos.ptr(), int32(ld), rowLoss.ptr(), rowDS.ptr(), cos.cptr(), expSums.cptr(), scale, int32(n))
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
