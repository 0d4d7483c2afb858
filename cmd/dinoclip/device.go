//go:build !cuda

package main

import (
	"github.com/dinoclip/dinoclip/nn"
)

// newEngine builds the engine for a device other than the CPU. This build
// has none; the build with -tags cuda provides the GPU engine in its own
// version of this function.
func newEngine(device, precision string, c nn.Config) (nn.Engine, error) {
	return nil, errNoCUDA
}

// bf16Fits: this build has no bf16 engine to refuse a shape (newEngine
// refuses the device first).
func bf16Fits(c nn.Config) error { return nil }
