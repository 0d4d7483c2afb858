// tensorcore_check.cu: small kernels that exercise one primitive of
// tensorcore.cuh each on known inputs and write out what each thread got,
// so that a test can compare every register against the PTX ISA's
// fragment layout (in the emulator and on the GPU alike). Not used by the
// engine.
//
//   tc_check_mma       one warp: D = A B + C for a 16x16 A (row-major), a
//                      16x8 B given as its transpose Bt[8][16], C[16][8];
//                      fragments loaded straight from global memory by the
//                      documented layout; is_f16 picks f16 over bf16
//   tc_check_ldmatrix  one warp: a 32x8 b16 tile (four 8x8 matrices) in
//                      shared memory, ldmatrix of `mats` matrices (1, 2, 4),
//                      trans or not; out[lane*4 + i] is register i
//   tc_check_cp_async  one block of 64 threads: thread t copies 16 bytes
//                      as cp.async of `bytes` (4, 8, 16) pieces reading
//                      src_bytes of each (the rest zero), then, if wait,
//                      waits; out is the shared memory afterwards
//   tc_check_wgmma     one warpgroup: D[64xN] = A[64x16] B[16xN] with A and B
//                      (given as Bt[N][16]) stored into shared memory K-major
//                      with store_swizzle while the descriptors say
//                      desc_swizzle (DC_DESC_SWIZZLE_*); a_in_regs takes A
//                      from registers; out[thread][N/2] the accumulators,
//                      read after wgmma.wait_group if wait, else before it
//                      (an error the emulator must catch)
//   tc_check_wgmma_mn  one warpgroup: D[64xN] = A[64x16] B[16xN] as
//                      tc_check_wgmma, N 16 or 128, with A stored MN-major
//                      if trans_a (else K-major) and B if trans_b, both in
//                      swizzle (DC_DESC_SWIZZLE_*); the instruction's
//                      imm-trans-b is trans_b ^ flip_b (flip_b 1: a layout
//                      lie the product must reveal); out as tc_check_wgmma
//   tc_check_tma       one block of 128 threads: a TMA load of the box of
//                      `in` at (x, y) into shared memory (swizzled as the map
//                      says), out = the shared bytes as they lie; if
//                      read_early, the block reads before waiting on the
//                      mbarrier (and waits afterwards); then a TMA store of
//                      the box to `store` at (sx, sy)
//   tc_check_cluster   clusters of `ctas` blocks of 128 threads: rank 0 loads
//                      a box multicast to every block; each block writes its
//                      copy and its rank; then every block arrives on rank
//                      0's mbarrier and rank 0 waits for all
//   tc_check_geometry  any grid and block of at least 64 threads:
//                      out[global linear thread] = the linear thread index
//                      within the block, except that the first 64 threads
//                      exchange theirs (thread i gets 63-i) through shared
//                      memory across named barrier 1 of 64 threads
//   tc_check_divergent a block barrier that half the block skips by exiting
//                      (a launch must fail)
//   tc_check_drift     blocks of 64 threads (two warps): thread t puts t in
//                      shared memory; after a barrier each warp runs `steps`
//                      shuffles, each of the other warp's value at its lane;
//                      then, after a barrier only if sync, thread t
//                      overwrites its own value with -1; out[64 block + t] =
//                      the sum of what it received. Without the barrier one
//                      warp can overwrite its values while the other still
//                      reads them: the emulator's tests use it to show that
//                      its schedule lets warps drift apart.
//   tc_check_ring      blocks of 64 threads: warp 0 produces `rounds` values
//                      per lane into one shared stage (mbarrier `full`),
//                      warp 1 consumes them and gives the stage back
//                      (mbarrier `empty`), after reading it, or before if
//                      early (a release too soon: the producer may refill
//                      the stage before it is read); out[32 block + lane] =
//                      the consumer lane's sum. The emulator's tests use it
//                      to show that the arrival completing a phase lets
//                      the waiting warps run at once.
//
// Versions: v1; v2 adds tc_check_wgmma_mn; v3 tc_check_drift; v4 tc_check_ring.
#include "tensorcore.cuh"

