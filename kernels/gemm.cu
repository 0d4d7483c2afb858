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
// Main loop and epilogue are apart: gemm_mainloop_simt leaves each thread
// its 4x4 accumulators, and gemm_epilogue_simt hands them with their
// coordinates to the epilogue library (epilogue.cuh), which the
// tensor-core main loops use too.
//
// Launch: grid (ceil(N/64), ceil(M/64)), block 256, no dynamic shared
// memory. gridDim.y <= 65535 limits M to 4,194,240 (checked by the Go
// wrapper).
//
// Versions: v1 (this file). Later versions (register double buffering,
// vector loads, TF32/BF16 tensor cores) replace one entry point at a time
// and must pass the same tests.
#include "epilogue.cuh"

#define BM 64
#define BN 64
#define BK 16
#define PAD 4
#define THREADS 256
#define TM 4
#define TN 4

// gemm_mainloop_simt computes the thread's accumulators of the block's
// 64x64 tile of op(A) op(B): acc[i][j] is C[m0 + ty + 16i][n0 + tx + 16j].
//   TA: A is stored [K, M] (else [M, K]); TB: B is stored [N, K] (else [K, N]).
template <bool TA, bool TB>
__device__ __forceinline__ void gemm_mainloop_simt(float (&acc)[TM][TN], const float* __restrict__ A,
                                                   const float* __restrict__ B, int M, int N, int K, int m0, int n0,
                                                   int tx, int ty) {
    __shared__ float As[BK][BM + PAD];
    __shared__ float Bs[BK][BN + PAD];

    const int tid = threadIdx.x;
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
}

// gemm_epilogue_simt hands the accumulators of gemm_mainloop_simt to the
// epilogue EPI. The 16 lanes of a half-warp share ty, so they hold a row's
// part of the block's 64 columns, which is one statistics tile.
template <int EPI>
__device__ __forceinline__ void gemm_epilogue_simt(const EpilogueArgs& e, const float (&acc)[TM][TN], int m0, int n0,
                                                   int tx, int ty) {
    static_assert(BN == STATS_TILE, "a block's columns are one statistics tile");
    float bj[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) bj[j] = epi_bias<EPI>(e.bias, n0 + tx + 16 * j, e.N);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int gm = m0 + ty + 16 * i;
        float vals[TN];
        bool ok[TN];
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int gn = n0 + tx + 16 * j;
            const size_t at = (size_t)gm * e.N + gn;
            ok[j] = gm < e.M && gn < e.N;
            vals[j] = epi_value<EPI>(e, acc[i][j], bj[j], at, ok[j]);
            if (ok[j]) epi_store<EPI>(e, at, vals[j]);
        }
        if (EPI == EPI_BIAS_STATS) {
            RowStats s = row_stats_local(vals, ok);
            row_stats_reduce<16>(s);
            if (gm < e.M && tx == 0) row_stats_store(e, gm, blockIdx.x, gridDim.x, s);
        }
    }
}

// gemm_body computes C = op(A) op(B) with the epilogue EPI.
template <bool TA, bool TB, int EPI>
__device__ __forceinline__ void gemm_body(float* C, float* C2, float* stats, const float* __restrict__ A,
                                          const float* __restrict__ B, const float* bias, float beta, int M, int N,
                                          int K) {
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[TM][TN];
    gemm_mainloop_simt<TA, TB>(acc, A, B, M, N, K, m0, n0, tx, ty);
    const EpilogueArgs e{C, C2, stats, bias, beta, M, N};
    gemm_epilogue_simt<EPI>(e, acc, m0, n0, tx, ty);
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
