// gemm_bf16.cu: the bf16 engine's forward GEMM on Hopper (sm_90a):
//
//   C[M, N] = epilogue(A[M, K] W[N, K]^T + bias[N])
//
// A (activations) and W (weights, [out, in]) are bf16 row-major, so both
// are K-major: the layout the TMA and wgmma read without transposes. The
// products accumulate in f32; bias (f32, may be null) is added in f32.
// Entry points, one per epilogue:
//   gemm_bf16_nt_f32        C f32
//   gemm_bf16_nt_bf16       C bf16 (round to nearest even)
//   gemm_bf16_nt_gelu_bf16  C bf16 of GELU (exact erf form, common.cuh's
//                           gelu_f, evaluated in f32) of the f32 sum
// Parameters: (tma_a, tma_w, bias, C, M, N, K). Any M, N >= 1, K >= 0; K
// a multiple of 8, which the host enforces by construction: a tensor map's
// row stride (2K bytes) must be a multiple of 16 (EncodeTensorMap refuses
// others). Out-of-range rows, columns and K of a tile load as zeros (the
// TMA zero-fills what lies outside the tensor) and are not stored.
//
// Tensor maps: A dims {K, M}, W dims {K, N}, row stride 2K bytes, box
// {64, 128}, bf16, 128-byte swizzle, no interleave, zero fill.
//
// Launch: block 384 threads (3 warpgroups), dynamic shared memory
// GEMM_BF16_SMEM bytes (above 48 KiB: raise the kernel's limit first), a
// 1-D grid of at most ceil(M/128) ceil(N/128) blocks, normally the number
// of multiprocessors: the blocks are persistent, block b takes output tiles
// b, b + gridDim.x, ... (row-major over the tile grid, so consecutive
// blocks share A's rows while W, the smaller operand in the model, stays
// in L2).
//
// Pipeline: output tile 128x128, K in chunks of 64 elements (128 bytes, the
// 128-byte swizzle's span), a ring of GEMM_BF16_STAGES stages, each holding
// the chunk of A (128x64) and of W (128x64) and guarded by two mbarriers:
// `full` (the TMA's bytes have landed: one arrival with the expected byte
// count) and `empty` (the 256 consumer threads are done reading it).
//   warpgroup 0, producer: lowers its registers to 40 (setmaxnreg); one
//     thread walks the same tile sequence as the consumers and, for each K
//     chunk, waits for the stage to be empty and issues the two TMA loads.
//     It runs ahead of the consumers by up to the ring's depth, into the
//     next tile while the consumers are in their epilogue.
//   warpgroups 1 and 2, consumers: raise their registers to 232; each owns
//     64 rows of the tile (rows 64(g-1) ..) and all 128 columns, a 64x128
//     f32 accumulator (64 registers a thread), fed by wgmma m64n128k16
//     with both operands read from shared memory through 128-byte-swizzle
//     descriptors (4 per chunk). One wgmma group stays in flight: a chunk's
//     stage is released once the next chunk's group is issued and the
//     chunk's own group has completed (wgmma_wait<1>).
//   epilogue: straight from the accumulator fragments (row 16w + g + 8h,
//     column 8j + 2q + {0,1} of the warpgroup's 64x128, w the warp, g =
//     lane/4, q = lane%4): bias, activation, rounding, and 8- or 4-byte
//     stores of column pairs where both columns are in range and aligned.
//
// Differs from gemm_bf16_wgmma_ref (the reference that proved the
// primitives): persistent blocks over a tile sequence (the ring's phases
// continue across tiles), two consumer warpgroups and a 128x128 tile
// rather than one and 64x64, N = 128 wgmmas, a 4-stage ring, one wgmma group
// in flight rather than none, and bias and activation epilogues writing f32
// or bf16.
//
// Register and shared-memory figures: kernels/budgets.tsv. The compute_80
// PTX build of this file gets bodies that trap (wgmma, TMA and setmaxnreg
// are sm_90a only).
//
// Versions: v1.
#include "common.cuh"
#include "tensorcore.cuh"

