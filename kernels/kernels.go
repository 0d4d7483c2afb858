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

//go:generate go run ./internal/gen -root ..

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
// Nothing reads them at run time.
//
//go:embed *.cu *.cuh
var _ embed.FS

// Module is one compiled source file. Modules (modules_gen.go) is generated
// from the sources by `go generate ./kernels`.
type Module struct {
	Name    string   // base name of the source: "gemm" for kernels/gemm.cu
	Kernels []string // its entry points (extern "C" __global__ functions)
}

// PTX returns the PTX text of module name.
func PTX(name string) (string, error) {
	b, err := ptx.ReadFile("ptx/" + name + ".ptx")
	if err != nil {
		return "", fmt.Errorf("kernels: no PTX for module %q (run make kernels): %w", name, err)
	}
	return string(b), nil
}
