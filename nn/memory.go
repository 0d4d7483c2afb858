package nn

import (
	"github.com/dinoclip/dinoclip/internal/sgemm"
)

// CPUEngineBytes is what a [CPUEngine] of shape c computing in elements of
// elemSize bytes holds once it has run a batch of batch rows: parameters,
// gradients and the two AdamW moments, the activations [Model.Forward]
// keeps for the backward pass, the engine's copies of the batch, its
// targets and the loss gradient, and (float32) the packing buffers of the
// GEMM's goroutines and the packed weights of forward-only calls. It is counted in float64 so that an
// absurd shape or batch gives a large number, not an overflow; a trainer
// compares it with the memory the machine has before allocating any of it.
// c must be valid ([Config.Validate]).
func (c Config) CPUEngineBytes(batch, elemSize int) float64 {
	n, o := float64(batch), float64(c.OutputDim)
	state := 4 * float64(c.NumParams())
	engine := n*float64(c.InputDim) + 2*n*o
	return (state+c.activations(batch)+engine)*float64(elemSize) + c.packedBytes(elemSize)
}

// CPUForwardBytes is what a float32 [CPUEngine] of shape c, once made,
// allocates to project batch rows at a time ([CPUEngine.Project]): the
// activations of a forward pass, its copy of the batch, and the packed
// copy of the weights with the GEMM's buffers. Counted as CPUEngineBytes.
func (c Config) CPUForwardBytes(batch int) float64 {
	return (c.activations(batch)+float64(batch)*float64(c.InputDim))*4 + c.packedBytes(4)
}

// activations is how many values [Model.Forward] keeps for batch rows
// for the backward pass (a forward-only call fills most of them).
func (c Config) activations(batch int) float64 {
	n, h, hd, o := float64(batch), float64(c.HiddenDim), float64(c.HeadDim()), float64(c.OutputDim)
	perBlock := 5*n*h + 2*n // x, xhat1, ln1, act, xhat2; rstd1, rstd2
	return float64(c.Blocks)*perBlock + 6*n*h + 2*n*hd + 2*n*o + 2*n
}

// packedBytes is the packed copy of the weights that forward-only calls
// (evaluation, projection) make, and the GEMM's buffers, of an engine
// computing in elements of elemSize bytes: float32 engines with the packed
// GEMM only. NumParams counts the biases and LayerNorm parameters too, a
// slight overestimate.
func (c Config) packedBytes(elemSize int) float64 {
	if ws := sgemm.WorkspaceBytes(); elemSize == 4 && ws > 0 {
		return float64(ws) + 4*float64(c.NumParams())
	}
	return 0
}
