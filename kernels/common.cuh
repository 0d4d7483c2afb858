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
//   summation tree depends only on the thread layout); column_sums and
//   chunk_sums, for the column reductions.
//
// Versions: v1 (the correct-first GPU engine); v2 rounds GELU' and the
// LayerNorm backward per operation (ln_grad_sums, ln_grad_dx); v3 adds
// column_sums and chunk_sums (grad_cols' second stage, shared with
// colsum_final and InfoNCE's column sums).
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

// LayerNorm's backward per element, shared by ln_backward (layernorm.cu)
// and grad_rows, whose bits must agree: with g = dy gamma (exact in
// double), ln_grad_sums accumulates s1 += g and s2 += g xhat, and
// ln_grad_dx is rstd (g - s1/d - xhat s2/d), each product, sum and
// difference rounded on its own (no fused multiply-add, which a compiler
// may choose differently in each kernel and the CPU does not do).
__device__ __forceinline__ void ln_grad_sums(double& s1, double& s2, double g, float h) {
    s1 = __dadd_rn(s1, g);
    s2 = __dadd_rn(s2, __dmul_rn(g, (double)h));
}
__device__ __forceinline__ float ln_grad_dx(double g, float h, double mean1, double mean2, double rs) {
    return (float)__dmul_rn(rs, __dsub_rn(__dsub_rn(g, mean1), __dmul_rn((double)h, mean2)));
}

#define REDUCE_THREADS 256
#define REDUCE_WARPS (REDUCE_THREADS / 32)

#define SQRT1_2_F 0.70710678118654752440f
#define INV_SQRT_2PI_F 0.39894228040143267794f

// gelu_f is x Phi(x) = x/2 erfc(-x/sqrt2).
__device__ __forceinline__ float gelu_f(float x) {
    return 0.5f * x * erfcf(-x * SQRT1_2_F);
}

// gelu_grad_f is d GELU/dx = Phi(x) + x phi(x), the sum and its product
// rounded on their own: a compiler free to fuse them into one fma may
// choose differently in each kernel that inlines this (gelu_backward,
// grad_rows, the wgmma epilogue), whose bits must agree.
__device__ __forceinline__ float gelu_grad_f(float x) {
    float cdf = 0.5f * erfcf(-x * SQRT1_2_F);
    float pdf = INV_SQRT_2PI_F * expf(-0.5f * x * x);
    return __fadd_rn(cdf, __fmul_rn(x, pdf));
}

// column_sums sums, for the 32 columns j0 .. j0+31 (j0 = 32 group) of d,
// the values load(c, j) over c in [0, count) into out[j], in double,
// rounded once to out's type. Warp w (of REDUCE_WARPS) sums c = w, w+8,
// w+16, ... in order (lane = column: each step a row segment the warp
// reads whole when load reads row c of a row-major array), then warp 0 adds
// the warps' sums in warp order: a fixed order, so the same bits on every
// run. part is the block's shared [REDUCE_WARPS][32] doubles. (One thread
// per column and all its rows in turn, the first way, left a few blocks
// each waiting on its loads one after another: thousands at a large
// batch; a block per column read its column with a stride of a row.)
template <typename O, typename Load>
__device__ __forceinline__ void column_sums(O* out, Load load, int count, int d, int group, double (*part)[32]) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j = group * 32 + lane;
    double s = 0.0;
    if (j < d)
        for (int c = warp; c < count; c += REDUCE_WARPS) s += load(c, j);
    part[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && j < d) {
        double total = 0.0;
        for (int w = 0; w < REDUCE_WARPS; ++w) total += part[w][lane];
        out[j] = (O)total;
    }
}

// chunk_sums is the second stage of a column reduction whose first stage
// left one partial sum per chunk of rows and column, partial[c*d + j]:
// out[j] = the sum over the chunks, by column_sums, for the 32 columns of
// group blockIdx.x.
template <typename T>
__device__ __forceinline__ void chunk_sums(float* out, const T* partial, int chunks, int d, double (*part)[32]) {
    column_sums(out, [=](int c, int j) { return (double)partial[(size_t)c * d + j]; }, chunks, d, blockIdx.x, part);
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
