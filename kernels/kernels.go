// Package kernels holds the CUDA kernels of the GPU engine as PTX: the
// sources are kernels/*.cu (one op family per file, each opening with a
// comment on what it computes, its shapes, launch configuration and
// version), `make kernels` compiles them with nvcc 11.8 into kernels/ptx/,
// and the PTX is committed and embedded here. This package is only bytes
// and names: it has no build tag and no cgo, so it compiles everywhere; the
// cuda package (build tag cuda) loads the modules with cu.LoadData.
//
// # One PTX per source, for compute_80
//
// Each source is compiled once, `nvcc -ptx -O3 -arch=compute_80`, and the
// driver JIT-compiles the PTX for the GPU it runs on (sm_80, sm_90 and
// later; PTX is forward compatible) when the module is loaded, caching the
// result. One PTX rather than one per architecture: the v1 kernels use
// nothing beyond sm_80 (the sm_90-only features, wgmma and TMA, need
// sm_90a, which nvcc 11.8 cannot target), so a compute_90 PTX would be the
// same code, and one file per source keeps the committed output small.
// `make check-kernels` still runs ptxas for sm_90 on every file to catch
// register spills on the H100.
//
// No --use_fast_math: the kernels must match the CPU reference (IEEE
// division and square root, no flush to zero).
package kernels

import (
	"embed"
	"fmt"
)

//go:embed ptx/*.ptx
var ptx embed.FS

// The sources are embedded too: the host emulation of package cuda
// (tags cuda,cudaemu) compiles them with cgo, and the go command tracks
// embedded files but not a C++ file's includes from another directory, so
// importing this package is what makes a changed .cu rebuild the emulation.
//
//go:embed *.cu *.cuh
var sources embed.FS

// Module is one compiled source file.
type Module struct {
	Name    string   // base name of the source: "gemm" for kernels/gemm.cu
	Kernels []string // its entry points (extern "C" __global__ functions)
}

// Modules lists every source file and its entry points.
var Modules = []Module{
	{"adamw", []string{"adamw"}},
	{"gather", []string{"gather_rows_f16"}},
	{"gelu", []string{"gelu_forward", "gelu_backward"}},
	{"gemm", []string{"gemm_nt_bias", "gemm_nt_bias_gelu", "gemm_nt_bias_stats", "gemm_nn", "gemm_tn"}},
	{"gemm_bf16_ref", []string{"gemm_bf16_mma_ref", "gemm_bf16_wgmma_ref"}},
	{"layernorm", []string{"ln_apply", "ln_forward", "ln_backward"}},
	{"loss", []string{"unitnorm_mse", "loss_sum"}},
	{"reduce", []string{"colsum_partial", "colsum_final"}},
	{"tensorcore_check", []string{"tc_check_mma", "tc_check_ldmatrix", "tc_check_cp_async", "tc_check_wgmma",
		"tc_check_tma", "tc_check_cluster", "tc_check_geometry", "tc_check_divergent"}},
	{"topk", []string{"normalize_rows", "topk"}},
}

// Source returns the CUDA source of module name (kernels/NAME.cu).
func Source(name string) (string, error) {
	b, err := sources.ReadFile(name + ".cu")
	if err != nil {
		return "", fmt.Errorf("kernels: no source for module %q: %w", name, err)
	}
	return string(b), nil
}

// PTX returns the PTX text of module name.
func PTX(name string) (string, error) {
	b, err := ptx.ReadFile("ptx/" + name + ".ptx")
	if err != nil {
		return "", fmt.Errorf("kernels: no PTX for module %q (run make kernels): %w", name, err)
	}
	return string(b), nil
}
