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
// tolerances (nn.BF16Tolerances, derived there), on the path the device
// loaded (in the emulator the sm_90a one, wgmma, unless
// DINOCLIP_CUDA_KERNELS=ptx). Like TestEngine it is left out of -short.
func TestEngineBF16(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole-engine suite runs in the emulator pass without -short")
	}
	enginetest.RunWith(t, func(c nn.Config) (nn.Engine, error) { return NewBF16Engine(c) }, nn.BF16Tolerances)
}

// TestEngineBF16Paths: a projection (the head's GELU in the GEMM's
// epilogue) and one forward and backward pass of the bf16 engine on each
// GEMM path the device runs (gemmPaths: wgmma and the mma.sync fallback
// in the emulator and on an sm_90a GPU), on a batch that is not a
// multiple of 8 (K = 67 in the weight gradients' tn GEMMs, a ragged last
// chunk) and a model with one block whose LayerNorm parameters are off 1
// and 0, against the float64 oracle with the bf16 tolerances.
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
			nn.PerturbNorms(c, params, 3)
			if err := e.SetParameters(params); err != nil {
				t.Fatal(err)
			}
			if err := ref.SetParameters(params); err != nil {
				t.Fatal(err)
			}
			xs, ts := enginetest.Batches(c, 1, n, 9)
			tol := nn.BF16Tolerances
			out := make([]float32, n*c.OutputDim)
			if err := e.Project(out, xs[0], n); err != nil {
				t.Fatal(err)
			}
			refOut, err := ref.Model.Forward(f64s(xs[0]), n)
			if err != nil {
				t.Fatal(err)
			}
			if d := nn.RelDiff(out, refOut); !(d <= tol.Forward) {
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
			if d := math.Abs(loss-refLoss) / refLoss; !(d <= tol.Forward) {
				t.Errorf("loss %v, oracle %v", loss, refLoss)
			}
			grads := make([]float32, c.NumParams())
			if err := e.Gradients(grads); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for _, tn := range c.Layout().Tensors {
				d := nn.RelDiff(nn.View(grads, tn), nn.View(ref.Model.Grads, tn))
				if d > tol.Gradient {
					t.Errorf("gradient of %s: relative difference %.3g > %g", tn.Name, d, tol.Gradient)
				}
				worst = max(worst, d)
			}
			t.Logf("loss %.6g (oracle %.6g), worst gradient difference %.3g", loss, refLoss, worst)
		})
	}
}

// TestEngineBF16Widths: a model with a width that is not a multiple of 8,
// or a hidden or output width whose LayerNorm backward pass (grad_rows,
// 20 bytes of shared memory a column) does not fit a block's 227 KiB, is
// refused with an error naming it, before the GPU is opened; the widest
// that fits is accepted.
func TestEngineBF16Widths(t *testing.T) {
	for _, c := range []struct {
		cfg  nn.Config
		want string
	}{
		{nn.Config{InputDim: 20, HiddenDim: 32, OutputDim: 16, Blocks: 1}, "input width 20 is not a multiple of 8"},
		{nn.Config{InputDim: 16, HiddenDim: 40, OutputDim: 16, Blocks: 1}, "head (hidden/2) width 20 is not a multiple of 8"},
		{nn.Config{InputDim: 16, HiddenDim: 32, OutputDim: 12, Blocks: 1}, "output width 12 is not a multiple of 8"},
		{nn.Config{InputDim: 16, HiddenDim: 11584, OutputDim: 16, Blocks: 1}, "hidden width: grad_rows: rows of 11584"},
		{nn.Config{InputDim: 16, HiddenDim: 32, OutputDim: 11584, Blocks: 1}, "output width: grad_rows: rows of 11584"},
	} {
		err := BF16Fits(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.cfg, err, c.want)
		}
		// (The advice is the engine's: BF16Fits is also the reason of a
		// fallback to fp32, which needs none.)
		if e, err := NewBF16Engine(c.cfg); err == nil {
			e.Close()
			t.Errorf("%v: NewBF16Engine: no error", c.cfg)
		} else if !strings.Contains(err.Error(), c.want) || !strings.HasSuffix(err.Error(), "; use --precision fp32 for this model") {
			t.Errorf("%v: NewBF16Engine: %v, want the reason and the advice", c.cfg, err)
		}
	}
	// 20 * 11568 + 1024 = 232384 bytes fit in 227 KiB = 232448.
	if err := BF16Fits(nn.Config{InputDim: 16, HiddenDim: 11568, OutputDim: 16, Blocks: 1}); err != nil {
		t.Errorf("hidden 11568: %v", err)
	}
}

