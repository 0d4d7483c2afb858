//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/nn"
)

// Launch wrappers, one per kernel or kernel family (see the comment block
// of each kernels/*.cu for what it computes). Each checks that the buffers
// hold the shapes and that the sizes fit the kernel's int32 parameters and
// the grid limits, then calls the kernel's generated launch function
// (package cuda/launch), which packs the arguments by the kernel's
// signature, on the device's stream. They run on the worker thread (inside
// Device.do) and do not wait for the kernel.

// Launch geometry shared with the kernels.
const (
	threads   = 256 // every kernel's block
	gemmTile  = 64  // gemm.cu: BM = BN
	statsTile = 64  // gemm.cu: the column tile of the row statistics
	colRows   = 64  // rows per chunk of colsum_partial
	maxGridX  = math.MaxInt32
	maxGridY  = 65535
)

// LayerNorm modes of ln_apply and ln_forward.
const (
	lnPlain    = 0
	lnGELU     = 1
	lnResidual = 2
)

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// required is one buffer a launch needs: its name, address, length and the
// length the launch will touch.
type required struct {
	name    string
	p       uintptr
	have, n int
}

// req describes buffer b, which must hold at least n elements.
func req[T any](name string, b buf[T], n int) required { return required{name, b.p, b.n, n} }

// needAll checks every buffer of a launch: none is null, each is long
// enough. Errors name the kernel (what) and the buffer.
func needAll(what string, rs ...required) error {
	for _, r := range rs {
		name := what + " " + r.name
		if r.p == 0 {
			return fmt.Errorf("cuda: %s: null buffer", name)
		}
		if r.have < r.n {
			return fmt.Errorf("cuda: %s: buffer of %d elements, need %d", name, r.have, r.n)
		}
	}
	return nil
}

// dims checks that every size is at least 1 and that the products the
// kernels form stay meaningful in int32 per dimension.
func dims(what string, ds ...int) error {
	for _, d := range ds {
		if d < 1 || d > math.MaxInt32 {
			return fmt.Errorf("cuda: %s: size %d out of range", what, d)
		}
	}
	return nil
}

// gemmWork describes an M x N x K GEMM for the kernel timings.
func gemmWork(m, n, k int) work {
	return work{shape: fmt.Sprintf("M=%d N=%d K=%d", m, n, k), flops: 2 * float64(m) * float64(n) * float64(k)}
}

// rowWork describes a kernel over rows x dim that moves `words` 4-byte
// values at least (8-byte values count twice).
func rowWork(rows, dim, words int) work {
	return work{shape: fmt.Sprintf("rows=%d dim=%d", rows, dim), bytes: 4 * float64(words)}
}

// elemWork describes an elementwise kernel over n values that moves
// perElement 4-byte values for each.
func elemWork(n, perElement int) work { return elemBytes(n, 4*perElement) }

// elemBytes describes an elementwise kernel over n values that moves
// bytesPerElement bytes for each (mixed-width kernels: a float32 read and
// a bfloat16 write move 6).
func elemBytes(n, bytesPerElement int) work {
	return work{shape: fmt.Sprintf("n=%d", n), bytes: float64(n) * float64(bytesPerElement)}
}

// lnOutputs are what a LayerNorm forward (ln_apply, ln_forward) writes:
// y, y2 = GELU(y) in mode lnGELU, and yb, bf16 of what the next Linear
// reads (GELU(y) in mode lnGELU, else y) for the bf16 engine; and for the
// backward pass rstd [rows] and either xhat [rows, dim] or (ln_apply_bf16
// only) mean [rows], from which grad_rows recomputes xhat. y2 may be null when
// yb is not, and so may y except in mode lnResidual (the residual stream).
type lnOutputs struct {
	y, y2            buf[float32]
	yb               buf[uint16]
	xhat, mean, rstd buf[float32]
}

// lnWork describes a LayerNorm forward over x of inBytes bytes an element:
// it reads x (and resid, or the tile statistics) and writes out.
func lnWork(mode int, out lnOutputs, inBytes, rows, dim, tiles int) work {
	words := 2*rows + 2*dim + 3*rows*tiles
	for _, b := range []uintptr{out.y.p, out.y2.p, out.xhat.p} {
		if b != 0 {
			words += rows * dim
		}
	}
	name := "plain"
	switch mode {
	case lnGELU:
		name = "gelu"
	case lnResidual:
		words += rows * dim
		name = "residual"
	}
	w := rowWork(rows, dim, words)
	w.bytes += float64(inBytes) * float64(rows*dim)
	if out.yb.p != 0 {
		w.bytes += 2 * float64(rows*dim)
	}
	w.shape += " mode=" + name
	return w
}

