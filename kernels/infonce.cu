// infonce.cu: CLIP's symmetric InfoNCE loss between predictions p and targets
// t [n, d] (one row per pair of the batch), forward and backward, as
// nn.InfoNCE. The cosine matrix cos = p^ t^T [n, n] and dL/dp^ = dcos t^ are
// GEMMs: in the float32 engine those of gemm.cu (float32 operands, fp32
// accumulation), in the bf16 engine those of gemm_bf16.cu (bf16 operands,
// fp32 accumulation: the nt layout for cos, the nn one for dL/dp^). These
// kernels do the rest, with every sum and exp in double. The logits are
// s cos with s = min(exp(logit_scale), 100) <= 100 and |cos| <= 1 (rows
// divided by max(|row|, 1e-12) have norm <= 1; with bf16-rounded rows
// |cos| <= (1 + 2^-8)^2), so exp(s cos) lies within about [e^-101, e^101],
// well inside a double: the softmax sums need no max shift, and the
// softmaxes are exp(s cos) times the sums' reciprocals (one exp per logit).
//
//   unit_rows     grid (n), block 256: norms[r] = |a_r| (double);
//                 unit[r, j] = a[r, j] / max(norms[r], 1e-12) (float).
//   unit_rows_bf16
//                 grid (rows >= n), block 256: for r < n as unit_rows, and
//                 unit_bf16[r, j] = bf16(unit[r, j]) (rounded to nearest
//                 even from the float quotient: the operand autocast's
//                 matmul gets); unit may be null (the targets, which need
//                 only the bf16 copy). Rows n <= r < rows of unit_bf16 are
//                 set to zero: the padding that makes the nn GEMM's K (the
//                 batch) a multiple of 8.
//   infonce_sums  grid (ceil(n/32) + n), block 256: block c < ceil(n/32)
//                 writes sums[n + j] = sum_i exp(s cos[i, j]) for the 32
//                 columns j = 32c .. 32c+31 (target -> prediction), by
//                 common.cuh's column_sums: each warp reads row segments
//                 whole (v2 gave each column a block, which read it with a
//                 stride of a row: 4 of every 32 bytes it fetched); block
//                 ceil(n/32) + b writes sums[b] = sum_j exp(s cos[b, j])
//                 (row b: prediction -> target). A column block has 32
//                 times a row block's work, so the column blocks come
//                 first: the row blocks fill the machine around them
//                 instead of leaving them to run alone at the end.
//   infonce_grad  grid (n), block 256: row i of G = (softmax_rows +
//                 softmax_cols - 2I) / 2n with softmax = exp(s cos) / sum,
//                 dcos[i, j] = s G[i, j] (float), rowds[i] = sum_j G[i, j]
//                 cos[i, j] (so dL/ds = sum_i rowds[i]) and rowloss[i] =
//                 log sums[i] + log sums[n + i] - 2 s cos[i, i] (so L =
//                 sum_i rowloss[i] / 2n). dcos must not alias cos.
//   infonce_grad_bf16
//                 as infonce_grad, but dcos is bf16 [n, ldd] (ldd >= n, a
//                 multiple of 8: the nn GEMM's A operand), dcos[i, j] =
//                 bf16(float(s G[i, j])) for j < n and 0 for n <= j < ldd.
//   unit_rows_backward
//                 grid (n), block 256: from g = dL/du for u = a/max(|a|, eps):
//                 dot = sum_j u g (double); dL/da = (g - u dot) / |a| where
//                 |a| >= 1e-12, else g / 1e-12 (torch's clamp_min backward);
//                 grad = weight dL/da, or grad += weight dL/da when
//                 accumulate is not 0 (the InfoNCE term of MSE + w InfoNCE).
//
// Versions: v1 (fp32 GEMMs, double softmax statistics; batch n limited by
// the [n, n] float32 cos and dcos matrices in device memory); v2 (the bf16
// engine's operands: unit_rows_bf16 and infonce_grad_bf16); v3 (column sums
// by 32-column blocks, coalesced); v4 (the column blocks first).
#include "common.cuh"
#include "tensorcore.cuh"

