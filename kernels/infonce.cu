// infonce.cu: CLIP's symmetric InfoNCE loss between predictions p and targets
// t [n, d] (one row per pair of the batch), forward and backward, as
// nn.InfoNCE. The cosine matrix cos = p^ t^T [n, n] and dL/dp^ = dcos t^ are
// the GEMMs of gemm.cu (float32, fp32 accumulation); these kernels do the
// rest, with every sum and exp in double. The logits are s cos with
// s = min(exp(logit_scale), 100) <= 100 and |cos| <= 1 (rows divided by
// max(|row|, 1e-12) have norm <= 1), so exp(s cos) lies in [e^-100, e^100],
// well inside a double: the softmax sums need no max shift, and the
// softmaxes are exp(s cos) times the sums' reciprocals (one exp per logit).
//
//   unit_rows     grid (n), block 256: norms[r] = |a_r| (double);
//                 unit[r, j] = a[r, j] / max(norms[r], 1e-12) (float).
//   infonce_sums  grid (2n), block 256: block b < n writes
//                 sums[b] = sum_j exp(s cos[b, j]) (row b: prediction ->
//                 target); block n + b writes sums[n + b] = sum_i
//                 exp(s cos[i, b]) (column b: target -> prediction).
//   infonce_grad  grid (n), block 256: row i of G = (softmax_rows +
//                 softmax_cols - 2I) / 2n with softmax = exp(s cos) / sum,
//                 dcos[i, j] = s G[i, j] (float), rowds[i] = sum_j G[i, j]
//                 cos[i, j] (so dL/ds = sum_i rowds[i]) and rowloss[i] =
//                 log sums[i] + log sums[n + i] - 2 s cos[i, i] (so L =
//                 sum_i rowloss[i] / 2n). dcos must not alias cos.
//   unit_rows_backward
//                 grid (n), block 256: from g = dL/du for u = a/max(|a|, eps):
//                 dot = sum_j u g (double); dL/da = (g - u dot) / |a| where
//                 |a| >= 1e-12, else g / 1e-12 (torch's clamp_min backward);
//                 grad = weight dL/da, or grad += weight dL/da when
//                 accumulate is not 0 (the InfoNCE term of MSE + w InfoNCE).
//
// Versions: v1 (fp32 GEMMs, double softmax statistics; batch n limited by
// the [n, n] float32 cos and dcos matrices in device memory).
#include "common.cuh"

#define NORM_EPS 1e-12

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
unit_rows(float* unit, double* norms, const float* a, int n, int d) {
    __shared__ double scratch[REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    const size_t base = (size_t)r * d;
    double ss = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double v = (double)a[base + j];
        ss += v * v;
    }
    const double nrm = sqrt(block_sum_d(ss, scratch));
    const double den = fmax(nrm, NORM_EPS);
    for (int j = threadIdx.x; j < d; j += blockDim.x) unit[base + j] = (float)((double)a[base + j] / den);
    if (threadIdx.x == 0) norms[r] = nrm;
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
infonce_sums(double* sums, const float* cos, double scale, int n) {
    __shared__ double scratch[REDUCE_WARPS];
    const int b = blockIdx.x;
    if (b >= 2 * n) return;  // uniform over the block
    // A row (b < n) is contiguous; a column (b >= n) is strided by n.
    const size_t first = b < n ? (size_t)b * n : (size_t)(b - n);
    const size_t stride = b < n ? 1 : (size_t)n;
    double s = 0.0;
    for (int k = threadIdx.x; k < n; k += blockDim.x) s += exp(scale * (double)cos[first + (size_t)k * stride]);
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) sums[b] = s;
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
infonce_grad(float* dcos, double* rowloss, double* rowds, const float* cos, const double* sums, double scale, int n) {
    __shared__ double scratch[REDUCE_WARPS];
    const int i = blockIdx.x;
    if (i >= n) return;  // uniform over the block
    const size_t base = (size_t)i * n;
    const double inv2n = 1.0 / (2.0 * (double)n);
    const double rinv = 1.0 / sums[i];
    double ds = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const double c = (double)cos[base + j];
        double g = exp(scale * c) * (rinv + 1.0 / sums[n + j]) * inv2n;
        if (j == i) g -= 2.0 * inv2n;
        ds += g * c;
        dcos[base + j] = (float)(scale * g);
    }
    ds = block_sum_d(ds, scratch);
    if (threadIdx.x == 0) {
        rowds[i] = ds;
        rowloss[i] = log(sums[i]) + log(sums[n + i]) - 2.0 * scale * (double)cos[base + i];
    }
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
