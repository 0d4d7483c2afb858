// gemm_bf16.cu: the bf16 engine's GEMMs, on Hopper (sm_90a: TMA + wgmma)
// and, as a fallback, on sm_80 and later (mma.sync), in three layouts:
//
//   nt (forward, Y = X W^T + b):   C[M, N] = epilogue(A[M, K] W[N, K]^T + bias[N])
//   nn (data gradient, dX = dY W): C[M, N] = epilogue(A[M, K] B[K, N])
//   tn (weight gradient, dW = dY^T X, K = batch): C[M, N] = A[K, M]^T B[K, N]
//
// All tensors are row-major. The nt layout's operands are both K-major
// (the reduction runs along their rows); nn's B and both of tn's operands
// are MN-major (the reduction runs down their columns), which the wgmma
// kernels read through the instruction's transposes (imm-trans-a/b) and
// the mma.sync kernels through ldmatrix.trans: no operand is ever
// transposed in memory. The first section below covers the nt kernels; the
// nn and tn ones share their code (templates on each operand's layout)
// and differ as the section "Backward layouts" says.
//
// A (activations) and W (weights, [out, in]) are bf16 row-major, so both
// are K-major: the layout the TMA and wgmma read without transposes. The
// products accumulate in f32; bias (f32, may be null) is added in f32.
// Entry points, one per epilogue, on sm_90a (wgmma, below) and on any GPU
// from sm_80 on (gemm_bf16_nt_mma_*, mma.sync, at the end of the file):
//   gemm_bf16_nt_f32        gemm_bf16_nt_mma_f32        C f32
//   gemm_bf16_nt_gelu_bf16  gemm_bf16_nt_mma_gelu_bf16  C bf16 (round to
//       nearest even) of GELU (exact erf form, common.cuh's gelu_f,
//       evaluated in f32) of the f32 sum
//   gemm_bf16_nt_f32_stats  gemm_bf16_nt_mma_f32_stats  C f32, and stats f32
//       [M, ceil(N/64), 3]: for each row and 64-column tile, the (count,
//       mean, M2) of the row's stored C values in the tile, the layout of
//       gemm.cu's gemm_nt_bias_stats, which layernorm.cu's ln_apply merges
//       (in double, in a fixed order) before it normalises the row
//   gemm_bf16_nt_bf16_stats  gemm_bf16_nt_mma_bf16_stats  C bf16, and stats
//       as f32_stats's of the rounded values (the bf16 engine's Linears that
//       a LayerNorm follows: the LayerNorm reads C in bf16, as autocast's
//       does, and its backward pass reads it again instead of a saved xhat)
//   gemm_bf16_nt_f32_gelu_bf16  gemm_bf16_nt_mma_f32_gelu_bf16  C f32
//       (the pre-activation GELU's backward pass reads) and act bf16
//       [M, N] = bf16(GELU(C)), GELU as above on the stored f32 value
//   gemm_bf16_nt_f32_bf16    gemm_bf16_nt_mma_f32_bf16    C f32 and act bf16
//       [M, N] = bf16(C) (the input projection: the residual stream in f32,
//       the first block's GEMM operand in bf16)
// The wgmma kernels' parameters: (tma_a, tma_w, bias, C, [stats | act,]
// M, N, K); the mma.sync kernels': (A, W, bias, C, [stats | act,] M, N,
// K). act 4-byte aligned, stats 4-byte, neither overlapping C. Any M, N
// >= 1, K >= 0; K
// a multiple of 8 (rows 16-byte aligned, as the TMA's row strides and
// cp.async's 16-byte copies need), which the host enforces: for the wgmma
// kernels by construction (EncodeTensorMap refuses a row stride of 2K
// bytes that is not a multiple of 16), for the mma.sync kernels the
// launcher must check it (A and W 16-byte aligned too). Out-of-range rows, columns and K of a tile load as zeros (the
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
// count) and `empty` (the 128 threads of the consumer whose tile it holds
// are done reading it).
//   warpgroup 0, producer: lowers its registers to 40 (setmaxnreg); one
//     thread walks the same tile sequence as the consumers and, for each K
//     chunk, waits for the stage to be empty and issues the two TMA loads.
//     It runs ahead of the consumers by up to the ring's depth, into the
//     next tile while the consumers are in their epilogue.
//   warpgroups 1 and 2, consumers, in ping-pong: raise their registers
//     to 232; the block's tiles alternate between them (consumer g-1 takes
//     the block's tiles 0, 2, 4, ... or 1, 3, 5, ...), each computing a
//     whole 128x128 tile, two 64x128 f32 accumulators (128 registers a
//     thread) fed by two wgmma m64n128k16 per 16 K (rows 0-63 and
//     64-127) with both operands read from shared memory through
//     128-byte-swizzle descriptors (8 wgmmas per chunk), so that one
//     consumer's epilogue overlaps the other's wgmmas. One wgmma group
//     stays in flight: a chunk's stage is released (by the 128 threads of
//     its consumer) once the next chunk's group is issued and the chunk's
//     own group has completed (wgmma_wait<1>). The main loops take turns
//     (two `turn` mbarriers: tile i's main loop starts when tile i-1's has
//     issued its last wgmma), so a consumer never waits on a stage a ring
//     round early, which an mbarrier's phase parity could not tell from
//     its own round.
//   epilogue: straight from the accumulator fragments (row 16w + g + 8h,
//     column 8j + 2q + {0,1} of each 64x128 half, w the warp, g = lane/4,
//     q = lane%4): bias, activation, rounding, and 8- or 4-byte
//     stores of column pairs where both columns are in range and aligned.
//     Row statistics: the quad 4g..4g+3 holds a row's 128 columns, 16
//     values a lane in each 64-column statistics tile; each lane
//     summarises its 16 (two passes: mean, then M2), the quad merges them
//     with two butterfly levels of Chan's formula (epilogue.cuh, as the
//     float32 GEMMs do), and lane 4g stores the tile's (count, mean, M2).
//
// Differs from gemm_bf16_wgmma_ref (the reference that proved the
// primitives): persistent blocks over a tile sequence (the ring's phases
// continue across tiles), two consumer warpgroups in ping-pong and a
// 128x128 tile rather than one and 64x64, N = 128 wgmmas, a 4-stage ring,
// one wgmma group in flight rather than none, and bias and activation
// epilogues writing f32 or bf16.
//
// The mma.sync fallback (gemm_bf16_nt_mma_*): block 256 threads = 8 warps
// in 2 (M) x 4 (N), the same 128x128 output tile, each warp 64x32 (4 m16 x
// 4 n8 mma tiles, ldmatrix fragments); K in chunks of 32 staged by
// cp.async (16-byte copies, zero-filled past the edges) in a 3-stage ring
// of padded rows (40 elements, so ldmatrix rows stay 16-byte aligned and
// spread over the banks); grid (ceil(N/128), ceil(M/128)), one tile per
// block; dynamic shared memory GEMM_BF16_MMA_SMEM (60 KiB: raise the
// limit). It shares the epilogue (gemm_bf16_emit) with the wgmma kernels.
// Its row statistics: a warp holds 32 columns of a row (8 values a lane
// of the quad), so a 64-column statistics tile spans two warps; each
// quad's merged summary goes to shared memory (6 KiB of the ring, free
// after the main loop), and after a barrier one thread per (row, tile)
// merges the left warp's summary with the right's, in that order.
//
// Statistics' numerics (both paths, as the float32 GEMMs'): f32 sums of
// at most 16 values, then at most 3 levels of f32 Chan merges, so a
// tile's mean errs by at most 2^-19 max|C| and its M2 by at most 2^-19
// (M2 + 192 max|C|^2) (derived beside cuda's TestGemmBF16FusedEpilogues);
// the result depends on no scheduling (every merge has a fixed order).
//
// Register and shared-memory figures: kernels/budgets.tsv (the wgmma
// kernels: 168 registers a thread at entry, the cap of 384 threads, which
// setmaxnreg then moves to 40 producer / 232 consumer; the mma.sync ones
// 96-122; no spills, no static shared memory; the statistics and f32+GELU
// epilogues fit the same figures). The
// compute_80 PTX build of this file gets wgmma bodies that trap (wgmma,
// TMA and setmaxnreg are sm_90a only).
//
// Backward layouts (nn, tn), same tile, ring, warp roles and epilogue code:
//   gemm_bf16_nn_f32         gemm_bf16_nn_mma_f32         C f32 (written: a
//       gradient that starts here, so nothing is zeroed or read back)
//   gemm_bf16_nn_f32_add     gemm_bf16_nn_mma_f32_add     C f32 += the sum
//       (the residual stream's gradient accumulates into its f32 buffer)
//   gemm_bf16_tn_f32         gemm_bf16_tn_mma_f32         C f32 (written,
//       not added: the gradient buffer's value for this step); with
//       splits > 1, split K: C holds splits slices of [M, N], the partial
//       products of consecutive ranges of K's chunks, which
//       gemm_bf16_splitk_sum adds in order (the weight gradients whose
//       output has too few tiles to fill the GPU: K, the batch, is long)
// No bias (the bias gradient, dY's column sums, stays in reduce.cu).
// Parameters: wgmma (tma_a, tma_b, C, M, N, K[, splits]); mma.sync
// (A, B, C, M, N, K[, splits]); the mma.sync tn kernel's grid is
// (ceil(N/128), ceil(M/128), splits), the wgmma one's persistent blocks
// walk (tile, split) pairs. A [M, K] for nn, [K, M] for tn; B [K, N]. Row
// strides must be multiples of 8 elements (16 bytes), as for nt: nn needs
// K and N multiples of 8 (M any); tn M and N (K, the batch, any). C
// 8-byte aligned, as the paired stores need.
// Tensor maps: a K-major operand (nn's A) as above, dims {K, M}, box
// {64, 128}; an MN-major operand [K, X] (X = M or N): dims {X, K}, row
// stride 2X bytes, box {64, 64}, bf16, 128-byte swizzle, zero fill. Each
// MN-major chunk is two such boxes (columns x0.. and x0+64.., 8 KiB each,
// K rows of 128 bytes), so the stage sizes, the expected bytes and the
// shared memory are the nt kernels'. Launch as nt (384 threads,
// GEMM_BF16_SMEM, a persistent 1-D grid).
// wgmma operands MN-major: descriptor start + 2048 bytes per 16-K step (16
// rows of 128 bytes: whole swizzle periods), SBO 1024 (8 K rows), LBO
// 8 KiB (the next 64 columns: B's second box); the instruction's
// imm-trans flag set for that operand (SASS: gdesc[..].tnspA / .tnspB).
// Each 64-row half of a consumer's tile (acc[r]) reads one box of tn's A.
// mma.sync: an MN-major chunk is 32 K rows of 128 columns in shared rows
// of 136 elements (272 bytes: ldmatrix rows land on distinct banks);
// ldmatrix.x4.trans gives each lane the same (row, k pair) fragment as the
// K-major non-transposing load; dynamic shared memory
// GEMM_BF16_MMA_SMEM(a_mn, b_mn) = 55.5 KiB (nn), 51 KiB (tn).
// Figures (kernels/budgets.tsv): the wgmma kernels 168 registers at entry
// (setmaxnreg: 40 / 232), the mma.sync ones 96-127; no spills.
//
// Versions: v1 (nt); v2 adds nn and tn, and the forward kernels become the
// nt instantiation of the layout templates (same instructions); v3 adds
// the nt epilogues with a second output (f32_stats, f32_gelu_bf16; the
// epilogue now walks a thread's values row by row, the results of the
// earlier epilogues unchanged); v4 adds nn_f32 (the nn instantiation of the
// f32 epilogue: the backward pass no longer zeroes a data gradient for
// f32_add to add into), nt_bf16_stats, nt_f32_bf16 and the tn kernels'
// split K (gemm_bf16_splitk_sum); v5 makes the wgmma kernels' consumers
// ping-pong (a whole tile each, alternating, main loops in turns) instead
// of sharing each tile's rows (results unchanged: each output element is
// the same wgmma sum in the same K order); v6 drops the entry points the
// engine never launched (nt_bf16, nn_bf16, nn_dgelu_bf16, and with the
// last the pre-activation operand of the epilogues; the rest unchanged).
#include "common.cuh"
#include "cp_async_ring.cuh"
#include "epilogue.cuh"
#include "tensorcore.cuh"

