package train

import (
	"fmt"

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
