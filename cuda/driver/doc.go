// Package driver is the GPU engine's device layer, below the launch stubs
// (cuda/launch) and above nothing but the NVIDIA driver or, under
// cudaemu, the host emulator (cuda/emu): the [Driver] a cuda.Device runs
// on. It owns a context, one stream, the loaded kernel
// modules and device memory, and knows nothing of the model.
//
// Two implementations, chosen by build tags:
//   - cu.go (tags cuda, not cudaemu): the NVIDIA driver through
//     gorgonia.org/cu. Importing cu runs its init, which calls cuInit and
//     exits the process without a driver or GPU, so only a binary built
//     with -tags cuda links it.
//   - emu.go (tags cuda,cudaemu): package cuda/emu, the kernels compiled
//     as C++ for the host, so everything above this layer runs and is
//     tested on a machine without a GPU.
//
// Beyond Driver, a driver may implement [Extended] (ext.go): launches with
// parameters of any size, 3-D geometry, clusters and dynamic shared memory
// above 48 KiB, tiled tensor maps, pinned host memory and CUDA graphs.
// gorgonia.org/cu has none of these, so the cu driver (cu_ext.go) reaches
// them through package libcuda, a small cgo room that loads the entry
// points from libcuda.so.1 with dlopen at the first Extended call and needs
// no CUDA 12 or 13 header. gorgonia keeps the context, memory, modules and
// the stream; the cu driver hands libcuda their raw handles (the stream's
// through cu.Stream.C, each kernel's read out of cu.Function after checking
// its layout). The CUDA rules the driver would only answer with a bare
// CUDA_ERROR_INVALID_VALUE are checked first, here, for both drivers:
// [TensorMapSpec.Validate] and [LaunchConfig.Validate] (validate.go).
// The emulator also refuses a call from another OS thread than Open's (the
// context is current on that thread alone: a caller stays on a locked
// thread) and work a stream capture cannot record, so that a test that
// would fail on a GPU for its use of the driver fails here.
//
// Tests: validate_test.go runs in the emulator build; libcuda's tests run
// without a GPU against a fake libcuda that records the bytes each call
// receives; cu_ext_test.go needs a GPU and compares the extended calls with
// gorgonia's plain launch (scripts/gpu-check.sh runs it). The facts the
// room relies on are in docs/cuda-driver-calls.md.
//
// Only the files with the build tag cuda have code; the default build
// compiles this documentation alone.
package driver
