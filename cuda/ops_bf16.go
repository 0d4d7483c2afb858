//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/kernels"
	"github.com/dinoclip/dinoclip/nn"
)

// Launch wrappers of the bf16 engine's memory-bound kernels
// (kernels/bf16_convert.cu, adamw.cu's adamw_bf16, grad_rows.cu), as
// those of ops.go.

// castBF16 launches dst[i] = bf16(src[i]) for i < n.
func (d *Device) castBF16(dst buf[uint16], src buf[float32], n int) error {
	const what = "cast_f32_bf16"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("dst", dst, n), req("src", src, n)); err != nil {
		return err
	}
	return launch.CastF32Bf16(d.with(elemBytes(n, 4+2)), grid(elementGrid(n), 1), dst.ptr(), src.cptr(), int32(n))
}

// adamWBF16 launches adamw_bf16: adamW's update, also writing pb = bf16(p).
func (d *Device) adamWBF16(p buf[float32], pb buf[uint16], g, m, v buf[float32], n int, s nn.AdamWStep) error {
	const what = "adamw_bf16"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("params", p, n), req("bf16 params", pb, n), req("grads", g, n), req("m", m, n), req("v", v, n)); err != nil {
		return err
	}
	sc := nn.NewAdamWScalars[float32](s)
	// 7 words of adamw plus half a word for the bf16 copy.
	return launch.AdamwBf16(d.with(elemBytes(n, 7*4+2)), grid(elementGrid(n), 1), p.ptr(), pb.ptr(), g.cptr(), m.ptr(), v.ptr(),
		sc.Decay, sc.OneMinusBeta1, sc.Beta2, sc.OneMinusBeta2, sc.StepSize, sc.BiasCorrection2Sqrt, sc.Eps, int32(n))
}

// gradChunkRows is grad_rows's rows per block: a chunk's column sums are
// float sums of this many values (within gradChunkRows 2^-24 of the sum of
// their magnitudes), the partial buffer holds ceil(rows/gradChunkRows)
// rows of each sum, and a batch of 8192 rows makes 512 blocks, about four
// per multiprocessor of an H100. A figure chosen, not yet measured.
const gradChunkRows = 16

// gradRowsShared is grad_rows's dynamic shared memory for rows of dim
// elements: the column sums, and with a LayerNorm (ln) the row's g and
// xhat.
func gradRowsShared(dim int, ln bool) int {
	if ln {
		return 4 * 5 * dim
	}
	return 4 * dim
}

// gradRowsFits says why grad_rows cannot take rows of dim elements (its
// dynamic shared memory and its static part, budgets.tsv's, beyond a
// block's, driver.SM90's), or nil when it can.
func gradRowsFits(dim int, ln bool) error {
	static, _ := kernels.StaticShared("grad_rows")
	if need := gradRowsShared(dim, ln) + static; need > driver.SM90.MaxDynamicShared {
		return fmt.Errorf("grad_rows: rows of %d needs %d bytes of shared memory, a block has at most %d", dim, need, driver.SM90.MaxDynamicShared)
	}
	return nil
}

// gradPass is one backward row pass (kernels/grad_rows.cu): from dy, the
// gradient of a GELU's output or of whatever comes next, through a
// LayerNorm's backward (xhat, or xin and mean, given), to dx in float32
// and/or bf16, with the column sums of dx (a Linear's bias gradient) and of
// the LayerNorm's parameter gradients.
type gradPass struct {
	dx        buf[float32] // dx [rows, dim] in float32 (may alias dy), or null
	dxb       buf[uint16]  // bf16(dx), the next backward GEMMs' operand, or null
	dy        buf[float32] // the incoming gradient [rows, dim]
	pre       buf[float32] // GELU's input [rows, dim] when dy is its output's gradient, or null
	xhat      buf[float32] // the LayerNorm's saved xhat [rows, dim], or null
	xin       buf[uint16]  // or its bf16 input [rows, dim] (ln_apply_bf16's x), with mean
	mean      buf[float32] // the row means ln_apply_bf16 saved [rows], with xin
	rstd      buf[float32] // the LayerNorm's saved rstd [rows]
	gamma     buf[float32] // the LayerNorm's weight [dim]
	geluBeta  buf[float32] // the LayerNorm's bias [dim] when dy is the gradient of GELU(its output), or null
	db        buf[float32] // sum over rows of dx [dim], or null
	dbeta     buf[float32] // sum over rows of the LayerNorm's output gradient [dim]
	dgamma    buf[float32] // sum over rows of that gradient times xhat [dim]
	partial   buf[float32] // scratch of gradPartialLen(rows, dim) values
	rows, dim int
}