// statsTiles is the number of column tiles gemm_nt_bias_stats writes for a
// row of width n (its grid's x dimension).
func statsTiles(n int) int { return ceilDiv(n, statsTile) }

// gemmGrid is the grid of a GEMM with an M x N output.
func gemmGrid(what string, m, n int) (gx, gy int, err error) {
	gx, gy = ceilDiv(n, gemmTile), ceilDiv(m, gemmTile)
	if gy > maxGridY {
		return 0, 0, fmt.Errorf("cuda: %s: %d rows exceed the GEMM grid (at most %d)", what, m, maxGridY*gemmTile)
	}
	return gx, gy, nil
}

// linearForward launches y[rows,out] = x[rows,in] W^T + b with the epilogue
// of kernel k: KGemmNtBias, KGemmNtBiasGelu (also act = GELU(y)) or
// KGemmNtBiasStats (also stats [rows, statsTiles(out), 3]).
func (d *Device) linearForward(k launch.Kernel, y, act, stats, x, w, b buf[float32], rows, in, out int) error {
	what := k.String()
	if err := dims(what, rows, in, out); err != nil {
		return err
	}
	if err := needAll(what, req("y", y, rows*out), req("x", x, rows*in), req("w", w, out*in), req("bias", b, out)); err != nil {
		return err
	}
	gx, gy, err := gemmGrid(what, rows, out)
	if err != nil {
		return err
	}
	l, cfg := d.with(gemmWork(rows, out, in)), grid(gx, gy)
	M, N, K := int32(rows), int32(out), int32(in)
	switch k {
	case launch.KGemmNtBias:
		return launch.GemmNtBias(l, cfg, y.ptr(), x.cptr(), w.cptr(), b.cptr(), M, N, K)
	case launch.KGemmNtBiasGelu:
		if err := needAll(what, req("act", act, rows*out)); err != nil {
			return err
		}
		return launch.GemmNtBiasGelu(l, cfg, y.ptr(), act.ptr(), x.cptr(), w.cptr(), b.cptr(), M, N, K)
	case launch.KGemmNtBiasStats:
		if err := needAll(what, req("stats", stats, rows*statsTiles(out)*3)); err != nil {
			return err
		}
		return launch.GemmNtBiasStats(l, cfg, y.ptr(), stats.ptr(), x.cptr(), w.cptr(), b.cptr(), M, N, K)
	}
	return fmt.Errorf("cuda: linearForward with kernel %s", k)
}

// gemmNN launches dx[rows,in] = beta dx + dy[rows,out] W[out,in].
func (d *Device) gemmNN(dx, dy, w buf[float32], beta float32, rows, in, out int) error {
	const what = "gemm_nn"
	if err := dims(what, rows, in, out); err != nil {
		return err
	}
	if err := needAll(what, req("dx", dx, rows*in), req("dy", dy, rows*out), req("w", w, out*in)); err != nil {
		return err
	}
	gx, gy, err := gemmGrid(what, rows, in)
	if err != nil {
		return err
	}
	return launch.GemmNn(d.with(gemmWork(rows, in, out)), grid(gx, gy), dx.ptr(), dy.cptr(), w.cptr(), beta, int32(rows), int32(in), int32(out))
}

// gemmTN launches dw[out,in] = dy[rows,out]^T x[rows,in].
func (d *Device) gemmTN(dw, dy, x buf[float32], rows, in, out int) error {
	const what = "gemm_tn"
	if err := dims(what, rows, in, out); err != nil {
		return err
	}
	if err := needAll(what, req("dw", dw, out*in), req("dy", dy, rows*out), req("x", x, rows*in)); err != nil {
		return err
	}
	gx, gy, err := gemmGrid(what, out, in)
	if err != nil {
		return err
	}
	return launch.GemmTn(d.with(gemmWork(out, in, rows)), grid(gx, gy), dw.ptr(), dy.cptr(), x.cptr(), int32(out), int32(in), int32(rows))
}

