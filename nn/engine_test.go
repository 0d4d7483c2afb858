package nn_test

import (
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/nn/enginetest"
)

// The float32 CPU engine against the float64 oracle, through the suite every
// engine runs.
func TestCPUEngineFloat32(t *testing.T) {
	enginetest.Run(t, func(c nn.Config) (nn.Engine, error) { return nn.NewCPUEngine[float32](c) })
}
