// Package kernels holds the CUDA kernels of the GPU engine, compiled: the
// sources are kernels/*.cu (one op family per file, each opening with a
// comment on what it computes, its shapes, launch configuration and
// version), `make kernels` compiles each twice, and both outputs are
// committed and embedded here. This package is only bytes and names: it
// has no build tag and no cgo, so it compiles everywhere; the cuda package
// (build tag cuda) loads the modules with cu.LoadData.
//
// # Two images per source
//
//   - kernels/ptx/NAME.ptx: PTX for compute_80 by nvcc 11.8 (PTX ISA 7.8).
//     The driver JIT-compiles it for the GPU it runs on (sm_80, sm_90 and
//     later; PTX is forward compatible) when the module is loaded, caching
//     the result. Any driver of the CUDA 11.8 generation or later takes it:
//     the portable path.
//   - kernels/sm90a/NAME.cubin: machine code for sm_90a by nvcc 13.0, the
//     only form that carries Hopper's architecture-specific instructions
//     (wgmma, setmaxnreg). It runs on compute capability 9.0 only (H100,
//     H200, GH200) and needs a driver of the CUDA 13.0 generation.
//
// Code that only sm_90a has is written inside
// #if defined(__CUDA_ARCH_FEAT_SM90_ALL), so that nvcc 11.8 compiles the
// rest for compute_80 (arch_probe.cu shows the convention). The engine
// loads the best image the GPU and driver take (Choose) and falls back to
// the PTX. `make check-kernels` rebuilds both images and compares bytes,
// and checks each kernel's registers, shared memory and spills
// (budgets.tsv) and its sm_90a SASS (sass.tsv): docs/GPU-BUILD.md.
//
// No --use_fast_math: the kernels must match the CPU reference (IEEE
// division and square root, no flush to zero).
package kernels

//go:generate go run ./internal/gen -root ..

import (
	"embed"
	"fmt"
	"strconv"
	"strings"
)

//go:embed ptx/*.ptx sm90a/*.cubin
var images embed.FS

// The sources are embedded too: the host emulation of package cuda
// (tags cuda,cudaemu) compiles them with cgo, and the go command tracks
// embedded files but not a C++ file's includes from another directory, so
// importing this package is what makes a changed .cu rebuild the emulation.
// Nothing reads them at run time.
//
//go:embed *.cu *.cuh
var _ embed.FS

// budgets is budgets.tsv: each kernel's registers and static shared memory
// per target, as ptxas reports them (make check-kernels holds it current).
//
//go:embed budgets.tsv
var budgets string

// StaticShared is the static shared memory of kernel in bytes (the
// largest over its targets in budgets.tsv), and whether the table has the
// kernel. A launch's dynamic shared memory comes on top of it: within the
// default 48 KiB limit without opting in, within the opt-in maximum when
// raised.
func StaticShared(kernel string) (int, bool) {
	most, found := 0, false
	for _, line := range strings.Split(budgets, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] != kernel {
			continue
		}
		if n, err := strconv.Atoi(f[3]); err == nil {
			most, found = max(most, n), true
		}
	}
	return most, found
}

// ParamSizes is the size in bytes of each parameter of kernel, as its
// signature declares them (modules_gen.go), and whether kernel exists.
func ParamSizes(kernel string) ([]int, bool) {
	sizes, ok := paramSizes[kernel]
	return sizes, ok
}

// CheckParams checks a launch's parameters against kernel's signature:
// their count, and the size of each (sizes[i]; nil checks the count
// alone, of parameters passed in 8-byte slots). A driver copies as many
// bytes as the kernel declares, so a short parameter would be padded with
// whatever lies beyond it.
func CheckParams(kernel string, count int, sizes func(i int) int) error {
	want, ok := paramSizes[kernel]
	if !ok {
		return fmt.Errorf("kernel %s: not in the kernels' signature table", kernel)
	}
	if count != len(want) {
		return fmt.Errorf("kernel %s: %d parameters given, it has %d", kernel, count, len(want))
	}
	for i := range count {
		if sizes != nil && sizes(i) != want[i] {
			return fmt.Errorf("kernel %s: parameter %d is %d bytes, given %d", kernel, i, want[i], sizes(i))
		}
	}
	return nil
}

// Module is one compiled source file. Modules (modules_gen.go) is generated
// from the sources by `go generate ./kernels`.
type Module struct {
	Name    string   // base name of the source: "gemm" for kernels/gemm.cu
	Kernels []string // its entry points (extern "C" __global__ functions)
}

// PTX returns the PTX text of module name.
func PTX(name string) (string, error) {
	b, err := images.ReadFile("ptx/" + name + ".ptx")
	if err != nil {
		return "", fmt.Errorf("kernels: no PTX for module %q (run make kernels): %w", name, err)
	}
	return string(b), nil
}

// CubinSM90a returns the sm_90a cubin of module name.
func CubinSM90a(name string) ([]byte, error) {
	b, err := images.ReadFile("sm90a/" + name + ".cubin")
	if err != nil {
		return nil, fmt.Errorf("kernels: no sm_90a cubin for module %q (run make kernels): %w", name, err)
	}
	return b, nil
}
