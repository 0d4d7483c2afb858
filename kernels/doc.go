// Package kernels holds the CUDA kernels of the GPU engine, compiled: the
// sources are kernels/*.cu (one op family per file, each opening with a
// comment on what it computes, its shapes, launch configuration and
// version), `make kernels` compiles each twice, and both outputs are
// committed and embedded here. This package is only bytes and names: it
// has no build tag and no cgo, so it compiles everywhere; package
// cuda/driver (cu.go, build tag cuda) loads the modules with cu.LoadData.
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
