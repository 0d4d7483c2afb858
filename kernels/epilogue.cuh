// epilogue.cuh: the epilogues of the GEMM kernels, apart from their main
// loops, so that one library serves every main loop (SIMT, mma.sync,
// wgmma). A main loop leaves each thread some accumulators of C[M, N] at
// coordinates its fragment layout defines; the functions here take those
// coordinates as parameters and never look at threadIdx or blockIdx, so
// they do not care which layout produced the values. Not a kernel family
// of its own: a header, it compiles to nothing by itself.
//
// Per output element (row gm, column gn, at = gm*N + gn, ok = gm < M and
// gn < N):
//
//   EPI_BETA        C = acc, or beta C + acc (beta != 0; C read only then)
//   EPI_BIAS        C = acc + bias[gn]
//   EPI_BIAS_GELU   C = acc + bias[gn] and C2 = GELU(C)
//   EPI_BIAS_STATS  C = acc + bias[gn] and the row statistics below
//
// Each sum and product is rounded on its own (__fadd_rn, __fmul_rn: no
// contraction into an fma), so every main loop that hands over the same
// accumulators stores the same bits.
//
// Row statistics (EPI_BIAS_STATS): for every row and every 64-wide column
// tile, the (count, mean, M2) of the stored values of the row in the tile,
// stats[row][tile][3], which layernorm.cu's ln_apply merges with Chan's
// parallel formula before it normalises the row. A thread first
// summarises its own values of a row (two passes: mean, then M2), then the
// ROW_LANES lanes that share the row's part of the tile merge theirs with a
// butterfly of Chan merges, and one of them stores. The lanes sharing a row
// must be ROW_LANES consecutive lanes starting at a multiple of ROW_LANES
// (16 in the SIMT kernel's layout, 4 in the mma.sync and wgmma accumulator
// layouts, where a quad of lanes holds a row's columns), and together they
// must cover the row's part of one statistics tile; a main loop whose tile
// spreads further over warps merges the per-warp results with chan_merge.
//
// Versions: v1, the epilogue of the v1 SIMT GEMMs, split out of gemm.cu
// without changing a result.
#pragma once

#include "common.cuh"

#define STATS_TILE 64  // columns per row-statistics tile (the Go side's statsTile)

enum Epilogue { EPI_BETA = 0, EPI_BIAS = 1, EPI_BIAS_GELU = 2, EPI_BIAS_STATS = 3 };

// EpilogueArgs are the epilogue's operands: C [M, N], C2 [M, N] (GELU
// output), stats [M, tiles, 3], bias [N] and beta, as the epilogue uses them.
struct EpilogueArgs {
    float* C;
    float* C2;
    float* stats;
    const float* bias;
    float beta;
    int M, N;
};

// epi_bias returns the bias of column gn, or 0 past the last column; a
// thread loads it once per column it owns, whatever the rows. (The bias
// pointer is a parameter of its own, not read from EpilogueArgs, so that
// its __restrict__ reaches the load: read-only, it may use the
// non-coherent cache.)
template <int EPI>
__device__ __forceinline__ float epi_bias(const float* __restrict__ bias, int gn, int N) {
    if (EPI == EPI_BETA) return 0.0f;
    return gn < N ? bias[gn] : 0.0f;
}

// epi_value returns the value the epilogue stores at element at (ok: inside
// C) for the accumulator acc and the column's bias bj.
template <int EPI>
__device__ __forceinline__ float epi_value(const EpilogueArgs& e, float acc, float bj, size_t at, bool ok) {
    if (EPI == EPI_BETA) {
        float v = acc;
        if (ok && e.beta != 0.0f) v = __fadd_rn(__fmul_rn(e.beta, e.C[at]), v);
        return v;
    }
    return __fadd_rn(acc, bj);
}

// epi_store stores v at element at (inside C) and what derives from it.
template <int EPI>
__device__ __forceinline__ void epi_store(const EpilogueArgs& e, size_t at, float v) {
    e.C[at] = v;
    if (EPI == EPI_BIAS_GELU) e.C2[at] = gelu_f(v);
}

// RowStats is the (count, mean, M2) of some values of one row.
struct RowStats {
    float cnt, mean, m2;
};

// chan_merge merges b into a (Chan et al.'s parallel update).
__device__ __forceinline__ void chan_merge(float& na, float& ma, float& Ma, float nb, float mb, float Mb) {
    // Branch-free: with n = 0 (both empty) fb is 0 and nothing changes.
    const float n = na + nb;
    const float fb = n > 0.0f ? nb / n : 0.0f;
    const float delta = mb - ma;
    ma = fmaf(delta, fb, ma);
    Ma = Ma + Mb + delta * delta * (na * fb);
    na = n;
}

// row_stats_local summarises a thread's NV values of one row, of which
// those with ok[j] are inside C: count and sum in order, then the mean,
// then M2 over the same values.
template <int NV>
__device__ __forceinline__ RowStats row_stats_local(const float (&vals)[NV], const bool (&ok)[NV]) {
    float cnt = 0.0f, sum = 0.0f;
#pragma unroll
    for (int j = 0; j < NV; ++j) {
        if (ok[j]) {
            cnt += 1.0f;
            sum += vals[j];
        }
    }
    RowStats s{cnt, cnt > 0.0f ? sum / cnt : 0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < NV; ++j) {
        if (ok[j]) {
            const float d = vals[j] - s.mean;
            s.m2 = fmaf(d, d, s.m2);
        }
    }
    return s;
}

// row_stats_reduce merges the summaries of the ROW_LANES lanes that share
// a row (see above) into every one of them. Every lane of the warp must
// call it, whether its row is inside C or not, so the shuffles are
// complete.
template <int ROW_LANES>
__device__ __forceinline__ void row_stats_reduce(RowStats& s) {
#pragma unroll
    for (int off = 1; off < ROW_LANES; off <<= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, s.cnt, off);
        const float om = __shfl_xor_sync(0xffffffffu, s.mean, off);
        const float oM = __shfl_xor_sync(0xffffffffu, s.m2, off);
        chan_merge(s.cnt, s.mean, s.m2, ob, om, oM);
    }
}

// row_stats_store writes the statistics of row gm in column tile `tile` of
// `tiles` (= ceil(N / STATS_TILE)).
__device__ __forceinline__ void row_stats_store(const EpilogueArgs& e, int gm, int tile, int tiles, const RowStats& s) {
    float* p = e.stats + ((size_t)gm * tiles + tile) * 3;
    p[0] = s.cnt;
    p[1] = s.mean;
    p[2] = s.m2;
}
