package nn

import "fmt"

// Config is the shape of a ProjectorWithResiduals. The head's inner width is
// HiddenDim/2, as in the original.
type Config struct {
	InputDim  int `json:"input_dim"`
	HiddenDim int `json:"hidden_dim"`
	OutputDim int `json:"output_dim"`
	Blocks    int `json:"num_residual_blocks"`
}

// DefaultConfig is the original model: 768 -> 2048 x 6 blocks -> 512.
func DefaultConfig() Config {
	return Config{InputDim: 768, HiddenDim: 2048, OutputDim: 512, Blocks: 6}
}

// HeadDim is the width of the head between its two Linears (hidden_dim//2).
func (c Config) HeadDim() int { return c.HiddenDim / 2 }

// Validate reports a configuration that cannot be built.
func (c Config) Validate() error {
	switch {
	case c.InputDim < 1:
		return fmt.Errorf("input dim %d: must be at least 1", c.InputDim)
	case c.HiddenDim < 2:
		return fmt.Errorf("hidden dim %d: must be at least 2 (the head is hidden_dim/2 wide)", c.HiddenDim)
	case c.OutputDim < 1:
		return fmt.Errorf("output dim %d: must be at least 1", c.OutputDim)
	case c.Blocks < 0:
		return fmt.Errorf("residual blocks %d: must not be negative", c.Blocks)
	case c.FLOPsPerSample()/6 > MaxWeights:
		// Checked in float64, before any count is multiplied out in int:
		// an absurd shape is an error here, not an overflow or an
		// allocation of petabytes later.
		return fmt.Errorf("%v has %.3g weights, more than the %d dinoclip handles", c, c.FLOPsPerSample()/6, MaxWeights)
	}
	return nil
}

// MaxWeights bounds the weight-matrix entries of a model (the default has
// 54 million): 2^31 - 1 float32 values, 8 GiB, and three times that with the
// optimizer's moments.
const MaxWeights = 1<<31 - 1

func (c Config) String() string {
	return fmt.Sprintf("%d -> %d x %d blocks -> %d -> %d", c.InputDim, c.HiddenDim, c.Blocks, c.HeadDim(), c.OutputDim)
}

// FLOPsPerSample is the multiply-add count of one training step (forward,
// input gradients and weight gradients: 3 GEMMs of 2 flops per weight) for
// one row, the usual 6 x parameters estimate restricted to the matrices.
func (c Config) FLOPsPerSample() float64 {
	h, hd := float64(c.HiddenDim), float64(c.HeadDim())
	weights := float64(c.InputDim)*h + float64(c.Blocks)*2*h*h + h*hd + hd*float64(c.OutputDim)
	return 6 * weights
}
