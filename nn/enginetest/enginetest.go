package enginetest

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
)

// Config is the small model the suite uses: big enough for every GEMM to be
// several tiles wide, small enough for the float64 oracle to be instant.
var Config = nn.Config{InputDim: 48, HiddenDim: 64, OutputDim: 32, Blocks: 2}

// Batch is the suite's batch size; deliberately not a power of two.
const Batch = 24

// NewEngine builds the engine under test for a configuration.
type NewEngine func(nn.Config) (nn.Engine, error)

// Run runs the suite against the float32 engines newEngine builds.
func Run(t *testing.T, newEngine NewEngine) { RunWith(t, newEngine, nn.FP32Tolerances) }

// RunWith runs the suite against the engines newEngine builds, with the
// tolerances of their precision.
func RunWith(t *testing.T, newEngine NewEngine, tol nn.Tolerances) {
	t.Run("Objectives", func(t *testing.T) { testObjectives(t, newEngine, tol) })
	t.Run("ParameterRoundTrip", func(t *testing.T) { testRoundTrip(t, newEngine) })
	t.Run("ForwardAndGradients", func(t *testing.T) { testForwardAndGradients(t, newEngine, tol) })
	t.Run("Deterministic", func(t *testing.T) { testDeterministic(t, newEngine) })
	t.Run("Training", func(t *testing.T) { testTraining(t, newEngine, tol) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, newEngine) })
	t.Run("NonFiniteLoss", func(t *testing.T) { testNonFiniteLoss(t, newEngine) })
	t.Run("Check", func(t *testing.T) { testCheck(t, newEngine, tol) })
}

// testCheck runs nn.CheckEngine, the check package cuda runs at a GPU
// engine's first open, on an engine of the check's own shape
// (nn.CheckConfig): it must pass wherever the suite passes, with half its
// bounds to spare, or it would refuse right engines, and check everything.
func testCheck(t *testing.T, newEngine NewEngine, tol nn.Tolerances) {
	e, err := newEngine(nn.CheckConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r, err := nn.CheckEngine(e, tol)
	if err != nil {
		t.Fatal(err)
	}
	if r.Wrong != "" || r.Unchecked != "" {
		t.Fatalf("the engine check: wrong %q, unchecked %q", r.Wrong, r.Unchecked)
	}
	t.Logf("the engine check's largest difference: %.2g of its bound, %s", r.Worst, r.WorstAt)
	if !(r.Worst < 0.5) {
		// Within its bounds, but without the margin another GPU, which
		// sums in other orders, needs not to be refused.
		t.Errorf("the engine check passes by less than half its bound: %.2g at %s", r.Worst, r.WorstAt)
	}
}

// Batches returns reproducible inputs and targets: n batches of rows from
// N(0,1), row 0 of each target batch all zeros to exercise the normalisation
// clamp.
func Batches(c nn.Config, n, rows int, seed uint64) (xs, ts [][]float32) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for range n {
		x, t := make([]float32, rows*c.InputDim), make([]float32, rows*c.OutputDim)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := c.OutputDim; i < len(t); i++ {
			t[i] = float32(rng.NormFloat64())
		}
		xs, ts = append(xs, x), append(ts, t)
	}
	return xs, ts
}

