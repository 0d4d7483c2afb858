//go:build cuda

package cuda

import (
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