extern "C" __global__ void tc_check_mma(const uint16_t* A, const uint16_t* Bt, const float* C, float* D, int is_f16) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (threadIdx.x >= 32) return;
    uint32_t a[4], b[2];
    float c[4], d[4];
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i % 2) * 8, k = 2 * t + (i / 2) * 8;
        a[i] = (uint32_t)A[row * 16 + k] | ((uint32_t)A[row * 16 + k + 1] << 16);
        const int crow = g + (i / 2) * 8, ccol = 2 * t + i % 2;
        c[i] = C[crow * 8 + ccol];
    }
    for (int i = 0; i < 2; ++i) {
        const int k = 2 * t + i * 8;
        b[i] = (uint32_t)Bt[g * 16 + k] | ((uint32_t)Bt[g * 16 + k + 1] << 16);
    }
    if (is_f16)
        mma_f16_16816(d, a, b, c);
    else
        mma_bf16_16816(d, a, b, c);
    for (int i = 0; i < 4; ++i) D[(g + (i / 2) * 8) * 8 + 2 * t + i % 2] = d[i];
}

extern "C" __global__ void tc_check_ldmatrix(const uint16_t* M, uint32_t* out, int mats, int trans) {
    uint16_t* s = (uint16_t*)dc_dynamic_smem();  // 32 rows of 8, 16 bytes each
    const int lane = threadIdx.x;
    for (int i = 0; i < 8; ++i) s[lane * 8 + i] = M[lane * 8 + i];
    __syncthreads();
    const uint32_t addr = smem_addr(s + lane * 8);
    uint32_t r[4] = {0, 0, 0, 0};
    if (mats == 1) {
        uint32_t x[1];
        if (trans) ldmatrix_x1_trans(x, addr); else ldmatrix_x1(x, addr);
        r[0] = x[0];
    } else if (mats == 2) {
        uint32_t x[2];
        if (trans) ldmatrix_x2_trans(x, addr); else ldmatrix_x2(x, addr);
        r[0] = x[0], r[1] = x[1];
    } else {
        if (trans) ldmatrix_x4_trans(r, addr); else ldmatrix_x4(r, addr);
    }
    for (int i = 0; i < 4; ++i) out[lane * 4 + i] = r[i];
}

extern "C" __global__ void tc_check_cp_async(const unsigned char* src, unsigned char* out, int bytes, int src_bytes, int wait) {
    unsigned char* s = dc_dynamic_smem();
    const int t = threadIdx.x;
    for (int off = 0; off < 16; off += bytes) {
        const uint32_t dst = smem_addr(s + t * 16 + off);
        const unsigned char* from = src + t * 16 + off;
        if (bytes == 4) cp_async_ca<4>(dst, from, src_bytes);
        else if (bytes == 8) cp_async_ca<8>(dst, from, src_bytes);
        else cp_async_cg16(dst, from, src_bytes);
    }
    cp_async_commit();
    if (wait) cp_async_wait<0>();
    __syncthreads();
    for (int i = 0; i < 16; ++i) out[t * 16 + i] = s[t * 16 + i];
    // Complete the copies before the block ends either way.
    cp_async_wait<0>();
}

#if DC_SM90A
// kmajor_offset is where element (row, k) of a K-major 16-column bf16
// operand lies from a 1024-aligned base, as a descriptor with this swizzle
// and these offsets reads it (rows 8 apart are sbo bytes apart).
__device__ __forceinline__ uint32_t kmajor_offset(int row, int k, int swizzle, uint32_t lbo, uint32_t sbo) {
    if (swizzle == DC_DESC_SWIZZLE_NONE) return (row / 8) * sbo + (row % 8) * 16 + (k / 8) * lbo + (k % 8) * 2;
    const uint32_t span = swizzle == DC_DESC_SWIZZLE_128B ? 128 : swizzle == DC_DESC_SWIZZLE_64B ? 64 : 32;
    const uint32_t a = (row / 8) * sbo + (row % 8) * span + 2 * k;
    const uint32_t bits = span == 128 ? 7 : span == 64 ? 3 : 1;
    return a ^ (((a >> 7) & bits) << 4);
}

