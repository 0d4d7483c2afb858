package nn_test

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/dinoclip/dinoclip/internal/sgemm"
	"github.com/dinoclip/dinoclip/internal/vec32"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// The float32 CPU engine against the float64 oracle, through the suite every
// engine runs.
func TestCPUEngineFloat32(t *testing.T) {
	enginetest.Run(t, func(c nn.Config) (nn.Engine, error) { return nn.NewCPUEngine[float32](c) })
}

// The float64 CPU engine, which train --precision fp64 runs, through the
// same suite. The oracle is this engine itself, which computes the same
// sums in the same order, and the suite reads an engine's outputs,
// gradients and parameters through nn.Engine as float32: what is left is
// that one rounding, at most 2^-24 = 6e-8 of each value, so 6e-8
// norm-wise (it measures 3.6e-8). The bounds are twice that, 1.2e-7,
// because the engine check must pass with half its bounds to spare, as
// it must for any engine (testCheck), and one rounding can take all of
// 6e-8. More is state shared between instances or a nondeterministic
// reduction. The suite's other parts (bad input, a loss that is not
// finite, the round trip of parameters and moments, determinism) hold it
// as they hold any engine.
func TestCPUEngineFloat64(t *testing.T) {
	enginetest.RunWith(t, func(c nn.Config) (nn.Engine, error) { return nn.NewCPUEngine[float64](c) },
		nn.Tolerances{Forward: 1.2e-7, Gradient: 1.2e-7, Train: 1.2e-7})
}

// The float32 engine's bits do not depend on the number of threads nor on
// which kernels ran: a few training steps end with the same losses,
// parameters, moments and outputs at GOMAXPROCS 1 and 2, with the
// assembly passes (vec32) and the GEMM's fastest microkernel (sgemm) or
// with vec32's Go loops and sgemm's pure-Go reference kernel. The first
// shape is wide enough that every operation splits its work across
// threads; the second has widths that are not multiples of any vector or
// tile, so that the tails run too. (Where sgemm has no packed kernel, the
// gonum fallback, it multiplies with gonum in every run.)
func TestCPUEngineFloat32Deterministic(t *testing.T) {
	for _, c := range []nn.Config{
		{InputDim: 96, HiddenDim: 256, OutputDim: 64, Blocks: 1},
		{InputDim: 37, HiddenDim: 46, OutputDim: 21, Blocks: 2},
	} {
		const rows = 48
		xs, ts := enginetest.Batches(c, 2, rows, 9)
		type state struct {
			losses       []float64
			p, m, v, out []float32
		}
		run := func(procs int, fast bool) state {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			defer vec32.UseAssembly(vec32.UseAssembly(fast))
			defer sgemm.UseReference(sgemm.UseReference(!fast))
			e, err := nn.NewCPUEngine[float32](c)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.SetParameters(nn.InitParameters[float32](c, 3)); err != nil {
				t.Fatal(err)
			}
			var st state
			hp := nn.AdamWStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
			for s := range 4 {
				loss, err := e.ForwardBackward(xs[s%2], ts[s%2], rows)
				if err != nil {
					t.Fatal(err)
				}
				st.losses = append(st.losses, loss)
				hp.Step = s + 1
				if err := e.Step(hp); err != nil {
					t.Fatal(err)
				}
			}
			n := c.NumParams()
			st.p, st.m, st.v, st.out = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, rows*c.OutputDim)
			if err := e.Parameters(st.p); err != nil {
				t.Fatal(err)
			}
			if err := e.Moments(st.m, st.v); err != nil {
				t.Fatal(err)
			}
			if err := e.Project(st.out, xs[0], rows); err != nil {
				t.Fatal(err)
			}
			return st
		}
		want := run(2, true)
		for _, r := range []struct {
			procs int
			fast  bool
		}{{1, true}, {2, false}, {1, false}} {
			got := run(r.procs, r.fast)
			what := fmt.Sprintf("%v, GOMAXPROCS %d, fast kernels %v", c, r.procs, r.fast)
			for i := range want.losses {
				if math.Float64bits(got.losses[i]) != math.Float64bits(want.losses[i]) {
					t.Errorf("%s: loss of step %d %v, want %v", what, i+1, got.losses[i], want.losses[i])
				}
			}
			for _, b := range []struct {
				name      string
				got, want []float32
			}{{"parameter", got.p, want.p}, {"first moment", got.m, want.m}, {"second moment", got.v, want.v}, {"output", got.out, want.out}} {
				for i := range b.want {
					if math.Float32bits(b.got[i]) != math.Float32bits(b.want[i]) {
						t.Errorf("%s: %s %d is %g, want %g", what, b.name, i, b.got[i], b.want[i])
						break
					}
				}
			}
		}
	}
}

// Forward-only calls reuse packed weights from their second call on: the
// outputs and losses equal those of a fresh engine (which does not pack)
// with the same parameters, before and after Step and SetParameters change
// them, so packs are never stale.
func TestCPUEngineFloat32PackedWeights(t *testing.T) {
	c := nn.Config{InputDim: 40, HiddenDim: 52, OutputDim: 24, Blocks: 1}
	const rows = 20
	xs, ts := enginetest.Batches(c, 2, rows, 5)
	newEngine := func(params []float32) *nn.CPUEngine[float32] {
		e, err := nn.NewCPUEngine[float32](c)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.SetParameters(params); err != nil {
			t.Fatal(err)
		}
		return e
	}
	project := func(e *nn.CPUEngine[float32]) []float32 {
		out := make([]float32, rows*c.OutputDim)
		if err := e.Project(out, xs[0], rows); err != nil {
			t.Fatal(err)
		}
		return out
	}
	loss := func(e *nn.CPUEngine[float32]) float64 {
		l, err := e.Loss(xs[1], ts[1], rows)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	params := nn.InitParameters[float32](c, 1)
	e := newEngine(params)
	check := func(stage string) {
		t.Helper()
		ref := newEngine(params)
		want, wantLoss := project(ref), loss(ref)
		for call := 1; call <= 3; call++ {
			got := project(e)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s, Project call %d: output %d is %g, a fresh engine's %g", stage, call, i, got[i], want[i])
				}
			}
			if l := loss(e); math.Float64bits(l) != math.Float64bits(wantLoss) {
				t.Fatalf("%s, Loss call %d: %v, a fresh engine's %v", stage, call, l, wantLoss)
			}
		}
	}
	check("initial parameters")
	if _, err := e.ForwardBackward(xs[1], ts[1], rows); err != nil {
		t.Fatal(err)
	}
	if err := e.Step(nn.AdamWStep{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.Parameters(params); err != nil {
		t.Fatal(err)
	}
	check("after Step")
	for i := range params {
		params[i] *= 0.5
	}
	if err := e.SetParameters(params); err != nil {
		t.Fatal(err)
	}
	check("after SetParameters")
}
