// Package libcuda reaches the CUDA driver entry points that gorgonia.org/cu
// does not wrap: kernel attributes (dynamic shared memory above 48 KiB),
// cuLaunchKernelEx (parameters of any size, thread-block clusters),
// cuTensorMapEncodeTiled, page-locked host memory with asynchronous copies
// into it, and stream capture into CUDA graphs.
//
// It loads them at run time from libcuda.so.1 with dlopen and dlsym, so it
// needs no CUDA header: the few driver types it passes are declared here,
// with their sizes and field offsets asserted at compile time against the
// CUDA 13.0 driver API (cuda.h of the nvidia-cuda-runtime 13.0.96 wheel,
// also the layout of CUDA 12). It does not import gorgonia.org/cu, so its
// tests run on a machine without a GPU, against a fake libcuda that the
// tests build and that records what it receives.
//
// An entry point the loaded library lacks (a driver older than the call)
// makes only the calls that need it fail, with an error naming it.
//
// The functions here check what the C call needs to be well-formed (array
// lengths, non-null handles, values that fit the C types); the CUDA rules
// on tensor maps and launch geometry are checked one layer up, in package
// cuda/driver, for both of its drivers. The code has the build tag cuda;
// the default build compiles this documentation alone.
package libcuda
