//go:build cuda

package main

import (
	"fmt"

	"github.com/dinoclip/dinoclip/cuda"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
)

// newEngine builds the engine for a device other than the CPU: the GPU
// engine of package cuda for "cuda", in bf16 mixed precision or in fp32.
//
// This build links gorgonia.org/cu, whose package init calls cuInit and
// exits the process when the host has no NVIDIA driver or GPU, before any
// command runs: a binary built with -tags cuda needs a GPU host, even for
// --device cpu. Use the default build elsewhere.
func newEngine(device, precision string, c nn.Config) (nn.Engine, error) {
	if device != "cuda" {
		return nil, fmt.Errorf("no engine for device %q", device)
	}
	var e *cuda.Engine
	var err error
	switch precision {
	case train.PrecisionBF16:
		e, err = cuda.NewBF16Engine(c)
	case train.PrecisionFP32:
		e, err = cuda.NewEngine(c)
	default:
		return nil, fmt.Errorf("precision %q: the GPU engine computes in bf16 or fp32", precision)
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// bf16Fits is nil where the GPU's bf16 engine can run shape c.
func bf16Fits(c nn.Config) error { return cuda.BF16Fits(c) }

func init() { deviceSearcher = newGPUSearcher }

// newGPUSearcher is the GPU's exact search (cuda.Searcher: float16 tensor
// cores rank, the host re-scores the candidates and proves the answer, and
// the CPU re-runs the queries it cannot prove).
func newGPUSearcher(device string) (retrieval.Searcher, func(), error) {
	if device != "cuda" {
		return nil, nil, fmt.Errorf("no searcher for device %q", device)
	}
	dev, err := cuda.Open()
	if err != nil {
		return nil, nil, err
	}
	return &cuda.Searcher{Dev: dev}, func() { dev.Close() }, nil
}