// rowGrid checks a one-block-per-row launch.
func rowGrid(what string, rows int) error {
	if rows > maxGridX {
		return fmt.Errorf("cuda: %s: %d rows exceed the grid", what, rows)
	}
	return nil
}

// lnCheck checks the buffers common to ln_apply and ln_forward (x, the
// input, is checked by the caller).
func lnCheck(what string, mode int, out lnOutputs, gamma, beta, resid buf[float32], rows, dim int) error {
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	if err := rowGrid(what, rows); err != nil {
		return err
	}
	rs := []required{req("rstd", out.rstd, rows), req("gamma", gamma, dim), req("beta", beta, dim)}
	if out.mean.p != 0 {
		rs = append(rs, req("mean", out.mean, rows))
	}
	if out.xhat.p != 0 || out.mean.p == 0 {
		rs = append(rs, req("xhat", out.xhat, rows*dim))
	}
	bf16 := out.yb.p != 0
	if bf16 {
		rs = append(rs, req("yb", out.yb, rows*dim))
	}
	if out.y.p != 0 || mode == lnResidual || !bf16 {
		rs = append(rs, req("y", out.y, rows*dim))
	}
	switch mode {
	case lnPlain:
	case lnGELU:
		if out.y2.p != 0 || !bf16 {
			rs = append(rs, req("y2", out.y2, rows*dim))
		}
	case lnResidual:
		rs = append(rs, req("resid", resid, rows*dim))
	default:
		return fmt.Errorf("cuda: %s: mode %d", what, mode)
	}
	return needAll(what, rs...)
}

// lnApply launches ln_apply, or ln_apply_bf16 when the input is xb: the
// LayerNorm of x or xb [rows,dim] whose row statistics the GEMM before it
// wrote into stats, in the given mode. Exactly one of x and xb is given.
func (d *Device) lnApply(mode int, out lnOutputs, x buf[float32], xb buf[uint16], stats, gamma, beta, resid buf[float32], rows, dim int) error {
	what, inBytes, in := "ln_apply", 4, req("x", x, rows*dim)
	if xb.p != 0 {
		if x.p != 0 {
			return fmt.Errorf("cuda: ln_apply: both a float32 and a bf16 input")
		}
		what, inBytes, in = "ln_apply_bf16", 2, req("x", xb, rows*dim)
	} else if out.mean.p != 0 {
		// grad_rows recomputes xhat from a bf16 input only.
		return fmt.Errorf("cuda: ln_apply saves xhat, not the mean, of a float32 input")
	}
	if err := lnCheck(what, mode, out, gamma, beta, resid, rows, dim); err != nil {
		return err
	}
	tiles := statsTiles(dim)
	if err := needAll(what, in, req("stats", stats, rows*tiles*3)); err != nil {
		return err
	}
	l := d.with(lnWork(mode, out, inBytes, rows, dim, tiles))
	if xb.p != 0 {
		return launch.LnApplyBf16(l, grid(rows, 1), out.y.ptr(), out.y2.ptr(), out.yb.ptr(), out.xhat.ptr(), out.mean.ptr(), out.rstd.ptr(),
			xb.cptr(), stats.cptr(), int32(tiles), gamma.cptr(), beta.cptr(), resid.cptr(), int32(rows), int32(dim), int32(mode))
	}
	return launch.LnApply(l, grid(rows, 1), out.y.ptr(), out.y2.ptr(), out.yb.ptr(), out.xhat.ptr(), out.mean.ptr(), out.rstd.ptr(),
		x.cptr(), stats.cptr(), int32(tiles), gamma.cptr(), beta.cptr(), resid.cptr(), int32(rows), int32(dim), int32(mode))
}

// lnForward launches ln_forward: the LayerNorm of x[rows,dim], computing the
// row statistics itself (out.mean must be null: it saves xhat).
func (d *Device) lnForward(mode int, out lnOutputs, x, gamma, beta, resid buf[float32], rows, dim int) error {
	const what = "ln_forward"
	if out.mean.p != 0 {
		return fmt.Errorf("cuda: %s saves xhat, not the mean", what)
	}
	if err := lnCheck(what, mode, out, gamma, beta, resid, rows, dim); err != nil {
		return err
	}
	if err := needAll(what, req("x", x, rows*dim)); err != nil {
		return err
	}
	return launch.LnForward(d.with(lnWork(mode, out, 4, rows, dim, 0)), grid(rows, 1), out.y.ptr(), out.y2.ptr(), out.yb.ptr(), out.xhat.ptr(), out.rstd.ptr(), x.cptr(),
		gamma.cptr(), beta.cptr(), resid.cptr(), int32(rows), int32(dim), int32(mode))
}