#define GEMM_BF16_BM 128
#define GEMM_BF16_BN 128
#define GEMM_BF16_BK 64
#define GEMM_BF16_STAGES 4
#define GEMM_BF16_THREADS 384
#define GEMM_BF16_A_BYTES (GEMM_BF16_BM * GEMM_BF16_BK * 2)
#define GEMM_BF16_W_BYTES (GEMM_BF16_BN * GEMM_BF16_BK * 2)
#define GEMM_BF16_STAGE_BYTES (GEMM_BF16_A_BYTES + GEMM_BF16_W_BYTES)
// The stages, their 2*STAGES mbarriers, and 1024 bytes to align the stages
// to the 128-byte swizzle's 1024-byte period.
#define GEMM_BF16_SMEM (GEMM_BF16_STAGES * GEMM_BF16_STAGE_BYTES + 2 * GEMM_BF16_STAGES * 8 + 1024)

// The epilogues.
#define GEMM_BF16_OUT_F32 0
#define GEMM_BF16_OUT_BF16 1
#define GEMM_BF16_OUT_GELU_BF16 2

// gemm_bf16_store_pair writes columns col and col+1 of row (v0, v1) to C
// [M, N] row-major, f32 or bf16 as OUT says, after the activation. Only
// columns below N are written; the pair goes as one store when both are
// in range and its address is aligned for it (N even).
template <int OUT>
__device__ __forceinline__ void gemm_bf16_store_pair(void* C, int N, int row, int col, float v0, float v1) {
    if (OUT == GEMM_BF16_OUT_GELU_BF16) {
        v0 = gelu_f(v0);
        v1 = gelu_f(v1);
    }
    const size_t i = (size_t)row * N + col;
    const bool pair = col + 1 < N && (N & 1) == 0;
    if (OUT == GEMM_BF16_OUT_F32) {
        float* c = (float*)C + i;
        if (pair) {
            *(unsigned long long*)c = (unsigned long long)__float_as_uint(v0) | ((unsigned long long)__float_as_uint(v1) << 32);
        } else {
            c[0] = v0;
            if (col + 1 < N) c[1] = v1;
        }
    } else {
        uint16_t* c = (uint16_t*)C + i;
        if (pair) {
            *(uint32_t*)c = pack_bf16x2(v0, v1);
        } else {
            c[0] = f32_to_bf16(v0);
            if (col + 1 < N) c[1] = f32_to_bf16(v1);
        }
    }
}

// gemm_bf16_epilogue stores one consumer warpgroup's 64x128 accumulator,
// whose top-left element is C[m0][n0], for thread t (0..127) of the group.
template <int OUT>
__device__ __forceinline__ void gemm_bf16_epilogue(const float (&acc)[64], const float* __restrict__ bias, void* C, int M, int N,
                                                   int m0, int n0, int t) {
    const int w = t / 32, lane = t % 32, g = lane / 4, q = lane % 4;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
        const int col = n0 + 8 * j + 2 * q;
        if (col >= N) continue;
        const float b0 = bias ? bias[col] : 0.0f, b1 = bias && col + 1 < N ? bias[col + 1] : 0.0f;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = m0 + 16 * w + g + 8 * h;
            if (row < M) gemm_bf16_store_pair<OUT>(C, N, row, col, acc[4 * j + 2 * h] + b0, acc[4 * j + 2 * h + 1] + b1);
        }
    }
}

