package train

import (
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/nn"
)

// LogitScale is the InfoNCE objective's trained parameter, the log of the
// scale of its logits (CLIP's logit_scale), with its AdamW moments. It is
// the trainer's, not the model's: a model file stays the original
// architecture's state_dict. The trainer keeps it in float64 whatever the
// engine computes in and saves it in the trainer state (State.LogitScale,
// JSON, whose float64 numbers read back bit for bit), so that a resumed
// run continues from the same bits.
type LogitScale struct {
	Value float64 `json:"value"`
	M     float64 `json:"m"`
	V     float64 `json:"v"`
}

// LossName is o.Loss with "" (a run from before the option) read as
// nn.LossMSE.
func (o Options) LossName() string { return nn.Objective{Loss: o.Loss}.LossName() }

// objective is the engine's objective under o with the logit scale ls
// (nil without an InfoNCE term).
func (o Options) objective(ls *LogitScale) nn.Objective {
	obj := nn.Objective{Loss: o.Loss, InfoNCEWeight: o.InfoNCEWeight}
	if ls != nil {
		obj.LogitScale = ls.Value
	}
	return obj
}

// validateLoss refuses an unknown loss, an InfoNCE weight other than a
// positive number under mse+infonce or other than 0 (none) under the
// others, and InfoNCE on batches of one row.
func (o Options) validateLoss() error {
	obj := o.objective(nil)
	if err := obj.Validate(); err != nil {
		return err
	}
	if o.LossName() != nn.LossMSEInfoNCE && o.InfoNCEWeight != 0 {
		return fmt.Errorf("InfoNCE weight %v with loss %s: the weight is of the InfoNCE term of %s", o.InfoNCEWeight, o.LossName(), nn.LossMSEInfoNCE)
	}
	if obj.Contrastive() && o.Batch < 2 {
		return fmt.Errorf("loss %s at batch %d: InfoNCE needs a batch of at least 2 rows (each row's negatives are the batch's other rows)", o.LossName(), o.Batch)
	}
	return nil
}

// newLogitScale is the logit scale a run under o starts from: CLIP's
// log(1/0.07) with zero moments, or nil when o has no InfoNCE term.
func newLogitScale(o Options) *LogitScale {
	if !o.objective(nil).Contrastive() {
		return nil
	}
	return &LogitScale{Value: nn.InitLogitScale}
}

// checkLogitScale reports a trainer state whose logit scale does not fit
// its options: missing under an InfoNCE loss, present under the MSE, or
// not finite (a second moment below zero included).
func checkLogitScale(o Options, ls *LogitScale) error {
	contrastive := o.objective(nil).Contrastive()
	switch {
	case contrastive && ls == nil:
		return fmt.Errorf("it has no logit scale under loss %s", o.LossName())
	case !contrastive && ls != nil:
		return fmt.Errorf("it has a logit scale under loss %s", o.LossName())
	case ls == nil:
		return nil
	}
	for _, v := range []float64{ls.Value, ls.M, ls.V} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("its logit scale %+v is not finite", *ls)
		}
	}
	if ls.V < 0 {
		return fmt.Errorf("its logit scale's second moment %v is negative", ls.V)
	}
	return nil
}

// maxLoss bounds the loss of a batch under o. The unit-norm MSE is the
// mean over a row's d values of (p^ - t^)², whose sum is at most 4 (both
// rows of norm at most 1): at most 4/d <= 4. InfoNCE's logits s cos are
// within [-100, 100] (nn.MaxLogitScale), so each cross-entropy, lse - L_ii,
// is at most 200 + ln(batch), and so is their mean over both directions.
// A trainer state's running sums (State.Window, EpochLoss) are sums of
// such losses times rows: one beyond that was not summed by a run (and an
// edited 1e308 would overflow to +Inf in the next metrics record, which
// JSON cannot hold).
func (o Options) maxLoss() float64 {
	infoNCE := 2*nn.MaxLogitScale + math.Log(float64(max(o.Batch, 1)))
	switch o.LossName() {
	case nn.LossInfoNCE:
		return infoNCE
	case nn.LossMSEInfoNCE:
		return 4 + o.InfoNCEWeight*infoNCE
	}
	return 4
}

// checkRange reports a logit scale and moments that no run under o can
// have reached in step steps of schedule s. The gradient of the logit
// scale is s' dL/ds' with s' = min(exp(value), 100) and |dL/ds'| <= 2
// (nn.InfoNCE: the entries of its G sum to at most 2 in magnitude, the
// cosines are within [-1, 1]), times the InfoNCE weight under mse+infonce:
// at most g = 200 w. Its first moment, a running average of gradients, is
// then at most g, its second at most g², and the first at most
// momentBound sqrt(second). Each AdamW step moves the value by lr m̂ /
// (sqrt(v̂) + eps) <= lr K / (1 - β1^t) <= max_lr K / (1 - β1max) (K the
// momentBound): the value is within steps times that of where every run
// starts, nn.InitLogitScale. The bounds are loose (with the defaults and
// max_lr 1e-3, about 1.9 a step) but refuse values that are absurd (an
// edited 1e300, which exp turns into +Inf, or -1e300 into a scale of 0).
func (ls LogitScale) checkRange(o Options, s OneCycle, steps int) error {
	w := 1.0
	if o.LossName() == nn.LossMSEInfoNCE {
		w = o.InfoNCEWeight
	}
	g := roundingMargin * 2 * nn.MaxLogitScale * w
	if math.Abs(ls.M) > g || ls.V > g*g {
		return fmt.Errorf("its logit scale's moments m %v, v %v exceed those of gradients of at most %v", ls.M, ls.V, g)
	}
	k := momentBound(s, o.AdamW.Beta2)
	if k == 0 {
		return nil
	}
	if math.Abs(ls.M) > roundingMargin*k*math.Sqrt(ls.V)+momentUnderflow {
		return fmt.Errorf("its logit scale's first moment %v exceeds %.4g sqrt(v) (v %v)", ls.M, k, ls.V)
	}
	reach := float64(steps)*s.MaxLR*roundingMargin*k/(1-s.MaxMomentum) + 1
	if math.Abs(ls.Value-nn.InitLogitScale) > reach {
		return fmt.Errorf("its logit scale %v is further than %.4g from the initial %.4g: %d steps at a learning rate of at most %v cannot move it there", ls.Value, reach, nn.InitLogitScale, steps, s.MaxLR)
	}
	return nil
}

// setObjective gives the engine the run's objective with the logit scale
// of st, before a step.
func (tr *Trainer) setObjective(st State) error {
	return tr.Engine.SetObjective(st.Options.objective(st.LogitScale))
}

// Step applies step hp's AdamW update to the logit scale with gradient
// grad (the step's Engine.LogitScaleGrad): the schedule's learning rate
// and β1, the run's β2 and eps, and no weight decay, as CLIP trains it
// (its gains, biases and logit scale are excluded from weight decay).
func (ls *LogitScale) Step(grad float64, hp nn.AdamWStep) {
	hp.WeightDecay = 0
	p, g, m, v := []float64{ls.Value}, []float64{grad}, []float64{ls.M}, []float64{ls.V}
	nn.AdamW(p, g, m, v, hp)
	ls.Value, ls.M, ls.V = p[0], m[0], v[0]
}
