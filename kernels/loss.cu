// loss.cu: the unit-norm MSE loss, F.mse_loss(F.normalize(p), F.normalize(t)),
// forward and backward fused, as nn.UnitNormMSE.
//
//   unitnorm_mse  grid (n), block 256: one block per row of p, t [n, d].
//                 Norms |p|, |t| clamped below at 1e-12 (pd, td);
//                 p^ = p/pd, e = p^ - t/td;
//                 rowloss[r] = sum_j e^2                    (double)
//                 with scale = 2/(n d) and dot = sum_j p^ scale e:
//                 grad[r, j] = (scale e - p^ dot) / |p|     if |p| >= 1e-12
//                            = scale e / 1e-12              otherwise
//                 (torch's clamp_min backward passes the gradient at |p| >= eps).
//                 grad may be NULL (loss only). Everything is in double, like
//                 the CPU; only the summation order differs.
//   loss_sum      grid (1), block 256: out[0] = sum_r rowloss[r] in double,
//                 in a fixed order (thread-strided partial sums, then the
//                 fixed reduction tree). The loss is out[0]/(n d), divided
//                 on the host.
//
// Versions: v1 (this file).
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
unitnorm_mse(float* grad, double* rowloss, const float* p, const float* t, int n, int d) {
    __shared__ double scratch[2 * REDUCE_WARPS];
    const int r = blockIdx.x;
    if (r >= n) return;  // uniform over the block
    const size_t base = (size_t)r * d;
    double pp = 0.0, tt = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double pv = (double)p[base + j], tv = (double)t[base + j];
        pp += pv * pv;
        tt += tv * tv;
    }
    block_sum2_d(pp, tt, scratch);
    const double pn = sqrt(pp), tn = sqrt(tt);
    const double pd = fmax(pn, NORM_EPS), td = fmax(tn, NORM_EPS);
    const double scale = 2.0 / ((double)n * (double)d);
    double l = 0.0, dot = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double ph = (double)p[base + j] / pd;
        const double e = ph - (double)t[base + j] / td;
        l += e * e;
        dot += ph * scale * e;
    }
    block_sum2_d(l, dot, scratch);
    if (threadIdx.x == 0) rowloss[r] = l;
    if (grad == nullptr) return;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double ph = (double)p[base + j] / pd;
        const double g = scale * (ph - (double)t[base + j] / td);
        grad[base + j] = (float)(pn >= NORM_EPS ? (g - ph * dot) / pn : g / NORM_EPS);
    }
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
loss_sum(double* out, const double* rowloss, int n) {
    __shared__ double scratch[REDUCE_WARPS];
    double s = 0.0;
    for (int r = threadIdx.x; r < n; r += blockDim.x) s += rowloss[r];
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) out[0] = s;
}
