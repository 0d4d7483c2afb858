package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// numericGrad is the central difference of f at every element of v, with
// step 1e-6 max(|v_i|, 1) (see gradcheckTol for why it resolves the
// derivatives to ~1e-9).
func numericGrad(v []float64, f func() float64) []float64 {
	g := make([]float64, len(v))
	for i := range v {
		h := 1e-6 * math.Max(math.Abs(v[i]), 1)
		orig := v[i]
		v[i] = orig + h
		up := f()
		v[i] = orig - h
		down := f()
		v[i] = orig
		g[i] = (up - down) / (2 * h)
	}
	return g
}

// InfoNCE's gradients, of the predictions and of the logit scale, against
// central differences, at CLIP's initial scale, at a small one, and at one
// within a step of the clamp at 100. A zero target row (normalised to zero,
// so a row of zero logits) takes part.
func TestInfoNCEFiniteDifference(t *testing.T) {
	const n, d = 5, 4
	for _, ls := range []float64{InitLogitScale, -0.7, math.Log(MaxLogitScale) - 1e-3} {
		rng := rand.New(rand.NewPCG(21, 21))
		p, target := randomRows(rng, n, d), randomRows(rng, n, d)
		for j := range d {
			target[3*d+j] = 0
		}
		grad := make([]float64, n*d)
		_, dls := InfoNCE(grad, p, target, n, d, ls)
		loss := func() float64 { l, _ := InfoNCE[float64](nil, p, target, n, d, ls); return l }
		if e := relError(grad, numericGrad(p, loss)); !(e <= gradcheckTol) {
			t.Errorf("logit scale %v: gradient of the predictions: relative error %.3g > %g", ls, e, gradcheckTol)
		}
		scale := []float64{ls}
		num := numericGrad(scale, func() float64 { l, _ := InfoNCE[float64](nil, p, target, n, d, scale[0]); return l })
		if e := math.Abs(dls-num[0]) / math.Abs(num[0]); !(e <= gradcheckTol) || dls == 0 {
			t.Errorf("logit scale %v: its gradient %v, numerically %v: relative error %.3g > %g", ls, dls, num[0], e, gradcheckTol)
		}
	}
}

// Above the clamp the scale is 100 whatever the parameter: the loss does
// not change with it and its gradient is zero, as through torch's clamp.
func TestInfoNCEClampedScale(t *testing.T) {
	const n, d = 4, 3
	rng := rand.New(rand.NewPCG(22, 22))
	p, target := randomRows(rng, n, d), randomRows(rng, n, d)
	grad := make([]float64, n*d)
	at, _ := InfoNCE(grad, p, target, n, d, math.Log(MaxLogitScale))
	above, dls := InfoNCE(grad, p, target, n, d, math.Log(MaxLogitScale)+0.5)
	if above != at || dls != 0 {
		t.Fatalf("above the clamp: loss %v (at the clamp %v), logit scale gradient %v; want the same loss and 0", above, at, dls)
	}
}

// Two orthonormal pairs matched exactly: every row and column of the logits
// is (s, 0) with the match at s, so the loss is log(1 + exp(-s)).
func TestInfoNCEKnownValue(t *testing.T) {
	p := []float64{2, 0, 0, 0.5}
	target := []float64{1, 0, 0, 3}
	for _, ls := range []float64{0, 1, InitLogitScale} {
		got, _ := InfoNCE[float64](nil, p, target, 2, 2, ls)
		want := math.Log1p(math.Exp(-math.Exp(ls)))
		if !(math.Abs(got-want) <= 1e-15) {
			t.Errorf("logit scale %v: loss %v, want %v", ls, got, want)
		}
	}
}

// The two directions differ when the logits are not symmetric: the loss
// must be the mean of both cross-entropies, each written out here from its
// definition (a second reading of the formula, not the code's).
func TestInfoNCESymmetric(t *testing.T) {
	const n, d = 3, 2
	p := []float64{1, 0, 0.6, 0.8, -1, 0.2}
	target := []float64{0.8, 0.6, 0, 1, -0.6, -0.8}
	ls := 0.9
	s := math.Exp(ls)
	logit := func(i, j int) float64 {
		pi, tj := p[i*d:(i+1)*d], target[j*d:(j+1)*d]
		return s * (pi[0]*tj[0] + pi[1]*tj[1]) / math.Hypot(pi[0], pi[1]) / math.Hypot(tj[0], tj[1])
	}
	var i2t, t2i float64
	for i := range n {
		var rs, cs float64
		for j := range n {
			rs += math.Exp(logit(i, j))
			cs += math.Exp(logit(j, i))
		}
		i2t -= math.Log(math.Exp(logit(i, i)) / rs)
		t2i -= math.Log(math.Exp(logit(i, i)) / cs)
	}
	want := (i2t/n + t2i/n) / 2
	got, _ := InfoNCE[float64](nil, p, target, n, d, ls)
	if !(math.Abs(got-want) <= 1e-14) {
		t.Fatalf("loss %v, want %v", got, want)
	}
	if math.Abs(i2t-t2i) < 1e-3 {
		t.Fatalf("the test's logits are too symmetric to tell the directions apart: %v and %v", i2t, t2i)
	}
}

