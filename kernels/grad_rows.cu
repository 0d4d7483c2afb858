// grad_rows.cu: the bf16 engine's backward row pass. Each Linear's backward
// GEMMs read its output gradient dY in bf16 and its bias gradient is dY's
// column sums; what produces dY is a GELU's backward, a LayerNorm's
// backward, both, or neither. grad_rows does all of it in one pass over the
// rows, so each [rows x d] gradient crosses HBM once on the way in and
// once (bf16, half the bytes) on the way out:
//
//   xhat   = the saved xhat              (xhat given)
//          = (xin - mean) rstd           (xin given: recomputed from the bf16
//                                          LayerNorm input and the row's
//                                          float mean and rstd, as
//                                          ln_apply_bf16 computed it)
//   g      = dy * GELU'(pre)             (pre given: the gradient of a GELU's
//                                          output, pre its float32 input)
//          = dy * GELU'(xhat gamma + beta) (beta given: the GELU follows this
//                                          LayerNorm, whose output y is
//                                          recomputed with the forward's bits)
//          = dy                          (neither)
//   dx     = rstd (g gamma - mean(g gamma) - xhat mean(g gamma xhat))
//                                        (xhat or xin given: a LayerNorm's
//                                          backward; the row means in double,
//                                          as ln_backward)
//          = g                           (no LayerNorm)
//   dx (f32, when dx is not null), dxb = bf16(dx) (when dxb is not null)
//   column partials of the chunk's rows, float, summed in row order:
//     partial[(0*chunks + c)*d + j] = sum dx[r, j]          (a Linear's db)
//     partial[(1*chunks + c)*d + j] = sum g[r, j]           (LN's dbeta)
//     partial[(2*chunks + c)*d + j] = sum g[r, j] xhat[r, j] (LN's dgamma)
//   (arrays 1 and 2 only with a LayerNorm)
//
// grad_cols then sums each array's chunks in double, in a fixed order (8
// interleaved runs, then their sums in turn), and rounds once: out_a[j] =
// sum_c partial[(a*chunks + c)*d + j], for each a whose out_a is not null.
//
// The arithmetic of g and dx is gelu.cu's gelu_backward followed by
// layernorm.cu's ln_backward, operation for operation (the same block
// reduction tree over the same thread layout), so dx has their bits given
// the same xhat and GELU input. The
// column sums are float within a chunk of `rows` rows (at most `rows`
// additions: relative error within rows * 2^-24 of the absolute sum) and
// double across chunks; the float32 engine keeps reduce.cu's all-double
// sums for its parity with the CPU.
//
// dx may alias dy (hidden_norm's backward runs in place): every element is
// read and written by the same thread, and with xhat the row's reads of
// the reduction end at the block barrier before any write. dx, dxb and pre
// must not overlap each other otherwise.
//
// With a LayerNorm the row is walked twice (its sums first); the first
// walk keeps each element's g and xhat in shared memory for the second,
// which so reads neither dy nor the input again nor evaluates GELU' twice.
//
// Launch: grad_rows grid (chunks = ceil(n/rows)), block 256 (REDUCE_THREADS),
// dynamic shared memory 4*d*(LayerNorm ? 5 : 1) bytes: the chunk's column
// sums (3 arrays with a LayerNorm, 1 without) and the row's g and xhat,
// thread t owning columns t, t+256, ... in every row and array, so no
// barrier guards them. grad_cols grid (ceil(d/32), 3), block 256.
//
// Versions: v2 (v1's grad_cols gave each thread a whole column: see
// grad_cols); v3 rounds per operation where a fused multiply-add could
// make its bits differ from ln_backward's (common.cuh's ln_grad_*).
#include "common.cuh"
#include "tensorcore.cuh"

// grad_rows_xhat is xhat at element i of row r: the saved xhat, or
// recomputed from the bf16 LayerNorm input xin and the row's stored mean
// and rstd with the forward pass's formula (common.cuh's ln_xhat), so with
// its bits.
__device__ __forceinline__ float grad_rows_xhat(const float* xhat, const uint16_t* xin, double mean, double rs, size_t i) {
    return xhat != nullptr ? xhat[i] : ln_xhat(bf16_to_f32(xin[i]), mean, rs);
}

