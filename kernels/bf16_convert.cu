// bf16_convert.cu: the memory-bound conversion of the bf16 engine, around
// the bf16 GEMMs of gemm_bf16.cu (bf16 is stored as its 16 bits, uint16_t;
// rounding is to nearest even, tensorcore.cuh's f32_to_bf16):
//
//   cast_f32_bf16       y[i] = bf16(x[i])                    n values
//
// Launch: a grid-stride loop, grid (min(ceil(n/256), 65535)), block 256.
//
// Versions: v1 (with add_f32 and two transposes, which the engine's first
// backward pass used before gemm_bf16.cu gained the nn and tn layouts);
// v2 (with gelu_f32_bf16, bf16(GELU(x)), until gemm_bf16.cu's f32+GELU
// epilogue wrote the activation itself); v3 (the cast alone).
#include "common.cuh"
#include "tensorcore.cuh"

extern "C" __global__ void __launch_bounds__(256) cast_f32_bf16(uint16_t* __restrict__ y, const float* __restrict__ x, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = f32_to_bf16(x[i]);
}