// The weighted sum through the whole model: the parameters' gradients and
// the logit scale's, against central differences.
func TestMSEInfoNCEModelFiniteDifference(t *testing.T) {
	c := Config{InputDim: 5, HiddenDim: 6, OutputDim: 4, Blocks: 1}
	const n = 4
	m := randomModel(t, c, 31)
	rng := rand.New(rand.NewPCG(32, 32))
	x, target := randomRows(rng, n, c.InputDim), randomRows(rng, n, c.OutputDim)
	o := Objective{Loss: LossMSEInfoNCE, InfoNCEWeight: 0.3, LogitScale: 1.2}
	loss := func() float64 {
		out, err := m.Forward(x, n)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := ObjectiveLoss(o, nil, out, target, n, c.OutputDim)
		return l
	}
	out, _ := m.Forward(x, n)
	dy := make([]float64, len(out))
	_, dls := ObjectiveLoss(o, dy, out, target, n, c.OutputDim)
	if err := m.Backward(dy, nil); err != nil {
		t.Fatal(err)
	}
	grads := append([]float64(nil), m.Grads...)
	for _, tn := range m.Layout.Tensors {
		if e := relError(View(grads, tn), numericGrad(View(m.Params, tn), loss)); !(e <= gradcheckTol) {
			t.Errorf("%s: relative error %.3g > %g", tn.Name, e, gradcheckTol)
		}
	}
	scale := []float64{o.LogitScale}
	num := numericGrad(scale, func() float64 { o.LogitScale = scale[0]; return loss() })
	if e := math.Abs(dls-num[0]) / math.Abs(num[0]); !(e <= gradcheckTol) {
		t.Errorf("logit scale: gradient %v, numerically %v: relative error %.3g > %g", dls, num[0], e, gradcheckTol)
	}
	// The sum is the parts': the MSE plus the weighted InfoNCE.
	o.LogitScale = 1.2
	mse, _ := ObjectiveLoss(Objective{}, nil, out, target, n, c.OutputDim)
	nce, _ := ObjectiveLoss(Objective{Loss: LossInfoNCE, LogitScale: 1.2}, nil, out, target, n, c.OutputDim)
	if sum, _ := ObjectiveLoss(o, nil, out, target, n, c.OutputDim); !(math.Abs(sum-(mse+0.3*nce)) <= 1e-15) {
		t.Errorf("mse+infonce %v, want %v + 0.3 x %v", sum, mse, nce)
	}
}

// The float32 engine's InfoNCE sums in float64 from float32 inputs, so it
// matches the float64 one on the same (float32-exact) values to float32
// rounding of its results.
func TestInfoNCEFloat32(t *testing.T) {
	const n, d = 16, 8
	rng := rand.New(rand.NewPCG(41, 41))
	p64, t64 := randomRows(rng, n, d), randomRows(rng, n, d)
	p32, t32 := make([]float32, n*d), make([]float32, n*d)
	for i := range p64 {
		p32[i], t32[i] = float32(p64[i]), float32(t64[i])
		p64[i], t64[i] = float64(p32[i]), float64(t32[i])
	}
	g64, g32 := make([]float64, n*d), make([]float32, n*d)
	l64, s64 := InfoNCE(g64, p64, t64, n, d, InitLogitScale)
	l32, s32 := InfoNCE(g32, p32, t32, n, d, InitLogitScale)
	if l32 != l64 || s32 != s64 {
		t.Errorf("loss %v and scale gradient %v in float32, %v and %v in float64", l32, s32, l64, s64)
	}
	for i := range g64 {
		if g32[i] != float32(g64[i]) {
			t.Fatalf("gradient %d: %v in float32, %v in float64", i, g32[i], g64[i])
		}
	}
}

func TestObjectiveValidate(t *testing.T) {
	for _, o := range []Objective{
		{Loss: "mae"},
		{Loss: LossMSEInfoNCE},
		{Loss: LossMSEInfoNCE, InfoNCEWeight: -1},
		{Loss: LossMSEInfoNCE, InfoNCEWeight: math.Inf(1)},
		{Loss: LossMSEInfoNCE, InfoNCEWeight: 1e39},
		{Loss: LossMSEInfoNCE, InfoNCEWeight: math.NaN()},
		{Loss: LossInfoNCE, LogitScale: math.NaN()},
		{Loss: LossInfoNCE, LogitScale: math.Inf(1)},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	for _, o := range []Objective{{}, {Loss: LossMSE}, {Loss: LossInfoNCE, LogitScale: InitLogitScale}, {Loss: LossMSEInfoNCE, InfoNCEWeight: 0.5}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