#define GEMM_BF16_BM 128
#define GEMM_BF16_BN 128
#define GEMM_BF16_BK 64
#define GEMM_BF16_STAGES 4
#define GEMM_BF16_THREADS 384
#define GEMM_BF16_A_BYTES (GEMM_BF16_BM * GEMM_BF16_BK * 2)
#define GEMM_BF16_W_BYTES (GEMM_BF16_BN * GEMM_BF16_BK * 2)
#define GEMM_BF16_STAGE_BYTES (GEMM_BF16_A_BYTES + GEMM_BF16_W_BYTES)
// An MN-major operand's chunk is two TMA boxes of 64 (M or N) x 64 (K),
// 8 KiB each: the 64-column blocks of the 128-wide tile.
#define GEMM_BF16_MN_BOX_BYTES (64 * GEMM_BF16_BK * 2)
// The stages, their 2*STAGES mbarriers, the consumers' two turn mbarriers,
// and 1024 bytes to align the stages to the 128-byte swizzle's 1024-byte
// period.
#define GEMM_BF16_SMEM (GEMM_BF16_STAGES * GEMM_BF16_STAGE_BYTES + (2 * GEMM_BF16_STAGES + 2) * 8 + 1024)

// The epilogues.
#define GEMM_BF16_OUT_F32 0
#define GEMM_BF16_OUT_GELU_BF16 2
#define GEMM_BF16_OUT_F32_ADD 3     // C (f32) += the sum
#define GEMM_BF16_OUT_F32_STATS 5   // C f32 and its row statistics (stats [M, ceil(N/64), 3])
#define GEMM_BF16_OUT_F32_GELU 6    // C f32 and act = bf16(GELU(C)), act bf16 [M, N]
#define GEMM_BF16_OUT_BF16_STATS 7  // C bf16 and the row statistics of its rounded values
#define GEMM_BF16_OUT_F32_BF16 8    // C f32 and act = bf16(C), act bf16 [M, N]

