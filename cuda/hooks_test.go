//go:build cuda

package cuda_test

import (
	"testing"

	"github.com/dinoclip/dinoclip/bench"
	"github.com/dinoclip/dinoclip/cuda"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// TestBenchHooks drives the engine's hooks (package enginehooks) the way
// package bench does; an external test, since bench is above cuda.
func TestBenchHooks(t *testing.T) {
	c := enginetest.Config
	e, err := cuda.NewEngine(c)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.SetParameters(nn.InitParameters[float32](c, 1)); err != nil {
		t.Fatal(err)
	}
	if e.DeviceName() == "" {
		t.Error("no device name")
	}
	rep, err := bench.MeasureEngineKernels(e, "suite", 40, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != bench.Measured {
		t.Fatalf("kernel report %v: %s", rep.Status, rep.Reason)
	}
	calls := map[string]int{}
	for _, k := range rep.Kernels {
		calls[k.Name] += k.Calls
		if k.Seconds < 0 || (k.FLOPs == 0) == (k.Bytes == 0) {
			t.Errorf("%s %s: %d calls, %g s, %g FLOPs, %g bytes", k.Name, k.Shape, k.Calls, k.Seconds, k.FLOPs, k.Bytes)
		}
	}
	// Two steps of a model with 2 blocks: per step 7 forward GEMMs (input,
	// 2 per block, 2 in the head) and one AdamW.
	fwd := calls["gemm_nt_bias"] + calls["gemm_nt_bias_gelu"] + calls["gemm_nt_bias_stats"]
	if fwd != 2*(3+2*c.Blocks) || calls["adamw"] != 2 || calls["gemm_tn"] != fwd {
		t.Errorf("kernel calls %v", calls)
	}
	if err := e.ResetPeakMemory(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Loss(make([]float32, 100*c.InputDim), make([]float32, 100*c.OutputDim), 100); err != nil {
		t.Fatal(err)
	}
	peak, err := e.PeakMemoryBytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := 16*int64(c.NumParams()) + e.WorkspaceBytes(100); peak < want {
		t.Errorf("peak memory %d bytes, want at least %d", peak, want)
	}
	bps, err := e.CopyBandwidth(1 << 20)
	if err != nil || bps <= 0 {
		t.Errorf("copy bandwidth %g, %v", bps, err)
	}
	if _, _, err := e.TopK([]float32{1, 0, 0, 1}, []float32{1, 0, 0, 1}, 2, 2, 2, 1); err != nil {
		t.Error(err)
	}
}