// TestEngineBF16FusedEpilogues: the bf16 engine's forward pass takes the
// fused GEMM epilogues on each GEMM path, as the kernel timings (the
// report bench reads) show: every Linear that a LayerNorm follows is a
// statistics GEMM whose row statistics ln_apply merges (ln_forward only
// for hidden_norm, which follows a residual add), the blocks' writing
// bf16 (ln_apply_bf16 reads it), the head's writing float32; the head's
// GELU in training comes from the GEMM that also writes the float32
// pre-activation (no separate GELU pass); a projection takes the GEMM
// writing bf16 GELU alone. The LayerNorms and the input projection's GEMM
// write the bf16 copies the next Linears read: the only cast left is the
// input's. The backward pass runs
// grad_rows (GELU', LayerNorm backward, bf16 cast and column sums in one
// pass) and no unfused pass. A fallback to the unfused passes, or to the
// other path's kernels, fails.
func TestEngineBF16FusedEpilogues(t *testing.T) {
	c := nn.Config{InputDim: 40, HiddenDim: 48, OutputDim: 24, Blocks: 2}
	const n = 37
	for _, wgmma := range gemmPaths(t, testDevice(t)) {
		t.Run(map[bool]string{true: "wgmma", false: "mma.sync"}[wgmma], func(t *testing.T) {
			e, err := NewBF16Engine(c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			on(t, e.dev, func() error { e.dev.tc.wgmma = wgmma; return nil })
			if err := e.SetParameters(nn.InitParameters[float32](c, 5)); err != nil {
				t.Fatal(err)
			}
			xs, ts := enginetest.Batches(c, 1, n, 4)
			kernel := func(k gemmKind) string {
				if wgmma {
					return gemmKinds[k].wgmma.String()
				}
				return gemmKinds[k].mma.String()
			}
			// calls runs f with the kernels timed and counts the launches
			// of each kernel.
			calls := func(f func() error) map[string]int {
				if err := e.ResetKernelTimings(); err != nil {
					t.Fatal(err)
				}
				if err := f(); err != nil {
					t.Fatal(err)
				}
				ks, err := e.KernelTimings()
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]int{}
				for _, k := range ks {
					out[k.Name] += k.Calls
				}
				return out
			}
			got := calls(func() error { _, err := e.ForwardBackward(xs[0], ts[0], n); return err })
			// Two LayerNorms a block (of bf16 inputs), and the output
			// LayerNorm (of a float32 input) unless the MSE objective fuses
			// it with the loss (outnorm_mse).
			blockNorms, norms := 2*c.Blocks, 0
			if !e.fusedMSE() {
				norms++
			}
			// The backward pass: one grad_rows pass in front of each
			// Linear's GEMMs and one for hidden_norm, no unfused pass
			// (ln_backward, gelu_backward, colsum_partial); each data
			// gradient written by the nn GEMM (the InfoNCE objective's
			// too), only L1's added to the skip connection's.
			nnWritten := c.Blocks + 2
			if !e.fusedMSE() {
				nnWritten++
			}
			want := map[string]int{kernel(ntBF16Stats): blockNorms, "ln_apply_bf16": blockNorms, kernel(ntF32Stats): norms, "ln_apply": norms,
				"ln_forward": 1, kernel(ntF32GELU): 1,
				"grad_rows": 2*c.Blocks + 4, "cast_f32_bf16": 1, kernel(ntF32BF16): 1, "ln_backward": 0, "gelu_backward": 0, "colsum_partial": 0,
				kernel(nnF32): nnWritten, kernel(nnF32Add): c.Blocks, kernel(tnF32): 2*c.Blocks + 3}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("training step: %s launched %d times, want %d (all launches: %v)", name, got[name], w, got)
				}
			}
			for name := range got {
				if strings.HasPrefix(name, "gemm_bf16_") && strings.Contains(name, "_mma_") == wgmma {
					t.Errorf("training step: %s launched on the other path", name)
				}
			}
			out := make([]float32, n*c.OutputDim)
			got = calls(func() error { return e.Project(out, xs[0], n) })
			want = map[string]int{kernel(ntBF16Stats): blockNorms, "ln_apply_bf16": blockNorms, kernel(ntF32Stats): 1, "ln_apply": 1, "ln_forward": 1, kernel(ntGELUBF16): 1, kernel(ntF32GELU): 0, "cast_f32_bf16": 1, kernel(ntF32BF16): 1}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("projection: %s launched %d times, want %d (all launches: %v)", name, got[name], w, got)
				}
			}
		})
	}
}

// TestEngineBF16SplitK: at a batch long enough for the weight gradients to
// split along K (600 rows: 10 chunks of 64, each tn GEMM of the small
// model in 2 splits on the emulated device's 132 multiprocessors), a
// training step runs gemm_bf16_splitk_sum once per Linear, and its
// gradients are those of the same engine with splitting off (no partial
// buffer) up to the order of the f32 sums: each split's sum of 300 products
// and the sum of the two differ from one sum of 600 by a few 2^-24 of the
// sum of magnitudes, well under the 1e-5 relative difference allowed; a
// lost split or a misplaced slice changes a gradient by half or more.
func TestEngineBF16SplitK(t *testing.T) {
	c := nn.Config{InputDim: 40, HiddenDim: 48, OutputDim: 24, Blocks: 1}
	const n = 600
	e, err := NewBF16Engine(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	params := nn.InitParameters[float32](c, 4)
	nn.PerturbNorms(c, params, 4)
	if err := e.SetParameters(params); err != nil {
		t.Fatal(err)
	}
	xs, ts := enginetest.Batches(c, 1, n, 6)
	step := func() []float32 {
		t.Helper()
		if _, err := e.ForwardBackward(xs[0], ts[0], n); err != nil {
			t.Fatal(err)
		}
		g := make([]float32, c.NumParams())
		if err := e.Gradients(g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	if err := e.ResetKernelTimings(); err != nil {
		t.Fatal(err)
	}
	split := step()
	ks, err := e.KernelTimings()
	if err != nil {
		t.Fatal(err)
	}
	sums := 0
	for _, k := range ks {
		if k.Name == "gemm_bf16_splitk_sum" {
			sums += k.Calls
		}
	}
	if linears := 2*c.Blocks + 3; sums != linears {
		t.Errorf("gemm_bf16_splitk_sum ran %d times, want one per Linear (%d)", sums, linears)
	}
	on(t, e.dev, func() error { e.splitParts = buf[float32]{}; return nil })
	whole := step()
	for _, tn := range c.Layout().Tensors {
		if d := nn.RelDiff(nn.View(split, tn), nn.View(whole, tn)); !(d <= 1e-5) {
			t.Errorf("gradient of %s: split and whole differ by %.3g", tn.Name, d)
		}
	}
}