// gemm_bf16_has_stats: the epilogue also writes row statistics.
__device__ __forceinline__ constexpr bool gemm_bf16_has_stats(int out) {
    return out == GEMM_BF16_OUT_F32_STATS || out == GEMM_BF16_OUT_BF16_STATS;
}

// Split K (the tn kernels' splits > 1): K's chunks are cut into `splits`
// consecutive ranges, split s taking chunks [s chunks / splits, (s + 1)
// chunks / splits), and writes its partial product to its own slice of C,
// C + s M N (f32; gemm_bf16_splitk_sum adds the slices in order). Every
// other kernel runs with splits = 1 and writes C itself.
__device__ __forceinline__ int gemm_bf16_split_chunk(int chunks, int splits, int s) {
    return (int)((long long)s * chunks / splits);
}
__device__ __forceinline__ void* gemm_bf16_split_out(void* C, int splits, int s, int M, int N) {
    return splits == 1 ? C : (void*)((float*)C + (size_t)s * M * N);
}

// gemm_bf16_emit finishes columns col and col+1 of row, whose f32 sums
// are v0 and v1, into C [M, N] row-major: bias, activation, f32 or bf16
// as OUT says (act, the bf16 output of GEMM_BF16_OUT_F32_GELU and
// GEMM_BF16_OUT_F32_BF16, is laid out as C).
// Only elements inside C are written; the pair goes as one store when both
// columns are in range and its address is aligned for it (N even). col is
// even, as in every accumulator fragment (mma.sync and wgmma alike: a
// thread holds column pairs 2q, 2q+1 of each 8-column group). For the f32
// epilogues and bf16_stats v0 and v1 are left holding the values stored in
// C (the row statistics summarise those: bf16_stats's the rounded ones, the
// values a LayerNorm reading C sees).
template <int OUT>
__device__ __forceinline__ void gemm_bf16_emit(const float* __restrict__ bias, void* C, uint16_t* __restrict__ act, int M, int N,
                                               int row, int col, float& v0, float& v1) {
    if (row >= M || col >= N) return;
    const bool second = col + 1 < N;
    if (bias) {
        v0 += bias[col];
        if (second) v1 += bias[col + 1];
    }
    if (OUT == GEMM_BF16_OUT_GELU_BF16) {
        v0 = gelu_f(v0);
        v1 = gelu_f(v1);
    }
    const size_t i = (size_t)row * N + col;
    const bool pair = second && (N & 1) == 0;
    if (OUT == GEMM_BF16_OUT_GELU_BF16 || OUT == GEMM_BF16_OUT_BF16_STATS) {
        uint16_t* c = (uint16_t*)C + i;
        const uint16_t b0 = f32_to_bf16(v0), b1 = f32_to_bf16(v1);
        if (pair) {
            *(uint32_t*)c = (uint32_t)b0 | ((uint32_t)b1 << 16);
        } else {
            c[0] = b0;
            if (second) c[1] = b1;
        }
        if (OUT == GEMM_BF16_OUT_BF16_STATS) v0 = bf16_to_f32(b0), v1 = bf16_to_f32(b1);
        return;
    }
    float* c = (float*)C + i;
    if (OUT == GEMM_BF16_OUT_F32_ADD) {
        v0 += c[0];
        if (second) v1 += c[1];
    }
    if (pair) {
        *(unsigned long long*)c = (unsigned long long)__float_as_uint(v0) | ((unsigned long long)__float_as_uint(v1) << 32);
    } else {
        c[0] = v0;
        if (second) c[1] = v1;
    }
    if (OUT == GEMM_BF16_OUT_F32_GELU || OUT == GEMM_BF16_OUT_F32_BF16) {
        uint16_t* a = act + i;
        const float a0 = OUT == GEMM_BF16_OUT_F32_GELU ? gelu_f(v0) : v0;
        const float a1 = OUT == GEMM_BF16_OUT_F32_GELU ? gelu_f(v1) : v1;
        if (pair) {
            *(uint32_t*)a = pack_bf16x2(a0, a1);
        } else {
            a[0] = f32_to_bf16(a0);
            if (second) a[1] = f32_to_bf16(a1);
        }
    }
}

