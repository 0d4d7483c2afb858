// search.cu: exact-search candidates on tensor cores: the similarity GEMM
// of queries and keys fused with a per-query top-w selection, so the
// [queries x keys] score matrix never reaches global memory.
//
//   search_f16_topw   grid (ceil(nq/128), splits), block 256, dynamic shared
//                     memory SEARCH_MAIN_BYTES + 128 w 8 bytes (w <= 64:
//                     128.5 KiB; above 48 KiB: raise the kernel's limit):
//                     Q [nq, dimp] and Kx [nk, dimp] are float16 (bits in
//                     uint16_t), row-major, dimp a multiple of 8 (16-byte
//                     rows for cp.async; the host pads with zeros). Block
//                     (bx, by) ranks keys [by kps, min(nk, (by+1) kps))
//                     (kps, keys per split, a multiple of 128) for queries
//                     [128 bx, 128 bx + 128) and writes its best w,
//                     best first, to out_score[(by nq + q) w + p] (float32)
//                     and out_id[...] = first_id + key row (int64); a
//                     split with fewer than w keys pads with score -Inf,
//                     id -1.
//   search_merge      grid (ceil(nq/256)), block 256, 16 KiB of static shared
//                     memory: merges `lists` (<= 64) sorted lists of w
//                     (<= 64) per query, in_score/in_id
//                     [lists, nq, w], into the best w of all of them,
//                     out_score/out_id [nq, w]; out must not alias in.
//                     When out_exact is not null, each entry taken from
//                     list 0 carries its exact score from run_exact [nq, w]
//                     (null: none), every other entry NaN, for
//                     search_rescore to fill.
//   search_rescore    grid (ceil(nq w/256)), block 256: for each entry of
//                     id [nq, w] in rows [first, first + nk) of this chunk
//                     (Kf [nk, dim] float32 when not null: the keys as
//                     stored, for float32 segments; else Kx [nk, dimp]
//                     float16), exact[entry] = the reference
//                     score of package retrieval: the float32 query Qf
//                     [nq, dim] times the key, products and their sum in
//                     float64, in index order 0..dim-1, which gives the
//                     host's bits exactly. Other entries are left as they
//                     are.
//
// Order: higher score first, equal scores by the lower id; id -1 (an empty
// slot) after every real one. search_f16_topw visits its keys in increasing
// row order and lets a key displace a listed one only with a strictly
// greater score, so among equal scores the lower row stays, as the merge's
// order wants.
//
// Arithmetic: mma.sync.m16n8k16 with float16 operands and float32
// accumulation (products exact, sums as the tensor cores round them). These
// scores only choose candidates: the host rounds the queries to float16,
// bounds how far these scores can be from the exact ones, and re-scores the
// candidates exactly (cuda/search.go, docs/RETRIEVAL.md "GPU search").
//
// Structure of search_f16_topw: 8 warps in 2 (queries) x 4 (keys), each
// warp a 64 x 32 block of the 128 x 128 score tile (4 x 4 mma tiles,
// ldmatrix fragments); the width dimp in chunks of 32 staged by cp.async
// (16-byte copies, zero-filled past the edges) in a 3-stage ring of padded
// rows (40 elements, so ldmatrix rows stay 16-byte aligned and spread over
// the banks). After a key tile's last chunk the ring is free: the warps
// write their f32 scores into it as a 128 x 129 tile (odd pitch: thread q
// reading row q hits bank (q + c) % 32), and thread q < 128 offers row q's
// scores, in key order, to query q's sorted list in shared memory (scores
// and local rows as [w][128], so the 128 list owners hit distinct banks);
// a score not above the list's last is dropped after one compare.
//
// Versions: v3 (v1 had no exact scores: search_rescore, and search_merge's
// out_exact and run_exact, came in v2; v2 let the threads that select
// nothing start the next key tile's loads into the ring, which the score
// tile aliases, while the owners still read it: wrong candidates whenever
// a split holds more than one key tile). Known costs: the selection phase does not overlap the next
// tile's loads (the score tile aliases the ring), and only 128 of the 256
// threads select.
#include "common.cuh"
#include "cp_async_ring.cuh"
#include "tensorcore.cuh"

#define SEARCH_BQ 128  // queries per block
#define SEARCH_BN 128  // keys per tile
#define SEARCH_BK 32   // width chunk
#define SEARCH_STAGES 3
#define SEARCH_PITCH 40  // elements per ring row: 32 + 8 of padding
#define SEARCH_THREADS 256
#define SEARCH_MAXW 64
#define SEARCH_SPITCH 129  // floats per score-tile row
#define SEARCH_STAGE_ELEMS ((SEARCH_BQ + SEARCH_BN) * SEARCH_PITCH)
#define SEARCH_RING_BYTES (SEARCH_STAGES * SEARCH_STAGE_ELEMS * 2)
#define SEARCH_TILE_BYTES (SEARCH_BQ * SEARCH_SPITCH * 4)
#define SEARCH_MAIN_BYTES (SEARCH_RING_BYTES > SEARCH_TILE_BYTES ? SEARCH_RING_BYTES : SEARCH_TILE_BYTES)

