package nn

import (
	"fmt"
	"strings"
)

// Config is the shape of a ProjectorWithResiduals. The head's inner width is
// HiddenDim/2, as in the original.
type Config struct {
	InputDim  int `json:"input_dim"`
	HiddenDim int `json:"hidden_dim"`
	OutputDim int `json:"output_dim"`
	Blocks    int `json:"num_residual_blocks"`
}

// DefaultConfig is the original model (see docs/MODEL.md).
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
	case c.Blocks > MaxBlocks:
		return fmt.Errorf("residual blocks %d: more than the %d dinoclip handles", c.Blocks, MaxBlocks)
	case c.FLOPsPerSample()/6 > MaxWeights:
		// Checked in float64, before any count is multiplied out in int:
		// an absurd shape is an error here, not an overflow or an
		// allocation of petabytes later.
		return fmt.Errorf("%v has %.3g weights, more than the %d dinoclip handles", c, c.FLOPsPerSample()/6, MaxWeights)
	}
	return nil
}

// MaxBlocks bounds the residual blocks of a model (the default has 6): at
// a narrow width, MaxWeights would let hundreds of millions through, and
// their layout alone (eight named tensors each) would fill the memory.
const MaxBlocks = 4096

// MaxWeights bounds the weight-matrix entries of a model (the default has
// 54 million): 2^31 - 1 float32 values, 8 GiB, and three times that with the
// optimizer's moments.
const MaxWeights = 1<<31 - 1

// String is the model's shape in one line: input width -> hidden width x
// residual blocks -> the head's inner width -> output width, e.g. "768 ->
// 2048 x 6 residual blocks -> 1024 -> 512".
func (c Config) String() string {
	return fmt.Sprintf("%d -> %d x %d residual blocks -> %d -> %d", c.InputDim, c.HiddenDim, c.Blocks, c.HeadDim(), c.OutputDim)
}

// Describe is the one description of the architecture that the program's
// output, its help texts and README.md use (a test of cmd/dinoclip holds
// README.md to it): the shape and the parameter count, e.g. "768 -> 2048 x 6
// residual blocks -> 1024 -> 512, 54,608,384 parameters".
func (c Config) Describe() string {
	return fmt.Sprintf("%s, %s parameters", c, groupThousands(c.NumParams()))
}

// groupThousands writes n with a comma between groups of three digits.
func groupThousands(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// FLOPsPerSample is the multiply-add count of one training step (forward,
// input gradients and weight gradients: 3 GEMMs of 2 flops per weight) for
// one row, the usual 6 x parameters estimate restricted to the matrices.
func (c Config) FLOPsPerSample() float64 {
	h, hd := float64(c.HiddenDim), float64(c.HeadDim())
	weights := float64(c.InputDim)*h + float64(c.Blocks)*2*h*h + h*hd + hd*float64(c.OutputDim)
	return 6 * weights
}