// grad_rows_g is the gradient entering the LayerNorm (or leaving the pass,
// without one) at element i (column j): dy times GELU' of pre when pre is
// given, of the LayerNorm's output y = h gamma + beta when beta is given,
// else dy (gelu_backward's product, on the forward pass's GELU input).
__device__ __forceinline__ float grad_rows_g(const float* dy, const float* pre, const float* gamma, const float* beta, float h,
                                             size_t i, int j) {
    if (pre != nullptr) return dy[i] * gelu_grad_f(pre[i]);
    if (beta != nullptr) return dy[i] * gelu_grad_f(ln_affine(h, gamma[j], beta[j]));
    return dy[i];
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
grad_rows(float* dx, uint16_t* dxb, float* partial, const float* dy, const float* pre, const float* xhat, const uint16_t* xin,
          const float* mean, const float* rstd, const float* __restrict__ gamma, const float* __restrict__ beta, int n, int d,
          int rows) {
    __shared__ double scratch[2 * REDUCE_WARPS];
    const bool ln = xhat != nullptr || xin != nullptr;
    const int arrays = ln ? 3 : 1;
    float* acc = (float*)dc_dynamic_smem();  // the column sums [arrays][d]
    float* gs = acc + 3 * d;                 // with a LayerNorm: the row's g [d]
    float* hs = gs + d;                      // and its xhat [d]
    const int c = blockIdx.x, chunks = gridDim.x;
    const int r0 = c * rows, r1 = min(n, r0 + rows);
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        for (int a = 0; a < arrays; ++a) acc[a * d + j] = 0.f;
    for (int r = r0; r < r1; ++r) {
        const size_t base = (size_t)r * d;
        if (!ln) {
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const float g = grad_rows_g(dy, pre, gamma, beta, 0.f, base + j, j);
                acc[j] += g;
                if (dx != nullptr) dx[base + j] = g;
                if (dxb != nullptr) dxb[base + j] = f32_to_bf16(g);
            }
            continue;
        }
        double s1 = 0.0, s2 = 0.0;
        {
            const double rs = (double)rstd[r], mu = xhat == nullptr ? (double)mean[r] : 0.0;
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const float h = grad_rows_xhat(xhat, xin, mu, rs, base + j);
                const float g = grad_rows_g(dy, pre, gamma, beta, h, base + j, j);
                hs[j] = h;
                gs[j] = g;
                ln_grad_sums(s1, s2, (double)g * (double)gamma[j], h);
            }
        }
        block_sum2_d(s1, s2, scratch);
        s1 /= (double)d;
        s2 /= (double)d;
        // rstd read again after the divisions (whose slow path is a call:
        // fewer values live across it).
        const double rs = (double)rstd[r];
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            const float h = hs[j], g = gs[j];
            const float v = ln_grad_dx((double)g * (double)gamma[j], h, s1, s2, rs);
            acc[j] += v;
            acc[d + j] += g;
            acc[2 * d + j] = __fadd_rn(acc[2 * d + j], __fmul_rn(g, h));
            if (dx != nullptr) dx[base + j] = v;
            if (dxb != nullptr) dxb[base + j] = f32_to_bf16(v);
        }
    }
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        for (int a = 0; a < arrays; ++a) partial[((size_t)a * chunks + c) * d + j] = acc[a * d + j];
}

// grad_cols: block (blockIdx.x, a) sums array a's chunks for 32 columns
// with common.cuh's chunk_sums (v1 gave a thread a column and all its
// chunks in turn, ceil(d/256) blocks: 8 for d = 2048, each thread waiting
// on 512 loads one after another).
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
grad_cols(float* out0, float* out1, float* out2, const float* partial, int chunks, int d) {
    __shared__ double part[REDUCE_WARPS][32];
    const int a = blockIdx.y;
    float* out = a == 0 ? out0 : a == 1 ? out1 : out2;
    if (out == nullptr) return;  // uniform over the block
    chunk_sums(out, partial + (size_t)a * chunks * d, chunks, d, part);
}
