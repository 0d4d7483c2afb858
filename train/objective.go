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
