package train

import (
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/nn"
)

// AdamW holds the AdamW hyperparameters that stay fixed through a run; the
// learning rate and β1 come from the [OneCycle] schedule at every step.
// Defaults are PyTorch's: β2 0.999, eps 1e-8, weight decay 0.01.
type AdamW struct {
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
}

// DefaultAdamW is torch.optim.AdamW's defaults.
func DefaultAdamW() AdamW { return AdamW{Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01} }

// Validate reports hyperparameters PyTorch would reject.
func (a AdamW) Validate() error {
	switch {
	case !(a.Beta2 >= 0 && a.Beta2 < 1):
		return fmt.Errorf("adamw: beta2 %v must be in [0, 1)", a.Beta2)
	case !(a.Eps >= 0):
		return fmt.Errorf("adamw: eps %v must not be negative", a.Eps)
	case !(a.WeightDecay >= 0):
		return fmt.Errorf("adamw: weight decay %v must not be negative", a.WeightDecay)
	}
	return nil
}

// Step returns the hyperparameters of optimizer update number step
// (1-based) under schedule s: it uses the schedule's values at index
// step-1, as PyTorch does when scheduler.step() follows optimizer.step().
func (a AdamW) Step(s OneCycle, step int) nn.AdamWStep {
	lr, beta1 := s.At(step - 1)
	return nn.AdamWStep{LR: lr, Beta1: beta1, Beta2: a.Beta2, Eps: a.Eps, WeightDecay: a.WeightDecay, Step: step}
}

// momentBound is a K such that every first moment m of an AdamW run under
// schedule s (β1 within [BaseMomentum, MaxMomentum]) and β2 satisfies
// |m| <= K sqrt(v), v its second moment, from zero moments; 0 when there
// is no such bound (MaxMomentum >= sqrt(β2)). With c_k the weight of the
// gradient of k steps ago in m, c_k <= (1-β1min) β1max^k, and v >= (1-β2)
// β2^k g_k² for every k (its terms are not negative), so |g_k| <=
// sqrt(v/((1-β2) β2^k)) and
//
//	|m| <= sum c_k |g_k| <= (1-β1min)/sqrt(1-β2) sqrt(v) sum (β1max/sqrt(β2))^k
//	     <= (1-β1min) / (sqrt(1-β2) (1 - β1max/sqrt(β2))) sqrt(v).
//
// For PyTorch's defaults (β1 0.85 to 0.95, β2 0.999) K is 95.8. The
// moments are float32: each step rounds a few products (relative 2^-24
// each), which moves K by far less than the 1% margin checkMoments allows.
func momentBound(s OneCycle, beta2 float64) float64 {
	r := s.MaxMomentum / math.Sqrt(beta2)
	if !(r < 1) || !(beta2 < 1) {
		return 0
	}
	return (1 - s.BaseMomentum) / (math.Sqrt(1-beta2) * (1 - r))
}

// roundingMargin is the relative margin of the bounds a resume checks
// (momentBound, Options.maxLoss, LogitScale.checkRange) for the float32
// rounding of the values they bound; momentUnderflow is the absolute one
// of momentBound for gradients so small that their squares underflow in
// float32 (|g| below about 1e-21), which add to m but not to v.
const (
	roundingMargin  = 1.01
	momentUnderflow = 1e-20
)

// checkMoments reports AdamW moments that no run under s and beta2 can
// reach: a negative or non-finite second moment, a non-finite first
// moment, or one beyond momentBound. A tampered exp_avg_sq < 0 would make
// every update NaN; a huge exp_avg, an update to Inf.
//
// A second moment of +Inf is one a run reaches: a float32 gradient beyond
// about 5.8e20 overflows (1-β2) g², and the parameter's updates are 0 from
// then on, as an uninterrupted run has them.
func checkMoments[T float32 | float64](s OneCycle, beta2 float64, m, v []T) error {
	k := momentBound(s, beta2)
	for i := range v {
		mi, vi := float64(m[i]), float64(v[i])
		switch {
		case !(vi >= 0):
			return fmt.Errorf("exp_avg_sq[%d] = %v: a second moment is a number >= 0", i, vi)
		case math.IsNaN(mi) || math.IsInf(mi, 0):
			return fmt.Errorf("exp_avg[%d] = %v is not finite", i, mi)
		case k > 0 && math.Abs(mi) > roundingMargin*k*math.Sqrt(vi)+momentUnderflow:
			return fmt.Errorf("exp_avg[%d] = %v with exp_avg_sq %v: an AdamW first moment is at most %.4g sqrt(exp_avg_sq) under this schedule", i, mi, vi, k)
		}
	}
	return nil
}
