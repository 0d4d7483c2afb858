// emu.h: just enough of CUDA C++ for the kernels of ../kernels to compile as
// host C++ (build tags cuda && cudaemu), and the runtime hooks the emulated
// twins of kernels/tensorcore.cuh are built on.
//
// Design (runtime.cpp runs it):
//   - A launch runs one thread-block cluster after another (a launch
//     without clusters has clusters of one block). Every thread of every
//     block of the cluster is a fiber (ucontext) on the launching OS
//     thread; a fiber runs until it blocks or ends.
//   - A fiber blocks on a sync object: a block barrier (__syncthreads is
//     barrier 0 for all threads of the block; bar.sync id, count the named
//     barriers), a warp- or warpgroup-collective operation (mma.sync,
//     ldmatrix, shuffles, wgmma), an mbarrier phase, a cluster barrier. A
//     collective completes when the last member arrives, which computes the
//     result for all members. The scheduler goes round the fibers, in
//     increasing order in even rounds and decreasing in odd ones, so that a
//     missing barrier changes the result. Left at that, every warp would
//     complete one collective a round, in step with the others, and a
//     barrier missing between warps that meet only in collectives would
//     never show; so at the start of each round each warp may be held back
//     for a few rounds (odds and lengths from a seeded generator: the same
//     schedule in every run, DINOCLIP_EMU_SEED picks another, 0 none).
//     The thread whose arrival completes an mbarrier phase sits out the
//     next round (emu_yield_turn), so that the threads waiting on the phase
//     run before it goes on, as they may on a GPU. A round in which no
//     fiber can run, with no warp held back and none sitting out a round,
//     is a deadlock, reported as a launch error (a barrier that some
//     threads of a block skip by exiting is reported as a divergent
//     barrier).
//   - Device memory, and dynamic shared memory at the start of each block,
//     are filled with 0xff bytes (NaN as float, bf16 and f16), so reading
//     memory nobody wrote shows. Asynchronous copies (cp.async, TMA) poison
//     their destination when issued and write it when they complete: at
//     cp.async.wait_group, or when a thread waits on the mbarrier a TMA load
//     signals; a kernel that reads before waiting reads NaN.
//   - Static __shared__ variables are function statics: one copy for the
//     whole launch, correct only because the blocks of one cluster are the
//     only ones alive at a time, and only for clusters of one block. Kernels
//     launched with clusters keep all shared memory in the dynamic
//     allocation (dc_dynamic_smem in tensorcore.cuh).
//   - A kernel parameter is passed as its exact bytes, so a 128-byte tensor
//     map travels by value like any int.
#pragma once

// No floating-point contraction in what follows: the kernels' __fmul_rn,
// __fadd_rn and the like are plain operators here, which a host compiler
// allowed to fuse them into an fma (GCC's default for C++ where the host
// has one: arm64, -march=native) would round as the GPU does not. (cgo
// does not take -ffp-contract among its flags.)
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <utility>

// The kernels and tensorcore.cuh select their emulated twins with this.
#define DINOCLIP_EMU 1

using std::max;
using std::min;

struct emu_dim3 {
    unsigned x, y, z;
};

// The built-ins, set by the scheduler for the fiber it runs.
extern emu_dim3 threadIdx;
extern emu_dim3 blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __grid_constant__
#define __align__(n) alignas(n)

// ---- runtime hooks (runtime.cpp) ------------------------------------------

// emu_fail ends the launch with an error naming the thread; it does not
// return.
[[noreturn]] void emu_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// emu_bar_sync waits at named barrier id (0..15) until count threads of the
// block have arrived (count 0: all threads of the block); emu_bar_arrive
// arrives without waiting.
void emu_bar_sync(int id, int count);
void emu_bar_arrive(int id, int count);
inline void __syncthreads() { emu_bar_sync(0, 0); }

// A collective operation of a warp (32) or warpgroup (128) threads: each
// member passes its own operand record; the last to arrive calls
// fn(ops, members) with every member's record, indexed by lane (warp) or
// by thread within the warpgroup, and then all members continue. name
// identifies the operation: members arriving with different names fail
// the launch (divergent collective).
typedef void (*emu_collective_fn)(void** ops, int members);
void emu_collective(int width, const char* name, emu_collective_fn fn, void* op);

// emu_wait_until blocks the calling thread until ready(arg) returns true
// (what names the wait in a deadlock report); it returns at once when it is
// already true, after letting the other threads run once.
void emu_wait_until(bool (*ready)(const void* arg), const void* arg, const char* what);

// emu_yield_turn lets every other thread that can run have a turn before
// the calling thread goes on.
void emu_yield_turn();

// The calling thread's block within its cluster, and the cluster's shared
// memory: emu_smem(rank) is block rank's dynamic shared memory (rank -1:
// the caller's), emu_smem_bytes its size.
int emu_cta_rank();
int emu_cluster_ctas();
emu_dim3 emu_cluster_dim();
emu_dim3 emu_cluster_idx();
unsigned char* emu_smem(int rank);
uint32_t emu_smem_bytes();
// emu_thread_slot is the calling thread's index among all threads of the
// cluster run (for per-thread state such as cp.async groups).
int emu_thread_slot();
int emu_threads_in_cluster();
// emu_cluster_sync is barrier.cluster.arrive + wait for all threads of all
// blocks of the cluster.
void emu_cluster_sync();

// Hooks of tensorcore.cpp that the runtime calls around a cluster run:
// emu_tc_begin resets the asynchronous state; emu_tc_end returns an error
// message for work left pending (nullptr when clean).
void emu_tc_begin(int threads, int ctas);
const char* emu_tc_end();

// ---- warp shuffles ----------------------------------------------------------

void emu_exchange(const void* v, void* out, int size, int src_lane, bool valid);

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    T out;
    emu_exchange(&v, &out, sizeof(T), (int)(threadIdx.x & 31) ^ lane_mask, true);
    return out;
}

template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta) {
    T out;
    const int src = (int)(threadIdx.x & 31) + (int)delta;
    emu_exchange(&v, &out, sizeof(T), src, src < 32);
    return out;
}

// float4, CUDA's 16-byte vector type: on the device its alignment makes a
// float4 load or store one 16-byte access.
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}

// ---- the kernel table -------------------------------------------------------

// A kernel receives each parameter as its exact bytes, as the CUDA driver
// passes them.
typedef void (*emu_trampoline)(const unsigned char* const* params);
struct emu_entry {
    const char* name;
    int nparams;
    const int* sizes;  // each parameter's size in bytes
    emu_trampoline call;
};

template <class T>
inline T emu_param(const unsigned char* p) {
    T v;
    memcpy((void*)&v, p, sizeof(T));
    return v;
}

template <class... A, size_t... I>
inline void emu_invoke(void (*f)(A...), const unsigned char* const* params, std::index_sequence<I...>) {
    f(emu_param<A>(params[I])...);
}

template <class... A>
struct emu_signature {
    static constexpr int n = sizeof...(A);
    static constexpr int sizes[sizeof...(A) + 1] = {(int)sizeof(A)..., 0};
};

template <class... A>
constexpr emu_signature<A...> emu_sig(void (*)(A...)) {
    return {};
}

#define EMU_ENTRY(fn)                                                                          \
    emu_entry {                                                                                \
        #fn, decltype(emu_sig(fn))::n, decltype(emu_sig(fn))::sizes,                           \
            [](const unsigned char* const* p) {                                                \
                emu_invoke(fn, p, std::make_index_sequence<decltype(emu_sig(fn))::n>{});       \
            }                                                                                  \
    }
