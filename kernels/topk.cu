// topk.cu: top-k by dot product for retrieval evaluation (cosine ranking
// when the rows are normalised first, which retrieval does on the host).
//
//   topk            grid (ceil(nq/32)), block 256, no dynamic shared memory:
//                   for each of the nq rows of Q [nq, dim], the k rows of
//                   Kx [nk, dim] (k <= 32) with the largest dot products,
//                   best first: idx[q*k + p], score[q*k + p] for p < k
//                   (the caller passes k = min(k, nk)). Same order as
//                   retrieval.TopK: higher score first, equal scores by the
//                   lower key index.
//
// topk never writes the score matrix. A block takes 32 queries and walks the
// keys in tiles of 64, in index order: the 32x64 score tile is computed in
// shared memory (dim consumed in chunks of 32; thread (q = tid/8) computes
// keys tid%8 + 8j, j < 8, each score one fmaf chain over dim in order), then
// thread q < 32 offers the tile's keys, in index order, to its query's
// sorted list (scores and indices in shared memory, [k][32] so the 32 list
// owners hit distinct banks). Because keys arrive in increasing index order
// and a new key displaces a listed one only with a strictly greater score
// (or an equal score and a lower index, which cannot happen here), ties keep
// the lower index exactly as the CPU's list does.
//
// Scores are float32 dot products summed in dim order with fmaf; the CPU
// (gonum's blas32.Dot) sums in another order, so on real data scores can
// differ in the last bits and near-tied keys can swap. Indices agree with
// the CPU exactly when every dot product is computed exactly in any order,
// e.g. small-integer data (|values| <= 256, partial sums < 2^24); the tests
// use such data.
//
// Versions: v1 (this file). A faster version would keep lists in registers
// with warp-wide merges and run the score tiles on tensor cores.
#include "common.cuh"

#define TK_Q 32      // queries per block
#define TK_KEYS 64   // keys per tile
#define TK_DC 32     // dim chunk
#define TK_MAXK 32   // largest k
#define TK_THREADS 256

__device__ __forceinline__ bool ranks_before(float s, int i, float t, int j) {
    return s > t || (s == t && i < j);
}

extern "C" __global__ void __launch_bounds__(TK_THREADS)
topk(int* idx, float* score, const float* Q, const float* Kx, int nq, int nk, int dim, int k) {
    __shared__ float Qs[TK_Q][TK_DC + 1];
    __shared__ float Ks[TK_KEYS][TK_DC + 1];
    __shared__ float S[TK_Q][TK_KEYS + 1];
    __shared__ float Ls[TK_MAXK][TK_Q];
    __shared__ int Li[TK_MAXK][TK_Q];

    const int tid = threadIdx.x;
    const int q0 = blockIdx.x * TK_Q;
    const int myq = tid / 8;   // query of this thread's scores
    const int kl = tid % 8;    // first key of this thread's scores
    int filled = 0;            // list length of query tid (threads tid < TK_Q)

    for (int k0 = 0; k0 < nk; k0 += TK_KEYS) {
        float acc[TK_KEYS / 8];
#pragma unroll
        for (int j = 0; j < TK_KEYS / 8; ++j) acc[j] = 0.0f;
        for (int d0 = 0; d0 < dim; d0 += TK_DC) {
#pragma unroll
            for (int l = 0; l < (TK_Q * TK_DC) / TK_THREADS; ++l) {
                const int e = tid + l * TK_THREADS;
                const int qq = e / TK_DC, c = e % TK_DC;
                const int gq = q0 + qq, gc = d0 + c;
                Qs[qq][c] = (gq < nq && gc < dim) ? Q[(size_t)gq * dim + gc] : 0.0f;
            }
#pragma unroll
            for (int l = 0; l < (TK_KEYS * TK_DC) / TK_THREADS; ++l) {
                const int e = tid + l * TK_THREADS;
                const int kk = e / TK_DC, c = e % TK_DC;
                const int gk = k0 + kk, gc = d0 + c;
                Ks[kk][c] = (gk < nk && gc < dim) ? Kx[(size_t)gk * dim + gc] : 0.0f;
            }
            __syncthreads();
#pragma unroll 8
            for (int c = 0; c < TK_DC; ++c) {
                const float qv = Qs[myq][c];
#pragma unroll
                for (int j = 0; j < TK_KEYS / 8; ++j) acc[j] = fmaf(qv, Ks[kl + 8 * j][c], acc[j]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int j = 0; j < TK_KEYS / 8; ++j) S[myq][kl + 8 * j] = acc[j];
        __syncthreads();
        if (tid < TK_Q && q0 + tid < nq) {
            const int kn = min(TK_KEYS, nk - k0);
            for (int kk = 0; kk < kn; ++kk) {
                const float s = S[tid][kk];
                const int key = k0 + kk;
                if (filled == k) {
                    if (!ranks_before(s, key, Ls[k - 1][tid], Li[k - 1][tid])) continue;
                    --filled;  // the last entry makes room
                }
                int p = filled;
                while (p > 0 && ranks_before(s, key, Ls[p - 1][tid], Li[p - 1][tid])) {
                    Ls[p][tid] = Ls[p - 1][tid];
                    Li[p][tid] = Li[p - 1][tid];
                    --p;
                }
                Ls[p][tid] = s;
                Li[p][tid] = key;
                ++filled;
            }
        }
        __syncthreads();  // S is rewritten by the next tile
    }
    if (tid < TK_Q && q0 + tid < nq) {
        const size_t out = (size_t)(q0 + tid) * k;
        for (int p = 0; p < filled; ++p) {
            idx[out + p] = Li[p][tid];
            score[out + p] = Ls[p][tid];
        }
    }
}
