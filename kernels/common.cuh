// common.cuh: device helpers shared by the kernel files (not a kernel family
// of its own, so it is a header and compiles to nothing by itself).
//
// - GELU, exact erf form, and its derivative, in float32. Written with
//   erfcf rather than 1 + erff so that the left tail (x << 0, where
//   Phi(x) = 1 + erf(x/sqrt2) / 2 cancels) keeps its relative accuracy.
// - half_bits_to_float: float16 bits to float32, exactly.
// - LN_EPS and NORM_EPS, the epsilons of LayerNorm and F.normalize, and
//   LayerNorm's per-element formulas.
// - Deterministic block reductions for blocks of exactly REDUCE_THREADS
//   threads: each thread holds a partial value, warps reduce with
//   __shfl_down_sync in a fixed pattern, warp 0 reduces the warp results.
//   The result is the same bits on every run for the same inputs (the
//   summation tree depends only on the thread layout).
//
// Versions: v1 (the correct-first GPU engine).
#pragma once

// half_bits_to_float: the float16 with bits h, exactly (every float16 is a
// float32), NaN payloads kept.
__device__ __forceinline__ float half_bits_to_float(unsigned short h) {
    const unsigned sign = (unsigned)(h & 0x8000u) << 16;
    const unsigned e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (m << 13));  // Inf, NaN
    if (e != 0) return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
    const float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact (0 for m = 0)
    return sign ? -v : v;
}

// The epsilons of the model's formulas: LayerNorm's (added to the
// variance) and F.normalize's (the clamp of a row norm). Several kernel
// files include both; the definitions here are the only ones.
#define LN_EPS 1e-5
#define NORM_EPS 1e-12

// ln_xhat and ln_affine are LayerNorm's per-element formulas, shared by
// its forward kernels (layernorm.cu) and by the bf16 engine's backward row
// pass (grad_rows.cu), which recomputes xhat and y from the LayerNorm's
// input and row statistics and must get the forward pass's bits:
// xhat = (x - mean) rstd in double, rounded once; y = xhat gamma + beta,
// rounded per operation (no fused multiply-add), like the CPU.
__device__ __forceinline__ float ln_xhat(float x, double mean, double rs) { return (float)(((double)x - mean) * rs); }
__device__ __forceinline__ float ln_affine(float h, float gamma, float beta) { return __fadd_rn(__fmul_rn(h, gamma), beta); }

#define REDUCE_THREADS 256
#define REDUCE_WARPS (REDUCE_THREADS / 32)

#define SQRT1_2_F 0.70710678118654752440f
#define INV_SQRT_2PI_F 0.39894228040143267794f

// gelu_f is x Phi(x) = x/2 erfc(-x/sqrt2).
__device__ __forceinline__ float gelu_f(float x) {
    return 0.5f * x * erfcf(-x * SQRT1_2_F);
}

// gelu_grad_f is d GELU/dx = Phi(x) + x phi(x).
__device__ __forceinline__ float gelu_grad_f(float x) {
    float cdf = 0.5f * erfcf(-x * SQRT1_2_F);
    float pdf = INV_SQRT_2PI_F * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

// block_sum_d returns the sum of v over the block's REDUCE_THREADS threads
// to every thread. scratch must hold REDUCE_WARPS doubles and may be reused
// right after the call returns (the function ends with a barrier).
__device__ __forceinline__ double block_sum_d(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = 0.0;
    // Every thread sums the warp results in the same order: no second
    // broadcast step is needed and the result is identical everywhere.
    for (int w = 0; w < REDUCE_WARPS; ++w) total += scratch[w];
    __syncthreads();
    return total;
}

// block_sum2_d reduces two values at once (one barrier pair for both).
// scratch must hold 2*REDUCE_WARPS doubles.
__device__ __forceinline__ void block_sum2_d(double& a, double& b, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        a += __shfl_down_sync(0xffffffffu, a, off);
        b += __shfl_down_sync(0xffffffffu, b, off);
    }
    if (lane == 0) {
        scratch[warp] = a;
        scratch[REDUCE_WARPS + warp] = b;
    }
    __syncthreads();
    double ta = 0.0, tb = 0.0;
    for (int w = 0; w < REDUCE_WARPS; ++w) {
        ta += scratch[w];
        tb += scratch[REDUCE_WARPS + w];
    }
    __syncthreads();
    a = ta;
    b = tb;
}
