package nn

import (
	"runtime"
	"testing"
)

// TestCPUEngineBytes holds the estimate to what a CPU engine really
// allocates for its state and one training step: within 10% (the estimate
// leaves out the GEMM's packing buffers and small bookkeeping, a few
// percent at this size), so a refusal based on it is neither far too eager
// nor far too late.
func TestCPUEngineBytes(t *testing.T) {
	c := Config{InputDim: 96, HiddenDim: 256, OutputDim: 64, Blocks: 2}
	const n = 128
	x, tg := make([]float32, n*c.InputDim), make([]float32, n*c.OutputDim)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	for i := range tg {
		tg[i] = float32(i%5) - 2
	}
	// One GEMM goroutine, so the packing buffers counted are the ones
	// allocated whatever the machine's core count and the shapes' split.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	init := InitParameters[float32](c, 1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e, err := NewCPUEngine[float32](c)
	if err != nil {
		t.Fatal(err)
	}
	copy(e.Model.Params, init)
	if _, err := e.ForwardBackward(x, tg, n); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	got := float64(after.TotalAlloc - before.TotalAlloc)
	want := c.CPUEngineBytes(n, 4)
	if got < 0.9*want || got > 1.1*want {
		t.Errorf("a %v engine allocated %.0f bytes for a step at batch %d; CPUEngineBytes says %.0f (ratio %.3f)", c, got, n, want, got/want)
	}
}
