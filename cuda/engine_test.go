//go:build cuda

package cuda

import (
	"math"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// TestEngine is the suite every engine passes (forward 1e-5, gradients
// 2e-5, 20 training steps 2e-5 against the float64 CPU engine, bit-exact
// determinism, bad input). It trains a whole model, which in the emulator
// under AddressSanitizer takes longer than the test timeout, so the
// sanitizer pass of make check-kernels (-short) leaves it to the plain
// emulator pass; every kernel it launches is exercised under the sanitizer
// by the per-kernel and engine tests that do run.
func TestEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole-engine suite runs in the emulator pass without -short")
	}
	enginetest.Run(t, func(c nn.Config) (nn.Engine, error) { return NewEngine(c) })
}

// newPair builds the GPU engine and the float64 oracle for c with the same
// parameters, drawn from seed; the engine is closed when the test ends.
func newPair(t *testing.T, c nn.Config, seed uint64) (*Engine, *nn.CPUEngine[float64]) {
	t.Helper()
	e, err := NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ref, err := nn.NewCPUEngine[float64](c)
	if err != nil {
		t.Fatal(err)
	}
	params := nn.InitParameters[float32](c, seed)
	if err := e.SetParameters(params); err != nil {
		t.Fatal(err)
	}
	if err := ref.SetParameters(params); err != nil {
		t.Fatal(err)
	}
	return e, ref
}

// TestEngineShapes runs a forward and backward pass on shapes the suite
// does not reach (no residual block, an output wider than the hidden
// layer, a head of width 1, widths that are not multiples of any tile)
// against the float64 CPU engine, with the suite's tolerances.
func TestEngineShapes(t *testing.T) {
	for _, c := range []nn.Config{
		{InputDim: 20, HiddenDim: 30, OutputDim: 70, Blocks: 0},
		{InputDim: 7, HiddenDim: 3, OutputDim: 5, Blocks: 1},
		{InputDim: 33, HiddenDim: 130, OutputDim: 17, Blocks: 1},
	} {
		t.Run(c.String(), func(t *testing.T) {
			e, ref := newPair(t, c, 11)
			const n = 67
			xs, ts := enginetest.Batches(c, 1, n, 5)
			loss, err := e.ForwardBackward(xs[0], ts[0], n)
			if err != nil {
				t.Fatal(err)
			}
			refLoss, err := ref.ForwardBackward(xs[0], ts[0], n)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(loss-refLoss) / refLoss; !(d <= nn.FP32Tolerances.Forward) {
				t.Errorf("loss %v, oracle %v", loss, refLoss)
			}
			grads := make([]float32, c.NumParams())
			if err := e.Gradients(grads); err != nil {
				t.Fatal(err)
			}
			for _, tn := range c.Layout().Tensors {
				if d := nn.RelDiff(nn.View(grads, tn), nn.View(ref.Model.Grads, tn)); !(d <= nn.FP32Tolerances.Gradient) {
					t.Errorf("gradient of %s: relative difference %.3g", tn.Name, d)
				}
			}
		})
	}
}

// TestEngineGrow: batches of changing size reallocate the workspace and
// stay correct.
func TestEngineGrow(t *testing.T) {
	c := enginetest.Config
	e, ref := newPair(t, c, 3)
	for i, n := range []int{5, 77, 5, 130} {
		xs, _ := enginetest.Batches(c, 1, n, uint64(i))
		out := make([]float32, n*c.OutputDim)
		if err := e.Project(out, xs[0], n); err != nil {
			t.Fatal(err)
		}
		x64 := make([]float64, len(xs[0]))
		for j, v := range xs[0] {
			x64[j] = float64(v)
		}
		want, err := ref.Model.Forward(x64, n)
		if err != nil {
			t.Fatal(err)
		}
		if d := nn.RelDiff(out, want); !(d <= nn.FP32Tolerances.Forward) {
			t.Errorf("batch of %d: relative difference %.3g", n, d)
		}
	}
}

// TestEngineOutOfMemory: a batch that cannot fit is a readable error, and
// the engine still works afterwards.
func TestEngineOutOfMemory(t *testing.T) {
	c := nn.Config{InputDim: 1, HiddenDim: 4096, OutputDim: 1, Blocks: 0}
	e, err := NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const n = 2_000_000 // about 230 GiB of activations, more than any GPU has
	x, tg := make([]float32, n), make([]float32, n)
	_, err = e.Loss(x, tg, n)
	if err == nil || !strings.Contains(err.Error(), "out of GPU memory: batch 2000000") {
		t.Fatalf("batch of %d rows (%.0f GiB): error %v, want out of GPU memory", n, float64(e.WorkspaceBytes(n))/gib, err)
	}
	t.Log(err)
	if err := e.SetParameters(nn.InitParameters[float32](c, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Loss(x[:3], tg[:3], 3); err != nil {
		t.Fatalf("after running out of memory: %v", err)
	}
}

// TestEngineClosed: a closed engine refuses work; closing twice is fine.
func TestEngineClosed(t *testing.T) {
	c := enginetest.Config
	e, err := NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	// The description names the kernels in use: on a GPU, which compiled
	// form ("kernels: sm_90a cubins" or "kernels: portable PTX").
	if s := e.String(); !strings.HasPrefix(s, "CUDA engine on ") || !strings.Contains(s, "kernels") {
		t.Errorf("description %q", s)
	}
	t.Log(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.Parameters(make([]float32, c.NumParams())); err == nil {
		t.Error("Parameters after Close: no error")
	}
}

// TestEngineStateFits: the four state buffers lie inside the state
// allocation, also when NumParams is not a multiple of 64 and the 256-byte
// alignment of each buffer pads the ones before the last (the allocation
// was once 16 bytes a parameter, which AdamW then overran).
func TestEngineStateFits(t *testing.T) {
	for _, c := range []nn.Config{
		{InputDim: 24, HiddenDim: 32, OutputDim: 16, Blocks: 1}, // 3936 parameters
		{InputDim: 7, HiddenDim: 3, OutputDim: 5, Blocks: 1},
		enginetest.Config,
	} {
		e, err := NewEngine(c)
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		e.dev.do(func() error { size = e.dev.allocs[e.state]; return nil })
		for _, b := range []buf[float32]{e.params, e.grads, e.m, e.v} {
			if b.p < e.state || int64(b.p-e.state)+int64(4*b.n) > size || b.n != c.NumParams() {
				t.Errorf("%v: a state buffer [%d, +%d values) outside the allocation of %d bytes", c, b.p-e.state, b.n, size)
			}
		}
		e.Close()
	}
}