// lnBackward launches ln_backward: dx[rows,dim] from dy, xhat, rstd, gamma.
func (d *Device) lnBackward(dx, dy, xhat, rstd, gamma buf[float32], rows, dim int) error {
	const what = "ln_backward"
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	if err := rowGrid(what, rows); err != nil {
		return err
	}
	if err := needAll(what, req("dx", dx, rows*dim), req("dy", dy, rows*dim), req("xhat", xhat, rows*dim), req("rstd", rstd, rows), req("gamma", gamma, dim)); err != nil {
		return err
	}
	return launch.LnBackward(d.with(rowWork(rows, dim, 3*rows*dim+rows+dim)), grid(rows, 1), dx.ptr(), dy.cptr(), xhat.cptr(), rstd.cptr(), gamma.cptr(), int32(rows), int32(dim))
}

// colChunks is the number of row chunks of a column reduction over rows.
func colChunks(rows int) int { return ceilDiv(rows, colRows) }

// colSums sets sum[j] = sum_r a[r,j] and, when prod is not null,
// prod[j] = sum_r a[r,j] b[r,j], with the two deterministic stages of
// reduce.cu; partial holds 2*colChunks(rows)*dim doubles.
func (d *Device) colSums(sum, prod, a, b buf[float32], partial buf[float64], rows, dim int) error {
	const what = "colsum"
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	chunks := colChunks(rows)
	if chunks > maxGridY {
		return fmt.Errorf("cuda: %s: %d rows exceed the grid", what, rows)
	}
	if err := needAll(what, req("sum", sum, dim), req("a", a, rows*dim)); err != nil {
		return err
	}
	parts := chunks * dim
	if prod.p != 0 {
		if err := needAll(what, req("prod", prod, dim), req("b", b, rows*dim)); err != nil {
			return err
		}
		parts *= 2
	} else {
		b = buf[float32]{}
	}
	if err := needAll(what, req("partial", partial, parts)); err != nil {
		return err
	}
	gx := ceilDiv(dim, threads)
	ins := 1
	if prod.p != 0 {
		ins = 2
	}
	if err := launch.ColsumPartial(d.with(rowWork(rows, dim, ins*rows*dim+2*ins*chunks*dim)), grid(gx, chunks), partial.ptr(), a.cptr(), b.cptr(), int32(rows), int32(dim), colRows); err != nil {
		return err
	}
	return d.colSumFinal(sum, prod, partial, chunks, dim)
}

// colSumFinal is the second stage of a column reduction: sum[j] = the sum
// over the chunks of partial[c*dim + j] and, when prod is not null,
// prod[j] = the sum of partial[(chunks+c)*dim + j].
func (d *Device) colSumFinal(sum, prod buf[float32], partial buf[float64], chunks, dim int) error {
	const what = "colsum_final"
	if err := dims(what, chunks, dim); err != nil {
		return err
	}
	ins := 1
	if prod.p != 0 {
		if err := needAll(what, req("prod", prod, dim)); err != nil {
			return err
		}
		ins = 2
	}
	if err := needAll(what, req("sum", sum, dim), req("partial", partial, ins*chunks*dim)); err != nil {
		return err
	}
	// A block per 32 columns and array (reduce.cu).
	return launch.ColsumFinal(d.with(rowWork(chunks, dim, 2*ins*chunks*dim+ins*dim)), grid(ceilDiv(dim, 32), ins), sum.ptr(), prod.ptr(), partial.cptr(), int32(chunks), int32(dim))
}

// elementGrid is the grid of the grid-stride elementwise kernels.
func elementGrid(n int) int { return max(1, min(ceilDiv(n, threads), maxGridY)) }

// geluBackward launches dx = dy GELU'(x) over n values.
func (d *Device) geluBackward(dx, dy, x buf[float32], n int) error {
	const what = "gelu_backward"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("dx", dx, n), req("dy", dy, n), req("x", x, n)); err != nil {
		return err
	}
	return launch.GeluBackward(d.with(elemWork(n, 3)), grid(elementGrid(n), 1), dx.ptr(), dy.cptr(), x.cptr(), int32(n))
}