template <int N>
__device__ void wgmma_check(const uint16_t* A, const uint16_t* Bt, float* out, int store_swizzle, int desc_swizzle, int a_in_regs, int wait) {
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* base = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    const int t = threadIdx.x;
    // Operand strides: without swizzle, core matrices of 8 rows x 16 bytes,
    // the two K halves lbo apart, 8-row groups 128 bytes apart; swizzled,
    // rows span bytes apart and 8-row groups 8*span apart.
    auto sbo_of = [](int swz) -> uint32_t { return swz == DC_DESC_SWIZZLE_NONE ? 128 : swz == DC_DESC_SWIZZLE_128B ? 1024 : swz == DC_DESC_SWIZZLE_64B ? 512 : 256; };
    const uint32_t a_lbo = 64 * 16, b_lbo = N * 16;  // the second K half after all rows' first halves
    unsigned char* sa = base;
    unsigned char* sb = base + 64 * 16 * 8;  // room for A in every layout (64 rows x 128 bytes)
    for (int i = t; i < 64 * 16; i += 128) {
        const int row = i / 16, k = i % 16;
        *(uint16_t*)(sa + kmajor_offset(row, k, store_swizzle, a_lbo, sbo_of(store_swizzle))) = A[i];
    }
    for (int i = t; i < N * 16; i += 128) {
        const int row = i / 16, k = i % 16;
        *(uint16_t*)(sb + kmajor_offset(row, k, store_swizzle, b_lbo, sbo_of(store_swizzle))) = Bt[i];
    }
    fence_proxy_async();
    __syncthreads();
    float d[N / 2];
    for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
    const uint64_t da = smem_desc(smem_addr(sa), a_lbo, sbo_of(desc_swizzle), desc_swizzle);
    const uint64_t db = smem_desc(smem_addr(sb), b_lbo, sbo_of(desc_swizzle), desc_swizzle);
    if (a_in_regs) {
        const int w = t / 32, lane = t % 32, g = lane / 4, q = lane % 4;
        uint32_t a[4];
        for (int i = 0; i < 4; ++i) {
            const int row = 16 * w + g + (i % 2) * 8, k = 2 * q + (i / 2) * 8;
            a[i] = (uint32_t)A[row * 16 + k] | ((uint32_t)A[row * 16 + k + 1] << 16);
        }
        wgmma_fence();  // after the registers wgmma reads are written (PTX ISA: wgmma.fence)
        wgmma_bf16_rs<N>(d, a, db, 0);
    } else {
        wgmma_fence();
        wgmma_bf16_ss<N>(d, da, db, 0);
    }
    wgmma_commit();
    if (wait) wgmma_wait<0>();
    for (int i = 0; i < N / 2; ++i) out[t * (N / 2) + i] = d[i];
}
#endif

extern "C" __global__ void tc_check_wgmma(const uint16_t* A, const uint16_t* Bt, float* out, int n, int store_swizzle, int desc_swizzle, int a_in_regs, int wait) {
#if DC_SM90A
    switch (n) {
        case 8: wgmma_check<8>(A, Bt, out, store_swizzle, desc_swizzle, a_in_regs, wait); break;
        case 64: wgmma_check<64>(A, Bt, out, store_swizzle, desc_swizzle, a_in_regs, wait); break;
        case 256: wgmma_check<256>(A, Bt, out, store_swizzle, desc_swizzle, a_in_regs, wait); break;
    }
#else
    __trap();
#endif
}

#if DC_SM90A
// mnmajor_offset is where element (row, k) of an MN-major operand of
// `rows` rows and 16 K lies from a 1024-aligned base. Without swizzle:
// core matrices of 8 K rows x 16 bytes (8 rows in M or N), those adjacent
// in M/N sbo = 128 bytes apart, the two K halves lbo = 16 rows bytes
// apart. With an S-byte swizzle: K rows S bytes apart, 8-K-row groups
// sbo = 8S apart, the (S/2)-row column blocks lbo = 16S apart.
__device__ __forceinline__ uint32_t mnmajor_offset(int row, int k, int rows, int swizzle) {
    if (swizzle == DC_DESC_SWIZZLE_NONE) return (row / 8) * 128 + (k / 8) * (16 * rows) + (k % 8) * 16 + (row % 8) * 2;
    const uint32_t span = swizzle == DC_DESC_SWIZZLE_128B ? 128 : swizzle == DC_DESC_SWIZZLE_64B ? 64 : 32;
    const uint32_t a = (row / (span / 2)) * (16 * span) + (k / 8) * (8 * span) + (k % 8) * span + (row % (span / 2)) * 2;
    const uint32_t bits = span == 128 ? 7 : span == 64 ? 3 : 1;
    return a ^ (((a >> 7) & bits) << 4);
}

