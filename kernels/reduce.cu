// reduce.cu: deterministic column reductions over the rows of a[n, d], for
// the bias gradients (db = sum_rows dY) and the LayerNorm parameter
// gradients (dbeta = sum_rows dy, dgamma = sum_rows dy*xhat). No atomics:
// two fixed-order stages.
//
//   colsum_partial  stage 1, grid (ceil(d/256), chunks), block 256: block
//                   (bx, c) sums rows [c*rows, min(n, (c+1)*rows)) of the
//                   256 columns bx*256.. in row order, in double:
//                     partial[c*d + j]          = sum a[r, j]
//                     partial[(chunks+c)*d + j] = sum a[r, j]*b[r, j] (when b != NULL)
//                   chunks = ceil(n / rows); the partial buffer holds
//                   2*chunks*d doubles (chunks*d when b is NULL).
//   colsum_final    stage 2, grid (ceil(d/32), out2 ? 2 : 1), block 256:
//                   block (bx, a) sums the chunks of 32 columns of out1
//                   (a = 0) or out2 (a = 1) with common.cuh's chunk_sums
//                   (double, in a fixed order, rounded once):
//                     out1[j] = sum_c partial[c*d + j]
//                     out2[j] = sum_c partial[(chunks+c)*d + j] (when out2 != NULL)
//
// Reads are coalesced (consecutive threads, consecutive columns). The
// result depends only on n, d and the rows per chunk, never on scheduling.
// The products are formed in double like the CPU (float64(dy)*float64(xhat)).
//
// Versions: v1 (this file); v2 sums colsum_final's chunks with 8 warps per
// 32 columns (v1: a thread per column took every chunk in turn, 2 blocks
// at d = 512 waiting on thousands of loads one after another).
#include "common.cuh"

#define COL_THREADS REDUCE_THREADS

extern "C" __global__ void __launch_bounds__(COL_THREADS)
colsum_partial(double* partial, const float* a, const float* b, int n, int d, int rows) {
    const int j = blockIdx.x * COL_THREADS + threadIdx.x;
    const int c = blockIdx.y;
    const int chunks = gridDim.y;
    if (j >= d) return;
    const int r0 = c * rows;
    const int r1 = min(n, r0 + rows);
    double s1 = 0.0, s2 = 0.0;
    for (int r = r0; r < r1; ++r) {
        const double v = (double)a[(size_t)r * d + j];
        s1 += v;
        if (b != nullptr) s2 += v * (double)b[(size_t)r * d + j];
    }
    partial[(size_t)c * d + j] = s1;
    if (b != nullptr) partial[(size_t)(chunks + c) * d + j] = s2;
}

extern "C" __global__ void __launch_bounds__(COL_THREADS)
colsum_final(float* out1, float* out2, const double* partial, int chunks, int d) {
    __shared__ double part[REDUCE_WARPS][32];
    const int a = blockIdx.y;
    float* out = a == 0 ? out1 : out2;
    if (out == nullptr) return;  // uniform over the block (a grid of 2 arrays for one output)
    chunk_sums(out, partial + (size_t)a * chunks * d, chunks, d, part);
}
