// cp_async_ring.cuh: the main loop of a block that stages its operands
// through shared memory with cp.async in a ring of STAGES slots, shared by
// the sm_80 bf16 GEMM (gemm_bf16.cu) and the GPU search (search.cu).
//
// cp_async_ring<STAGES>(chunks, load, compute) runs chunks 0..chunks-1:
// load(c, slot) issues chunk c's copies into ring slot `slot` (every
// thread its share), and compute(c, slot) consumes it once it has landed
// and is visible to the whole block. Chunks 0..STAGES-2 are put in flight
// first, one commit group each; then, per chunk c, the block waits for
// c's group, synchronises (c is visible to all, and every warp is done
// with c-1, whose slot the next load refills), issues chunk c+STAGES-1 and
// computes c while up to STAGES-1 chunks are in flight. Past the end the
// commit groups are empty, which keeps the group count uniform, so that
// cp_async_wait<STAGES-2> always means "chunk c has landed". On return no
// copy is outstanding, but warps may still be reading the last slot: a
// caller that reuses the ring synchronises first.
//
// Versions: v1 (the loop gemm_bf16_mma and search_f16_topw each wrote out).
#pragma once

#include "tensorcore.cuh"

template <int STAGES, typename Load, typename Compute>
__device__ __forceinline__ void cp_async_ring(int chunks, Load load, Compute compute) {
    static_assert(STAGES >= 2, "a ring of one slot cannot overlap copies with math");
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < chunks) load(s, s);
        cp_async_commit();
    }
    for (int c = 0; c < chunks; ++c) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int next = c + STAGES - 1;
        if (next < chunks) load(next, next % STAGES);
        cp_async_commit();
        compute(c, c % STAGES);
    }
    cp_async_wait<0>();
}
