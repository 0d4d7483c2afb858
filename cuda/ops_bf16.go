//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/nn"
)

// Launch wrappers of the bf16 engine's memory-bound kernels
// (kernels/bf16_convert.cu, adamw.cu's adamw_bf16), as those of ops.go.

// castBF16 launches dst[i] = bf16(src[i]) for i < n.
func (d *Device) castBF16(dst buf[uint16], src buf[float32], n int) error {
	const what = "cast_f32_bf16"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("dst", dst, n), req("src", src, n)); err != nil {
		return err
	}
	return launch.CastF32Bf16(d.with(elemWork(n, 2)), grid(elementGrid(n), 1), dst.ptr(), src.cptr(), int32(n))
}

// geluBF16 launches dst[i] = bf16(GELU(src[i])) for i < n.
func (d *Device) geluBF16(dst buf[uint16], src buf[float32], n int) error {
	const what = "gelu_f32_bf16"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("dst", dst, n), req("src", src, n)); err != nil {
		return err
	}
	return launch.GeluF32Bf16(d.with(elemWork(n, 2)), grid(elementGrid(n), 1), dst.ptr(), src.cptr(), int32(n))
}

// addF32 launches y[i] += x[i] for i < n.
func (d *Device) addF32(y, x buf[float32], n int) error {
	const what = "add_f32"
	if err := dims(what, n); err != nil {
		return err
	}
	if err := needAll(what, req("y", y, n), req("x", x, n)); err != nil {
		return err
	}
	return launch.AddF32(d.with(elemWork(n, 3)), grid(elementGrid(n), 1), y.ptr(), x.cptr(), int32(n))
}

// transposeTile is the tile of bf16_convert.cu's transposes.
const transposeTile = 32

// transposeCheck checks a transpose of src [rows, cols] into dst [cols,
// ld] and returns its grid.
func transposeCheck(what string, dst required, srcP uintptr, srcLen, rows, cols, ld int) (gx, gy int, err error) {
	if err := dims(what, rows, cols, ld); err != nil {
		return 0, 0, err
	}
	if ld < rows || ld%gemmBF16KMultiple != 0 {
		return 0, 0, fmt.Errorf("cuda: %s: leading dimension %d, need a multiple of %d of at least %d rows", what, ld, gemmBF16KMultiple, rows)
	}
	gx, gy = ceilDiv(cols, transposeTile), ceilDiv(ld, transposeTile)
	if gy > maxGridY {
		return 0, 0, fmt.Errorf("cuda: %s: %d rows exceed the grid", what, rows)
	}
	dst.n = cols * ld
	return gx, gy, needAll(what, dst, required{"src", srcP, srcLen, rows * cols})
}

// transposeBF16 launches dst[c][r] = src[r][c] for src bf16 [rows, cols],
// dst [cols, ld], zeros in columns rows..ld-1.
func (d *Device) transposeBF16(dst, src buf[uint16], rows, cols, ld int) error {
	const what = "transpose_bf16"
	gx, gy, err := transposeCheck(what, req("dst", dst, 0), src.p, src.n, rows, cols, ld)
	if err != nil {
		return err
	}
	w := work{shape: fmt.Sprintf("rows=%d cols=%d ld=%d", rows, cols, ld), bytes: 2 * float64(rows*cols+cols*ld)}
	return launch.TransposeBf16(d.with(w), grid(gx, gy), dst.ptr(), src.cptr(), int32(rows), int32(cols), int32(ld))
}

// transposeF32BF16 is transposeBF16 of an f32 src, rounding to bf16.
func (d *Device) transposeF32BF16(dst buf[uint16], src buf[float32], rows, cols, ld int) error {
	const what = "transpose_f32_bf16"
	gx, gy, err := transposeCheck(what, req("dst", dst, 0), src.p, src.n, rows, cols, ld)
	if err != nil {
		return err
	}
	w := work{shape: fmt.Sprintf("rows=%d cols=%d ld=%d", rows, cols, ld), bytes: 4*float64(rows*cols) + 2*float64(cols*ld)}
	return launch.TransposeF32Bf16(d.with(w), grid(gx, gy), dst.ptr(), src.cptr(), int32(rows), int32(cols), int32(ld))
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
	return launch.AdamwBf16(d.with(work{shape: fmt.Sprintf("n=%d", n), bytes: 30 * float64(n)}), grid(elementGrid(n), 1), p.ptr(), pb.ptr(), g.cptr(), m.ptr(), v.ptr(),
		sc.Decay, sc.OneMinusBeta1, sc.Beta2, sc.OneMinusBeta2, sc.StepSize, sc.BiasCorrection2Sqrt, sc.Eps, int32(n))
}