// gemm_bf16_row_stats finishes the statistics of one row's NV values held
// by a thread (ok: inside C), the 4 lanes of a quad holding the rest of
// the row's part (lanes 4g .. 4g + 3 in both accumulator layouts): each lane
// summarises its own values, the quad merges them (epilogue.cuh's
// butterfly of Chan merges), and every lane gets the quad's summary. Every
// lane of the warp must call it.
template <int NV>
__device__ __forceinline__ RowStats gemm_bf16_row_stats(const float (&vals)[NV], const bool (&ok)[NV]) {
    RowStats s = row_stats_local(vals, ok);
    row_stats_reduce<4>(s);
    return s;
}

// gemm_bf16_stats_store writes the statistics of row (inside C) in column
// tile `tile` (columns 64 tile .. 64 tile + 63) when that tile starts
// inside C.
__device__ __forceinline__ void gemm_bf16_stats_store(float* __restrict__ stats, int N, int row, int tile, const RowStats& s) {
    const int tiles = (N + STATS_TILE - 1) / STATS_TILE;
    if (tile >= tiles) return;
    float* p = stats + ((size_t)row * tiles + tile) * 3;
    p[0] = s.cnt;
    p[1] = s.mean;
    p[2] = s.m2;
}

// gemm_bf16_epilogue stores one 64-row half of a consumer's tile, a 64x128
// accumulator whose top-left element is C[m0][n0], for thread t (0..127)
// of the consumer warpgroup.
// A quad of lanes holds a row's 128 columns, 16 values each in each of
// the tile's two 64-column statistics tiles, so the quad's merge is the
// row's statistics tile (the statistics epilogues, gemm_bf16_has_stats).
template <int OUT>
__device__ __forceinline__ void gemm_bf16_epilogue(const float (&acc)[64], const float* __restrict__ bias, void* C,
                                                   uint16_t* __restrict__ act, float* __restrict__ stats, int M, int N, int m0,
                                                   int n0, int t) {
    const int w = t / 32, lane = t % 32, g = lane / 4, q = lane % 4;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int row = m0 + 16 * w + g + 8 * h;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            float vals[16];
            bool ok[16];
#pragma unroll
            for (int jj = 0; jj < 8; ++jj) {
                const int j = 8 * half + jj, col = n0 + 8 * j + 2 * q;
                float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
                gemm_bf16_emit<OUT>(bias, C, act, M, N, row, col, v0, v1);
                vals[2 * jj] = v0, vals[2 * jj + 1] = v1;
                ok[2 * jj] = row < M && col < N, ok[2 * jj + 1] = row < M && col + 1 < N;
            }
            if (gemm_bf16_has_stats(OUT)) {
                const RowStats s = gemm_bf16_row_stats(vals, ok);
                if (q == 0 && row < M) gemm_bf16_stats_store(stats, N, row, n0 / STATS_TILE + half, s);
            }
        }
    }
}

// gemm_bf16_pin_acc pins the accumulator registers at this point of the
// program: no read or write of them moves across it. Placed after the
// zeroing and after the final wgmma_wait, it keeps the compiler from
// sinking the zeroing into, or hoisting epilogue reads above, the wgmma
// pipeline, which ptxas answers by serialising every wgmma (C7514).
// (The emulator runs each wgmma at its wait: nothing to pin.)
__device__ __forceinline__ void gemm_bf16_pin_acc(float (&acc)[64]) {
#if !defined(DINOCLIP_EMU)
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(acc[i])::"memory");
#endif
}

#if DC_SM90A
// gemm_bf16_load_operand issues the TMA load(s) of one operand's K chunk c
// into the stage's slot at dst: a K-major operand (rows x0.. of a [rows,
// K] tensor) as one box {64 K, 128 rows}; an MN-major one (columns x0.. of
// a [K, cols] tensor) as two boxes {64 columns, 64 K}, 8 KiB apart.
template <bool MN>
__device__ __forceinline__ void gemm_bf16_load_operand(unsigned char* dst, const dc_tensor_map* map, int x0, int c, uint32_t bar) {
    if (MN) {
        tma_load_2d(smem_addr(dst), map, x0, c * GEMM_BF16_BK, bar);
        tma_load_2d(smem_addr(dst + GEMM_BF16_MN_BOX_BYTES), map, x0 + 64, c * GEMM_BF16_BK, bar);
    } else {
        tma_load_2d(smem_addr(dst), map, c * GEMM_BF16_BK, x0, bar);
    }
}

// gemm_bf16_operand_desc is the descriptor of K step kk (16 K) of an
// operand slot at shared address s. K-major: 128-byte rows, 8-row groups
// 1024 bytes apart, the K step 32 bytes along the swizzled row. MN-major:
// K rows of 128 bytes (64 columns), 8-row groups in K 1024 bytes apart
// (SBO), the 64-column blocks 8 KiB apart (LBO), the K step 16 rows =
// 2048 bytes (whole swizzle periods, so the base offset stays 0).
template <bool MN>
__device__ __forceinline__ uint64_t gemm_bf16_operand_desc(uint32_t s, int kk) {
    return MN ? smem_desc(s + 2048 * kk, GEMM_BF16_MN_BOX_BYTES, 1024, DC_DESC_SWIZZLE_128B)
              : smem_desc(s + 32 * kk, 16, 1024, DC_DESC_SWIZZLE_128B);
}
#endif

