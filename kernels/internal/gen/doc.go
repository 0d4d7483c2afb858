// Command gen writes the launch layer of the GPU engine from the kernel
// signatures: it reads every `extern "C" __global__` function of
// kernels/*.cu and writes
//
//   - kernels/modules_gen.go: the module list (source file -> entry points);
//   - cuda/launch/launch_gen.go: the kernel enum, the names and one typed
//     launch function per kernel whose Go parameters follow the signature;
//   - cuda/emu/NAME_gen.cpp, one per source, and cuda/emu/table_gen.cpp:
//     the emulator's dispatch table, with a compile-time check that each
//     kernel's C++ type is the signature the generator read;
//   - cuda/emu/sources_gen.go: the hash of each module's source
//     (internal/kernelhash), which the emulator's test compares with the
//     kernels on disk, and which makes Go rebuild the emulator when a
//     kernel changes (its build cache does not see the #included kernels).
//
// Run it with `go generate ./kernels` (or ./...). It is pure Go and knows
// a fixed set of parameter types (see parse.go); any other type is an
// error naming the file and line, so a new kind of parameter is taught to
// the generator instead of being packed wrongly.
package main
