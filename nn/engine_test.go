package nn_test

import (
	"math"
	"runtime"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// The float32 CPU engine against the float64 oracle, through the suite every
// engine runs.
func TestCPUEngineFloat32(t *testing.T) {
	enginetest.Run(t, func(c nn.Config) (nn.Engine, error) { return nn.NewCPUEngine[float32](c) })
}

// The float32 engine's bits do not depend on the number of threads: a few
// training steps at GOMAXPROCS 1 and 2 end with the same parameters and
// moments. The model is wide enough that every operation splits its work.
func TestCPUEngineFloat32ThreadIndependent(t *testing.T) {
	c := nn.Config{InputDim: 96, HiddenDim: 256, OutputDim: 64, Blocks: 1}
	xs, ts := enginetest.Batches(c, 2, 48, 9)
	run := func(procs int) (p, m, v []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		e, err := nn.NewCPUEngine[float32](c)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.SetParameters(nn.InitParameters[float32](c, 3)); err != nil {
			t.Fatal(err)
		}
		hp := nn.AdamWStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
		for s := range 4 {
			if _, err := e.ForwardBackward(xs[s%2], ts[s%2], 48); err != nil {
				t.Fatal(err)
			}
			hp.Step = s + 1
			if err := e.Step(hp); err != nil {
				t.Fatal(err)
			}
		}
		n := c.NumParams()
		p, m, v = make([]float32, n), make([]float32, n), make([]float32, n)
		if err := e.Parameters(p); err != nil {
			t.Fatal(err)
		}
		if err := e.Moments(m, v); err != nil {
			t.Fatal(err)
		}
		return p, m, v
	}
	p1, m1, v1 := run(1)
	p2, m2, v2 := run(2)
	for i := range p1 {
		if math.Float32bits(p1[i]) != math.Float32bits(p2[i]) || math.Float32bits(m1[i]) != math.Float32bits(m2[i]) || math.Float32bits(v1[i]) != math.Float32bits(v2[i]) {
			t.Fatalf("value %d differs between GOMAXPROCS 1 and 2: parameter %g / %g, moments %g / %g, %g / %g", i, p1[i], p2[i], m1[i], m2[i], v1[i], v2[i])
		}
	}
}
