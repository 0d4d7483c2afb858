// layernorm.cu: LayerNorm (eps 1e-5, biased variance, affine) forward and
// the backward pass for the input gradient, one block of 256 threads per row
// of x[n, d].
//
// Forward, as nn.LayerNormForward: mean and rstd = 1/sqrt(var + eps) per
// row, xhat = (x - mean) rstd (computed in double and rounded once, like the
// CPU), y = xhat*gamma + beta (float, rounded per operation like the CPU).
// Both forward kernels keep xhat [n, d] and rstd [n] for the backward pass
// and finish in one of three modes:
//
//   mode 0 (LN_PLAIN)     y = LN(x)                     (hidden_norm, the output LN)
//   mode 1 (LN_GELU)      y = LN(x), y2 = GELU(y)       (LN1 of a block: GELU's backward needs y)
//   mode 2 (LN_RESIDUAL)  y = resid + LN(x)             (LN2 of a block: the next residual stream)
//
// yb, when not null, receives bf16 (round to nearest even) of what the
// next Linear reads, for the bf16 engine's GEMMs: GELU(y) in mode 1, y in
// modes 0 and 2. The f32 outputs it replaces may then be null: y2 in mode
// 1, y in mode 0 (mode 2's y is the residual stream, always written).
//
// y may alias a float x (not ln_apply_bf16's bf16 x: the element sizes
// differ), and in mode 2 y may alias resid (every element is read before
// it is written, by the same thread).
//
//   ln_apply    takes the row statistics as tiles from gemm_nt_bias_stats:
//               stats[row][tile] = (count, mean, M2) over one 64-wide column
//               tile; they are merged with Chan's parallel formula in
//               double (not a sum of squares), by a warp in a fixed order
//               (ln_apply_row).
//   ln_apply_bf16  the same of a bf16 x (the bf16 engine's GEMM output, as
//               autocast's Linear returns it; the statistics from
//               gemm_bf16_nt_bf16_stats, of the same rounded values). When
//               mean is not null (ln_apply_bf16 only), the row's mean and rstd
//               are rounded to float, stored (mean [n], rstd [n]) and
//               xhat computed from the rounded values: the backward pass
//               can then recompute xhat and y with the same bits from x
//               (grad_rows.cu) and xhat may be null (not stored).
//   ln_forward  computes the statistics itself (two passes over the row in
//               double), for a LayerNorm that does not follow a GEMM
//               (hidden_norm, after the last residual add).
//
// Backward, as nn.LayerNormBackward: with g = dy*gamma,
//   dx = rstd (g - mean(g) - xhat mean(g xhat)).
// The row reductions accumulate in double with the fixed reduction tree of
// common.cuh, so the result is deterministic. dx may alias dy (all reads of
// the reduction pass complete at the block barrier before any write).
// dgamma and dbeta are column reductions: reduce.cu.
//
// Launch: grid (n), block 256, no dynamic shared memory.
//
// Versions: v1 (the correct-first GPU engine); v2 adds yb, the bf16 copy
// the bf16 engine cast in a separate pass before; v3 adds ln_apply_bf16
// and mean; v4 merges ln_apply's statistics tiles in a warp (v3: one
// thread, in tile order, the pass's bottleneck); v5 computes ln_backward
// with common.cuh's ln_grad_sums and ln_grad_dx, grad_rows' formulas.
#include "common.cuh"
#include "tensorcore.cuh"

#define LN_PLAIN 0
#define LN_GELU 1
#define LN_RESIDUAL 2

// ln_in is element i of a LayerNorm input, stored in float or bf16.
__device__ __forceinline__ float ln_in(const float* x, size_t i) { return x[i]; }
__device__ __forceinline__ float ln_in(const uint16_t* x, size_t i) { return bf16_to_f32(x[i]); }

// ln_finish applies the LayerNorm of row r with the given mean and rstd
// (rounded to float and stored first when mean_out is not null).
template <typename X>
__device__ __forceinline__ void ln_finish(float* y, float* y2, uint16_t* yb, float* xhat, float* mean_out, float* rstd, const X* x,
                                          const float* __restrict__ gamma, const float* __restrict__ beta,
                                          const float* resid, int r, int d, int mode, double mean, double rs) {
    if (mean_out != nullptr) {
        mean = (double)(float)mean;
        rs = (double)(float)rs;
        if (threadIdx.x == 0) mean_out[r] = (float)mean;
    }
    const size_t base = (size_t)r * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const float h = ln_xhat(ln_in(x, base + j), mean, rs);
        if (xhat != nullptr) xhat[base + j] = h;
        float v = ln_affine(h, gamma[j], beta[j]);
        if (mode == LN_RESIDUAL) v = __fadd_rn(resid[base + j], v);
        if (y != nullptr) y[base + j] = v;
        if (mode == LN_GELU) {
            v = gelu_f(v);
            if (y2 != nullptr) y2[base + j] = v;
        }
        if (yb != nullptr) yb[base + j] = f32_to_bf16(v);
    }
    if (threadIdx.x == 0) rstd[r] = (float)rs;
}