extern "C" __global__ void __launch_bounds__(SEARCH_THREADS)
    search_f16_topw(float* __restrict__ out_score, long long* __restrict__ out_id, const uint16_t* __restrict__ Q,
                    const uint16_t* __restrict__ Kx, int nq, int nk, int dimp, int w, int kps, long long first_id) {
    unsigned char* smem = dc_dynamic_smem();
    uint16_t* ring = (uint16_t*)smem;
    float* tile = (float*)smem;
    float* list_score = (float*)(smem + SEARCH_MAIN_BYTES);  // [w][BQ]
    int* list_row = (int*)(list_score + SEARCH_BQ * w);      // [w][BQ]
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
    const int m0 = blockIdx.x * SEARCH_BQ;
    const int kbeg = blockIdx.y * kps, kend = min(nk, kbeg + kps);
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    const int chunks = (dimp + SEARCH_BK - 1) / SEARCH_BK;
    const bool owner = t < SEARCH_BQ && m0 + t < nq;

    if (t < SEARCH_BQ)
        for (int p = 0; p < w; ++p) {
            list_score[p * SEARCH_BQ + t] = -INFINITY;
            list_row[p * SEARCH_BQ + t] = -1;
        }

    for (int n0 = kbeg; n0 < kend; n0 += SEARCH_BN) {
        // load_chunk issues the copies of width chunk c into stage: 128
        // query rows and 128 key rows x 32 elements, as 512 16-byte pieces
        // each, 2 + 2 per thread, zero-filled past the edges (an
        // out-of-range piece reads nothing, from a valid address).
        auto load_chunk = [&](int c, int stage) {
            uint16_t* sq = ring + stage * SEARCH_STAGE_ELEMS;
            uint16_t* sk = sq + SEARCH_BQ * SEARCH_PITCH;
#pragma unroll
            for (int p = t; p < 512; p += SEARCH_THREADS) {
                const int row = p / 4, col = (p % 4) * 8, k = c * SEARCH_BK + col;
                const int kbytes = k < dimp ? min(8, dimp - k) * 2 : 0;
                const int rq = m0 + row, rk = n0 + row;
                cp_async_cg16(smem_addr(sq + row * SEARCH_PITCH + col), rq < nq && kbytes ? Q + (size_t)rq * dimp + k : Q,
                              rq < nq ? kbytes : 0);
                cp_async_cg16(smem_addr(sk + row * SEARCH_PITCH + col),
                              rk < kend && kbytes ? Kx + (size_t)rk * dimp + k : Kx, rk < kend ? kbytes : 0);
            }
        };

        float acc[4][4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

        cp_async_ring<SEARCH_STAGES>(chunks, load_chunk, [&](int, int stage) {
            const uint16_t* sq = ring + stage * SEARCH_STAGE_ELEMS;
            const uint16_t* sk = sq + SEARCH_BQ * SEARCH_PITCH;
#pragma unroll
            for (int kk = 0; kk < SEARCH_BK; kk += 16) {
                uint32_t a[4][4], b[4][2];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    // Matrices: rows 0-7 / 8-15 (lanes 0-7 / 8-15) at k 0-7,
                    // then the same at k 8-15 (lanes 16-31): a0..a3.
                    const int row = wm + i * 16 + (lane / 8 % 2) * 8 + lane % 8, col = kk + (lane / 16) * 8;
                    ldmatrix_x4(a[i], smem_addr(sq + row * SEARCH_PITCH + col));
                }
#pragma unroll
                for (int j = 0; j < 4; j += 2) {
                    // Matrices: keys 0-7 at k 0-7 and 8-15 (b0, b1 of tile
                    // j), then keys 8-15 likewise (tile j+1).
                    const int row = wn + j * 8 + (lane / 16) * 8 + lane % 8, col = kk + (lane / 8 % 2) * 8;
                    uint32_t r[4];
                    ldmatrix_x4(r, smem_addr(sk + row * SEARCH_PITCH + col));
                    b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
                }
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) mma_f16_16816(acc[i][j], a[i], b[j], acc[i][j]);
            }
        });
        __syncthreads();  // every warp is done reading the ring
        const int g = lane / 4, q4 = lane % 4;
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    tile[(wm + 16 * i + g + 8 * (e / 2)) * SEARCH_SPITCH + wn + 8 * j + 2 * q4 + e % 2] = acc[i][j][e];
        __syncthreads();
        if (owner) {
            const int cols = min(SEARCH_BN, kend - n0);
            float* ls = list_score + t;
            int* lr = list_row + t;
            float last = ls[(w - 1) * SEARCH_BQ];
            for (int c = 0; c < cols; ++c) {
                const float s = tile[t * SEARCH_SPITCH + c];
                if (!(s > last)) continue;
                int p = w - 1;
                while (p > 0 && ls[(p - 1) * SEARCH_BQ] < s) {
                    ls[p * SEARCH_BQ] = ls[(p - 1) * SEARCH_BQ];
                    lr[p * SEARCH_BQ] = lr[(p - 1) * SEARCH_BQ];
                    --p;
                }
                ls[p * SEARCH_BQ] = s;
                lr[p * SEARCH_BQ] = n0 + c;
                last = ls[(w - 1) * SEARCH_BQ];
            }
        }
        // Every owner is done reading the tile before the next tile's
        // prologue refills the ring it aliases (the threads that select
        // nothing would otherwise be there at once).
        __syncthreads();
    }
    if (owner) {
        const size_t o = ((size_t)blockIdx.y * nq + m0 + t) * w;
        for (int p = 0; p < w; ++p) {
            const int r = list_row[p * SEARCH_BQ + t];
            out_score[o + p] = list_score[p * SEARCH_BQ + t];
            out_id[o + p] = r < 0 ? -1LL : first_id + r;
        }
    }
}