template <int OUT>
__device__ __forceinline__ void gemm_bf16_nt(const dc_tensor_map* tma_a, const dc_tensor_map* tma_w, const float* __restrict__ bias,
                                             void* C, int M, int N, int K) {
#if DC_SM90A
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* tiles = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    uint64_t* full = (uint64_t*)(tiles + GEMM_BF16_STAGES * GEMM_BF16_STAGE_BYTES);
    uint64_t* empty = full + GEMM_BF16_STAGES;
    const int t = threadIdx.x, group = t / 128;
    const int tiles_n = (N + GEMM_BF16_BN - 1) / GEMM_BF16_BN;
    const int tile_count = ((M + GEMM_BF16_BM - 1) / GEMM_BF16_BM) * tiles_n;
    const int chunks = (K + GEMM_BF16_BK - 1) / GEMM_BF16_BK;
    if (t == 0) {
        for (int s = 0; s < GEMM_BF16_STAGES; ++s) {
            mbar_init(smem_addr(&full[s]), 1);
            mbar_init(smem_addr(&empty[s]), 256);
        }
        fence_mbarrier_init();
    }
    __syncthreads();

    if (group == 0) {
        setmaxnreg_dec<40>();
        if (t == 0) {
            uint32_t use = 0;  // stage uses so far, over all tiles: stage use % STAGES, phase use / STAGES
            for (int tile = blockIdx.x; tile < tile_count; tile += gridDim.x) {
                const int m0 = tile / tiles_n * GEMM_BF16_BM, n0 = tile % tiles_n * GEMM_BF16_BN;
                for (int c = 0; c < chunks; ++c, ++use) {
                    const int s = use % GEMM_BF16_STAGES;
                    // Wait for the consumers to release the stage's previous
                    // use; a fresh mbarrier's "previous phase" (parity 1)
                    // counts as complete, so the first round passes.
                    mbar_wait(smem_addr(&empty[s]), ((use / GEMM_BF16_STAGES) & 1) ^ 1);
                    unsigned char* sa = tiles + s * GEMM_BF16_STAGE_BYTES;
                    // The box's full bytes arrive, zero-filled parts included.
                    mbar_arrive_expect_tx(smem_addr(&full[s]), GEMM_BF16_STAGE_BYTES);
                    tma_load_2d(smem_addr(sa), tma_a, c * GEMM_BF16_BK, m0, smem_addr(&full[s]));
                    tma_load_2d(smem_addr(sa + GEMM_BF16_A_BYTES), tma_w, c * GEMM_BF16_BK, n0, smem_addr(&full[s]));
                }
            }
        }
        return;
    }

    setmaxnreg_inc<232>();
    const int consumer = group - 1, ct = t - 128 * group;
    uint32_t use = 0;
    for (int tile = blockIdx.x; tile < tile_count; tile += gridDim.x) {
        const int m0 = tile / tiles_n * GEMM_BF16_BM, n0 = tile % tiles_n * GEMM_BF16_BN;
        float acc[64];
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
        for (int c = 0; c < chunks; ++c, ++use) {
            const int s = use % GEMM_BF16_STAGES;
            mbar_wait(smem_addr(&full[s]), (use / GEMM_BF16_STAGES) & 1);
            // This warpgroup's 64 rows of A start 64 rows (8 KiB, a whole
            // number of swizzle periods) into the stage.
            const uint32_t sa = smem_addr(tiles + s * GEMM_BF16_STAGE_BYTES) + consumer * (64 * GEMM_BF16_BK * 2);
            const uint32_t sw = smem_addr(tiles + s * GEMM_BF16_STAGE_BYTES + GEMM_BF16_A_BYTES);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < GEMM_BF16_BK / 16; ++kk)
                // K step kk is 32 bytes further along each swizzled 128-byte
                // row; 8-row groups are 1024 bytes apart.
                wgmma_bf16_ss<128>(acc, smem_desc(sa + 32 * kk, 16, 1024, DC_DESC_SWIZZLE_128B),
                                   smem_desc(sw + 32 * kk, 16, 1024, DC_DESC_SWIZZLE_128B), 1);
            wgmma_commit();
            // The previous chunk's group has completed: release its stage.
            wgmma_wait<1>();
            if (c > 0) mbar_arrive(smem_addr(&empty[(use - 1) % GEMM_BF16_STAGES]));
        }
        wgmma_wait<0>();
        if (chunks > 0) mbar_arrive(smem_addr(&empty[(use - 1) % GEMM_BF16_STAGES]));
        gemm_bf16_epilogue<OUT>(acc, bias, C, M, N, m0 + 64 * consumer, n0, ct);
    }
#else
    __trap();
#endif
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_f32(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                     const float* __restrict__ bias, float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_nt<GEMM_BF16_OUT_F32>(&tma_a, &tma_w, bias, C, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_bf16(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                      const float* __restrict__ bias, uint16_t* __restrict__ C, int M, int N, int K) {
    gemm_bf16_nt<GEMM_BF16_OUT_BF16>(&tma_a, &tma_w, bias, C, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_gelu_bf16(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                           const float* __restrict__ bias, uint16_t* __restrict__ C, int M, int N, int K) {
    gemm_bf16_nt<GEMM_BF16_OUT_GELU_BF16>(&tma_a, &tma_w, bias, C, M, N, K);
}