// gradPartialLen is the partial sums' length grad_rows needs for rows x
// dim (its three column sums).
func gradPartialLen(rows, dim int) int { return 3 * ceilDiv(rows, gradChunkRows) * dim }

// gradRows launches grad_rows and grad_cols for p.
func (d *Device) gradRows(p gradPass) error {
	const what = "grad_rows"
	rows, dim := p.rows, p.dim
	if err := dims(what, rows, dim); err != nil {
		return err
	}
	if d.tc.ext == nil {
		return fmt.Errorf("cuda: %s needs the driver's extended launch calls, which this driver lacks", what)
	}
	if p.dx.p == 0 && p.dxb.p == 0 {
		return fmt.Errorf("cuda: %s: neither a float32 nor a bf16 output", what)
	}
	rs := []required{req("dy", p.dy, rows*dim)}
	opt := func(name string, b buf[float32], n int) {
		if b.p != 0 {
			rs = append(rs, req(name, b, n))
		}
	}
	opt("dx", p.dx, rows*dim)
	opt("pre", p.pre, rows*dim)
	opt("db", p.db, dim)
	if p.dxb.p != 0 {
		rs = append(rs, req("dxb", p.dxb, rows*dim))
	}
	ln := p.xhat.p != 0 || p.xin.p != 0
	arrays := 1
	switch {
	case p.xhat.p != 0 && (p.xin.p != 0 || p.mean.p != 0):
		return fmt.Errorf("cuda: %s: both a saved xhat and the LayerNorm's input or mean", what)
	case ln:
		rs = append(rs, req("rstd", p.rstd, rows), req("gamma", p.gamma, dim), req("dbeta", p.dbeta, dim), req("dgamma", p.dgamma, dim))
		if p.xin.p != 0 {
			rs = append(rs, req("xin", p.xin, rows*dim), req("mean", p.mean, rows))
		} else {
			rs = append(rs, req("xhat", p.xhat, rows*dim))
		}
		if p.geluBeta.p != 0 {
			if p.pre.p != 0 {
				return fmt.Errorf("cuda: %s: two GELU inputs (pre and the LayerNorm's output)", what)
			}
			rs = append(rs, req("beta", p.geluBeta, dim))
		}
		arrays = 3
	case p.rstd.p != 0 || p.gamma.p != 0 || p.dbeta.p != 0 || p.dgamma.p != 0 || p.mean.p != 0 || p.geluBeta.p != 0:
		return fmt.Errorf("cuda: %s: LayerNorm buffers without xhat or the LayerNorm's input", what)
	}
	chunks := ceilDiv(rows, gradChunkRows)
	rs = append(rs, req("partial", p.partial, arrays*chunks*dim))
	if err := needAll(what, rs...); err != nil {
		return err
	}
	if err := gradRowsFits(dim, ln); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	// Raised whatever the size: the default limit (48 KiB) counts the
	// static shared memory too, so a dynamic part just under it may not
	// fit.
	smem := gradRowsShared(dim, ln)
	if err := d.raiseShared(launch.KGradRows, smem); err != nil {
		return err
	}
	cfg := driver.LaunchConfig{Grid: [3]int{chunks, 1, 1}, Block: [3]int{threads, 1, 1}, SharedBytes: smem}
	// The bytes moved per element: dy, pre and xhat read, dx written in
	// float32 and/or bf16; then rstd, and the partial sums written.
	perElement := 4
	for _, b := range []uintptr{p.pre.p, p.xhat.p, p.dx.p} {
		if b != 0 {
			perElement += 4
		}
	}
	for _, b := range []uintptr{p.xin.p, p.dxb.p} {
		if b != 0 {
			perElement += 2
		}
	}
	bytes := float64(rows*dim)*float64(perElement) + 4*float64(arrays*chunks*dim)
	if ln {
		bytes += 8 * float64(rows)
	}
	w := work{shape: fmt.Sprintf("rows=%d dim=%d", rows, dim), bytes: bytes}
	if err := launch.GradRows(d.with(w), cfg, p.dx.ptr(), p.dxb.ptr(), p.partial.ptr(), p.dy.cptr(), p.pre.cptr(),
		p.xhat.cptr(), p.xin.cptr(), p.mean.cptr(), p.rstd.cptr(), p.gamma.cptr(), p.geluBeta.cptr(), int32(rows), int32(dim), gradChunkRows); err != nil {
		return err
	}
	if p.db.p == 0 && !ln {
		return nil
	}
	return launch.GradCols(d.with(rowWork(chunks, dim, arrays*(chunks+1)*dim)), grid(ceilDiv(dim, 32), 3), p.db.ptr(), p.dbeta.ptr(), p.dgamma.ptr(),
		p.partial.cptr(), int32(chunks), int32(dim))
}
