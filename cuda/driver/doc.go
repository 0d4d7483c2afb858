// Package driver is the lowest layer of the GPU engine: the [Driver] a
// cuda.Device runs on. It owns a context, one stream, the loaded kernel
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
// Only the files with the build tag cuda have code; the default build
// compiles this documentation alone.
package driver
