// gemm_bf16_ref.cu: reference bf16 GEMMs built from the primitives of
// tensorcore.cuh, to prove them together (the engine does not use these):
//
//   C[M, N] = A[M, K] B[N, K]^T   A, B bf16 row-major (both K-major), C f32
//
// Any M, N >= 1; K >= 1 a multiple of 8 (rows start 16-byte aligned, as
// cp.async's 16-byte copies and the TMA's row strides need). Out-of-range
// rows and columns of a tile load as zero and are not stored.
//
// gemm_bf16_mma_ref: mma.sync + ldmatrix + cp.async (sm_80 and later).
//   Block 128 threads = 4 warps in 2x2, block tile 64x64, each warp 32x32
//   (2 m16 x 4 n8 mma tiles); K in chunks of 32 staged in shared memory
//   by cp.async (16-byte copies, zero-filled past the edges), two stages
//   (the next chunk loads while this one is multiplied). Shared rows are
//   padded to 40 elements (80 bytes) so ldmatrix row addresses stay 16-byte
//   aligned. Grid (ceil(N/64), ceil(M/64)); dynamic shared memory
//   GEMM_MMA_SMEM bytes.
//
// gemm_bf16_wgmma_ref: TMA + mbarrier + wgmma (sm_90a).
//   Block 256 threads = 2 warpgroups: warpgroup 0 is the producer (one
//   thread issues the TMA loads; the others retire at once after lowering
//   their registers), warpgroup 1 the consumer (wgmma m64n64k16, A and B
//   from shared memory). Block tile 64x64, K in chunks of 64 (128 bytes, the
//   128-byte swizzle's span), a ring of GEMM_WGMMA_STAGES stages, each with
//   a `full` mbarrier (the TMA's bytes) and an `empty` one (the consumer's
//   128 threads are done with it). The TMA zero-fills out-of-bounds boxes,
//   so ragged M, N and K need no special case. Tensor maps: A dims {K, M},
//   B dims {K, N}, box {64, 64}, bf16, 128-byte swizzle. Grid (ceil(N/64),
//   ceil(M/64)); dynamic shared memory GEMM_WGMMA_SMEM bytes.
//
// Both accumulate in f32 in k order within each k16 step.
//
// Versions: v1.
#include "tensorcore.cuh"

#define GEMM_MMA_BK 32
#define GEMM_MMA_PITCH 40  // elements per shared row: 32 + 8 of padding
#define GEMM_MMA_STAGE_ELEMS (2 * 64 * GEMM_MMA_PITCH)  // A and B chunks
#define GEMM_MMA_SMEM (2 * GEMM_MMA_STAGE_ELEMS * 2)

