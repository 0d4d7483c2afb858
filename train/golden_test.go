package train_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
)

// The golden files are runs of the original architecture recorded from
// PyTorch by python/tools/golden.py: 20 steps of AdamW under OneCycleLR on a
// 12 -> 16 x 2 -> 8 model, with initial weights, the first forward pass and
// gradients, every step's loss, learning rate and β1, and the final
// weights. The Go engines replay the same run from the same weights and
// batches and must match every step.

// goldenRun is one recorded run.
type goldenRun struct {
	f      *safetensors.File
	config nn.Config
	batch  int
	steps  int
	sched  train.OneCycle
	adamw  train.AdamW
	// objective is the run's loss, with LogitScale at its initial value
	// (metadata "loss" and "infonce_weight"; MSE runs have neither).
	objective nn.Objective
}

func openGolden(t *testing.T, path string) *goldenRun {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	md := f.Metadata()
	num := func(k string) float64 {
		v, err := strconv.ParseFloat(md[k], 64)
		if err != nil {
			t.Fatalf("%s: metadata %s: %v", path, k, err)
		}
		return v
	}
	g := &goldenRun{
		f: f,
		config: nn.Config{InputDim: int(num("input_dim")), HiddenDim: int(num("hidden_dim")),
			OutputDim: int(num("output_dim")), Blocks: int(num("num_residual_blocks"))},
		batch: int(num("batch")), steps: int(num("steps")),
		adamw: train.AdamW{Beta2: num("beta2"), Eps: num("eps"), WeightDecay: num("weight_decay")},
	}
	if loss, ok := md["loss"]; ok {
		g.objective = nn.Objective{Loss: loss, LogitScale: num("init_logit_scale")}
		if loss == nn.LossMSEInfoNCE {
			g.objective.InfoNCEWeight = num("infonce_weight")
		}
		if g.objective.LogitScale != nn.InitLogitScale || num("max_logit_scale") != nn.MaxLogitScale || num("logit_scale_weight_decay") != 0 {
			t.Fatalf("%s: logit scale from %v, clamped at %v, weight decay %v; the trainer's is from %v, clamped at %v, without weight decay",
				path, md["init_logit_scale"], md["max_logit_scale"], md["logit_scale_weight_decay"], nn.InitLogitScale, nn.MaxLogitScale)
		}
	}
	g.sched = train.NewOneCycle(num("max_lr"), int(num("epochs")), int(num("steps_per_epoch")))
	g.sched.PctStart, g.sched.DivFactor, g.sched.FinalDivFactor = num("pct_start"), num("div_factor"), num("final_div_factor")
	g.sched.BaseMomentum, g.sched.MaxMomentum = num("base_momentum"), num("max_momentum")
	return g
}

