// emu.h: just enough of CUDA C++ for the kernels of ../kernels to compile as
// host C++ (build tags cuda && cudaemu). The threads of a block run as
// fibers on one OS thread (runtime.cpp); __syncthreads switches to the next
// fiber, so a round over the block is one barrier phase; the warp shuffles
// exchange through a block-wide slot array between two barriers, so every
// thread of the block must reach them together (true of every shuffle in
// these kernels, which all threads of a block execute). Blocks run one
// after another, so __shared__ variables are function statics.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <utility>

using std::max;
using std::min;

struct emu_dim3 {
    unsigned x, y, z;
};

extern emu_dim3 threadIdx;
extern emu_dim3 blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __restrict__ __restrict

void __syncthreads();
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

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// The emulated kernels, for the dispatcher (runtime.cpp); the tables are
// generated from the kernel signatures (cuda/emu/*_gen.cpp). nargs counts
// 8-byte slots: a parameter larger than 8 bytes takes consecutive ones.
typedef void (*emu_trampoline)(const uint64_t* args);
struct emu_entry {
    const char* name;
    int nargs;
    emu_trampoline call;
};

// Unpacking of the launch arguments by the kernel's declared parameter
// types, as the CUDA driver reads them: the value in the low bytes.
template <class T>
struct emu_arg {
    static T get(uint64_t v) { return (T)(uintptr_t)v; }  // pointers
};
template <>
struct emu_arg<int> {
    static int get(uint64_t v) { return (int)(uint32_t)v; }
};
template <>
struct emu_arg<float> {
    static float get(uint64_t v) {
        uint32_t b = (uint32_t)v;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
};
template <>
struct emu_arg<double> {
    static double get(uint64_t v) {
        double f;
        memcpy(&f, &v, 8);
        return f;
    }
};
