// gemm.cu: FP32 matrix products of the model's Linear layers, with fused
// epilogues.
//
// All buffers are row-major. Linear weights are stored as PyTorch stores
// them, W[out, in]. Three layouts, C[M, N] = op(A)[M, K] op(B)[K, N]:
//
//   gemm_nt_*  forward   Y[n, out]  = X[n, in] W^T          M=n,   N=out, K=in
//   gemm_nn    backward  dX[n, in]  = beta dX + dY[n, out] W M=n,   N=in,  K=out
//   gemm_tn    backward  dW[out, in] = dY^T X               M=out, N=in,  K=n
//
// Epilogues of the forward product (each a kernel of its own, so that each
// gets its own register allocation):
//
//   gemm_nt_bias        Y = XW^T + b
//   gemm_nt_bias_gelu   Y = XW^T + b and Yact = GELU(Y) (the head: GELU's
//                       backward needs the pre-activation Y)
//   gemm_nt_bias_stats  Y = XW^T + b and, for every row of every 64-wide
//                       column tile, the tile's (count, mean, M2) of the
//                       stored values of Y: stats[row][tile][3], tiles =
//                       ceil(N/64). layernorm.cu's ln_apply merges them with
//                       Chan's parallel formula and applies the LayerNorm.
//
// Tiling (v1, correct first): a block of 256 threads computes a 64x64 tile
// of C; K is consumed in chunks of 16 staged in shared memory (A chunk
// [16][64], B chunk [16][64], k-major). Thread (tx, ty) = (tid%16, tid/16)
// owns the 4x4 outputs at rows ty+16i and columns tx+16j (strided, so
// that shared-memory reads are broadcast or conflict-free and the stores of
// a half-warp are 16 consecutive floats). Each output is one fmaf chain
// over k = 0..K-1 in order: the result is deterministic and independent of
// the grid. Out-of-range elements load as 0 and out-of-range outputs are not
// stored, so any M, N, K >= 1 works (tests use odd sizes).
//
// Launch: grid (ceil(N/64), ceil(M/64)), block 256, no dynamic shared
// memory. gridDim.y <= 65535 limits M to 4,194,240 (checked by the Go
// wrapper).
//
// Versions: v1 (this file). Later versions (register double buffering,
// vector loads, TF32/BF16 tensor cores) replace one entry point at a time
// and must pass the same tests.
#include "common.cuh"

#define BM 64
#define BN 64
#define BK 16
#define PAD 4
#define THREADS 256
#define TM 4
#define TN 4

enum Epilogue { EPI_BETA = 0, EPI_BIAS = 1, EPI_BIAS_GELU = 2, EPI_BIAS_STATS = 3 };

// Chan's merge of (nb, mb, Mb) into (na, ma, Ma).
__device__ __forceinline__ void chan_merge(float& na, float& ma, float& Ma, float nb, float mb, float Mb) {
    // Branch-free: with n = 0 (both empty) fb is 0 and nothing changes.
    const float n = na + nb;
    const float fb = n > 0.0f ? nb / n : 0.0f;
    const float delta = mb - ma;
    ma = fmaf(delta, fb, ma);
    Ma = Ma + Mb + delta * delta * (na * fb);
    na = n;
}

