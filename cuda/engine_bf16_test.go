//go:build cuda

package cuda

import (
	"math"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// TestEngineBF16 is the engine suite on the bf16 engine, with the bf16
// tolerances (enginetest.BF16, derived there), on the path the device
// loaded (in the emulator the sm_90a one, wgmma, unless
// DINOCLIP_CUDA_KERNELS=ptx). Like TestEngine it is left out of -short.
func TestEngineBF16(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole-engine suite runs in the emulator pass without -short")
	}
	enginetest.RunWith(t, func(c nn.Config) (nn.Engine, error) { return NewBF16Engine(c) }, enginetest.BF16)
}

// TestEngineBF16Paths: a projection (the head's GELU in the GEMM's
// epilogue) and one forward and backward pass of the bf16 engine on each
// GEMM path the device runs (gemmPaths: wgmma and the mma.sync fallback
// in the emulator and on an sm_90a GPU), on a batch that is not a
// multiple of 8 (K = 67 in the weight gradients' tn GEMMs, a ragged last
// chunk) and a model with one block, against the float64
// oracle with the bf16 tolerances.
func TestEngineBF16Paths(t *testing.T) {
	c := nn.Config{InputDim: 40, HiddenDim: 48, OutputDim: 24, Blocks: 1}
	const n = 67
	for _, wgmma := range gemmPaths(t, testDevice(t)) {
		t.Run(map[bool]string{true: "wgmma", false: "mma.sync"}[wgmma], func(t *testing.T) {
			e, err := NewBF16Engine(c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			on(t, e.dev, func() error { e.dev.tc.wgmma = wgmma; return nil })
			ref, err := nn.NewCPUEngine[float64](c)
			if err != nil {
				t.Fatal(err)
			}
			params := nn.InitParameters[float32](c, 3)
			if err := e.SetParameters(params); err != nil {
				t.Fatal(err)
			}
			if err := ref.SetParameters(params); err != nil {
				t.Fatal(err)
			}
			xs, ts := enginetest.Batches(c, 1, n, 9)
			tol := enginetest.BF16
			out := make([]float32, n*c.OutputDim)
			if err := e.Project(out, xs[0], n); err != nil {
				t.Fatal(err)
			}
			refOut, err := ref.Model.Forward(f64s(xs[0]), n)
			if err != nil {
				t.Fatal(err)
			}
			if d := enginetest.RelDiff(out, refOut); d > tol.Forward {
				t.Errorf("Project: relative difference %.3g > %g", d, tol.Forward)
			}
			loss, err := e.ForwardBackward(xs[0], ts[0], n)
			if err != nil {
				t.Fatal(err)
			}
			refLoss, err := ref.ForwardBackward(xs[0], ts[0], n)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(loss-refLoss) / refLoss; d > tol.Forward {
				t.Errorf("loss %v, oracle %v", loss, refLoss)
			}
			grads := make([]float32, c.NumParams())
			if err := e.Gradients(grads); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for _, tn := range c.Layout().Tensors {
				d := enginetest.RelDiff(nn.View(grads, tn), nn.View(ref.Model.Grads, tn))
				if d > tol.Gradient {
					t.Errorf("gradient of %s: relative difference %.3g > %g", tn.Name, d, tol.Gradient)
				}
				worst = max(worst, d)
			}
			t.Logf("loss %.6g (oracle %.6g), worst gradient difference %.3g", loss, refLoss, worst)
		})
	}
}

// TestEngineBF16Widths: a model with a width that is not a multiple of 8
// is refused with an error naming it, before the GPU is opened.
func TestEngineBF16Widths(t *testing.T) {
	for _, c := range []nn.Config{
		{InputDim: 20, HiddenDim: 32, OutputDim: 16, Blocks: 1},
		{InputDim: 16, HiddenDim: 40, OutputDim: 16, Blocks: 1}, // head 20
		{InputDim: 16, HiddenDim: 32, OutputDim: 12, Blocks: 1},
	} {
		e, err := NewBF16Engine(c)
		if err == nil {
			e.Close()
			t.Errorf("%v: no error", c)
			continue
		}
		if !strings.Contains(err.Error(), "not a multiple of 8") {
			t.Errorf("%v: error %v", c, err)
		}
	}
}
