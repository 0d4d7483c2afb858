// bf16_convert.cu: the memory-bound conversions of the bf16 engine, around
// the bf16 GEMMs of gemm_bf16.cu (bf16 is stored as its 16 bits, uint16_t;
// rounding is to nearest even, tensorcore.cuh's f32_to_bf16):
//
//   cast_f32_bf16       y[i] = bf16(x[i])                    n values
//   gelu_f32_bf16       y[i] = bf16(GELU(x[i]))              n values, GELU in f32 (common.cuh)
//   add_f32             y[i] += x[i]                         n values, f32
//   transpose_bf16      dst[c][r] = src[r][c]                src bf16 [rows, cols]
//   transpose_f32_bf16  dst[c][r] = bf16(src[r][c])          src f32  [rows, cols]
//
// The transposes write dst [cols, ld] with ld >= rows (a multiple of 8, so
// that each dst row is 16-byte aligned as the GEMM's loads need) and set
// the padding columns r = rows..ld-1 to zero: a GEMM over K = ld then adds
// nothing for them. They exist because the backward layouts (dX = dY W,
// dW = dY^T X) are not gemm_bf16's NT form; with them the engine's v1
// backward is a transpose plus an NT GEMM. Each is one read and one write
// of the matrix (plus the zero padding), through a 32x32 tile in shared
// memory (33 columns: no bank conflicts on the transposed read) so that
// both the reads and the writes are coalesced.
//
// Launch: the elementwise kernels a grid-stride loop, grid
// (min(ceil(n/256), 65535)), block 256; the transposes grid
// (ceil(cols/32), ceil(ld/32)), block 256 (32 x 8, each thread 4 rows of
// the tile).
//
// Versions: v1 (this file).
#include "common.cuh"
#include "tensorcore.cuh"

extern "C" __global__ void __launch_bounds__(256) cast_f32_bf16(uint16_t* __restrict__ y, const float* __restrict__ x, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void __launch_bounds__(256) gelu_f32_bf16(uint16_t* __restrict__ y, const float* __restrict__ x, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = f32_to_bf16(gelu_f(x[i]));
}

extern "C" __global__ void __launch_bounds__(256) add_f32(float* __restrict__ y, const float* __restrict__ x, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__device__ __forceinline__ uint16_t to_bf16(uint16_t v) { return v; }
__device__ __forceinline__ uint16_t to_bf16(float v) { return f32_to_bf16(v); }

// transpose_tile moves the 32x32 tile at (row blockIdx.y*32, column
// blockIdx.x*32) of src [rows, cols] to dst [cols, ld], zero past rows.
template <typename T>
__device__ __forceinline__ void transpose_tile(uint16_t* __restrict__ dst, const T* __restrict__ src, int rows, int cols, int ld) {
    __shared__ uint16_t tile[32][33];
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    const int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
#pragma unroll
    for (int i = 0; i < 32; i += 8) {
        const int r = r0 + ty + i, c = c0 + tx;
        tile[ty + i][tx] = r < rows && c < cols ? to_bf16(src[(size_t)r * cols + c]) : (uint16_t)0;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 32; i += 8) {
        const int c = c0 + ty + i, r = r0 + tx;
        if (c < cols && r < ld) dst[(size_t)c * ld + r] = tile[tx][ty + i];
    }
}

extern "C" __global__ void __launch_bounds__(256)
    transpose_bf16(uint16_t* __restrict__ dst, const uint16_t* __restrict__ src, int rows, int cols, int ld) {
    transpose_tile(dst, src, rows, cols, ld);
}

extern "C" __global__ void __launch_bounds__(256)
    transpose_f32_bf16(uint16_t* __restrict__ dst, const float* __restrict__ src, int rows, int cols, int ld) {
    transpose_tile(dst, src, rows, cols, ld);
}