// ln_chan_merge merges the (count, mean, M2) summary b into a, a's values
// first (Chan's parallel formula, in double); an empty side leaves the
// other as it is.
__device__ __forceinline__ void ln_chan_merge(double& cnt, double& mean, double& m2, double nb, double mb, double Mb) {
    const double tot = cnt + nb;
    if (nb == 0.0 || tot == 0.0) return;
    const double delta = mb - mean;
    mean += delta * (nb / tot);
    m2 += Mb + delta * delta * (cnt * nb / tot);
    cnt = tot;
}

template <typename X>
__device__ __forceinline__ void ln_apply_row(float* y, float* y2, uint16_t* yb, float* xhat, float* mean_out, float* rstd, const X* x,
                                             const float* stats, int tiles, const float* gamma, const float* beta,
                                             const float* resid, int n, int d, int mode) {
    __shared__ double sh[2];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    if (threadIdx.x < 32) {
        // Warp 0 merges the row's tiles: lane l those of index l mod 32, in
        // order (their loads all in flight at once), then the lanes'
        // summaries in a fixed tree, the lower lanes' first at every level,
        // so both lanes of a pair hold the same bits and the result does
        // not depend on timing. (One thread merging all of them in turn
        // waited on each tile's load and division: the pass ran at 0.3x of
        // the copy bandwidth, at d = 2048 slower than ln_forward, which
        // computes the statistics itself.)
        const int lane = threadIdx.x;
        const float* s = stats + (size_t)r * tiles * 3;
        double cnt = 0.0, mean = 0.0, m2 = 0.0;
        for (int t = lane; t < tiles; t += 32) ln_chan_merge(cnt, mean, m2, s[3 * t], s[3 * t + 1], s[3 * t + 2]);
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const double oc = __shfl_xor_sync(0xffffffffu, cnt, off), om = __shfl_xor_sync(0xffffffffu, mean, off),
                         oM = __shfl_xor_sync(0xffffffffu, m2, off);
            // Both lanes merge the lower lane's summary first: the operands
            // are chosen, not the path, so the warp does not diverge.
            const bool upper = (lane & off) != 0;
            const double nc = upper ? cnt : oc, nm = upper ? mean : om, nM = upper ? m2 : oM;
            if (upper) cnt = oc, mean = om, m2 = oM;
            ln_chan_merge(cnt, mean, m2, nc, nm, nM);
        }
        if (lane == 0) {
            sh[0] = mean;
            sh[1] = 1.0 / sqrt(m2 / (double)d + LN_EPS);
        }
    }
    __syncthreads();
    ln_finish(y, y2, yb, xhat, mean_out, rstd, x, gamma, beta, resid, r, d, mode, sh[0], sh[1]);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
ln_apply(float* y, float* y2, uint16_t* yb, float* xhat, float* mean, float* rstd, const float* x, const float* stats, int tiles,
         const float* gamma, const float* beta, const float* resid, int n, int d, int mode) {
    ln_apply_row(y, y2, yb, xhat, mean, rstd, x, stats, tiles, gamma, beta, resid, n, d, mode);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
ln_apply_bf16(float* y, float* y2, uint16_t* yb, float* xhat, float* mean, float* rstd, const uint16_t* x, const float* stats,
              int tiles, const float* gamma, const float* beta, const float* resid, int n, int d, int mode) {
    ln_apply_row(y, y2, yb, xhat, mean, rstd, x, stats, tiles, gamma, beta, resid, n, d, mode);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
ln_forward(float* y, float* y2, uint16_t* yb, float* xhat, float* rstd, const float* x, const float* gamma, const float* beta,
           const float* resid, int n, int d, int mode) {
    __shared__ double scratch[REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    const size_t base = (size_t)r * d;
    double s = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += (double)x[base + j];
    const double mean = block_sum_d(s, scratch) / (double)d;
    double q = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double dv = (double)x[base + j] - mean;
        q += dv * dv;
    }
    const double rs = 1.0 / sqrt(block_sum_d(q, scratch) / (double)d + LN_EPS);
    // block_sum_d ends with a barrier: every read of x is done before
    // ln_finish writes y (which may alias x).
    ln_finish(y, y2, yb, xhat, (float*)nullptr, rstd, x, gamma, beta, resid, r, d, mode, mean, rs);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
ln_backward(float* dx, const float* dy, const float* xhat, const float* rstd, const float* gamma, int n, int d) {
    __shared__ double scratch[2 * REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    const size_t base = (size_t)r * d;
    double s1 = 0.0, s2 = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        ln_grad_sums(s1, s2, (double)dy[base + j] * (double)gamma[j], xhat[base + j]);
    }
    block_sum2_d(s1, s2, scratch);
    s1 /= (double)d;
    s2 /= (double)d;
    const double rs = (double)rstd[r];
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        dx[base + j] = ln_grad_dx((double)dy[base + j] * (double)gamma[j], xhat[base + j], s1, s2, rs);
    }
}