// store_operand stores a rows x 16 operand (M[row][k]) at s in the layout
// asked for and returns its descriptor.
__device__ uint64_t store_operand(unsigned char* s, const uint16_t* M, int rows, int mn_major, int swizzle) {
    const uint32_t span = swizzle == DC_DESC_SWIZZLE_NONE ? 0 : swizzle == DC_DESC_SWIZZLE_128B ? 128 : swizzle == DC_DESC_SWIZZLE_64B ? 64 : 32;
    for (int i = threadIdx.x; i < rows * 16; i += 128) {
        const int row = i / 16, k = i % 16;
        const uint32_t off = mn_major ? mnmajor_offset(row, k, rows, swizzle)
                                      : kmajor_offset(row, k, swizzle, rows * 16, span ? 8 * span : 128);
        *(uint16_t*)(s + off) = M[i];
    }
    if (!mn_major) return smem_desc(smem_addr(s), rows * 16, span ? 8 * span : 128, swizzle);
    return span ? smem_desc(smem_addr(s), 16 * span, 8 * span, swizzle) : smem_desc(smem_addr(s), 16 * rows, 128, swizzle);
}

template <int N>
__device__ void wgmma_mn_check(const uint16_t* A, const uint16_t* Bt, float* out, int trans_a, int trans_b, int swizzle, int flip_b) {
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* base = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    const uint64_t da = store_operand(base, A, 64, trans_a, swizzle);
    const uint64_t db = store_operand(base + 64 * 16 * 8, Bt, N, trans_b, swizzle);
    fence_proxy_async();
    __syncthreads();
    float d[N / 2];
    for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
    wgmma_fence();
    switch (trans_a * 2 + (trans_b ^ flip_b)) {
        case 0: wgmma_bf16_ss_trans<0, 0>(d, da, db, 0); break;
        case 1: wgmma_bf16_ss_trans<0, 1>(d, da, db, 0); break;
        case 2: wgmma_bf16_ss_trans<1, 0>(d, da, db, 0); break;
        default: wgmma_bf16_ss_trans<1, 1>(d, da, db, 0); break;
    }
    wgmma_commit();
    wgmma_wait<0>();
    for (int i = 0; i < N / 2; ++i) out[threadIdx.x * (N / 2) + i] = d[i];
}
#endif

extern "C" __global__ void tc_check_wgmma_mn(const uint16_t* A, const uint16_t* Bt, float* out, int n, int trans_a, int trans_b,
                                             int swizzle, int flip_b) {
#if DC_SM90A
    if (n == 16)
        wgmma_mn_check<16>(A, Bt, out, trans_a, trans_b, swizzle, flip_b);
    else
        wgmma_mn_check<128>(A, Bt, out, trans_a, trans_b, swizzle, flip_b);
#else
    __trap();
#endif
}

extern "C" __global__ void tc_check_tma(const __grid_constant__ dc_tensor_map in, const __grid_constant__ dc_tensor_map store,
                                        unsigned char* out, int box_bytes, int x, int y, int sx, int sy, int read_early) {
#if DC_SM90A
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* box = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    uint64_t* bar = (uint64_t*)(box + box_bytes);
    const uint32_t b = smem_addr(bar);
    if (threadIdx.x == 0) {
        mbar_init(b, 1);
        fence_mbarrier_init();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        mbar_arrive_expect_tx(b, box_bytes);
        tma_load_2d(smem_addr(box), &in, x, y, b);
    }
    if (!read_early) mbar_wait(b, 0);
    for (int i = threadIdx.x; i < box_bytes; i += blockDim.x) out[i] = box[i];
    if (read_early) mbar_wait(b, 0);
    __syncthreads();
    if (threadIdx.x == 0) {
        tma_store_2d(&store, sx, sy, smem_addr(box));
        bulk_commit();
        bulk_wait_read<0>();
    }
#else
    __trap();
#endif
}