extern "C" __global__ void __launch_bounds__(128) gemm_bf16_mma_ref(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B,
                                                                   float* __restrict__ C, int M, int N, int K) {
    uint16_t* smem = (uint16_t*)dc_dynamic_smem();
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
    const int chunks = (K + GEMM_MMA_BK - 1) / GEMM_MMA_BK;

    // load_chunk stages K chunk c: 64 rows x 32 elements of A and of B, as
    // 256 16-byte pieces each, 2 + 2 per thread.
    auto load_chunk = [&](int c, int stage) {
        uint16_t* sa = smem + stage * GEMM_MMA_STAGE_ELEMS;
        uint16_t* sb = sa + 64 * GEMM_MMA_PITCH;
        for (int p = t; p < 256; p += 128) {
            const int row = p / 4, col = (p % 4) * 8, k = c * GEMM_MMA_BK + col;
            const int kbytes = k < K ? min(8, K - k) * 2 : 0;
            const int ra = m0 + row, rb = n0 + row;
            // An out-of-range piece reads nothing (src_bytes 0) from a valid address.
            cp_async_cg16(smem_addr(sa + row * GEMM_MMA_PITCH + col), ra < M && kbytes ? A + (size_t)ra * K + k : A, ra < M ? kbytes : 0);
            cp_async_cg16(smem_addr(sb + row * GEMM_MMA_PITCH + col), rb < N && kbytes ? B + (size_t)rb * K + k : B, rb < N ? kbytes : 0);
        }
        cp_async_commit();
    };

    float acc[2][4][4];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    load_chunk(0, 0);
    for (int c = 0; c < chunks; ++c) {
        if (c + 1 < chunks) {
            load_chunk(c + 1, (c + 1) % 2);
            cp_async_wait<1>();  // chunk c has landed, c+1 may be in flight
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t* sa = smem + (c % 2) * GEMM_MMA_STAGE_ELEMS;
        const uint16_t* sb = sa + 64 * GEMM_MMA_PITCH;
        for (int kk = 0; kk < GEMM_MMA_BK; kk += 16) {
            uint32_t a[2][4], b[4][2];
            for (int i = 0; i < 2; ++i) {
                // Matrices: rows 0-7 / 8-15 (lanes 0-7 / 8-15) at k 0-7, then
                // the same at k 8-15 (lanes 16-31): a0..a3 of the fragment.
                const int row = wm + i * 16 + (lane / 8 % 2) * 8 + lane % 8, col = kk + (lane / 16) * 8;
                ldmatrix_x4(a[i], smem_addr(sa + row * GEMM_MMA_PITCH + col));
            }
            for (int j = 0; j < 4; j += 2) {
                // Matrices: n 0-7 at k 0-7 and 8-15 (b0, b1 of tile j), then
                // n 8-15 likewise (tile j+1).
                const int row = wn + j * 8 + (lane / 16) * 8 + lane % 8, col = kk + (lane / 8 % 2) * 8;
                uint32_t r[4];
                ldmatrix_x4(r, smem_addr(sb + row * GEMM_MMA_PITCH + col));
                b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
            }
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) mma_bf16_16816(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();  // the stage is refilled next iteration
    }
    const int g = lane / 4, q = lane % 4;
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int e = 0; e < 4; ++e) {
                const int row = m0 + wm + i * 16 + g + (e / 2) * 8, col = n0 + wn + j * 8 + 2 * q + e % 2;
                if (row < M && col < N) C[(size_t)row * N + col] = acc[i][j][e];
            }
}

#define GEMM_WGMMA_STAGES 3
#define GEMM_WGMMA_TILE_BYTES (64 * 64 * 2)
// The stages, their 2*STAGES mbarriers, and 1024 bytes to align the stages
// to the 128-byte swizzle's 1024-byte period.
#define GEMM_WGMMA_SMEM (GEMM_WGMMA_STAGES * 2 * GEMM_WGMMA_TILE_BYTES + 2 * GEMM_WGMMA_STAGES * 8 + 1024)

extern "C" __global__ void __launch_bounds__(256, 1)
    gemm_bf16_wgmma_ref(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_b,
                        float* __restrict__ C, int M, int N, int K) {
#if DC_SM90A
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* tiles = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    uint64_t* full = (uint64_t*)(tiles + GEMM_WGMMA_STAGES * 2 * GEMM_WGMMA_TILE_BYTES);
    uint64_t* empty = full + GEMM_WGMMA_STAGES;
    const int t = threadIdx.x, group = t / 128;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    const int chunks = (K + 63) / 64;
    if (t == 0) {
        for (int s = 0; s < GEMM_WGMMA_STAGES; ++s) {
            mbar_init(smem_addr(&full[s]), 1);
            mbar_init(smem_addr(&empty[s]), 128);
        }
        fence_mbarrier_init();
    }
    __syncthreads();

    if (group == 0) {
        setmaxnreg_dec<40>();
        if (t == 0) {
            for (int c = 0; c < chunks; ++c) {
                const int s = c % GEMM_WGMMA_STAGES;
                // Wait until the consumer has released the stage's previous
                // use; a fresh mbarrier's "previous phase" (parity 1) counts
                // as complete, so the first round passes.
                mbar_wait(smem_addr(&empty[s]), ((c / GEMM_WGMMA_STAGES) & 1) ^ 1);
                unsigned char* sa = tiles + s * 2 * GEMM_WGMMA_TILE_BYTES;
                mbar_arrive_expect_tx(smem_addr(&full[s]), 2 * GEMM_WGMMA_TILE_BYTES);
                tma_load_2d(smem_addr(sa), &tma_a, c * 64, m0, smem_addr(&full[s]));
                tma_load_2d(smem_addr(sa + GEMM_WGMMA_TILE_BYTES), &tma_b, c * 64, n0, smem_addr(&full[s]));
            }
        }
        return;
    }

    setmaxnreg_inc<232>();
    float acc[32];
    for (int i = 0; i < 32; ++i) acc[i] = 0.0f;
    for (int c = 0; c < chunks; ++c) {
        const int s = c % GEMM_WGMMA_STAGES;
        mbar_wait(smem_addr(&full[s]), (c / GEMM_WGMMA_STAGES) & 1);
        const uint32_t sa = smem_addr(tiles + s * 2 * GEMM_WGMMA_TILE_BYTES), sb = sa + GEMM_WGMMA_TILE_BYTES;
        wgmma_fence();
        for (int kk = 0; kk < 4; ++kk)
            // K step kk is 32 bytes further along each swizzled 128-byte
            // row; 8-row groups are 1024 bytes apart.
            wgmma_bf16_ss<64>(acc, smem_desc(sa + 32 * kk, 16, 1024, DC_DESC_SWIZZLE_128B),
                              smem_desc(sb + 32 * kk, 16, 1024, DC_DESC_SWIZZLE_128B), 1);
        wgmma_commit();
        wgmma_wait<0>();
        mbar_arrive(smem_addr(&empty[s]));
    }
    const int w = (t - 128) / 32, lane = t % 32, g = lane / 4, q = lane % 4;
    for (int j = 0; j < 8; ++j)
        for (int e = 0; e < 4; ++e) {
            const int row = m0 + 16 * w + g + (e / 2) * 8, col = n0 + 8 * j + 2 * q + e % 2;
            if (row < M && col < N) C[(size_t)row * N + col] = acc[4 * j + e];
        }
#else
    __trap();
#endif
}