// gemm_body computes C = op(A) op(B) with the epilogue EPI.
//   TA: A is stored [K, M] (else [M, K]); TB: B is stored [N, K] (else [K, N]).
template <bool TA, bool TB, int EPI>
__device__ __forceinline__ void gemm_body(float* __restrict__ C, float* __restrict__ C2, float* __restrict__ stats,
                                          const float* __restrict__ A, const float* __restrict__ B,
                                          const float* __restrict__ bias, float beta, int M, int N, int K) {
    __shared__ float As[BK][BM + PAD];
    __shared__ float Bs[BK][BN + PAD];

    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        // Stage the A chunk: BK*BM = 1024 values, 4 per thread; consecutive
        // threads read consecutive addresses of the stored layout.
#pragma unroll
        for (int l = 0; l < (BK * BM) / THREADS; ++l) {
            const int idx = tid + l * THREADS;
            int kk, mm;
            if (TA) {
                mm = idx % BM;
                kk = idx / BM;
            } else {
                kk = idx % BK;
                mm = idx / BK;
            }
            const int gm = m0 + mm, gk = k0 + kk;
            float v = 0.0f;
            if (gm < M && gk < K) v = TA ? A[(size_t)gk * M + gm] : A[(size_t)gm * K + gk];
            As[kk][mm] = v;
        }
        // Stage the B chunk: BK*BN values.
#pragma unroll
        for (int l = 0; l < (BK * BN) / THREADS; ++l) {
            const int idx = tid + l * THREADS;
            int kk, nn;
            if (TB) {
                kk = idx % BK;
                nn = idx / BK;
            } else {
                nn = idx % BN;
                kk = idx / BN;
            }
            const int gn = n0 + nn, gk = k0 + kk;
            float v = 0.0f;
            if (gn < N && gk < K) v = TB ? B[(size_t)gn * K + gk] : B[(size_t)gk * N + gn];
            Bs[kk][nn] = v;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

    // Epilogue.
    float bj[TN];
    if (EPI != EPI_BETA) {
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int gn = n0 + tx + 16 * j;
            bj[j] = gn < N ? bias[gn] : 0.0f;
        }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int gm = m0 + ty + 16 * i;
        const bool rowOK = gm < M;
        float cnt = 0.0f, sum = 0.0f;
        float vals[TN];
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int gn = n0 + tx + 16 * j;
            const bool ok = rowOK && gn < N;
            const size_t at = (size_t)gm * N + gn;
            float v;
            if (EPI == EPI_BETA) {
                v = acc[i][j];
                if (ok && beta != 0.0f) v = __fadd_rn(__fmul_rn(beta, C[at]), v);
            } else {
                v = __fadd_rn(acc[i][j], bj[j]);
            }
            vals[j] = v;
            if (ok) {
                C[at] = v;
                if (EPI == EPI_BIAS_GELU) C2[at] = gelu_f(v);
                if (EPI == EPI_BIAS_STATS) {
                    cnt += 1.0f;
                    sum += v;
                }
            }
        }
        if (EPI == EPI_BIAS_STATS) {
            // This thread's part of the row: (cnt, mean, M2) two-pass over
            // its up to 4 values, then a butterfly over the 16 threads of
            // the row (the 16 lanes of a half-warp share ty). Every lane
            // takes part, valid row or not, so the shuffles are complete.
            float mean = cnt > 0.0f ? sum / cnt : 0.0f, m2 = 0.0f;
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                const int gn = n0 + tx + 16 * j;
                if (rowOK && gn < N) {
                    const float d = vals[j] - mean;
                    m2 = fmaf(d, d, m2);
                }
            }
#pragma unroll
            for (int off = 1; off < 16; off <<= 1) {
                const float ob = __shfl_xor_sync(0xffffffffu, cnt, off);
                const float om = __shfl_xor_sync(0xffffffffu, mean, off);
                const float oM = __shfl_xor_sync(0xffffffffu, m2, off);
                chan_merge(cnt, mean, m2, ob, om, oM);
            }
            if (rowOK && tx == 0) {
                float* s = stats + ((size_t)gm * gridDim.x + blockIdx.x) * 3;
                s[0] = cnt;
                s[1] = mean;
                s[2] = m2;
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
gemm_nt_bias(float* C, const float* A, const float* W, const float* bias, int M, int N, int K) {
    gemm_body<false, true, EPI_BIAS>(C, nullptr, nullptr, A, W, bias, 0.0f, M, N, K);
}

extern "C" __global__ void __launch_bounds__(THREADS)
gemm_nt_bias_gelu(float* C, float* Cact, const float* A, const float* W, const float* bias, int M, int N, int K) {
    gemm_body<false, true, EPI_BIAS_GELU>(C, Cact, nullptr, A, W, bias, 0.0f, M, N, K);
}

extern "C" __global__ void __launch_bounds__(THREADS)
gemm_nt_bias_stats(float* C, float* stats, const float* A, const float* W, const float* bias, int M, int N, int K) {
    gemm_body<false, true, EPI_BIAS_STATS>(C, nullptr, stats, A, W, bias, 0.0f, M, N, K);
}

// beta == 0 never reads C (so C may hold garbage, NaN included).
extern "C" __global__ void __launch_bounds__(THREADS)
gemm_nn(float* C, const float* A, const float* B, float beta, int M, int N, int K) {
    gemm_body<false, false, EPI_BETA>(C, nullptr, nullptr, A, B, nullptr, beta, M, N, K);
}

extern "C" __global__ void __launch_bounds__(THREADS)
gemm_tn(float* C, const float* A, const float* B, int M, int N, int K) {
    gemm_body<true, false, EPI_BETA>(C, nullptr, nullptr, A, B, nullptr, 0.0f, M, N, K);
}