extern "C" __global__ void tc_check_cluster(const __grid_constant__ dc_tensor_map in, unsigned char* out, unsigned* ranks, int box_bytes) {
#if DC_SM90A
    unsigned char* raw = dc_dynamic_smem();
    unsigned char* box = raw + ((1024 - smem_addr(raw) % 1024) % 1024);
    uint64_t* bars = (uint64_t*)(box + box_bytes);  // [0]: the box arrived; [1]: every block is done (rank 0's)
    const uint32_t rank = cluster_ctarank(), n = cluster_nctarank();
    const uint32_t full = smem_addr(&bars[0]), done = smem_addr(&bars[1]);
    if (threadIdx.x == 0) {
        mbar_init(full, 1);
        mbar_init(done, n);
        fence_mbarrier_init();
    }
    cluster_sync();  // every block's mbarriers are initialised before any copy
    if (threadIdx.x == 0) mbar_arrive_expect_tx(full, box_bytes);
    cluster_sync();  // every block expects its bytes before rank 0 issues
    if (rank == 0 && threadIdx.x == 0) tma_load_2d_multicast(smem_addr(box), &in, 0, 0, full, (uint16_t)((1u << n) - 1));
    mbar_wait(full, 0);
    const int blk = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    for (int i = threadIdx.x; i < box_bytes; i += blockDim.x) out[blk * box_bytes + i] = box[i];
    if (threadIdx.x == 0) {
        ranks[blk] = rank;
        mbar_arrive_cluster(done, 0);
    }
    if (rank == 0) mbar_wait(done, 0);
    cluster_sync();  // no block leaves while another may still arrive on its mbarriers
#else
    __trap();
#endif
}

extern "C" __global__ void tc_check_geometry(int* out) {
    int* s = (int*)dc_dynamic_smem();  // 64 ints
    const int lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int threads = blockDim.x * blockDim.y * blockDim.z;
    const int blk = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int v = lin;
    if (lin < 64) {
        s[lin] = lin;
        named_barrier_sync(1, 64);
        v = s[63 - lin];
    }
    out[blk * threads + lin] = v;
}

extern "C" __global__ void tc_check_divergent(int* out) {
    if (threadIdx.x % 2 == 1) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

extern "C" __global__ void tc_check_drift(int* out, int steps, int sync) {
    int* s = (int*)dc_dynamic_smem();  // 64 ints
    const int t = threadIdx.x % 64;
    s[t] = t;
    __syncthreads();
    int sum = 0;
    for (int i = 0; i < steps; ++i) sum += __shfl_xor_sync(0xffffffffu, s[(t + 32) % 64], 1);
    if (sync) __syncthreads();
    s[t] = -1;
    out[blockIdx.x * 64 + t] = sum;
}

extern "C" __global__ void tc_check_ring(int* out, int rounds, int early) {
#if DC_SM90A
    unsigned char* raw = dc_dynamic_smem();
    uint64_t* bars = (uint64_t*)raw;  // [0] full: the stage holds a value; [1] empty: it was read
    int* stage = (int*)(raw + 16);    // 32 ints
    const uint32_t full = smem_addr(&bars[0]), empty = smem_addr(&bars[1]);
    const int lane = threadIdx.x % 32;
    if (threadIdx.x == 0) {
        mbar_init(full, 32);
        mbar_init(empty, 32);
        fence_mbarrier_init();
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        for (int r = 0; r < rounds; ++r) {
            if (r > 0) mbar_wait(empty, (r - 1) & 1);
            stage[lane] = 100 * r + lane;
            mbar_arrive(full);
        }
    } else {
        int sum = 0;
        for (int r = 0; r < rounds; ++r) {
            mbar_wait(full, r & 1);
            if (early) mbar_arrive(empty);
            sum += stage[lane];
            if (!early) mbar_arrive(empty);
        }
        out[blockIdx.x * 32 + lane] = sum;
    }
#else
    __trap();
#endif
}
