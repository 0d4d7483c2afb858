// outnorm_mse.cu: the model's output LayerNorm, the unit-norm MSE loss of
// its output and, for training, the LayerNorm's backward pass, fused: the
// [n, d] activation is read once and dL/dx written once, instead of the
// LayerNorm's output, xhat, dL/dy and dL/dx crossing memory between
// ln_apply, unitnorm_mse, colsum and ln_backward.
//
//   outnorm_mse  grid (ceil(n / OUTNORM_MSE_ROWS)), block 256 (8 warps),
//                no dynamic shared memory. Inputs x (the LayerNorm's input,
//                the head's output) and t (targets) [n, d], gamma, beta [d].
//
// Phase 1, one warp per row (warp w of block c takes rows c*32 + w,
// c*32 + w + 8, ...); lane l owns the columns 4(l + 32k) .. 4(l + 32k) + 3,
// loaded as float4 when d is a multiple of 4 and x, t, dx are 16-byte
// aligned, else one by one. Every row sum is accumulated in double and
// reduced with an xor butterfly (all lanes end with the same bits).
//   LayerNorm, as ln_forward / nn.LayerNormForward: mean, then
//     rs = 1/sqrt(mean((x - mean)^2) + 1e-5) (two passes, double);
//     xhat = float((x - mean) rs), y = xhat*gamma + beta (float, each
//     operation rounded, like the CPU); rstd = float(rs).
//   Loss, as nn.UnitNormMSE's float32 rows (three dot products in double):
//     pp = y.y, tt = t.t, pt = y.t; pd = max(|y|, 1e-12), td = max(|t|, 1e-12);
//     rowloss[r] = max(0, pp/pd^2 + tt/td^2 - 2 pt/(pd td))  (NaN stays NaN)
//   and, when dx is not NULL (training), with scale = 2/(n d):
//     dot = scale (pp/pd^2 - pt/(pd td)) where |y| >= 1e-12, else 0;
//     dy = float(A y + B t),  A = (scale - dot)/pd^2,  B = -scale/(td pd)
//     (each product and the sum rounded separately, as vec32.AXPBY);
//   LayerNorm backward, as ln_backward: with g = dy*gamma (double),
//     dx = float(rstd (g - mean(g) - xhat mean(g xhat))).
// dy itself is never stored.
//
// Phase 2, when dx is not NULL: the column partials of the LayerNorm's
// parameter gradients over the block's rows, in the layout colsum_final
// (reduce.cu) reduces, with chunks = gridDim.x:
//     partial[c*d + j]          = sum_r dy[r, j]             (dbeta)
//     partial[(chunks+c)*d + j] = sum_r dy[r, j] xhat[r, j]  (dgamma)
// summed in row order in double by the thread of column j, which
// recomputes xhat and dy from x, t and the row's mean, rs, A and B that
// phase 1 left in shared memory (the block's rows are in L1/L2 by then;
// the recomputation uses the same non-contracted operations, so it is the
// same dy bits). No atomics: the result depends only on n and d.
//
// dx must not alias x or t (phase 2 reads them again after dx is written).
// rowloss is [n] doubles; the loss is sum_r rowloss[r] / (n d) (loss_sum,
// divided on the host). dx and partial are NULL together for the loss
// alone (phase 1 up to rowloss). The LayerNorm's output y is not stored:
// the MSE objective needs nothing else of it (projection and the
// contrastive objectives use ln_apply / ln_forward).
//
// Versions: v1 (this file).
#include "common.cuh"

#define OUTNORM_MSE_ROWS 32

// warp_sum_d is the sum of v over the warp, the same bits on every lane
// (each butterfly step adds the same two values on both lanes, and
// addition is commutative).
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

// load4 reads the four columns j0 .. j0+3 of row, 0 past the end.
__device__ __forceinline__ void load4(float v[4], const float* row, int j0, int d, bool vec) {
    if (vec) {
        const float4 q = *reinterpret_cast<const float4*>(row + j0);
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
        return;
    }
    for (int i = 0; i < 4; ++i) v[i] = j0 + i < d ? row[j0 + i] : 0.0f;
}