func (g *goldenRun) tensor(t *testing.T, name string) []float64 {
	t.Helper()
	v, _, err := g.f.Float64(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// params reads a prefix/<state_dict name> set into a flat buffer.
func (g *goldenRun) params(t *testing.T, prefix string) []float64 {
	l := g.config.Layout()
	buf := make([]float64, l.Size)
	for _, tn := range l.Tensors {
		copy(nn.View(buf, tn), g.tensor(t, prefix+tn.Name))
	}
	return buf
}

// relDiff is |a-b|/|b|: +Inf where that is NaN (a NaN in either), which
// fails every bound.
func relDiff(a, b float64) float64 {
	if d := math.Abs(a-b) / math.Abs(b); !math.IsNaN(d) {
		return d
	}
	return math.Inf(1)
}

// replay runs the recorded training in precision T (the model, the loss,
// AdamW and the OneCycle schedule, as an engine composes them, and for an
// InfoNCE run the logit scale as the trainer steps it, train.LogitScale)
// and compares it with PyTorch at tolerance tol: relative per scalar for
// losses, learning rates, β1 and the logit scale and its gradient,
// norm-wise relative per tensor for the output, the gradients and the
// weights.
func replay[T nn.Float](t *testing.T, path string, tol float64) {
	g := openGolden(t, path)
	c, n := g.config, g.batch
	m, err := nn.NewModel[T](c)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range g.params(t, "init/") {
		m.Params[i] = T(v)
	}
	mom, vel := make([]T, len(m.Params)), make([]T, len(m.Params))
	xs, ts := g.tensor(t, "x"), g.tensor(t, "t")
	losses, lrs, beta1s := g.tensor(t, "loss"), g.tensor(t, "lr"), g.tensor(t, "beta1")
	rows := func(v []float64, s, d int) []T {
		out := make([]T, n*d)
		for i := range out {
			out[i] = T(v[s*n*d+i])
		}
		return out
	}
	var ls *train.LogitScale
	var scales []float64
	if g.objective.Contrastive() {
		ls = &train.LogitScale{Value: g.objective.LogitScale}
		scales = g.tensor(t, "logit_scale")
	}
	worstLoss, worstScale := 0.0, 0.0
	for s := 0; s < g.steps; s++ {
		target := rows(ts, s, c.OutputDim)
		out, err := m.Forward(rows(xs, s, c.InputDim), n)
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			if d := nn.RelDiff(out, g.tensor(t, "out0")); !(d <= tol) {
				t.Errorf("output at init: relative difference %.3g > %g", d, tol)
			}
		}
		dy := make([]T, len(out))
		o := g.objective
		if ls != nil {
			o.LogitScale = ls.Value
			d := relDiff(ls.Value, scales[s])
			if d > tol {
				t.Errorf("step %d: logit scale %v, PyTorch %v: relative difference %.3g > %g", s+1, ls.Value, scales[s], d, tol)
			}
			worstScale = max(worstScale, d)
		}
		loss, dLogitScale := nn.ObjectiveLoss(o, dy, out, target, n, c.OutputDim)
		if d := relDiff(loss, losses[s]); !(d <= tol) {
			t.Errorf("step %d: loss %v, PyTorch %v: relative difference %.3g > %g", s+1, loss, losses[s], d, tol)
		}
		worstLoss = max(worstLoss, relDiff(loss, losses[s]))
		if err := m.Backward(dy, nil); err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			want := g.params(t, "grad0/")
			for _, tn := range m.Layout.Tensors {
				if d := nn.RelDiff(nn.View(m.Grads, tn), nn.View(want, tn)); !(d <= tol) {
					t.Errorf("first gradient of %s: relative difference %.3g > %g", tn.Name, d, tol)
				}
			}
			if ls != nil {
				if d := relDiff(dLogitScale, g.tensor(t, "grad0/logit_scale")[0]); !(d <= tol) {
					t.Errorf("first gradient of the logit scale: %v, PyTorch %v: relative difference %.3g > %g", dLogitScale, g.tensor(t, "grad0/logit_scale")[0], d, tol)
				}
			}
		}
		hp := g.adamw.Step(g.sched, s+1)
		// The float32 file stores lr and β1 rounded to float32.
		if d := max(relDiff(float64(T(hp.LR)), lrs[s]), relDiff(float64(T(hp.Beta1)), beta1s[s])); !(d <= 1e-15) {
			t.Errorf("step %d: lr %v and beta1 %v, PyTorch %v and %v", s+1, hp.LR, hp.Beta1, lrs[s], beta1s[s])
		}
		nn.AdamW(m.Params, m.Grads, mom, vel, hp)
		if ls != nil {
			ls.Step(dLogitScale, hp)
		}
	}
	if ls != nil {
		want := g.tensor(t, "final_logit_scale")[0]
		d := relDiff(ls.Value, want)
		if d > tol {
			t.Errorf("logit scale after %d steps: %v, PyTorch %v: relative difference %.3g > %g", g.steps, ls.Value, want, d, tol)
		}
		worstScale = max(worstScale, d)
		t.Logf("worst relative difference of the logit scale from PyTorch: %.3g (it moved from %.6g to %.6g)", worstScale, g.objective.LogitScale, ls.Value)
	}
	want := g.params(t, "final/")
	worst := 0.0
	for _, tn := range m.Layout.Tensors {
		d := nn.RelDiff(nn.View(m.Params, tn), nn.View(want, tn))
		if d > tol {
			t.Errorf("%s after %d steps: relative difference %.3g > %g", tn.Name, g.steps, d, tol)
		}
		worst = max(worst, d)
	}
	t.Logf("worst relative difference from PyTorch: loss %.3g, final weights %.3g", worstLoss, worst)
}

// In float64 both sides compute the same formulas and differ only in the
// order of their sums (gonum's and PyTorch's GEMM blocking, two-pass versus
// Welford variance), ~1e-16 per operation. 20 steps of a small model keep
// that near 1e-14, so 1e-10 is tight enough to catch any real difference in
// semantics (a β1 off by one step moves weights by ~1e-3).
func TestGoldenFloat64(t *testing.T) { replay[float64](t, "testdata/golden_f64.safetensors", 1e-10) }

// In float32 each side rounds at 6e-8 per operation in its own order; the
// two float32 runs (Go and PyTorch) each sit ~1e-6 from the exact result,
// as the float32 engine does from the float64 oracle. 1e-5 leaves a factor
// of ten.
func TestGoldenFloat32(t *testing.T) { replay[float32](t, "testdata/golden_f32.safetensors", 1e-5) }

// The InfoNCE and MSE+InfoNCE runs (golden.py's contrastive runs: the same
// model, batches and schedule, with CLIP's logit scale trained beside the
// weights) at the MSE runs' tolerances, for the same reasons: the
// log-sum-exps and softmaxes over a batch of 6 add a few roundings per
// logit, each sum in float64 on the Go side (float32's ~1e-7 on PyTorch's),
// and the logit scale is one more parameter under the same AdamW.
func TestGoldenInfoNCEFloat64(t *testing.T) {
	replay[float64](t, "testdata/golden_infonce_f64.safetensors", 1e-10)
}

func TestGoldenInfoNCEFloat32(t *testing.T) {
	replay[float32](t, "testdata/golden_infonce_f32.safetensors", 1e-5)
}

func TestGoldenMSEInfoNCEFloat64(t *testing.T) {
	replay[float64](t, "testdata/golden_mse_infonce_f64.safetensors", 1e-10)
}

func TestGoldenMSEInfoNCEFloat32(t *testing.T) {
	replay[float32](t, "testdata/golden_mse_infonce_f32.safetensors", 1e-5)
}
