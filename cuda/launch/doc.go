// Package launch is the GPU engine's launch layer, generated from the
// kernels' signatures: the kernel enum (one constant K<Name> per
// `extern "C" __global__` function of kernels/*.cu, in kernels.Modules
// order), their names, and one typed function per kernel whose Go
// parameters follow the kernel's, in order:
//
//	T* p                                 Ptr[T'] (T' the Go twin of T)
//	const T* p                           ConstPtr[T']
//	int, unsigned, long long             int32, uint32, int64
//	float, double                        float32, float64
//	const __grid_constant__ dc_tensor_map  driver.TensorMap (128 bytes: a CUtensorMap)
//
// (float -> float32, __half -> Float16, __nv_bfloat16 -> BFloat16,
// unsigned short -> uint16, ...). Each function packs every parameter with
// its exact size and hands the launch to a [Launcher] (cuda.Device's).
// launch.go is written by hand; launch_gen.go is written by
// kernels/internal/gen (`go generate ./kernels`), never by hand.
//
// Only the files with the build tag cuda have code; the default build
// compiles this documentation alone.
package launch
