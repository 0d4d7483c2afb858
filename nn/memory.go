package nn

import (
	"runtime"

	"github.com/dinoclip/dinoclip/internal/sgemm"
)

// CPUEngineBytes is what a [CPUEngine] of shape c computing in elements of
// elemSize bytes holds once it has run a batch of batch rows: parameters,
// gradients and the two AdamW moments, the activations [Model.Forward]
// keeps for the backward pass, the engine's copies of the batch, its
// targets and the loss gradient, and (float32) the packing buffers of the
// GEMM's goroutines. It is counted in float64 so that an
// absurd shape or batch gives a large number, not an overflow; a trainer
// compares it with the memory the machine has before allocating any of it.
// c must be valid ([Config.Validate]).
func (c Config) CPUEngineBytes(batch, elemSize int) float64 {
	n, h, hd, o := float64(batch), float64(c.HiddenDim), float64(c.HeadDim()), float64(c.OutputDim)
	state := 4 * float64(c.NumParams())
	perBlock := 5*n*h + 2*n // x, xhat1, ln1, act, xhat2; rstd1, rstd2
	model := float64(c.Blocks)*perBlock + 6*n*h + 2*n*hd + 2*n*o + 2*n
	engine := n*float64(c.InputDim) + 2*n*o
	bytes := (state + model + engine) * float64(elemSize)
	if elemSize == 4 {
		bytes += float64(runtime.GOMAXPROCS(0) * sgemm.BufferBytes)
	}
	return bytes
}
