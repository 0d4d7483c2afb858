//go:build cuda

package cuda

import (
	"fmt"

	"github.com/dinoclip/dinoclip/nn"
)

// The moving average of the weights (nn.EMAEngine) lives in an allocation
// of its own, made by the first StartEMA, so that an engine without one
// takes no memory for it. UpdateEMA runs ema_update (kernels/ema.cu) over
// the parameters; the average is copied out only when asked for.

var _ nn.EMAEngine = (*Engine)(nil)

// checkDecay refuses a decay outside (0, 1), NaN included.
func checkDecay(decay float64) error {
	if !(decay > 0 && decay < 1) {
		return fmt.Errorf("EMA decay %v: must be in (0, 1)", decay)
	}
	return nil
}

// StartEMA implements nn.EMAEngine.
func (e *Engine) StartEMA(init []float32, decay float64) error {
	if err := checkDecay(decay); err != nil {
		return err
	}
	if len(init) != e.np {
		return fmt.Errorf("EMA start: %d values, the model has %d", len(init), e.np)
	}
	return e.dev.do(func() error {
		if e.ema.p == 0 {
			bytes := int64(e.np) * 4
			p, err := e.dev.alloc(bytes)
			if err != nil {
				return e.dev.oom(err, bytes, fmt.Sprintf("the moving average of the weights (%d parameters)", e.np), "", "")
			}
			e.ema = buf[float32]{p: p, n: e.np}
		}
		e.emaDecay = 0 // not started until the upload has succeeded
		if err := upload(e.dev, e.ema, init); err != nil {
			return err
		}
		if err := e.dev.sync(); err != nil {
			return err
		}
		e.emaDecay = decay
		return nil
	})
}

// UpdateEMA implements nn.EMAEngine. It enqueues the update behind the
// step and does not wait for it, so that a pipelined run (step.go) keeps
// the device busy; a fault surfaces at the next wait, the next step's
// event or a copy out.
func (e *Engine) UpdateEMA() error {
	if e.emaDecay == 0 {
		return fmt.Errorf("EMA update before StartEMA")
	}
	return e.dev.do(func() error { return e.dev.emaUpdate(e.ema, e.params, e.np, e.emaDecay) })
}

// EMA implements nn.EMAEngine.
func (e *Engine) EMA(dst []float32) error {
	if e.emaDecay == 0 {
		return fmt.Errorf("EMA copy before StartEMA")
	}
	return e.copyOut(dst, e.ema, "moving average of the weights")
}