// unit_row normalises row r of a [*, d] into unit (when not null) and, with
// BF16, its bf16 copy into unit_bf16, and stores its norm.
template <bool BF16>
__device__ __forceinline__ void unit_row(float* unit, uint16_t* unit_bf16, double* norms, const float* a, int r, int d,
                                         double* scratch) {
    const size_t base = (size_t)r * d;
    double ss = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double v = (double)a[base + j];
        ss += v * v;
    }
    const double nrm = sqrt(block_sum_d(ss, scratch));
    const double den = fmax(nrm, NORM_EPS);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const float u = (float)((double)a[base + j] / den);
        if (!BF16 || unit) unit[base + j] = u;
        if (BF16) unit_bf16[base + j] = f32_to_bf16(u);
    }
    if (threadIdx.x == 0) norms[r] = nrm;
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
unit_rows(float* unit, double* norms, const float* a, int n, int d) {
    __shared__ double scratch[REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    unit_row<false>(unit, nullptr, norms, a, r, d, scratch);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
unit_rows_bf16(float* unit, uint16_t* unit_bf16, double* norms, const float* a, int n, int rows, int d) {
    __shared__ double scratch[REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= rows) return;  // uniform over the block
    if (r >= n) {
        for (int j = threadIdx.x; j < d; j += blockDim.x) unit_bf16[(size_t)r * d + j] = 0;
        return;
    }
    unit_row<true>(unit, unit_bf16, norms, a, r, d, scratch);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
infonce_sums(double* sums, const float* cos, double scale, int n) {
    __shared__ double scratch[REDUCE_WARPS];
    __shared__ double part[REDUCE_WARPS][32];
    const int col_blocks = (n + 31) / 32;
    if (blockIdx.x < col_blocks) {  // 32 columns, read a row segment at a time
        column_sums(sums + n, [=](int i, int j) { return exp(scale * (double)cos[(size_t)i * n + j]); }, n, n,
                    blockIdx.x, part);
        return;
    }
    const int b = blockIdx.x - col_blocks;  // row b, contiguous
    const size_t first = (size_t)b * n;
    double s = 0.0;
    for (int k = threadIdx.x; k < n; k += blockDim.x) s += exp(scale * (double)cos[first + k]);
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) sums[b] = s;
}

// store_dcos stores an element of dL/dcos as float or as bf16.
__device__ __forceinline__ void store_dcos(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_dcos(uint16_t* p, float v) { *p = f32_to_bf16(v); }

// infonce_grad_row computes row i of dcos (row stride ldd, columns n ..
// ldd-1 zeroed) and the row's loss and dL/ds terms; the element type of
// dcos is float or bf16 (uint16_t).
template <typename T>
__device__ __forceinline__ void infonce_grad_row(T* dcos, int ldd, double* rowloss, double* rowds, const float* cos,
                                                 const double* sums, double scale, int n, int i, double* scratch) {
    const size_t base = (size_t)i * n;
    const double inv2n = 1.0 / (2.0 * (double)n);
    const double rinv = 1.0 / sums[i];
    double ds = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const double c = (double)cos[base + j];
        double g = exp(scale * c) * (rinv + 1.0 / sums[n + j]) * inv2n;
        if (j == i) g -= 2.0 * inv2n;
        ds += g * c;
        store_dcos(dcos + (size_t)i * ldd + j, (float)(scale * g));
    }
    for (int j = n + threadIdx.x; j < ldd; j += blockDim.x) dcos[(size_t)i * ldd + j] = 0;
    ds = block_sum_d(ds, scratch);
    if (threadIdx.x == 0) {
        rowds[i] = ds;
        rowloss[i] = log(sums[i]) + log(sums[n + i]) - 2.0 * scale * (double)cos[base + i];
    }
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
infonce_grad(float* dcos, double* rowloss, double* rowds, const float* cos, const double* sums, double scale, int n) {
    __shared__ double scratch[REDUCE_WARPS];
    const int i = blockIdx.x;
    if (i >= n) return;  // uniform over the block
    infonce_grad_row(dcos, n, rowloss, rowds, cos, sums, scale, n, i, scratch);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
infonce_grad_bf16(uint16_t* dcos, int ldd, double* rowloss, double* rowds, const float* cos, const double* sums,
                  double scale, int n) {
    __shared__ double scratch[REDUCE_WARPS];
    const int i = blockIdx.x;
    if (i >= n) return;  // uniform over the block
    infonce_grad_row(dcos, ldd, rowloss, rowds, cos, sums, scale, n, i, scratch);
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
unit_rows_backward(float* grad, const float* unit, const float* dunit, const double* norms, float weight, int accumulate, int n, int d) {
    __shared__ double scratch[REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    const size_t base = (size_t)r * d;
    double dot = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dot += (double)unit[base + j] * (double)dunit[base + j];
    dot = block_sum_d(dot, scratch);
    const double nrm = norms[r];
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double g = (double)dunit[base + j];
        const double da = nrm >= NORM_EPS ? (g - (double)unit[base + j] * dot) / nrm : g / NORM_EPS;
        const float v = (float)((double)weight * da);
        grad[base + j] = accumulate ? grad[base + j] + v : v;
    }
}
