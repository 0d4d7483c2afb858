package nn

import (
	"runtime"
	"testing"
)

// TestCPUEngineBytes holds the estimate to what a CPU engine really
// allocates for its state, one training step and an evaluation: within
// 10% (the estimate leaves out small bookkeeping and counts the packed
// weights a little high), so a refusal based on it is neither far too
// eager nor far too late.
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
	proj := make([]float32, n*c.OutputDim)
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
	// Evaluation: forward-only calls pack the weights from the second on.
	for range 2 {
		if err := e.Project(proj, x, n); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	got := float64(after.TotalAlloc - before.TotalAlloc)
	want := c.CPUEngineBytes(n, 4)
	if got < 0.9*want || got > 1.1*want {
		t.Errorf("a %v engine allocated %.0f bytes for a step at batch %d; CPUEngineBytes says %.0f (ratio %.3f)", c, got, n, want, got/want)
	}
}

// TestCPUForwardBytes holds the estimate of a projection to what an
// engine, once made, allocates to project: not its state, allocated with
// it, which a projection's memory check counted twice. It counts the
// activations a training step keeps, a little more than a forward-only
// call fills (measured: 0.87 of it here), so it is held to 80-110%.
func TestCPUForwardBytes(t *testing.T) {
	c := Config{InputDim: 96, HiddenDim: 256, OutputDim: 64, Blocks: 2}
	const n = 128
	x := make([]float32, n*c.InputDim)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e, err := NewCPUEngine[float32](c)
	if err != nil {
		t.Fatal(err)
	}
	copy(e.Model.Params, InitParameters[float32](c, 1))
	proj := make([]float32, n*c.OutputDim)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 2 { // (the second packs the weights)
		if err := e.Project(proj, x, n); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	got := float64(after.TotalAlloc - before.TotalAlloc)
	want := c.CPUForwardBytes(n)
	if got < 0.8*want || got > 1.1*want {
		t.Errorf("a %v engine allocated %.0f bytes to project batches of %d; CPUForwardBytes says %.0f (ratio %.3f)", c, got, n, want, got/want)
	}
}

// TestObjectiveCPUBytes holds Objective.CPUBytes to what ObjectiveLoss
// allocates for a step (within 10%), and to 0 for the MSE's few row
// buffers' worth.
func TestObjectiveCPUBytes(t *testing.T) {
	const n, d = 512, 64
	p, tg, grad := make([]float32, n*d), make([]float32, n*d), make([]float32, n*d)
	for i := range p {
		p[i], tg[i] = float32(i%7)-3, float32(i%5)-2
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, o := range []Objective{{Loss: LossInfoNCE}, {Loss: LossMSEInfoNCE, InfoNCEWeight: 1}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ObjectiveLoss(o, grad, p, tg, n, d)
		runtime.ReadMemStats(&after)
		got, want := float64(after.TotalAlloc-before.TotalAlloc), o.CPUBytes(n, d)
		if got < 0.9*want || got > 1.1*want {
			t.Errorf("%s allocated %.0f bytes for a step at batch %d; CPUBytes says %.0f (ratio %.3f)", o.Loss, got, n, want, got/want)
		}
	}
	if b := (Objective{}).CPUBytes(n, d); b != 0 {
		t.Errorf("the MSE: %v bytes, want 0", b)
	}
}