// gemm_bf16_wgmma: C = epilogue(op(A) op(B) + bias) with A K-major ([M, K])
// or, if A_MN, MN-major ([K, M]), and B K-major ([N, K]) or, if B_MN,
// MN-major ([K, N]); tma_a, tma_b their tensor maps.
template <bool A_MN, bool B_MN, int OUT>
__device__ __forceinline__ void gemm_bf16_wgmma(const dc_tensor_map* tma_a, const dc_tensor_map* tma_b, const float* __restrict__ bias,
                                                void* C, uint16_t* __restrict__ act,
                                                float* __restrict__ stats, int M, int N, int K, int splits = 1) {
#if DC_SM90A
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* tiles = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    uint64_t* full = (uint64_t*)(tiles + GEMM_BF16_STAGES * GEMM_BF16_STAGE_BYTES);
    uint64_t* empty = full + GEMM_BF16_STAGES;
    uint64_t* turn = empty + GEMM_BF16_STAGES;  // turn[c]: consumer c may start its next main loop
    const int t = threadIdx.x, group = t / 128;
    const int tiles_n = (N + GEMM_BF16_BN - 1) / GEMM_BF16_BN;
    const int tile_count = ((M + GEMM_BF16_BM - 1) / GEMM_BF16_BM) * tiles_n;
    const int units = tile_count * splits;  // (tile, split) pairs, tile-major within a split
    const int chunks = (K + GEMM_BF16_BK - 1) / GEMM_BF16_BK;
    if (t == 0) {
        for (int s = 0; s < GEMM_BF16_STAGES; ++s) {
            mbar_init(smem_addr(&full[s]), 1);
            mbar_init(smem_addr(&empty[s]), 128);  // the consumer warpgroup whose tile the stage holds
        }
        for (int c = 0; c < 2; ++c) mbar_init(smem_addr(&turn[c]), 128);
        fence_mbarrier_init();
    }
    __syncthreads();

    if (group == 0) {
        setmaxnreg_dec<40>();
        if (t == 0) {
            uint32_t use = 0;  // stage uses so far, over all tiles: stage use % STAGES, phase use / STAGES
            for (int u = blockIdx.x; u < units; u += gridDim.x) {
                const int tile = u % tile_count, split = u / tile_count;
                const int m0 = tile / tiles_n * GEMM_BF16_BM, n0 = tile % tiles_n * GEMM_BF16_BN;
                const int c1 = gemm_bf16_split_chunk(chunks, splits, split + 1);
                for (int c = gemm_bf16_split_chunk(chunks, splits, split); c < c1; ++c, ++use) {
                    const int s = use % GEMM_BF16_STAGES;
                    // Wait for the consumers to release the stage's previous
                    // use; a fresh mbarrier's "previous phase" (parity 1)
                    // counts as complete, so the first round passes.
                    mbar_wait(smem_addr(&empty[s]), ((use / GEMM_BF16_STAGES) & 1) ^ 1);
                    unsigned char* sa = tiles + s * GEMM_BF16_STAGE_BYTES;
                    // The boxes' full bytes arrive, zero-filled parts (and
                    // boxes wholly past the edge) included.
                    mbar_arrive_expect_tx(smem_addr(&full[s]), GEMM_BF16_STAGE_BYTES);
                    gemm_bf16_load_operand<A_MN>(sa, tma_a, m0, c, smem_addr(&full[s]));
                    gemm_bf16_load_operand<B_MN>(sa + GEMM_BF16_A_BYTES, tma_b, n0, c, smem_addr(&full[s]));
                }
            }
        }
        return;
    }

    setmaxnreg_inc<232>();
    // Ping-pong: the block's units alternate between the two consumers,
    // each computing a whole 128x128 tile, so that one consumer's epilogue
    // runs while the other's wgmmas keep the tensor cores busy. A consumer
    // skips the other's units, counting their chunks' stage uses: both walk
    // the ring in the producer's order. Their main loops take turns (unit
    // i's starts once unit i-1's has issued its wgmmas: the turn
    // mbarriers), which keeps each stage's phase parity unambiguous to its
    // waiter (a consumer that ran ahead of the other's main loop would wait
    // on a stage whole ring rounds early, and an mbarrier's parity cannot
    // tell the rounds apart).
    const int consumer = group - 1, ct = t - 128 * group;
    uint32_t use = 0;
    for (int u = blockIdx.x, i = 0; u < units; u += gridDim.x, ++i) {
        const int tile = u % tile_count, split = u / tile_count;
        const int m0 = tile / tiles_n * GEMM_BF16_BM, n0 = tile % tiles_n * GEMM_BF16_BN;
        const int c0 = gemm_bf16_split_chunk(chunks, splits, split), c1 = gemm_bf16_split_chunk(chunks, splits, split + 1);
        if ((i & 1) != consumer) {
            use += c1 - c0;
            continue;
        }
        // acc[r]: rows 64r .. 64r + 63 of the tile, all 128 columns; zeroed
        // before the wait, off the path from the other's turn to the wgmmas.
        float acc[2][64];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
#pragma unroll
            for (int j = 0; j < 64; ++j) acc[r][j] = 0.0f;
            gemm_bf16_pin_acc(acc[r]);
        }
        // The other consumer's main loop of unit i-1 has issued its last
        // wgmma: turn[c]'s phase (i-1)/2.
        if (i > 0) mbar_wait(smem_addr(&turn[consumer]), ((i - 1) / 2) & 1);
        for (int c = c0; c < c1; ++c, ++use) {
            const int s = use % GEMM_BF16_STAGES;
            mbar_wait(smem_addr(&full[s]), (use / GEMM_BF16_STAGES) & 1);
            // Rows 64.. of A start 8 KiB (a whole number of swizzle periods)
            // into the stage in either layout: 64 K-major rows of 128
            // bytes, or the second MN-major box.
            const uint32_t sa = smem_addr(tiles + s * GEMM_BF16_STAGE_BYTES);
            const uint32_t sw = smem_addr(tiles + s * GEMM_BF16_STAGE_BYTES + GEMM_BF16_A_BYTES);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < GEMM_BF16_BK / 16; ++kk) {
                const uint64_t bw = gemm_bf16_operand_desc<B_MN>(sw, kk);
#pragma unroll
                for (int r = 0; r < 2; ++r)
                    wgmma_bf16_ss_trans<A_MN, B_MN>(acc[r], gemm_bf16_operand_desc<A_MN>(sa + r * (64 * GEMM_BF16_BK * 2), kk), bw, 1);
            }
            wgmma_commit();
            // The previous chunk's group has completed: release its stage.
            wgmma_wait<1>();
            if (c > c0) mbar_arrive(smem_addr(&empty[(use - 1) % GEMM_BF16_STAGES]));
        }
        // Every wgmma of the tile is issued: the other consumer's turn, its
        // wgmmas queueing behind these while this one finishes and stores.
        mbar_arrive(smem_addr(&turn[consumer ^ 1]));
        wgmma_wait<0>();