// pair builds the engine under test and the oracle with the same
// parameters.
func pair(t *testing.T, newEngine NewEngine) (nn.Engine, *nn.CPUEngine[float64], []float32) {
	t.Helper()
	e, err := newEngine(Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ref, err := nn.NewCPUEngine[float64](Config)
	if err != nil {
		t.Fatal(err)
	}
	params := nn.InitParameters[float32](Config, 7)
	nn.PerturbNorms(Config, params, 8)
	if err := e.SetParameters(params); err != nil {
		t.Fatal(err)
	}
	if err := ref.SetParameters(params); err != nil {
		t.Fatal(err)
	}
	return e, ref, params
}

func testRoundTrip(t *testing.T, newEngine NewEngine) {
	e, _, params := pair(t, newEngine)
	n := len(params)
	got := make([]float32, n)
	if err := e.Parameters(got); err != nil {
		t.Fatal(err)
	}
	m, v := make([]float32, n), make([]float32, n)
	for i := range m {
		m[i], v[i] = float32(i)*1e-3, float32(i)*1e-6
	}
	if err := e.SetMoments(m, v); err != nil {
		t.Fatal(err)
	}
	gm, gv := make([]float32, n), make([]float32, n)
	if err := e.Moments(gm, gv); err != nil {
		t.Fatal(err)
	}
	for i := range params {
		if got[i] != params[i] || gm[i] != m[i] || gv[i] != v[i] {
			t.Fatalf("element %d did not round-trip: params %v->%v, m %v->%v, v %v->%v", i, params[i], got[i], m[i], gm[i], v[i], gv[i])
		}
	}
}

func testForwardAndGradients(t *testing.T, newEngine NewEngine, tol nn.Tolerances) {
	e, ref, _ := pair(t, newEngine)
	c := Config
	xs, ts := Batches(c, 1, Batch, 1)
	out := make([]float32, Batch*c.OutputDim)
	if err := e.Project(out, xs[0], Batch); err != nil {
		t.Fatal(err)
	}
	refOut, err := ref.Model.Forward(toF64(xs[0]), Batch)
	if err != nil {
		t.Fatal(err)
	}
	if d := nn.RelDiff(out, refOut); d > tol.Forward {
		t.Errorf("Project: relative difference %.3g > %g", d, tol.Forward)
	}
	loss, err := e.ForwardBackward(xs[0], ts[0], Batch)
	if err != nil {
		t.Fatal(err)
	}
	refLoss, err := ref.ForwardBackward(xs[0], ts[0], Batch)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(loss-refLoss) / refLoss; !(d <= tol.Forward) { // (NaN fails)
		t.Errorf("loss %v, oracle %v: relative difference %.3g > %g", loss, refLoss, d, tol.Forward)
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
	t.Logf("worst relative difference: output %.3g, gradient %.3g", nn.RelDiff(out, refOut), worst)
}

func testDeterministic(t *testing.T, newEngine NewEngine) {
	e, _, _ := pair(t, newEngine)
	xs, ts := Batches(Config, 1, Batch, 2)
	var first []float32
	for run := range 2 {
		if _, err := e.ForwardBackward(xs[0], ts[0], Batch); err != nil {
			t.Fatal(err)
		}
		g := make([]float32, Config.NumParams())
		if err := e.Gradients(g); err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			first = g
			continue
		}
		for i := range g {
			if math.Float32bits(g[i]) != math.Float32bits(first[i]) {
				t.Fatalf("gradient element %d differs between two identical passes: %v then %v", i, first[i], g[i])
			}
		}
	}
}

// Steps is the length of the training comparison.
const Steps = 20

// stepHyper is the AdamW hyperparameters of step s (from 1) of the training
// comparison: PyTorch's AdamW defaults (beta2 0.999, eps 1e-8, weight decay
// 0.01), with a learning rate that rises as a square from 4e-4 to 1e-2 over
// the first quarter of the steps and falls as a cube to 1e-2/16^3 after,
// and beta1 moving opposite it between 0.95 and 0.85, much as under a
// one-cycle schedule (the CPU engine's parameters stay within 3e-7 of the
// oracle's under either). Every step has scalars of its own, so an engine
// that reused an earlier step's fails. Test data, not package train's
// schedule, which is above nn.
func stepHyper(s int) nn.AdamWStep {
	const peak, warm = 1e-2, Steps / 4
	f := float64(s*s) / (warm * warm)
	if s > warm {
		r := float64(Steps-s+1) / float64(Steps-warm+1)
		f = r * r * r
	}
	return nn.AdamWStep{LR: peak * f, Beta1: 0.95 - 0.1*f, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: s}
}

func testTraining(t *testing.T, newEngine NewEngine, tol nn.Tolerances) {
	e, ref, _ := pair(t, newEngine)
	c := Config
	xs, ts := Batches(c, Steps, Batch, 3)
	worstLoss := 0.0
	for s := 1; s <= Steps; s++ {
		loss, err := e.ForwardBackward(xs[s-1], ts[s-1], Batch)
		if err != nil {
			t.Fatal(err)
		}
		refLoss, err := ref.ForwardBackward(xs[s-1], ts[s-1], Batch)
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(loss-refLoss) / refLoss; !(d <= tol.Train) {
			t.Errorf("step %d: loss %v, oracle %v: relative difference %.3g > %g", s, loss, refLoss, d, tol.Train)
		}
		worstLoss = max(worstLoss, math.Abs(loss-refLoss)/refLoss)
		hp := stepHyper(s)
		if err := e.Step(hp); err != nil {
			t.Fatal(err)
		}
		if err := ref.Step(hp); err != nil {
			t.Fatal(err)
		}
	}
	params := make([]float32, c.NumParams())
	if err := e.Parameters(params); err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, tn := range c.Layout().Tensors {
		d := nn.RelDiff(nn.View(params, tn), nn.View(ref.Model.Params, tn))
		if d > tol.Train {
			t.Errorf("%s after %d steps: relative difference %.3g > %g", tn.Name, Steps, d, tol.Train)
		}
		worst = max(worst, d)
	}
	t.Logf("worst relative difference of the parameters after %d steps: %.3g; of the losses: %.3g", Steps, worst, worstLoss)
}

func testBadInput(t *testing.T, newEngine NewEngine) {
	e, _, _ := pair(t, newEngine)
	c := Config
	xs, ts := Batches(c, 1, Batch, 4)
	cases := []struct {
		name string
		call func() error
	}{
		{"short inputs", func() error { _, err := e.ForwardBackward(xs[0][1:], ts[0], Batch); return err }},
		{"short targets", func() error { _, err := e.ForwardBackward(xs[0], ts[0][1:], Batch); return err }},
		{"zero rows", func() error { _, err := e.Loss(nil, nil, 0); return err }},
		{"short output", func() error { return e.Project(make([]float32, 1), xs[0], Batch) }},
		{"short parameters", func() error { return e.SetParameters(make([]float32, 3)) }},
		{"step before gradients", func() error {
			if err := e.Step(stepHyper(1)); !errors.Is(err, nn.ErrNoGradients) {
				t.Errorf("a step before gradients: %v, want nn.ErrNoGradients", err)
			}
			return e.Step(stepHyper(1))
		}},
		{"step zero", func() error {
			if _, err := e.ForwardBackward(xs[0], ts[0], Batch); err != nil {
				return nil
			}
			return e.Step(nn.AdamWStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Step: 0})
		}},
	}
	for _, tc := range cases {
		if err := tc.call(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// testNonFiniteLoss checks that a loss turned NaN or infinite (parameters
// a diverging run has blown up) is an error wrapping nn.ErrNonFinite, the
// sentinel the trainer stops on, from both ForwardBackward and Loss.
func testNonFiniteLoss(t *testing.T, newEngine NewEngine) {
	e, _, params := pair(t, newEngine)
	xs, ts := Batches(Config, 1, Batch, 6)
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		blown := append([]float32(nil), params...)
		for i := range blown {
			blown[i] = bad
		}
		if err := e.SetParameters(blown); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ForwardBackward(xs[0], ts[0], Batch); !errors.Is(err, nn.ErrNonFinite) {
			t.Errorf("parameters all %v: ForwardBackward error %v, want one wrapping nn.ErrNonFinite", bad, err)
		}
		if _, err := e.Loss(xs[0], ts[0], Batch); !errors.Is(err, nn.ErrNonFinite) {
			t.Errorf("parameters all %v: Loss error %v, want one wrapping nn.ErrNonFinite", bad, err)
		}
	}
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// testObjectives checks every objective's loss, gradients and logit-scale
// gradient against the oracle's, at CLIP's initial logit scale and at a
// larger one, and that switching back to the MSE gives the MSE. The
// InfoNCE terms add a softmax over the batch to the MSE's arithmetic and
// the logit-scale gradient is one sum over all [Batch x Batch] logits, so
// the precision's forward and gradient tolerances hold for them as they
// stand.
func testObjectives(t *testing.T, newEngine NewEngine, tol nn.Tolerances) {
	e, ref, _ := pair(t, newEngine)
	xs, ts := Batches(Config, 1, Batch, 9)
	worstGrad, worstScale := 0.0, 0.0
	defer func() {
		t.Logf("worst relative difference: gradients %.3g, logit scale gradient %.3g", worstGrad, worstScale)
	}()
	for _, o := range []nn.Objective{
		{Loss: nn.LossInfoNCE, LogitScale: nn.InitLogitScale},
		{Loss: nn.LossMSEInfoNCE, InfoNCEWeight: 0.25, LogitScale: nn.InitLogitScale},
		{Loss: nn.LossInfoNCE, LogitScale: 3.5},
		{Loss: nn.LossMSE},
	} {
		for _, eng := range []nn.Engine{e, ref} {
			if err := eng.SetObjective(o); err != nil {
				t.Fatalf("%+v: %v", o, err)
			}
		}
		loss, err := e.ForwardBackward(xs[0], ts[0], Batch)
		if err != nil {
			t.Fatal(err)
		}
		refLoss, err := ref.ForwardBackward(xs[0], ts[0], Batch)
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(loss-refLoss) / refLoss; !(d <= tol.Forward) { // (NaN fails)
			t.Errorf("%+v: loss %v, oracle %v: relative difference %.3g > %g", o, loss, refLoss, d, tol.Forward)
		}
		if l, err := e.Loss(xs[0], ts[0], Batch); err != nil || !(math.Abs(l-loss) <= tol.Forward*loss) {
			t.Errorf("%+v: Loss %v (%v), ForwardBackward's %v", o, l, err, loss)
		}
		grads := make([]float32, Config.NumParams())
		if err := e.Gradients(grads); err != nil {
			t.Fatal(err)
		}
		for _, tn := range Config.Layout().Tensors {
			d := nn.RelDiff(nn.View(grads, tn), nn.View(ref.Model.Grads, tn))
			if d > tol.Gradient {
				t.Errorf("%+v: gradient of %s: relative difference %.3g > %g", o, tn.Name, d, tol.Gradient)
			}
			worstGrad = max(worstGrad, d)
		}
		g, want := e.LogitScaleGrad(), ref.LogitScaleGrad()
		if !o.Contrastive() {
			if g != 0 {
				t.Errorf("%+v: logit scale gradient %v, want 0", o, g)
			}
			continue
		}
		d := math.Abs(g-want) / math.Abs(want)
		if !(d <= tol.Gradient) || want == 0 {
			t.Errorf("%+v: logit scale gradient %v, oracle %v: relative difference %.3g > %g", o, g, want, d, tol.Gradient)
		}
		worstScale = max(worstScale, d)
	}
	if err := e.SetObjective(nn.Objective{Loss: "mae"}); err == nil {
		t.Errorf("loss \"mae\": no error")
	}
}
