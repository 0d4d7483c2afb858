//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/nn"
)

// SetObjective implements nn.Engine. The GPU engine computes the unit-norm
// MSE only: the InfoNCE losses (nn.InfoNCE) run on the CPU engine, and a
// run that asks the GPU for them is refused before it starts.
func (e *Engine) SetObjective(o nn.Objective) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Contrastive() {
		return fmt.Errorf("loss %s: the GPU engine has no InfoNCE kernels yet; train it on the CPU (--device cpu) or with --loss %s", o.Loss, nn.LossMSE)
	}
	return nil
}

// LogitScaleGrad implements nn.Engine: 0, as the engine has no InfoNCE term.
func (e *Engine) LogitScaleGrad() float64 { return 0 }