#pragma unroll
        for (int r = 0; r < 2; ++r) gemm_bf16_pin_acc(acc[r]);
        if (c1 > c0) mbar_arrive(smem_addr(&empty[(use - 1) % GEMM_BF16_STAGES]));
        void* out = gemm_bf16_split_out(C, splits, split, M, N);
#pragma unroll
        for (int r = 0; r < 2; ++r) gemm_bf16_epilogue<OUT>(acc[r], bias, out, act, stats, M, N, m0 + 64 * r, n0, ct);
    }
#else
    __trap();
#endif
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_f32(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                     const float* __restrict__ bias, float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_wgmma<false, false, GEMM_BF16_OUT_F32>(&tma_a, &tma_w, bias, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_gelu_bf16(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                           const float* __restrict__ bias, uint16_t* __restrict__ C, int M, int N, int K) {
    gemm_bf16_wgmma<false, false, GEMM_BF16_OUT_GELU_BF16>(&tma_a, &tma_w, bias, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_f32_stats(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                           const float* __restrict__ bias, float* __restrict__ C, float* __restrict__ stats, int M, int N, int K) {
    gemm_bf16_wgmma<false, false, GEMM_BF16_OUT_F32_STATS>(&tma_a, &tma_w, bias, C, nullptr, stats, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_bf16_stats(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                            const float* __restrict__ bias, uint16_t* __restrict__ C, float* __restrict__ stats, int M, int N, int K) {
    gemm_bf16_wgmma<false, false, GEMM_BF16_OUT_BF16_STATS>(&tma_a, &tma_w, bias, C, nullptr, stats, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_f32_gelu_bf16(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                               const float* __restrict__ bias, float* __restrict__ C, uint16_t* __restrict__ act, int M, int N,
                               int K) {
    gemm_bf16_wgmma<false, false, GEMM_BF16_OUT_F32_GELU>(&tma_a, &tma_w, bias, C, act, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nt_f32_bf16(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_w,
                          const float* __restrict__ bias, float* __restrict__ C, uint16_t* __restrict__ act, int M, int N, int K) {
    gemm_bf16_wgmma<false, false, GEMM_BF16_OUT_F32_BF16>(&tma_a, &tma_w, bias, C, act, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nn_f32(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_b,
                     float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_wgmma<false, true, GEMM_BF16_OUT_F32>(&tma_a, &tma_b, nullptr, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_nn_f32_add(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_b,
                         float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_wgmma<false, true, GEMM_BF16_OUT_F32_ADD>(&tma_a, &tma_b, nullptr, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_THREADS, 1)
    gemm_bf16_tn_f32(const __grid_constant__ dc_tensor_map tma_a, const __grid_constant__ dc_tensor_map tma_b,
                     float* __restrict__ C, int M, int N, int K, int splits) {
    gemm_bf16_wgmma<true, true, GEMM_BF16_OUT_F32>(&tma_a, &tma_b, nullptr, C, nullptr, nullptr, M, N, K, splits);
}

// ---------------------------------------------------------------------------
// The same ops on any GPU from sm_80 on: mma.sync + ldmatrix + cp.async.
#define GEMM_BF16_MMA_THREADS 256
#define GEMM_BF16_MMA_BK 32
#define GEMM_BF16_MMA_STAGES 3
// A K-major operand's chunk: 128 rows of 32 elements, padded to 40 per
// shared row; an MN-major one: 32 K rows of 128 elements, padded to 136.
// Either way rows stay 16-byte aligned and the 8 rows an ldmatrix matrix
// reads fall in distinct 16-byte bank groups (80 and 272 bytes apart).
#define GEMM_BF16_MMA_PITCH 40
#define GEMM_BF16_MMA_MN_PITCH 136
#define GEMM_BF16_MMA_OPERAND_ELEMS(mn) ((mn) ? GEMM_BF16_MMA_BK * GEMM_BF16_MMA_MN_PITCH : GEMM_BF16_BM * GEMM_BF16_MMA_PITCH)
#define GEMM_BF16_MMA_STAGE_ELEMS(a_mn, b_mn) (GEMM_BF16_MMA_OPERAND_ELEMS(a_mn) + GEMM_BF16_MMA_OPERAND_ELEMS(b_mn))
// 60 KiB (nt), 55.5 KiB (nn), 51 KiB (tn).
#define GEMM_BF16_MMA_SMEM(a_mn, b_mn) (GEMM_BF16_MMA_STAGES * GEMM_BF16_MMA_STAGE_ELEMS(a_mn, b_mn) * 2)

// gemm_bf16_mma_load issues the cp.async copies of K chunk k0.. of one
// operand into its stage slot s: a K-major operand is rows x0..x0+127 of
// g [X, K]; an MN-major one is K rows k0..k0+31, columns x0..x0+127 of
// g [K, X]. 512 16-byte pieces, 2 per thread, zero-filled past the edges
// (an out-of-range piece reads nothing, from a valid address).
template <bool MN>
__device__ __forceinline__ void gemm_bf16_mma_load(uint16_t* s, const uint16_t* __restrict__ g, int x0, int X, int k0, int K, int t) {
#pragma unroll
    for (int p = t; p < 512; p += GEMM_BF16_MMA_THREADS) {
        if (MN) {
            const int kr = p / 16, col = (p % 16) * 8, k = k0 + kr, x = x0 + col;
            const int bytes = k < K && x < X ? min(8, X - x) * 2 : 0;
            cp_async_cg16(smem_addr(s + kr * GEMM_BF16_MMA_MN_PITCH + col), bytes ? g + (size_t)k * X + x : g, bytes);
        } else {
            const int row = p / 4, col = (p % 4) * 8, k = k0 + col, x = x0 + row;
            const int bytes = k < K && x < X ? min(8, K - k) * 2 : 0;
            cp_async_cg16(smem_addr(s + row * GEMM_BF16_MMA_PITCH + col), bytes ? g + (size_t)x * K + k : g, bytes);
        }
    }
}

// gemm_bf16_mma_epilogue stores the block's 128x128 accumulator tile,
// whose top-left element is C[m0][n0], for thread t (0..255): warp w's
// 64x32 part at rows 64 (w / 4), columns 32 (w % 4). A warp's quad holds
// 8 values of each of its rows, so a 64-column statistics tile spans the
// warps 2p and 2p + 1: each quad merges its row's 32 columns and leaves
// the result in `part` (the shared ring, free once every warp has left
// the main loop), and then thread t merges row t % 64 of warp pair t / 64,
// the left warp's columns first (a fixed order: the same bits whatever
// the warps' timing), and stores it.
static_assert(8 * 64 * 3 * sizeof(float) <= GEMM_BF16_MMA_SMEM(false, false), "the warps' statistics fit in the ring");
template <int OUT>
__device__ __forceinline__ void gemm_bf16_mma_epilogue(const float (&acc)[4][4][4], const float* __restrict__ bias, void* C,
                                                       uint16_t* __restrict__ act, float* __restrict__ stats, int M, int N, int m0,
                                                       int n0, float* part, int t) {
    const int warp = t / 32, lane = t % 32, g = lane / 4, q = lane % 4;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    if (gemm_bf16_has_stats(OUT)) __syncthreads();  // every warp is done reading the ring
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = 16 * i + g + 8 * h, row = m0 + wm + r;
            float vals[8];
            bool ok[8];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int col = n0 + wn + 8 * j + 2 * q;
                float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
                gemm_bf16_emit<OUT>(bias, C, act, M, N, row, col, v0, v1);
                vals[2 * j] = v0, vals[2 * j + 1] = v1;
                ok[2 * j] = row < M && col < N, ok[2 * j + 1] = row < M && col + 1 < N;
            }
            if (gemm_bf16_has_stats(OUT)) {
                const RowStats s = gemm_bf16_row_stats(vals, ok);
                if (q == 0) {
                    float* p = part + (warp * 64 + r) * 3;
                    p[0] = s.cnt, p[1] = s.mean, p[2] = s.m2;
                }
            }
        }
    if (gemm_bf16_has_stats(OUT)) {
        __syncthreads();
        const int pair = t / 64, r = t % 64, row = m0 + (pair / 2) * 64 + r;
        const float* left = part + (2 * pair * 64 + r) * 3;
        const float* right = left + 64 * 3;
        RowStats s{left[0], left[1], left[2]};
        chan_merge(s.cnt, s.mean, s.m2, right[0], right[1], right[2]);
        if (row < M) gemm_bf16_stats_store(stats, N, row, n0 / STATS_TILE + pair % 2, s);
    }
}

// gemm_bf16_mma: the mma.sync twin of gemm_bf16_wgmma (same operand
// layouts, A [M, K] or [K, M], B [N, K] or [K, N], plain pointers).
template <bool A_MN, bool B_MN, int OUT>
__device__ __forceinline__ void gemm_bf16_mma(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B,
                                              const float* __restrict__ bias, void* C, uint16_t* __restrict__ act,
                                              float* __restrict__ stats, int M, int N, int K, int splits = 1) {
    uint16_t* smem = (uint16_t*)dc_dynamic_smem();
    const int t = threadIdx.x, warp = t / 32, lane = t % 32;
    const int m0 = blockIdx.y * GEMM_BF16_BM, n0 = blockIdx.x * GEMM_BF16_BN;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    // This block's split (blockIdx.z) of K's chunks: chunks c0 .. c0 +
    // chunks - 1, counted from 0 below.
    const int all = (K + GEMM_BF16_MMA_BK - 1) / GEMM_BF16_MMA_BK;
    const int c0 = gemm_bf16_split_chunk(all, splits, blockIdx.z);
    const int chunks = gemm_bf16_split_chunk(all, splits, blockIdx.z + 1) - c0;
    constexpr int stage_elems = GEMM_BF16_MMA_STAGE_ELEMS(A_MN, B_MN), a_elems = GEMM_BF16_MMA_OPERAND_ELEMS(A_MN);

    auto load_chunk = [&](int c, int stage) {
        uint16_t* sa = smem + stage * stage_elems;
        gemm_bf16_mma_load<A_MN>(sa, A, m0, M, (c0 + c) * GEMM_BF16_MMA_BK, K, t);
        gemm_bf16_mma_load<B_MN>(sa + a_elems, B, n0, N, (c0 + c) * GEMM_BF16_MMA_BK, K, t);
    };

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    cp_async_ring<GEMM_BF16_MMA_STAGES>(chunks, load_chunk, [&](int, int stage) {
        const uint16_t* sa = smem + stage * stage_elems;
        const uint16_t* sw = sa + a_elems;
#pragma unroll
        for (int kk = 0; kk < GEMM_BF16_MMA_BK; kk += 16) {
            uint32_t a[4][4], b[4][2];
            // ldmatrix x4: lanes 8i..8i+7 address the rows of matrix i.
            const int mi = lane / 8, r = lane % 8;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                // Matrices: rows 0-7 / 8-15 at k 0-7, then the same at
                // k 8-15: a0..a3 of the fragment. MN-major, the shared rows
                // are K: the transposing load gives each lane its (row, k
                // pair) all the same.
                if (A_MN)
                    ldmatrix_x4_trans(a[i], smem_addr(sa + (kk + (mi / 2) * 8 + r) * GEMM_BF16_MMA_MN_PITCH + wm + i * 16 + (mi % 2) * 8));
                else
                    ldmatrix_x4(a[i], smem_addr(sa + (wm + i * 16 + (mi % 2) * 8 + r) * GEMM_BF16_MMA_PITCH + kk + (mi / 2) * 8));
            }
#pragma unroll
            for (int j = 0; j < 4; j += 2) {
                // Matrices: n 0-7 at k 0-7 and 8-15 (b0, b1 of tile j), then
                // n 8-15 likewise (tile j+1).
                uint32_t q[4];
                if (B_MN)
                    ldmatrix_x4_trans(q, smem_addr(sw + (kk + (mi % 2) * 8 + r) * GEMM_BF16_MMA_MN_PITCH + wn + j * 8 + (mi / 2) * 8));
                else
                    ldmatrix_x4(q, smem_addr(sw + (wn + j * 8 + (mi / 2) * 8 + r) * GEMM_BF16_MMA_PITCH + kk + (mi % 2) * 8));
                b[j][0] = q[0], b[j][1] = q[1], b[j + 1][0] = q[2], b[j + 1][1] = q[3];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma_bf16_16816(acc[i][j], a[i], b[j], acc[i][j]);
        }
    });
    gemm_bf16_mma_epilogue<OUT>(acc, bias, gemm_bf16_split_out(C, splits, blockIdx.z, M, N), act, stats, M, N, m0, n0,
                                (float*)smem, t);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nt_mma_f32(const uint16_t* __restrict__ A, const uint16_t* __restrict__ W, const float* __restrict__ bias,
                         float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_mma<false, false, GEMM_BF16_OUT_F32>(A, W, bias, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nt_mma_gelu_bf16(const uint16_t* __restrict__ A, const uint16_t* __restrict__ W, const float* __restrict__ bias,
                               uint16_t* __restrict__ C, int M, int N, int K) {
    gemm_bf16_mma<false, false, GEMM_BF16_OUT_GELU_BF16>(A, W, bias, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nt_mma_f32_stats(const uint16_t* __restrict__ A, const uint16_t* __restrict__ W, const float* __restrict__ bias,
                               float* __restrict__ C, float* __restrict__ stats, int M, int N, int K) {
    gemm_bf16_mma<false, false, GEMM_BF16_OUT_F32_STATS>(A, W, bias, C, nullptr, stats, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nt_mma_bf16_stats(const uint16_t* __restrict__ A, const uint16_t* __restrict__ W, const float* __restrict__ bias,
                                uint16_t* __restrict__ C, float* __restrict__ stats, int M, int N, int K) {
    gemm_bf16_mma<false, false, GEMM_BF16_OUT_BF16_STATS>(A, W, bias, C, nullptr, stats, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nt_mma_f32_gelu_bf16(const uint16_t* __restrict__ A, const uint16_t* __restrict__ W, const float* __restrict__ bias,
                                   float* __restrict__ C, uint16_t* __restrict__ act, int M, int N, int K) {
    gemm_bf16_mma<false, false, GEMM_BF16_OUT_F32_GELU>(A, W, bias, C, act, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nt_mma_f32_bf16(const uint16_t* __restrict__ A, const uint16_t* __restrict__ W, const float* __restrict__ bias,
                              float* __restrict__ C, uint16_t* __restrict__ act, int M, int N, int K) {
    gemm_bf16_mma<false, false, GEMM_BF16_OUT_F32_BF16>(A, W, bias, C, act, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nn_mma_f32(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B, float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_mma<false, true, GEMM_BF16_OUT_F32>(A, B, nullptr, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_nn_mma_f32_add(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B, float* __restrict__ C, int M, int N, int K) {
    gemm_bf16_mma<false, true, GEMM_BF16_OUT_F32_ADD>(A, B, nullptr, C, nullptr, nullptr, M, N, K);
}

extern "C" __global__ void __launch_bounds__(GEMM_BF16_MMA_THREADS)
    gemm_bf16_tn_mma_f32(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B, float* __restrict__ C, int M, int N, int K,
                         int splits) {
    gemm_bf16_mma<true, true, GEMM_BF16_OUT_F32>(A, B, nullptr, C, nullptr, nullptr, M, N, K, splits);
}

// gemm_bf16_splitk_sum adds the splits' slices of a split-K product in
// split order, in f32: C[i] = parts[i] + parts[n + i] + ... (splits
// slices of n). Grid-stride, block 256.
extern "C" __global__ void __launch_bounds__(256)
    gemm_bf16_splitk_sum(float* __restrict__ C, const float* __restrict__ parts, int splits, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x) {
        float s = parts[i];
        for (int k = 1; k < splits; ++k) s += parts[(size_t)k * n + i];
        C[i] = s;
    }
}
