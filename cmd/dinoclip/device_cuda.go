//go:build cuda

package main

import (
	"context"
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

func init() { deviceSearcher = newGPUSearcher }

// maxGPUKeyBytes bounds the float32 copy of the keys the GPU top-k needs.
const maxGPUKeyBytes = 64 << 30

// gpuSearcher ranks on the GPU's float32 top-k (cuda.Device.TopK) and makes
// the answer exact with retrieval.Refine: the GPU returns a few more
// candidates than asked, they are re-scored on the CPU, and the queries
// whose answer the error bound cannot prove are searched again on the CPU.
type gpuSearcher struct {
	dev *cuda.Device
	cpu retrieval.Searcher
}

func newGPUSearcher(device string) (retrieval.Searcher, func(), error) {
	if device != "cuda" {
		return nil, nil, fmt.Errorf("no searcher for device %q", device)
	}
	dev, err := cuda.Open()
	if err != nil {
		return nil, nil, err
	}
	return &gpuSearcher{dev: dev, cpu: &retrieval.CPUSearcher{}}, func() { dev.Close() }, nil
}

// gpuExtraCandidates is how many candidates beyond k the GPU returns, so
// that near-ties at the k-th place are settled by re-scoring rather than
// by the CPU fallback.
const gpuExtraCandidates = 8

func (g *gpuSearcher) Search(ctx context.Context, queries []float32, nq int, keys *retrieval.Keys, k int) (*retrieval.Neighbors, error) {
	if err := retrieval.CheckSearch(queries, nq, keys, k); err != nil {
		return nil, err
	}
	if k > cuda.MaxTopK {
		return nil, fmt.Errorf("k = %d: the GPU top-k ranks at most %d per query; use --device cpu", k, cuda.MaxTopK)
	}
	x, maxNorm, err := keys.Float32s(maxGPUKeyBytes)
	if err != nil {
		return nil, err
	}
	nk := int(keys.Rows())
	width := min(k+gpuExtraCandidates, cuda.MaxTopK, nk)
	idx, scores, err := g.dev.TopK(queries, x, nq, nk, keys.Dim, width)
	if err != nil {
		return nil, err
	}
	rows := make([]int64, len(idx))
	for i, r := range idx {
		rows[i] = int64(r)
	}
	nb, unproven, err := retrieval.Refine(queries, nq, keys, k, rows, scores, width, maxNorm)
	if err != nil {
		return nil, err
	}
	return nb, retrieval.MergeQueries(ctx, g.cpu, nb, queries, keys, k, unproven)
}