// One element's xhat, LayerNorm output y and, with the row's loss
// coefficients a and b, dL/dy; phase 1 and phase 2 both call these, with
// explicitly rounded (never contracted) operations, so they agree to the
// bit.
__device__ __forceinline__ float outnorm_xhat(float x, double mean, double rs) {
    return (float)(((double)x - mean) * rs);
}
__device__ __forceinline__ float outnorm_y(float h, float gamma, float beta) {
    return __fadd_rn(__fmul_rn(h, gamma), beta);
}
__device__ __forceinline__ float outnorm_dy(float y, float t, double a, double b) {
    return (float)__dadd_rn(__dmul_rn(a, (double)y), __dmul_rn(b, (double)t));
}

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
outnorm_mse(float* dx, double* rowloss, double* partial, const float* x, const float* t,
            const float* __restrict__ gamma, const float* __restrict__ beta, int n, int d) {
    // The row scalars phase 2 needs: mean, rs, A, B.
    __shared__ double rowsc[OUTNORM_MSE_ROWS][4];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r0 = blockIdx.x * OUTNORM_MSE_ROWS;
    const int r1 = min(n, r0 + OUTNORM_MSE_ROWS);
    const bool grad = dx != nullptr;
    const bool vec = (d & 3) == 0 &&
                     ((reinterpret_cast<size_t>(x) | reinterpret_cast<size_t>(t) | reinterpret_cast<size_t>(dx)) & 15) == 0;
    const double scale = 2.0 / ((double)n * (double)d);
    for (int r = r0 + warp; r < r1; r += REDUCE_WARPS) {
        const float* xr = x + (size_t)r * d;
        const float* tr = t + (size_t)r * d;
        float xv[4], tv[4];
        double s = 0.0;
        for (int j0 = 4 * lane; j0 < d; j0 += 128) {
            load4(xv, xr, j0, d, vec);
            for (int i = 0; i < 4; ++i) s += (double)xv[i];  // 0 past the end
        }
        const double mean = warp_sum_d(s) / (double)d;
        double q = 0.0;
        for (int j0 = 4 * lane; j0 < d; j0 += 128) {
            load4(xv, xr, j0, d, vec);
            for (int i = 0; i < 4; ++i) {
                if (j0 + i < d) {
                    const double dv = (double)xv[i] - mean;
                    q += dv * dv;
                }
            }
        }
        const double rs = 1.0 / sqrt(warp_sum_d(q) / (double)d + LN_EPS);
        double pp = 0.0, tt = 0.0, pt = 0.0;
        for (int j0 = 4 * lane; j0 < d; j0 += 128) {
            load4(xv, xr, j0, d, vec);
            load4(tv, tr, j0, d, vec);
            for (int i = 0; i < 4; ++i) {
                if (j0 + i < d) {
                    const double y = (double)outnorm_y(outnorm_xhat(xv[i], mean, rs), gamma[j0 + i], beta[j0 + i]);
                    const double tj = (double)tv[i];
                    pp += y * y;
                    tt += tj * tj;
                    pt += y * tj;
                }
            }
        }
        pp = warp_sum_d(pp);
        tt = warp_sum_d(tt);
        pt = warp_sum_d(pt);
        const double pn = sqrt(pp), tn = sqrt(tt);
        const double pd = fmax(pn, NORM_EPS), td = fmax(tn, NORM_EPS);
        const double cross = pt / (pd * td);
        // The exact value is not negative; rounding can make it so when y
        // and t are parallel. Not fmax: a NaN row loss must stay NaN (the
        // engine's non-finite check reads the sum).
        const double l = pp / (pd * pd) + tt / (td * td) - 2.0 * cross;
        if (lane == 0) rowloss[r] = l < 0.0 ? 0.0 : l;
        if (!grad) continue;  // uniform over the block
        const double dot = pn >= NORM_EPS ? scale * (pp / (pd * pd) - cross) : 0.0;
        const double a = (scale - dot) / (pd * pd), b = -scale / (td * pd);
        double s1 = 0.0, s2 = 0.0;
        for (int j0 = 4 * lane; j0 < d; j0 += 128) {
            load4(xv, xr, j0, d, vec);
            load4(tv, tr, j0, d, vec);
            for (int i = 0; i < 4; ++i) {
                if (j0 + i < d) {
                    const float h = outnorm_xhat(xv[i], mean, rs);
                    const float dy = outnorm_dy(outnorm_y(h, gamma[j0 + i], beta[j0 + i]), tv[i], a, b);
                    const double g = (double)dy * (double)gamma[j0 + i];
                    s1 += g;
                    s2 += g * (double)h;
                }
            }
        }
        s1 = warp_sum_d(s1) / (double)d;
        s2 = warp_sum_d(s2) / (double)d;
        const double rstd = (double)(float)rs;
        float* dxr = dx + (size_t)r * d;
        for (int j0 = 4 * lane; j0 < d; j0 += 128) {
            load4(xv, xr, j0, d, vec);
            load4(tv, tr, j0, d, vec);
            float out[4];
            for (int i = 0; i < 4; ++i) {
                out[i] = 0.0f;
                if (j0 + i < d) {
                    const float h = outnorm_xhat(xv[i], mean, rs);
                    const float dy = outnorm_dy(outnorm_y(h, gamma[j0 + i], beta[j0 + i]), tv[i], a, b);
                    const double g = (double)dy * (double)gamma[j0 + i];
                    out[i] = (float)(rstd * (g - s1 - (double)h * s2));
                }
            }
            if (vec) {
                *reinterpret_cast<float4*>(dxr + j0) = make_float4(out[0], out[1], out[2], out[3]);
            } else {
                for (int i = 0; i < 4 && j0 + i < d; ++i) dxr[j0 + i] = out[i];
            }
        }
        if (lane == 0) {
            double* sc = rowsc[r - r0];
            sc[0] = mean;
            sc[1] = rs;
            sc[2] = a;
            sc[3] = b;
        }
    }
    if (!grad) return;  // uniform over the block
    __syncthreads();
    const int chunks = gridDim.x, c = blockIdx.x;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const float gj = gamma[j], bj = beta[j];
        double sb = 0.0, sg = 0.0;
        for (int r = r0; r < r1; ++r) {
            const double* sc = rowsc[r - r0];
            const float h = outnorm_xhat(x[(size_t)r * d + j], sc[0], sc[1]);
            const double dy = (double)outnorm_dy(outnorm_y(h, gj, bj), t[(size_t)r * d + j], sc[2], sc[3]);
            sb += dy;
            sg += dy * (double)h;
        }
        partial[(size_t)c * d + j] = sb;
        partial[(size_t)(chunks + c) * d + j] = sg;
    }
}