// search_before: (s, i) ranks ahead of (t, j); id -1 compares as the
// largest id, so empty slots come last.
__device__ __forceinline__ bool search_before(float s, long long i, float t, long long j) {
    return s > t || (s == t && (unsigned long long)i < (unsigned long long)j);
}

#define SEARCH_MAXLISTS 64

extern "C" __global__ void __launch_bounds__(SEARCH_THREADS)
    search_merge(float* __restrict__ out_score, long long* __restrict__ out_id, double* __restrict__ out_exact,
                 const float* __restrict__ in_score, const long long* __restrict__ in_id,
                 const double* __restrict__ run_exact, int nq, int lists, int w) {
    // Each thread's read position in each list, in shared memory ([list]
    // [thread]) rather than a local array, which would live in local memory.
    __shared__ unsigned char head[SEARCH_MAXLISTS][SEARCH_THREADS];
    const int t = threadIdx.x, q = blockIdx.x * SEARCH_THREADS + t;
    if (q >= nq) return;
    for (int l = 0; l < lists; ++l) head[l][t] = 0;
    for (int p = 0; p < w; ++p) {
        int best = -1;
        float bs = 0.0f;
        long long bi = 0;
        for (int l = 0; l < lists; ++l) {
            if (head[l][t] >= w) continue;
            const size_t o = ((size_t)l * nq + q) * w + head[l][t];
            const float s = in_score[o];
            const long long i = in_id[o];
            if (best < 0 || search_before(s, i, bs, bi)) best = l, bs = s, bi = i;
        }
        out_score[(size_t)q * w + p] = bs;
        out_id[(size_t)q * w + p] = bi;
        if (out_exact)
            out_exact[(size_t)q * w + p] = best == 0 && run_exact ? run_exact[(size_t)q * w + head[0][t]] : (double)NAN;
        ++head[best][t];
    }
}

// search_rescore: the reference score of each candidate of this chunk.
extern "C" __global__ void __launch_bounds__(SEARCH_THREADS)
    search_rescore(double* __restrict__ exact, const long long* __restrict__ id, const float* __restrict__ Qf,
                   const uint16_t* __restrict__ Kx, const float* __restrict__ Kf, int nq, int w, int dim, int dimp, int nk,
                   long long first) {
    const size_t e = (size_t)blockIdx.x * SEARCH_THREADS + threadIdx.x;
    if (e >= (size_t)nq * w) return;
    const long long r = id[e] - first;
    if (r < 0 || r >= nk) return;
    const float* q = Qf + (e / w) * dim;
    // In index order, one product at a time: the products are exact in
    // double, so a fused multiply-add rounds as the separate add would.
    double s = 0.0;
    if (Kf) {
        const float* k = Kf + (size_t)r * dim;
        for (int i = 0; i < dim; ++i) s += (double)q[i] * (double)k[i];
    } else {
        const uint16_t* k = Kx + (size_t)r * dimp;
        for (int i = 0; i < dim; ++i) s += (double)q[i] * (double)half_bits_to_float(k[i]);
    }
    exact[e] = s;
}