// unitNormMSE launches the fused loss: rowLoss[r] and, when grad is not
// null, grad[rows,dim] = dL/dp.
func (d *Device) unitNormMSE(grad buf[float32], rowLoss buf[float64], p, t buf[float32], rows, dim int) error {
	const what = "unitnorm_mse"
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	if err := rowGrid(what, rows); err != nil {
		return err
	}
	if grad.p != 0 {
		if err := needAll(what, req("grad", grad, rows*dim)); err != nil {
			return err
		}
	}
	if err := needAll(what, req("rowloss", rowLoss, rows), req("p", p, rows*dim), req("t", t, rows*dim)); err != nil {
		return err
	}
	moved := 2*rows*dim + 2*rows
	if grad.p != 0 {
		moved += rows * dim
	}
	return launch.UnitnormMse(d.with(rowWork(rows, dim, moved)), grid(rows, 1), grad.ptr(), rowLoss.ptr(), p.cptr(), t.cptr(), int32(rows), int32(dim))
}

// lossSum launches out[0] = sum of rowLoss[0:rows].
func (d *Device) lossSum(out, rowLoss buf[float64], rows int) error {
	if err := dims("loss_sum", rows); err != nil {
		return err
	}
	if err := needAll("loss_sum", req("out", out, 1), req("rowloss", rowLoss, rows)); err != nil {
		return err
	}
	return launch.LossSum(d.with(elemWork(rows, 2)), grid(1, 1), out.ptr(), rowLoss.cptr(), int32(rows))
}

// adamW launches one AdamW update of n parameters, with the scalars
// nn.AdamW[float32] uses (nn.NewAdamWScalars).
func (d *Device) adamW(p, g, m, v buf[float32], n int, s nn.AdamWStep) error {
	const what = "adamw"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("params", p, n), req("grads", g, n), req("m", m, n), req("v", v, n)); err != nil {
		return err
	}
	sc := nn.NewAdamWScalars[float32](s)
	return launch.Adamw(d.with(elemWork(n, 7)), grid(elementGrid(n), 1), p.ptr(), g.cptr(), m.ptr(), v.ptr(),
		sc.Decay, sc.OneMinusBeta1, sc.Beta2, sc.OneMinusBeta2, sc.StepSize, sc.BiasCorrection2Sqrt, sc.Eps, int32(n))
}

// emaUpdate launches ema_update: ema = decay*ema + (1-decay)*p over n
// floats, with nn.BlendEMA's roundings (1-decay computed here, in float64,
// as nn.BlendEMA does).
func (d *Device) emaUpdate(ema, p buf[float32], n int, decay float64) error {
	const what = "ema_update"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := checkDecay(decay); err != nil {
		return fmt.Errorf("cuda: %s: %w", what, err)
	}
	if err := needAll(what, req("ema", ema, n), req("params", p, n)); err != nil {
		return err
	}
	// Each element: the average read and written, the parameter read.
	return launch.EmaUpdate(d.with(elemWork(n, 3)), grid(elementGrid(n), 1), ema.ptr(), p.cptr(), decay, 1-decay, int32(n))
}

// gatherRows launches gather_rows_f16: dst[i] = the float16 row rows[i] of
// src [nsrc, dim], converted exactly to float32, for i < n. The indices are
// in device memory, so their range is the caller's to check (the kernel
// writes NaN for one out of range rather than read past src).
func (d *Device) gatherRows(dst buf[float32], src buf[uint16], rows buf[int32], n, dim, nsrc int) error {
	const what = "gather_rows_f16"
	if err := dims(what, n, dim, nsrc); err != nil {
		return err
	}
	if err := rowGrid(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("dst", dst, n*dim), req("src", src, nsrc*dim), req("rows", rows, n)); err != nil {
		return err
	}
	// Each row: dim halves read, dim floats written (a half counts as half
	// a 4-byte word), and its index.
	return launch.GatherRowsF16(d.with(rowWork(n, dim, n*dim+ceilDiv(n*dim, 2)+n)), grid(n, 1),
		dst.ptr(), src.cptr(), rows.cptr(), int32(n), int32(dim), int32(nsrc))
}
